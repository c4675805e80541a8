//! Errors of the harness. Each says what was being done, so a failed benchmark run tells the
//! operator whether the broker, the workload or the machine was at fault.

use std::path::PathBuf;

/// Everything that can stop a benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A workload field has an unusable value.
    #[error("invalid --{field}: {reason}")]
    Invalid {
        /// The flag (or workload-file field) at fault.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The workload file does not parse.
    #[error("workload file {}: {reason}", path.display())]
    Workload {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        reason: String,
    },
    /// A local file operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Talking to the broker failed before or outside the measurement.
    #[error("{context}: {source}")]
    Client {
        /// What was being done ("connect to 127.0.0.1:9092", "create topic t").
        context: String,
        /// The client's error.
        #[source]
        source: sluice_client::Error,
    },
    /// Anything else that makes the run meaningless (e.g. every request failed).
    #[error("{0}")]
    Run(String),
}

impl BenchError {
    /// Wrap a client error with what was being done.
    pub fn client(context: impl Into<String>, source: sluice_client::Error) -> Self {
        BenchError::Client {
            context: context.into(),
            source,
        }
    }
}
