//! The `sluice` binary: `sluice start` (the default) runs a broker, `sluice tune` checks and
//! tunes the host, `sluice iotune` measures the data disk.

use std::process::ExitCode;

use clap::Parser;
use sluice::config::{Cli, Command, StartArgs};

fn main() -> ExitCode {
    match Cli::parse().into_command() {
        Command::Start(start) => start_broker(start),
        Command::Tune(args) => ExitCode::from(sluice::tune::run(&args)),
        Command::Iotune(args) => ExitCode::from(sluice::tune::iotune::run(&args)),
    }
}

fn start_broker(start: StartArgs) -> ExitCode {
    let config = match sluice::config::resolve(start, &sluice::config::process_env) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("sluice: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        data_dir = %config.data_dir.display(),
        kafka_addr = %config.kafka_addr,
        shards = config.cores.len(),
        "starting sluice"
    );
    match sluice::runtime::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "sluice failed");
            eprintln!("sluice: {e}");
            ExitCode::from(1)
        }
    }
}
