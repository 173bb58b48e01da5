//! `grove`: parse the command line, run it, print the error as one sentence.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use grove_cli::args::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("grove: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stdout = std::io::stdout();
    let tty = stdout.is_terminal();
    let mut out = stdout.lock();
    match runtime.block_on(grove_cli::run(cli, &mut out, tty)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("grove: {e}");
            ExitCode::FAILURE
        }
    }
}
