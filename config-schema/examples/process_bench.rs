//! Times parse + validate + process of a large configuration (the target: a 2,000-line config with 200
//! jobs, 20 commands, a matrix and merge keys in under 20 ms). `bench/config-process` runs it in release mode;
//! `--print` writes the generated configuration instead, to look at or to feed `runner config process`.
//!
//! Usage: process_bench [--runs N] [--print] [FILE]   (without FILE the generated configuration is used)

use std::time::Instant;

#[path = "../benches/shapes.rs"]
mod shapes;

use shapes::generate;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut runs = 50usize;
    let mut file = None;
    let mut print = false;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--runs" => {
                runs = args.get(i + 1).and_then(|n| n.parse().ok()).unwrap_or(runs);
                i += 1;
            }
            "--print" => print = true,
            other => file = Some(other.to_string()),
        }
        i += 1;
    }
    let text = match &file {
        Some(f) => std::fs::read_to_string(f).unwrap_or_else(|e| panic!("read {f}: {e}")),
        None => generate(),
    };
    if print {
        print!("{text}");
        return;
    }
    let options = config_schema::Options::default();
    let pipeline = config_schema::Pipeline::default();
    let (mut total, mut parse, mut check) = (Vec::new(), Vec::new(), Vec::new());
    let mut jobs = 0;
    let ms = |since: Instant| since.elapsed().as_secs_f64() * 1000.0;
    for _ in 0..runs {
        let started = Instant::now();
        let _ = config_schema::yaml::parse(&text);
        parse.push(ms(started));
        let started = Instant::now();
        let config = config_schema::check(&text, "bench.yml", &options)
            .unwrap_or_else(|e| panic!("the configuration is not valid:\n{e}"));
        check.push(ms(started));
        let started = Instant::now();
        let processed = config_schema::process(&config, "bench.yml", &pipeline)
            .unwrap_or_else(|e| panic!("the configuration does not process:\n{e}"));
        total.push(ms(started) + check.last().copied().unwrap_or_default());
        jobs = processed.jobs.len();
    }
    // Wall medians suffer on a loaded machine; the CPU time this thread spends is what the same work costs on a
    // quiet one. Measured over a second batch of runs of the whole pipeline (clock ticks: 10 ms resolution,
    // hence over all runs together).
    let before = thread_cpu_ms();
    for _ in 0..runs {
        if let Ok(config) = config_schema::check(&text, "bench.yml", &options) {
            let _ = config_schema::process(&config, "bench.yml", &pipeline);
        }
    }
    let cpu = (thread_cpu_ms() - before) / runs as f64;
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "{} lines, {jobs} processed jobs ({runs} runs, medians): YAML {:.2} ms, + read and validate {:.2} ms, \
         + process {:.2} ms",
        text.lines().count(),
        median(&mut parse),
        median(&mut check),
        median(&mut total),
    );
    println!("CPU time of parse + read + validate + process: {cpu:.2} ms per run (mean of {runs})");
}

/// User + system CPU time of this thread so far, in milliseconds (from /proc; 0 where it cannot be read).
fn thread_cpu_ms() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/thread-self/stat") else { return 0.0 };
    // Fields after the command name (which may hold spaces) start at state; utime and stime are the 12th and
    // 13th of those, in clock ticks (USER_HZ, 100 on Linux).
    let Some((_, rest)) = stat.rsplit_once(')') else { return 0.0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) * 10.0
}
