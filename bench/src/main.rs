//! `sluice-bench` command line: parse, run, print the summary.

use std::process::ExitCode;

use clap::Parser;
use sluice_bench::cli::Cli;

fn main() -> ExitCode {
    let command: Vec<String> = std::env::args().collect();
    let cli = Cli::parse();
    let opts = match cli.into_options(command) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("sluice-bench: {e}");
            return ExitCode::from(2);
        }
    };
    match sluice_bench::run(&opts) {
        Ok(report) => {
            print!("{}", report.summary());
            if let Some(p) = &opts.json {
                println!("json: {}", p.display());
            }
            let failed = report.results.iter().all(|r| r.acked == 0);
            if failed {
                eprintln!("sluice-bench: no record was acknowledged");
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sluice-bench: {e}");
            ExitCode::from(1)
        }
    }
}
