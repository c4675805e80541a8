//! Shared harness for the end-to-end tests: start a real `sluice` process on free ports in a
//! temporary directory, wait until it accepts Kafka connections, and stop it the way an
//! operator would (SIGTERM) or the way a crash would (SIGKILL).
//!
//! Every test binary includes this module with `mod common;`, so not every helper is used by
//! every binary.
#![allow(dead_code)]

pub mod raw;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};

/// How long a broker may take from spawn to accepting TCP on its Kafka port.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a broker may take to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a produce may take before a test calls it failed.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout for client calls that should succeed.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);

/// The path of the broker binary cargo built for this test run (`SLUICE_BIN` overrides it,
/// e.g. to run the suite against another build).
pub fn sluice_bin() -> PathBuf {
    match std::env::var_os("SLUICE_BIN") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_BIN_EXE_sluice")),
    }
}

/// The client worker program (`tests/workers/test_worker.rs`, an example target `cargo test`
/// builds next to the test binaries): clients a test can kill with SIGKILL.
pub fn test_worker() -> Command {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> -> target/<profile>/examples/test-worker
    let worker = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("examples").join("test-worker"))
        .expect("test binary has a target directory");
    assert!(
        worker.exists(),
        "{} is missing: build it with `cargo test` (or `cargo build --release --examples`)",
        worker.display()
    );
    Command::new(worker)
}

/// A port that was free a moment ago (bind 127.0.0.1:0, read it, drop the listener).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 to find a free port");
    l.local_addr().unwrap().port()
}

/// Two distinct free ports (both listeners are held while the second is picked, so the
/// kernel cannot hand out the same port twice).
pub fn two_free_ports() -> (u16, u16) {
    let a = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let b = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

/// Last `max` bytes of a file, lossily decoded, for failure messages.
pub fn file_tail(path: &Path, max: u64) -> String {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) => return format!("<cannot open {}: {e}>", path.display()),
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Build the `sluice start` command line (without spawning it).
pub fn broker_command(
    data_dir: &Path,
    kafka_port: u16,
    admin_port: u16,
    extra: &[String],
) -> Command {
    let mut cmd = Command::new(sluice_bin());
    cmd.arg("start")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--kafka-addr")
        .arg(format!("127.0.0.1:{kafka_port}"))
        .arg("--admin-addr")
        .arg(format!("127.0.0.1:{admin_port}"))
        .args(extra)
        .stdin(Stdio::null());
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "info");
    }
    cmd
}

/// A running broker process owned by a test.
pub struct Broker {
    /// Root of the test's scratch space: holds `data/` and the broker logs.
    pub root: PathBuf,
    /// The broker's `--data-dir`.
    pub data_dir: PathBuf,
    pub kafka_port: u16,
    pub admin_port: u16,
    /// Flags after the fixed ones (`--cores 2`, ...), reused by `restart`.
    pub args: Vec<String>,
    /// Current log file (one per start: broker-1.log, broker-2.log, ...).
    pub log_path: PathBuf,
    /// Extra environment variables for the broker process (test hooks), reused by `restart`.
    pub env: Vec<(String, String)>,
    starts: u32,
    child: Option<Child>,
    _tmp: Option<tempfile::TempDir>,
}

impl Broker {
    /// Start a broker with `--cores 2` and default settings.
    pub fn start() -> Broker {
        Broker::start_with(&[])
    }

    /// Start a broker with `--cores 2` plus the given extra flags
    /// (e.g. `&["--auto-create-topics", "false"]`).
    pub fn start_with(extra: &[&str]) -> Broker {
        Broker::start_with_env(extra, &[])
    }

    /// Start a broker with `--cores 2`, the given extra flags and environment variables
    /// (e.g. a test hook such as `SLUICE_TEST_PANIC_ON_TOPIC`).
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Broker {
        let tmp = tempfile::Builder::new()
            .prefix("sluice-e2e-")
            .tempdir()
            .expect("create temp dir");
        let root = tmp.path().to_path_buf();
        let mut b = Broker::new_in(root, extra);
        b._tmp = Some(tmp);
        b.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        b.spawn_and_wait();
        b
    }

    /// A broker whose data lives under `root/data` (not removed on drop); not started yet.
    pub fn new_in(root: PathBuf, extra: &[&str]) -> Broker {
        let data_dir = root.join("data");
        std::fs::create_dir_all(&data_dir).expect("create data dir");
        let (kafka_port, admin_port) = two_free_ports();
        let mut args: Vec<String> = vec!["--cores".into(), "2".into()];
        args.extend(extra.iter().map(|s| s.to_string()));
        Broker {
            log_path: root.join("broker-0.log"),
            root,
            data_dir,
            kafka_port,
            admin_port,
            args,
            env: Vec::new(),
            starts: 0,
            child: None,
            _tmp: None,
        }
    }

    /// Spawn the process (stderr and stdout to a fresh log file) and wait until the Kafka
    /// port accepts TCP. Panics with the log tail if it exits or does not come up in time.
    pub fn spawn_and_wait(&mut self) {
        assert!(self.child.is_none(), "broker already running");
        self.starts += 1;
        self.log_path = self.root.join(format!("broker-{}.log", self.starts));
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("create broker log");
        let mut cmd = broker_command(&self.data_dir, self.kafka_port, self.admin_port, &self.args);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.stdout(log.try_clone().unwrap()).stderr(log);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", sluice_bin().display()));
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let addr: SocketAddr = format!("127.0.0.1:{}", self.kafka_port).parse().unwrap();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                panic!(
                    "broker exited during start-up with {status} (args {:?}); log tail:\n{}",
                    self.args,
                    self.log_tail()
                );
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            if Instant::now() > deadline {
                let tail = self.log_tail();
                self.kill9();
                panic!(
                    "broker did not accept TCP on {addr} within {START_TIMEOUT:?}; log tail:\n{tail}"
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.kafka_port)
    }

    pub fn addr(&self) -> SocketAddr {
        format!("127.0.0.1:{}", self.kafka_port).parse().unwrap()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Whether the process is still running (reaps it if it exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            None => false,
            Some(c) => c.try_wait().unwrap().is_none(),
        }
    }

    /// Waits up to `timeout` for the broker to exit by itself; its exit status if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.child.as_mut()?.try_wait().unwrap();
            if let Some(status) = status {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The whole current broker log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The last 8 KiB of the current broker log.
    pub fn log_tail(&self) -> String {
        file_tail(&self.log_path, 8192)
    }

    /// SIGKILL the broker and reap it, then wait until its port stops accepting: the
    /// kernel tears down a dead process's io_uring (and the listener a pending accept holds)
    /// asynchronously, and a client connecting in that window reaches a dead socket.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline
                && TcpStream::connect_timeout(&self.addr(), Duration::from_millis(100)).is_ok()
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// SIGTERM the broker and wait for it to exit; returns its exit status.
    /// Panics (after SIGKILL) if it does not exit within `STOP_TIMEOUT`.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("terminate: broker not running");
        // SAFETY: plain kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(
            rc,
            0,
            "kill(SIGTERM) failed: {}",
            std::io::Error::last_os_error()
        );
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!(
                    "broker did not exit within {STOP_TIMEOUT:?} after SIGTERM; log tail:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Start again on the same data dir and ports (the previous process must be stopped).
    pub fn restart(&mut self) {
        assert!(
            self.child.is_none(),
            "restart: stop the broker first (kill9 or terminate)"
        );
        self.spawn_and_wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- sluice log tail ({}) ----\n{}\n---- end of sluice log ----",
                self.log_path.display(),
                self.log_tail()
            );
        }
        self.kill9();
    }
}

// ---------------------------------------------------------------------------------------------
// rdkafka helpers
// ---------------------------------------------------------------------------------------------

/// Base client config every test client starts from.
pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("socket.timeout.ms", "10000")
        .set("log_level", "4");
    c
}

/// A FutureProducer with `message.timeout.ms=30000` plus `extra` settings.
pub fn producer(bootstrap: &str, extra: &[(&str, &str)]) -> FutureProducer {
    let mut c = client_config(bootstrap);
    c.set("message.timeout.ms", "30000").set("linger.ms", "5");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c.create().expect("create producer")
}

/// A BaseConsumer for manual assignment (no group protocol is used; `group.id` is set only
/// because librdkafka wants one for consumers).
pub fn consumer(bootstrap: &str, extra: &[(&str, &str)]) -> BaseConsumer {
    let mut c = client_config(bootstrap);
    c.set("group.id", "sluice-e2e")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "error");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c.create().expect("create consumer")
}

pub fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    client_config(bootstrap)
        .create()
        .expect("create admin client")
}

pub fn admin_opts() -> AdminOptions {
    AdminOptions::new()
        .operation_timeout(Some(CLIENT_TIMEOUT))
        .request_timeout(Some(CLIENT_TIMEOUT))
}

/// Create a topic with replication factor 1 and the given configs; panics on failure.
pub async fn create_topic(
    admin: &AdminClient<DefaultClientContext>,
    name: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) {
    let mut t = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        t = t.set(k, v);
    }
    let res = admin
        .create_topics(&[t], &admin_opts())
        .await
        .unwrap_or_else(|e| panic!("CreateTopics {name} failed as a request: {e}"));
    for r in res {
        if let Err((t, code)) = r {
            panic!(
                "CreateTopics {t} ({partitions} partitions, configs {configs:?}) returned {code:?}"
            );
        }
    }
}

/// Number of partitions the broker reports for `topic` (None if the topic is not listed).
/// Uses an all-topics metadata request so it never triggers auto-creation.
pub fn partition_count(c: &BaseConsumer, topic: &str) -> Option<usize> {
    let md = c
        .fetch_metadata(None, CLIENT_TIMEOUT)
        .unwrap_or_else(|e| panic!("Metadata (all topics) failed: {e}"));
    md.topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().len())
}

/// (low, high) watermarks of a partition.
pub fn watermarks(c: &BaseConsumer, topic: &str, partition: i32) -> (i64, i64) {
    c.fetch_watermarks(topic, partition, CLIENT_TIMEOUT)
        .unwrap_or_else(|e| {
            panic!("ListOffsets earliest/latest for {topic}/{partition} failed: {e}")
        })
}

/// Assign exactly `topic/partition` starting at `from` and read until `n` records arrived or
/// `timeout` passed. Any consumer error fails the test (a client would see that error too).
pub fn consume_n(
    c: &BaseConsumer,
    topic: &str,
    partition: i32,
    from: Offset,
    n: usize,
    timeout: Duration,
) -> Vec<OwnedMessage> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, from).unwrap();
    c.assign(&tpl).expect("assign");
    let deadline = Instant::now() + timeout;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        if Instant::now() > deadline {
            panic!(
                "consumer of {topic}/{partition} from {from:?} got only {} of {n} records within {timeout:?} \
                 (last offset seen: {:?})",
                out.len(),
                out.last().map(|m: &OwnedMessage| m.offset())
            );
        }
        match c.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => {
                assert_eq!(m.topic(), topic, "consumer got a record of another topic");
                assert_eq!(
                    m.partition(),
                    partition,
                    "consumer got a record of another partition"
                );
                out.push(m.detach());
            }
            Some(Err(e)) => panic!(
                "consumer of {topic}/{partition} got an error after {} records: {e}",
                out.len()
            ),
        }
    }
    out
}

/// Read `topic/partition` from offset `from` up to (excluding) `high`.
pub fn consume_range(
    c: &BaseConsumer,
    topic: &str,
    partition: i32,
    from: i64,
    high: i64,
    timeout: Duration,
) -> Vec<OwnedMessage> {
    if high <= from {
        return Vec::new();
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(from))
        .unwrap();
    c.assign(&tpl).expect("assign");
    let deadline = Instant::now() + timeout;
    let mut out: Vec<OwnedMessage> = Vec::new();
    while out.last().map(|m| m.offset() + 1 < high).unwrap_or(true) {
        if Instant::now() > deadline {
            panic!(
                "consumer of {topic}/{partition} did not reach high watermark {high} within {timeout:?}: \
                 got {} records, last offset {:?}",
                out.len(),
                out.last().map(|m| m.offset())
            );
        }
        match c.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => out.push(m.detach()),
            Some(Err(e)) => panic!(
                "consumer of {topic}/{partition} got an error after {} records (last offset {:?}): {e}",
                out.len(),
                out.last().map(|m| m.offset())
            ),
        }
    }
    out
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A topic name unique within this process.
pub fn topic_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}", N.fetch_add(1, Ordering::Relaxed))
}

/// Sends one record and returns its (partition, offset); panics with the broker's error.
pub async fn send(
    p: &FutureProducer,
    rec: rdkafka::producer::FutureRecord<'_, [u8], [u8]>,
) -> (i32, i64) {
    let topic = rec.topic.to_string();
    p.send(rec, SEND_TIMEOUT)
        .await
        .unwrap_or_else(|(e, _)| panic!("produce to {topic} failed: {e}"))
}

/// Status line and body of `GET path` on the admin port.
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("admin port");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}
