//! The `medllm` command.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // A panic's message can quote the text being processed (a string slice that failed
    // shows its string): print where it happened, never what, and exit 2.
    std::panic::set_hook(Box::new(|info| {
        let place = info
            .location()
            .map_or_else(|| "unknown place".to_string(), |l| format!("{}:{}", l.file(), l.line()));
        eprintln!(
            "error: internal error (a bug in medllm) at {place}; the input is not shown. Please report it."
        );
    }));
    match std::panic::catch_unwind(|| medllm::cli::run(medllm::cli::Cli::parse())) {
        Ok(code) => code,
        Err(_) => ExitCode::from(2),
    }
}
