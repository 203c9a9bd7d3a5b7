//! The `bourse` binary: one subcommand per way of running the engine.
//!
//! Invariants: the binary holds no logic of its own; each subcommand hands
//! off to a library module (`gateway::script` today). Exit status 0 on
//! success, 2 when the input cannot be understood (the message, naming the
//! line, goes to standard error), 1 when the input cannot be opened.

use std::fs::File;
use std::io::{self, BufReader, BufWriter};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Bourse: a deterministic matching engine and ledger.
#[derive(Debug, Parser)]
#[command(name = "bourse", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// What to run.
#[derive(Debug, Subcommand)]
enum Command {
    /// Run a JSON Lines script against a fresh engine and print its events.
    Script {
        /// The script file, or `-` for standard input.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Script { file } => script(&file),
    }
}

fn script(file: &std::path::Path) -> ExitCode {
    let stdout = io::stdout();
    let output = BufWriter::new(stdout.lock());
    let result = if file.as_os_str() == "-" {
        gateway::script::run_script(io::stdin().lock(), output)
    } else {
        match File::open(file) {
            Ok(f) => gateway::script::run_script(BufReader::new(f), output),
            Err(e) => {
                eprintln!("bourse script: cannot open {}: {e}", file.display());
                return ExitCode::from(1);
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bourse script: {e}");
            ExitCode::from(2)
        }
    }
}
