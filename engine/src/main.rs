//! The `engine` binary: parses docker-like arguments and calls the engine library (see `cli`).

mod cli;

fn main() -> std::process::ExitCode {
    // Every container start re-executes this binary as its monitor: recognise that command line before clap,
    // whose command tree (every verb and flag) costs ~0.5 ms of CPU to build on each start.
    if let Some(code) = engine::container::monitor::run_if_monitor() {
        return std::process::ExitCode::from((code & 0xff) as u8);
    }
    cli::main()
}
