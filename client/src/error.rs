//! Errors of the client: every variant names the broker it came from, because an operator
//! looking at "connection refused" needs to know *which* address refused.

use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;

/// Result alias used throughout the client.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to a Kafka-protocol broker.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// TCP connect failed (refused, unreachable, ...).
    #[error("cannot reach broker {addr}: {}", describe_io(.source))]
    Connect {
        /// `host:port` as given.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The address did not resolve (bad host name or port).
    #[error("cannot resolve broker address {addr}: {reason}")]
    Resolve {
        /// `host:port` as given.
        addr: String,
        /// Why resolution failed.
        reason: String,
    },
    /// TCP connect did not complete in time.
    #[error("cannot reach broker {addr}: no answer within {timeout:?}")]
    ConnectTimeout {
        /// `host:port` as given.
        addr: String,
        /// The connect timeout that expired.
        timeout: Duration,
    },
    /// A request got no response in time.
    #[error(
        "broker {addr} did not answer {api:?} (correlation id {correlation_id}) within {timeout:?}"
    )]
    Timeout {
        /// The broker.
        addr: String,
        /// The request's API.
        api: ApiKey,
        /// The request's correlation id.
        correlation_id: i32,
        /// The response timeout that expired.
        timeout: Duration,
    },
    /// The connection broke or the broker closed it; every in-flight request fails with this.
    #[error("connection to broker {addr} lost: {reason}")]
    Disconnected {
        /// The broker.
        addr: String,
        /// What the reader saw (EOF, an I/O error, a malformed frame).
        reason: String,
    },
    /// Writing a request failed.
    #[error("cannot send to broker {addr}: {}", describe_io(.source))]
    Io {
        /// The broker.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Neither side has a version of this API in common with the other.
    #[error("broker {addr} does not support {api:?} ({detail})")]
    UnsupportedApi {
        /// The broker.
        addr: String,
        /// The API.
        api: ApiKey,
        /// The ranges that did not overlap.
        detail: String,
    },
    /// The request could not be encoded (a field not representable in the chosen version).
    #[error("cannot encode {api:?} v{version} for broker {addr}: {reason}")]
    Encode {
        /// The broker.
        addr: String,
        /// The API.
        api: ApiKey,
        /// The negotiated version.
        version: i16,
        /// The encoder's complaint.
        reason: String,
    },
    /// The response could not be decoded.
    #[error("cannot decode {api:?} v{version} response from broker {addr}: {reason}")]
    Decode {
        /// The broker.
        addr: String,
        /// The API.
        api: ApiKey,
        /// The negotiated version.
        version: i16,
        /// The decoder's complaint.
        reason: String,
    },
    /// The broker answered with a Kafka error code.
    #[error("{context}: {error} (Kafka error {code}) from broker {addr}{}", fmt_message(.message))]
    Kafka {
        /// The broker.
        addr: String,
        /// What was being done ("create topic foo", "produce to foo/0").
        context: String,
        /// The decoded error code.
        error: ResponseError,
        /// The numeric code (kept for `Unknown` codes and scripts).
        code: i16,
        /// The broker's error message, when it sent one.
        message: Option<String>,
    },
    /// No partition leader is known (election in progress or partition offline).
    #[error("no leader for {topic}/{partition}")]
    NoLeader {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
    },
    /// None of the bootstrap addresses answered.
    #[error("no broker could be reached: {0}")]
    NoBrokers(String),
    /// The caller asked for something the client can tell is wrong without a round trip.
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// The Kafka error code carried by this error, if it is a broker-reported error.
    pub fn kafka_error(&self) -> Option<ResponseError> {
        match self {
            Error::Kafka { error, .. } => Some(*error),
            _ => None,
        }
    }

    /// Whether retrying after a metadata refresh may help (leader moved, election running,
    /// connection dropped).
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Kafka { error, .. } => error.is_retriable(),
            Error::NoLeader { .. } | Error::Disconnected { .. } | Error::Timeout { .. } => true,
            _ => false,
        }
    }
}

/// Turn a Kafka error code into `Err(Error::Kafka)` (or `Ok(())` for 0).
pub fn check(
    code: i16,
    addr: &str,
    context: impl FnOnce() -> String,
    message: Option<&kafka_protocol::protocol::StrBytes>,
) -> Result<()> {
    match ResponseError::try_from_code(code) {
        None => Ok(()),
        Some(error) => Err(Error::Kafka {
            addr: addr.to_string(),
            context: context(),
            error,
            code,
            message: message.map(|m| m.to_string()).filter(|m| !m.is_empty()),
        }),
    }
}

fn fmt_message(m: &Option<String>) -> String {
    match m {
        Some(m) => format!(": {m}"),
        None => String::new(),
    }
}

/// "connection refused" rather than "Connection refused (os error 111)": short, stable text
/// for operators and for tests that match on it.
pub fn describe_io(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "connection refused".into(),
        ConnectionReset => "connection reset by peer".into(),
        ConnectionAborted => "connection aborted".into(),
        TimedOut | WouldBlock => "timed out".into(),
        UnexpectedEof => "connection closed by broker".into(),
        BrokenPipe => "connection closed by broker (broken pipe)".into(),
        AddrNotAvailable => "address not available".into(),
        _ => {
            let s = e.to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_lowercase(),
                None => s,
            }
        }
    }
}
