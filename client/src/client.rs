//! The cluster-aware [`Client`]: bootstrap, one connection per broker, and retries with a
//! metadata refresh in between. What it can do lives in one file per concept: `metadata`
//! (Metadata, routing to leaders, DescribeCluster), `topics` (topics and configs), `produce`,
//! `fetch` (records and ListOffsets) and `groups` (coordinators, groups, committed offsets).
//!
//! Every helper builds the request for the version negotiated with the broker it goes to
//! (fields that moved between versions, such as topic names → topic ids in Fetch v13, are
//! filled in accordingly), so the same code works against Sluice and against Apache Kafka.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiKey, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::connection::{Connection, ConnectionConfig};
use crate::error::{Error, Result};
use crate::metadata::ClusterMetadata;

/// A protocol string from a Rust one (requests carry names as `StrBytes`).
pub(crate) fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// A topic name as requests carry it.
pub(crate) fn topic_name(s: &str) -> TopicName {
    TopicName(sb(s))
}

/// How a [`Client`] connects and retries.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` addresses tried in order until one answers.
    pub bootstrap: Vec<String>,
    /// Per-connection settings (client id, timeouts).
    pub connection: ConnectionConfig,
    /// How many times an operation is retried after a retriable Kafka error (leader moved,
    /// coordinator loading) with a metadata refresh in between.
    pub retries: u32,
    /// Pause before each retry.
    pub retry_backoff: Duration,
}

impl ClientConfig {
    /// Defaults for the given bootstrap addresses.
    pub fn new<S: AsRef<str>>(bootstrap: &[S]) -> Self {
        ClientConfig {
            bootstrap: bootstrap.iter().map(|s| s.as_ref().to_string()).collect(),
            connection: ConnectionConfig::default(),
            retries: 5,
            retry_backoff: Duration::from_millis(200),
        }
    }
}

/// A client of one Kafka-protocol cluster. `&self` methods: share it between threads.
pub struct Client {
    pub(crate) config: ClientConfig,
    /// The connection to a bootstrap address (see [`Client::any_broker`]).
    pub(crate) bootstrap: Mutex<Arc<Connection>>,
    /// Connections by broker node id (partition leaders, coordinators, the controller).
    pub(crate) nodes: Mutex<HashMap<i32, Arc<Connection>>>,
    /// The routing cache: the last Metadata seen, merged across partial refreshes.
    pub(crate) metadata: Mutex<Arc<ClusterMetadata>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("bootstrap", &self.config.bootstrap)
            .finish()
    }
}

/// Lock one of the client's mutexes, ignoring poisoning: what they guard (connections, the
/// metadata cache) is only ever replaced whole, so a panicking holder leaves nothing half-done.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Client {
    /// Connect to the first reachable bootstrap address and load the broker list.
    pub fn connect(config: ClientConfig) -> Result<Client> {
        let conn = Arc::new(Self::connect_bootstrap(&config)?);
        let client = Client {
            config,
            bootstrap: Mutex::new(conn),
            nodes: Mutex::new(HashMap::new()),
            metadata: Mutex::new(Arc::new(ClusterMetadata::default())),
        };
        client.refresh_metadata(Some(&[]))?;
        Ok(client)
    }

    fn connect_bootstrap(config: &ClientConfig) -> Result<Connection> {
        if config.bootstrap.is_empty() {
            return Err(Error::Invalid("no bootstrap broker address given".into()));
        }
        let mut errors = Vec::new();
        for addr in &config.bootstrap {
            match Connection::connect(addr, &config.connection) {
                Ok(c) => return Ok(c),
                Err(e) => errors.push(e),
            }
        }
        if errors.len() == 1 {
            if let Some(e) = errors.pop() {
                return Err(e);
            }
        }
        Err(Error::NoBrokers(
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        ))
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The bootstrap connection (reconnected if it broke). Any broker can answer Metadata
    /// and most admin requests.
    pub fn any_broker(&self) -> Result<Arc<Connection>> {
        let mut b = lock(&self.bootstrap);
        if b.is_closed() {
            *b = Arc::new(Self::connect_bootstrap(&self.config)?);
        }
        Ok(b.clone())
    }

    /// Whether the bootstrap broker advertises `key` in a version this client speaks.
    pub fn supports(&self, key: ApiKey) -> Result<bool> {
        Ok(self.any_broker()?.supports(key))
    }

    /// The connection to node `id` (opened on first use, reopened after it broke).
    pub fn broker(&self, id: i32) -> Result<Arc<Connection>> {
        if let Some(c) = lock(&self.nodes).get(&id) {
            if !c.is_closed() {
                return Ok(c.clone());
            }
        }
        let mut info = self.cached_metadata().broker(id).cloned();
        if info.is_none() {
            info = self.refresh_metadata(Some(&[]))?.broker(id).cloned();
        }
        let info = info.ok_or_else(|| Error::Invalid(format!("unknown broker node id {id}")))?;
        let conn = Arc::new(Connection::connect(&info.addr(), &self.config.connection)?);
        lock(&self.nodes).insert(id, conn.clone());
        Ok(conn)
    }

    /// The controller's connection (where topic and config changes go), or any broker's
    /// when the controller is unknown.
    pub(crate) fn controller(&self) -> Result<Arc<Connection>> {
        let md = self.cached_metadata();
        if md.controller_id >= 0 && md.broker(md.controller_id).is_some() {
            self.broker(md.controller_id)
        } else {
            self.any_broker()
        }
    }

    /// Run `f`, refreshing metadata and retrying on retriable Kafka errors (leader moved,
    /// coordinator loading, topic not yet propagated).
    pub(crate) fn retrying<T>(&self, mut f: impl FnMut() -> Result<T>) -> Result<T> {
        let mut attempt = 0;
        loop {
            match f() {
                Err(e) if attempt < self.config.retries && retriable(&e) => {
                    attempt += 1;
                    std::thread::sleep(self.config.retry_backoff);
                    // Forget cached topics so the next attempt re-reads leaders.
                    {
                        let mut m = lock(&self.metadata);
                        let mut fresh = (**m).clone();
                        fresh.topics.clear();
                        *m = Arc::new(fresh);
                    }
                    let _ = self.refresh_metadata(Some(&[]));
                }
                other => return other,
            }
        }
    }
}

/// Whether an operation that failed with `e` may succeed after a metadata refresh.
fn retriable(e: &Error) -> bool {
    match e {
        Error::Kafka { error, .. } => {
            error.is_retriable()
                || matches!(
                    error,
                    ResponseError::CoordinatorLoadInProgress | ResponseError::NotCoordinator
                )
        }
        Error::NoLeader { .. } => true,
        _ => false,
    }
}
