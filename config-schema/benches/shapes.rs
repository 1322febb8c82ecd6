//! The benchmark configuration, shared by `benches/process.rs` (criterion) and `examples/process_bench.rs`
//! (`bench/config-process`): about 2,900 lines — 200 jobs over 20 nested commands with parameters, an executor
//! with arguments, `<<: *defaults` merged into every job, a 4-way matrix and a 200-job requires chain.

/// 200 jobs over 20 commands with parameters, executors with arguments, merge keys, a matrix, requires chains.
pub fn generate() -> String {
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
