//! The `engine` binary: parses docker-like arguments and calls the engine library (see `cli`).

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
