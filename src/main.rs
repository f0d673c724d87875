//! The `medllm` command.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    medllm::cli::run(medllm::cli::Cli::parse())
}
