//! Times parse + validate + process of a large configuration (the target: a 2,000-line config with 200
//! jobs, 20 commands, a matrix and merge keys in under 20 ms). `bench/config-process` runs it in release mode;
//! `--print` writes the generated configuration instead, to look at or to feed `runner config process`.
//!
//! Usage: process_bench [--runs N] [--print] [FILE]   (without FILE the generated configuration is used)

use std::time::Instant;

/// 200 jobs over 20 commands with parameters, executors with arguments, merge keys, a matrix, requires chains.
fn generate() -> String {
    let mut s = String::from(
        "version: 2.1\n\
         defaults: &defaults\n  resource_class: medium\n  working_directory: ~/project\n  environment:\n\
         \x20   CI: \"true\"\n    LANG: C.UTF-8\n\
         parameters:\n  deploy:\n    type: boolean\n    default: false\n\
         executors:\n  base:\n    parameters:\n      tag:\n        type: string\n        default: current\n\
         \x20   docker:\n      - image: cimg/base:<< parameters.tag >>\n      - image: postgres:16\n\
         \x20       environment:\n          POSTGRES_PASSWORD: secret\n\
         commands:\n",
    );
    for c in 0..20 {
        s.push_str(&format!(
            "  cmd-{c}:\n    parameters:\n      label:\n        type: string\n        default: step-{c}\n\
             \x20     verbose:\n        type: boolean\n        default: false\n    steps:\n\
             \x20     - restore_cache:\n          keys:\n            - cache-{c}-{{{{ checksum \"lock\" }}}}\n\
             \x20     - run:\n          name: << parameters.label >>\n          command: |\n\
             \x20           echo running << parameters.label >>\n            make target-{c}\n\
             \x20     - when:\n          condition: << parameters.verbose >>\n          steps:\n\
             \x20           - run: env | sort\n"
        ));
        if c > 0 {
            s.push_str(&format!("      - cmd-{}:\n          label: nested-{c}\n", c - 1));
        }
    }
    s.push_str("jobs:\n");
    for j in 0..200 {
        s.push_str(&format!(
            "  job-{j}:\n    <<: *defaults\n    parameters:\n      shard: {{type: integer, default: 1}}\n\
             \x20   executor: {{name: base, tag: \"2024.{}\"}}\n    parallelism: << parameters.shard >>\n\
             \x20   steps:\n      - checkout\n      - cmd-{}: {{label: job-{j}}}\n\
             \x20     - run: make test SHARD=<< parameters.shard >>\n",
            j % 12 + 1,
            j % 4
        ));
    }
    s.push_str("workflows:\n  main:\n    jobs:\n");
    for j in 0..200 {
        if j == 0 {
            s.push_str(
                "      - job-0:\n          matrix:\n            parameters:\n              shard: [1, 2, 3, 4]\n",
            );
        } else {
            let up = if j == 1 { "job-0".to_string() } else { format!("job-{}", j - 1) };
            s.push_str(&format!("      - job-{j}:\n          requires: [{up}]\n"));
        }
    }
    s
}

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
