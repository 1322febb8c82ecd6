//! Criterion benchmark of the budget: parse + validate + process a generated configuration of about
//! 2,900 lines (200 jobs, 20 commands, a matrix, merge keys; see `shapes.rs`) — target under 20 ms. Also times
//! the YAML parse and parse + validate alone, to see which stage moved. Run: `cargo bench -p config-schema`.

use criterion::{criterion_group, criterion_main, Criterion};

mod shapes;

fn process(c: &mut Criterion) {
    let text = shapes::generate();
    let options = config_schema::Options::default();
    let pipeline = config_schema::Pipeline::default();
    let jobs = config_schema::process_text(&text, "bench.yml", &options, &pipeline)
        .unwrap_or_else(|e| panic!("the benchmark configuration does not process:\n{e}"))
        .jobs
        .len();
    println!("benchmark configuration: {} lines, {jobs} processed jobs", text.lines().count());
    let mut group = c.benchmark_group("config");
    group.sample_size(30);
    group.bench_function("yaml-parse", |b| b.iter(|| config_schema::yaml::parse(&text).is_ok()));
    group.bench_function("parse+validate", |b| b.iter(|| config_schema::check(&text, "bench.yml", &options).is_ok()));
    group.bench_function("parse+validate+process", |b| {
        b.iter(|| config_schema::process_text(&text, "bench.yml", &options, &pipeline).is_ok())
    });
    group.finish();
}

criterion_group!(benches, process);
criterion_main!(benches);
