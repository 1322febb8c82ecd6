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
}
