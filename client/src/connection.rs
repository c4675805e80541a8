//! One pipelined TCP connection to one broker.
//!
//! Requests are written as soon as they are sent (no waiting for the previous response), and a
//! reader thread matches each response to its request by correlation id. That is what lets
//! `sluice-bench` keep many requests in flight on one connection and measure the broker, not
//! a request/response ping-pong.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::marker::PhantomData;
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};

use crate::error::{Error, Result};

/// Kafka's UNSUPPORTED_VERSION: an ApiVersions request newer than the broker knows is answered
/// with this code and a v0 body listing what the broker does support (KIP-511).
const UNSUPPORTED_VERSION: i16 = 35;
/// The ApiVersions version we open with: v3 (Kafka 2.4+) carries the client name and is
/// flexible; older brokers answer UNSUPPORTED_VERSION and we retry at their maximum.
const API_VERSIONS_FIRST: i16 = 3;

/// How a connection is opened and how long it waits.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// Sent as the request header's `client_id`.
    pub client_id: String,
    /// Limit on the TCP connect (per resolved address).
    pub connect_timeout: Duration,
    /// Default limit on waiting for a response ([`InFlight::wait`]).
    pub request_timeout: Duration,
    /// Responses larger than this close the connection (protects against garbage lengths).
    pub max_frame_bytes: usize,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            client_id: "sluice-client".into(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_frame_bytes: 256 * 1024 * 1024,
        }
    }
}

/// A version range `min..=max` of one API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionSpan {
    /// Lowest version.
    pub min: i16,
    /// Highest version.
    pub max: i16,
}

/// Pick the version to speak: the highest both sides know, or `None` when the ranges do not
/// overlap. Ours is the crate's range for the request type; the broker's comes from ApiVersions.
pub fn pick_version(ours: VersionSpan, broker: VersionSpan) -> Option<i16> {
    let v = ours.max.min(broker.max);
    if v < ours.min || v < broker.min {
        None
    } else {
        Some(v)
    }
}

/// What the broker answered to ApiVersions: its range per API key.
#[derive(Debug, Clone, Default)]
pub struct BrokerVersions {
    ranges: HashMap<i16, VersionSpan>,
}

impl BrokerVersions {
    /// Build from an ApiVersions response (unknown keys are kept: they are harmless).
    pub fn from_response(resp: &ApiVersionsResponse) -> Self {
        let ranges = resp
            .api_keys
            .iter()
            .map(|k| {
                (
                    k.api_key,
                    VersionSpan {
                        min: k.min_version,
                        max: k.max_version,
                    },
                )
            })
            .collect();
        BrokerVersions { ranges }
    }

    /// The broker's range for `key`, if it advertises the API at all.
    pub fn range(&self, key: ApiKey) -> Option<VersionSpan> {
        self.ranges.get(&(key as i16)).copied()
    }

    /// The version this client will use for `key` (crate range ∩ broker range, highest).
    pub fn negotiated(&self, key: ApiKey) -> Option<i16> {
        let valid = key.valid_versions();
        let ours = VersionSpan {
            min: valid.min,
            max: valid.max,
        };
        pick_version(ours, self.range(key)?)
    }

    /// Every advertised API key with its range, sorted by key.
    pub fn all(&self) -> Vec<(i16, VersionSpan)> {
        let mut v: Vec<_> = self.ranges.iter().map(|(k, r)| (*k, *r)).collect();
        v.sort_by_key(|(k, _)| *k);
        v
    }
}

/// A response frame as the reader thread delivered it, before the body is decoded.
#[derive(Debug)]
pub struct Completion {
    /// Correlation id of the request this answers.
    pub correlation_id: i32,
    /// API of the request.
    pub api_key: ApiKey,
    /// Version the request was sent with (and the response is encoded with).
    pub version: i16,
    /// When the reader thread finished reading the frame (for latency measurement).
    pub received_at: Instant,
    /// The response body after the header, or why there will be none.
    pub body: Result<Bytes>,
    addr: Arc<str>,
}

impl Completion {
    /// Decode the body as `T` (the response type of the request that was sent).
    pub fn decode<T: Decodable>(self) -> Result<T> {
        let mut body = self.body?;
        T::decode(&mut body, self.version).map_err(|e| Error::Decode {
            addr: self.addr.to_string(),
            api: self.api_key,
            version: self.version,
            reason: e.to_string(),
        })
    }
}

struct PendingEntry {
    api_key: ApiKey,
    version: i16,
    tx: Sender<Completion>,
}

#[derive(Default)]
struct PendingState {
    map: HashMap<i32, PendingEntry>,
    /// Set once the reader stopped; new sends fail with this reason.
    closed: Option<String>,
}

struct Shared {
    addr: Arc<str>,
    pending: Mutex<PendingState>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, PendingState> {
        // A panic while holding this lock cannot leave the map inconsistent (every critical
        // section is a single insert/remove), so a poisoned lock is still usable.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A pipelined connection to one broker, safe to share between threads (`&self` methods).
pub struct Connection {
    shared: Arc<Shared>,
    writer: Mutex<TcpStream>,
    next_correlation: AtomicI32,
    versions: BrokerVersions,
    config: ConnectionConfig,
    reader: Option<JoinHandle<()>>,
    peer: SocketAddr,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.shared.addr)
            .field("peer", &self.peer)
            .finish()
    }
}

/// A request that was written and whose response has not been taken yet.
///
/// Dropping it abandons the response (the reader thread discards it when it arrives).
pub struct InFlight<T> {
    correlation_id: i32,
    api_key: ApiKey,
    rx: Receiver<Completion>,
    shared: Arc<Shared>,
    timeout: Duration,
    _response: PhantomData<fn() -> T>,
}

impl<T: Decodable> InFlight<T> {
    /// The request's correlation id.
    pub fn correlation_id(&self) -> i32 {
        self.correlation_id
    }

    /// Wait for the response with the connection's request timeout.
    pub fn wait(self) -> Result<T> {
        let t = self.timeout;
        self.wait_timeout(t)
    }

    /// Wait for the response at most `timeout`; on expiry the request is forgotten and a late
    /// response is discarded.
    pub fn wait_timeout(self, timeout: Duration) -> Result<T> {
        match self.rx.recv_timeout(timeout) {
            Ok(c) => c.decode(),
            Err(RecvTimeoutError::Timeout) => {
                self.shared.lock().map.remove(&self.correlation_id);
                Err(Error::Timeout {
                    addr: self.shared.addr.to_string(),
                    api: self.api_key,
                    correlation_id: self.correlation_id,
                    timeout,
                })
            }
            Err(RecvTimeoutError::Disconnected) => Err(Error::Disconnected {
                addr: self.shared.addr.to_string(),
                reason: "the connection was closed".into(),
            }),
        }
    }

    /// The response if it already arrived, without blocking.
    pub fn try_take(&self) -> Option<Result<T>> {
        self.rx.try_recv().ok().map(Completion::decode)
    }
}

impl Connection {
    /// Connect to `addr` (`host:port`) and negotiate API versions with ApiVersions.
    pub fn connect(addr: &str, config: &ConnectionConfig) -> Result<Connection> {
        let resolved: Vec<SocketAddr> = addr
            .to_socket_addrs()
            .map_err(|e| Error::Resolve {
                addr: addr.to_string(),
                reason: e.to_string(),
            })?
            .collect();
        if resolved.is_empty() {
            return Err(Error::Resolve {
                addr: addr.to_string(),
                reason: "no addresses".into(),
            });
        }
        let mut last_err = None;
        let mut stream = None;
        for sa in &resolved {
            match TcpStream::connect_timeout(sa, config.connect_timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    last_err = Some(Error::ConnectTimeout {
                        addr: addr.to_string(),
                        timeout: config.connect_timeout,
                    })
                }
                Err(e) => {
                    last_err = Some(Error::Connect {
                        addr: addr.to_string(),
                        source: e,
                    })
                }
            }
        }
        let stream = match stream {
            Some(s) => s,
            None => {
                return Err(last_err.unwrap_or_else(|| Error::Resolve {
                    addr: addr.to_string(),
                    reason: "no addresses".into(),
                }))
            }
        };
        Self::from_stream(stream, addr, config)
    }

    /// Wrap an already connected stream (used by tests with a fake broker), start the reader
    /// thread and negotiate versions.
    pub fn from_stream(stream: TcpStream, addr: &str, config: &ConnectionConfig) -> Result<Self> {
        let io_err = |e| Error::Io {
            addr: addr.to_string(),
            source: e,
        };
        stream.set_nodelay(true).map_err(io_err)?;
        stream
            .set_write_timeout(Some(config.request_timeout))
            .map_err(io_err)?;
        let peer = stream.peer_addr().map_err(io_err)?;
        let read_half = stream.try_clone().map_err(io_err)?;
        let shared = Arc::new(Shared {
            addr: Arc::from(addr),
            pending: Mutex::new(PendingState::default()),
        });
        let reader_shared = shared.clone();
        let max_frame = config.max_frame_bytes;
        let reader = std::thread::Builder::new()
            .name(format!("kafka-reader-{addr}"))
            .spawn(move || reader_loop(read_half, reader_shared, max_frame))
            .map_err(io_err)?;
        let mut conn = Connection {
            shared,
            writer: Mutex::new(stream),
            next_correlation: AtomicI32::new(1),
            versions: BrokerVersions::default(),
            config: config.clone(),
            reader: Some(reader),
            peer,
        };
        conn.versions = conn.negotiate()?;
        Ok(conn)
    }

    fn negotiate(&self) -> Result<BrokerVersions> {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("sluice-client"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let completion = self.send_raw(&req, API_VERSIONS_FIRST)?;
        let mut body = completion.body?;
        if body.len() >= 2 && (&body[..2]).get_i16() == UNSUPPORTED_VERSION {
            // The broker is older than v3: it answered in v0 with its own range.
            let v0 = ApiVersionsResponse::decode(&mut body, 0).map_err(|e| Error::Decode {
                addr: self.addr().to_string(),
                api: ApiKey::ApiVersions,
                version: 0,
                reason: e.to_string(),
            })?;
            let theirs = BrokerVersions::from_response(&v0);
            let ours = VersionSpan { min: 0, max: 4 };
            let version = theirs
                .range(ApiKey::ApiVersions)
                .and_then(|b| pick_version(ours, b))
                .unwrap_or(0);
            let c = self.send_raw(&ApiVersionsRequest::default(), version)?;
            let resp: ApiVersionsResponse = c.decode()?;
            crate::error::check(resp.error_code, self.addr(), || "ApiVersions".into(), None)?;
            return Ok(BrokerVersions::from_response(&resp));
        }
        let resp = ApiVersionsResponse::decode(&mut body, API_VERSIONS_FIRST).map_err(|e| {
            Error::Decode {
                addr: self.addr().to_string(),
                api: ApiKey::ApiVersions,
                version: API_VERSIONS_FIRST,
                reason: e.to_string(),
            }
        })?;
        crate::error::check(resp.error_code, self.addr(), || "ApiVersions".into(), None)?;
        Ok(BrokerVersions::from_response(&resp))
    }

    /// Send and wait synchronously for a raw completion (used during negotiation).
    fn send_raw<R: Request>(&self, req: &R, version: i16) -> Result<Completion> {
        let (tx, rx) = mpsc::channel();
        let id = self.write_request(req, version, Some(&tx))?;
        match rx.recv_timeout(self.config.request_timeout) {
            Ok(c) => Ok(c),
            Err(_) => {
                self.shared.lock().map.remove(&id);
                Err(Error::Timeout {
                    addr: self.addr().to_string(),
                    api: api_key_of::<R>(),
                    correlation_id: id,
                    timeout: self.config.request_timeout,
                })
            }
        }
    }

    /// The address this connection was opened with (`host:port`).
    pub fn addr(&self) -> &str {
        &self.shared.addr
    }

    /// The resolved peer socket address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The broker's advertised API versions.
    pub fn versions(&self) -> &BrokerVersions {
        &self.versions
    }

    /// Whether the broker advertises `key` in a version this client can speak.
    pub fn supports(&self, key: ApiKey) -> bool {
        self.versions.negotiated(key).is_some()
    }

    /// The version that [`send`](Self::send) will use for request type `R`: the highest
    /// version in both the broker's range and the range `R` can encode.
    pub fn version_for<R: Request>(&self) -> Result<i16> {
        let key = api_key_of::<R>();
        let ours = VersionSpan {
            min: R::VERSIONS.min,
            max: R::VERSIONS.max.min(key.valid_versions().max),
        };
        let theirs = self
            .versions
            .range(key)
            .ok_or_else(|| Error::UnsupportedApi {
                addr: self.addr().to_string(),
                api: key,
                detail: "not advertised in ApiVersions".into(),
            })?;
        pick_version(ours, theirs).ok_or_else(|| Error::UnsupportedApi {
            addr: self.addr().to_string(),
            api: key,
            detail: format!(
                "broker speaks v{}..v{}, this client v{}..v{}",
                theirs.min, theirs.max, ours.min, ours.max
            ),
        })
    }

    /// Write `req` at the negotiated version and return without waiting for the response.
    pub fn send<R: Request>(&self, req: &R) -> Result<InFlight<R::Response>> {
        let version = self.version_for::<R>()?;
        self.send_version(req, version)
    }

    /// Like [`send`](Self::send) at an explicit version (the caller built `req` for it).
    pub fn send_version<R: Request>(&self, req: &R, version: i16) -> Result<InFlight<R::Response>> {
        let (tx, rx) = mpsc::channel();
        let correlation_id = self.write_request(req, version, Some(&tx))?;
        Ok(InFlight {
            correlation_id,
            api_key: api_key_of::<R>(),
            rx,
            shared: self.shared.clone(),
            timeout: self.config.request_timeout,
            _response: PhantomData,
        })
    }

    /// Write `req` and have its [`Completion`] delivered to `completions` (a queue shared by
    /// many requests, for callers that consume responses in arrival order, as a benchmark
    /// does). Returns the correlation id.
    pub fn send_to<R: Request>(
        &self,
        req: &R,
        version: i16,
        completions: &Sender<Completion>,
    ) -> Result<i32> {
        self.write_request(req, version, Some(completions))
    }

    /// Write a request that gets no response (a Produce with acks=0): nothing is registered,
    /// so nothing waits. Returns the correlation id.
    pub fn send_oneway<R: Request>(&self, req: &R, version: i16) -> Result<i32> {
        self.write_request(req, version, None)
    }

    /// Send and wait: the convenience for request/response use.
    pub fn call<R: Request>(&self, req: &R) -> Result<R::Response> {
        self.send(req)?.wait()
    }

    fn write_request<R: Request>(
        &self,
        req: &R,
        version: i16,
        tx: Option<&Sender<Completion>>,
    ) -> Result<i32> {
        let api_key = api_key_of::<R>();
        let correlation_id = self.next_correlation.fetch_add(1, Ordering::Relaxed);
        let frame = encode_frame(
            req,
            api_key,
            version,
            correlation_id,
            &self.config.client_id,
        )
        .map_err(|reason| Error::Encode {
            addr: self.addr().to_string(),
            api: api_key,
            version,
            reason,
        })?;
        // Register before writing so a fast response cannot beat the registration.
        {
            let mut p = self.shared.lock();
            if let Some(reason) = &p.closed {
                return Err(Error::Disconnected {
                    addr: self.addr().to_string(),
                    reason: reason.clone(),
                });
            }
            if let Some(tx) = tx {
                p.map.insert(
                    correlation_id,
                    PendingEntry {
                        api_key,
                        version,
                        tx: tx.clone(),
                    },
                );
            }
        }
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = w.write_all(&frame) {
            self.shared.lock().map.remove(&correlation_id);
            // A partial write leaves the stream unframed: close it so nobody reuses it.
            let _ = w.shutdown(Shutdown::Both);
            return Err(Error::Io {
                addr: self.addr().to_string(),
                source: e,
            });
        }
        Ok(correlation_id)
    }

    /// Whether the reader has stopped (broker closed the connection or it broke).
    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed.is_some()
    }

    /// Number of requests waiting for a response.
    pub fn in_flight(&self) -> usize {
        self.shared.lock().map.len()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Ok(w) = self.writer.lock() {
            let _ = w.shutdown(Shutdown::Both);
        }
        if let Some(h) = self.reader.take() {
            let _ = h.join();
        }
    }
}

/// The `ApiKey` of a request type (every `Request::KEY` is a known key).
pub fn api_key_of<R: Request>() -> ApiKey {
    ApiKey::try_from(R::KEY).unwrap_or(ApiKey::ApiVersions)
}

/// Size-prefixed frame: `[len][header][body]`.
fn encode_frame<R: Request>(
    req: &R,
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    client_id: &str,
) -> std::result::Result<Bytes, String> {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_string(client_id.to_string())));
    let header_version = api_key.request_header_version(version);
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i32(0);
    header
        .encode(&mut buf, header_version)
        .map_err(|e| e.to_string())?;
    req.encode(&mut buf, version).map_err(|e| e.to_string())?;
    let len = i32::try_from(buf.len() - 4).map_err(|_| "request too large".to_string())?;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}

fn reader_loop(mut stream: TcpStream, shared: Arc<Shared>, max_frame: usize) {
    let reason = loop {
        let mut len_buf = [0u8; 4];
        if let Err(e) = stream.read_exact(&mut len_buf) {
            break crate::error::describe_io(&e);
        }
        let len = i32::from_be_bytes(len_buf);
        if len < 4 || len as usize > max_frame {
            break format!("bad response frame length {len} (limit {max_frame})");
        }
        let mut frame = vec![0u8; len as usize];
        if let Err(e) = stream.read_exact(&mut frame) {
            break crate::error::describe_io(&e);
        }
        let received_at = Instant::now();
        let mut frame = Bytes::from(frame);
        let correlation_id = (&frame[..4]).get_i32();
        let entry = shared.lock().map.remove(&correlation_id);
        let Some(entry) = entry else {
            // A response to a request that timed out (or was sent one-way): drop it.
            continue;
        };
        let header_version = entry.api_key.response_header_version(entry.version);
        let body = match ResponseHeader::decode(&mut frame, header_version) {
            Ok(_) => Ok(frame),
            Err(e) => Err(Error::Decode {
                addr: shared.addr.to_string(),
                api: entry.api_key,
                version: entry.version,
                reason: format!("response header: {e}"),
            }),
        };
        let _ = entry.tx.send(Completion {
            correlation_id,
            api_key: entry.api_key,
            version: entry.version,
            received_at,
            body,
            addr: shared.addr.clone(),
        });
    };
    let mut p = shared.lock();
    p.closed = Some(reason.clone());
    for (correlation_id, entry) in p.map.drain() {
        let _ = entry.tx.send(Completion {
            correlation_id,
            api_key: entry.api_key,
            version: entry.version,
            received_at: Instant::now(),
            body: Err(Error::Disconnected {
                addr: shared.addr.to_string(),
                reason: reason.clone(),
            }),
            addr: shared.addr.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::{MetadataRequest, MetadataResponse, RequestKind};
    use std::net::TcpListener;

    #[test]
    fn picks_highest_common_version() {
        let ours = VersionSpan { min: 0, max: 12 };
        assert_eq!(pick_version(ours, VersionSpan { min: 0, max: 9 }), Some(9));
        assert_eq!(
            pick_version(ours, VersionSpan { min: 3, max: 15 }),
            Some(12)
        );
        assert_eq!(pick_version(ours, VersionSpan { min: 13, max: 15 }), None);
        assert_eq!(
            pick_version(
                VersionSpan { min: 4, max: 18 },
                VersionSpan { min: 0, max: 3 }
            ),
            None
        );
    }

    #[test]
    fn negotiated_uses_crate_range() {
        let resp = ApiVersionsResponse::default().with_api_keys(vec![
            ApiVersion::default()
                .with_api_key(ApiKey::Fetch as i16)
                .with_min_version(0)
                .with_max_version(99),
            ApiVersion::default()
                .with_api_key(ApiKey::Metadata as i16)
                .with_min_version(0)
                .with_max_version(5),
        ]);
        let v = BrokerVersions::from_response(&resp);
        assert_eq!(
            v.negotiated(ApiKey::Fetch),
            Some(ApiKey::Fetch.valid_versions().max)
        );
        assert_eq!(v.negotiated(ApiKey::Metadata), Some(5));
        assert_eq!(v.negotiated(ApiKey::Produce), None);
    }

    /// Read one request frame; returns (api key, version, correlation id, body bytes).
    fn read_request(s: &mut TcpStream) -> Option<(ApiKey, i16, i32, Bytes)> {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).ok()?;
        let mut buf = vec![0u8; i32::from_be_bytes(len) as usize];
        s.read_exact(&mut buf).ok()?;
        let mut b = Bytes::from(buf);
        let key = ApiKey::try_from((&b[..2]).get_i16()).ok()?;
        let version = (&b[2..4]).get_i16();
        let hv = key.request_header_version(version);
        let h = RequestHeader::decode(&mut b, hv).ok()?;
        Some((key, version, h.correlation_id, b))
    }

    fn write_response<T: Encodable>(
        s: &mut TcpStream,
        key: ApiKey,
        version: i16,
        correlation_id: i32,
        resp: &T,
    ) {
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        ResponseHeader::default()
            .with_correlation_id(correlation_id)
            .encode(&mut buf, key.response_header_version(version))
            .unwrap();
        resp.encode(&mut buf, version).unwrap();
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        s.write_all(&buf).unwrap();
    }

    fn fake_versions(max_api_versions: i16) -> ApiVersionsResponse {
        ApiVersionsResponse::default().with_api_keys(vec![
            ApiVersion::default()
                .with_api_key(ApiKey::ApiVersions as i16)
                .with_min_version(0)
                .with_max_version(max_api_versions),
            ApiVersion::default()
                .with_api_key(ApiKey::Metadata as i16)
                .with_min_version(0)
                .with_max_version(9),
        ])
    }

    /// A fake broker: answers ApiVersions, then collects `n` Metadata requests and answers
    /// them in *reverse* order, each with a distinct `controller_id` = correlation id, so the
    /// client must match by correlation id, not by order.
    fn fake_broker(n: usize) -> (String, std::thread::JoinHandle<Vec<i16>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut versions_seen = Vec::new();
            let (key, v, id, _) = read_request(&mut s).unwrap();
            assert_eq!(key, ApiKey::ApiVersions);
            write_response(&mut s, key, v, id, &fake_versions(3));
            let mut reqs = Vec::new();
            for _ in 0..n {
                let (key, v, id, mut body) = read_request(&mut s).unwrap();
                assert_eq!(key, ApiKey::Metadata);
                let decoded = RequestKind::decode(key, &mut body, v).unwrap();
                assert!(matches!(decoded, RequestKind::Metadata(_)));
                versions_seen.push(v);
                reqs.push((v, id));
            }
            for (v, id) in reqs.into_iter().rev() {
                let resp = MetadataResponse::default()
                    .with_controller_id(kafka_protocol::messages::BrokerId(id));
                write_response(&mut s, ApiKey::Metadata, v, id, &resp);
            }
            versions_seen
        });
        (addr, h)
    }

    #[test]
    fn pipelined_responses_match_correlation_ids() {
        let (addr, h) = fake_broker(5);
        let conn = Connection::connect(&addr, &ConnectionConfig::default()).unwrap();
        assert_eq!(conn.versions().negotiated(ApiKey::Metadata), Some(9));
        assert!(!conn.supports(ApiKey::Produce));
        let inflight: Vec<_> = (0..5)
            .map(|_| conn.send(&MetadataRequest::default()).unwrap())
            .collect();
        for f in inflight {
            let id = f.correlation_id();
            let resp = f.wait().unwrap();
            assert_eq!(resp.controller_id.0, id);
        }
        assert_eq!(h.join().unwrap(), vec![9; 5]);
    }

    #[test]
    fn unsupported_api_is_refused_locally() {
        let (addr, _h) = fake_broker(0);
        let conn = Connection::connect(&addr, &ConnectionConfig::default()).unwrap();
        let err = conn
            .send(&kafka_protocol::messages::ProduceRequest::default())
            .err()
            .unwrap();
        assert!(matches!(err, Error::UnsupportedApi { .. }), "{err}");
    }

    #[test]
    fn old_broker_gets_api_versions_retry() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let (key, v, id, _) = read_request(&mut s).unwrap();
            assert_eq!(v, 3);
            // KIP-511: unsupported version → error 35 and a v0 body with our range.
            let err = fake_versions(2).with_error_code(UNSUPPORTED_VERSION);
            write_response(&mut s, key, 0, id, &err);
            let (key, v, id, _) = read_request(&mut s).unwrap();
            assert_eq!(v, 2);
            write_response(&mut s, key, v, id, &fake_versions(2));
            // keep the socket open until the client is done
            let mut b = [0u8; 1];
            let _ = s.read(&mut b);
        });
        let conn = Connection::connect(&addr, &ConnectionConfig::default()).unwrap();
        assert_eq!(conn.versions().negotiated(ApiKey::Metadata), Some(9));
        drop(conn);
        h.join().unwrap();
    }

    #[test]
    fn timeout_and_disconnect_are_reported_with_the_address() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let (key, v, id, _) = read_request(&mut s).unwrap();
            write_response(&mut s, key, v, id, &fake_versions(3));
            // swallow one request, then close the connection on the second
            let _ = read_request(&mut s).unwrap();
            let _ = read_request(&mut s).unwrap();
        });
        let cfg = ConnectionConfig {
            request_timeout: Duration::from_millis(200),
            ..Default::default()
        };
        let conn = Connection::connect(&addr, &cfg).unwrap();
        let err = conn.call(&MetadataRequest::default()).err().unwrap();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
        assert!(err.to_string().contains(&addr), "{err}");
        assert_eq!(conn.in_flight(), 0);
        let f = conn.send(&MetadataRequest::default()).unwrap();
        h.join().unwrap();
        let err = f.wait_timeout(Duration::from_secs(5)).err().unwrap();
        assert!(matches!(err, Error::Disconnected { .. }), "{err}");
        assert!(conn.is_closed());
        let err = conn.send(&MetadataRequest::default()).err().unwrap();
        assert!(matches!(err, Error::Disconnected { .. }), "{err}");
    }

    #[test]
    fn refused_connection_names_the_address() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        drop(l);
        let err = Connection::connect(&addr, &ConnectionConfig::default())
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            format!("cannot reach broker {addr}: connection refused")
        );
    }
}
