//! Kafka API glue: decoding a frame, dispatching it to its handler, encoding the answer.

pub mod error_codes;
pub mod handlers;
pub mod legacy;
pub mod versions;

use std::rc::Rc;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::cluster::Shard;
use crate::metrics::{self, Stage};

/// A decoded request, ready for its handler.
pub struct Request {
    /// The request header (correlation id, client id, api version).
    pub header: RequestHeader,
    /// The API.
    pub api_key: ApiKey,
    /// The decoded body.
    pub body: RequestKind,
    /// When the frame was fully read.
    pub received_at: Instant,
}

/// What [`decode`] made of a frame.
pub enum Decoded {
    /// A request for a handler (boxed: requests are large, answers small).
    Request(Box<Request>),
    /// A complete response that needs no handler (ApiVersions at an unknown version).
    Answer(Bytes),
}

/// Why a frame was refused; the connection is closed, as Kafka does.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The frame is too short to hold a request header.
    #[error("frame of {0} bytes is too short for a request header")]
    Truncated(usize),
    /// The API key is not one Kafka defines.
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    /// The API exists but Sluice does not implement it, or not at this version.
    #[error("unsupported version {version} of {api_key:?}")]
    UnsupportedVersion {
        /// The API.
        api_key: ApiKey,
        /// The requested version.
        version: i16,
    },
    /// The bytes do not parse as the request they claim to be.
    #[error("malformed {api_key:?} v{version} request: {reason}")]
    Malformed {
        /// The API.
        api_key: ApiKey,
        /// The version.
        version: i16,
        /// The parser's complaint.
        reason: String,
    },
}

/// Decodes a frame (without its size prefix).
pub fn decode(frame: Bytes) -> Result<Decoded, DecodeError> {
    let received_at = Instant::now();
    if frame.len() < 8 {
        return Err(DecodeError::Truncated(frame.len()));
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api_key = ApiKey::try_from(key).map_err(|_| DecodeError::UnknownApiKey(key))?;
    let Some((min, max)) = versions::supported(api_key) else {
        return Err(DecodeError::UnsupportedVersion { api_key, version });
    };
    if api_key == ApiKey::ApiVersions && version > max {
        // KIP-511: answer in v0 with UNSUPPORTED_VERSION and our ranges, so the client
        // can retry with a version we know.
        let response = handlers::api_versions::unsupported_version();
        let answer = frame_response(correlation_id, 0, |buf| response.encode(buf, 0));
        return Ok(Decoded::Answer(answer.unwrap_or_default()));
    }
    if version < min || version > max {
        return Err(DecodeError::UnsupportedVersion { api_key, version });
    }
    let malformed = |reason: String| DecodeError::Malformed {
        api_key,
        version,
        reason,
    };
    let mut buf = frame;
    let header_version = api_key.request_header_version(version);
    let header =
        RequestHeader::decode(&mut buf, header_version).map_err(|e| malformed(e.to_string()))?;
    let body = if legacy::is_legacy(api_key, version) {
        legacy::decode(api_key, version, &mut buf).map_err(malformed)?
    } else {
        RequestKind::decode(api_key, &mut buf, version).map_err(|e| malformed(e.to_string()))?
    };
    Ok(Decoded::Request(Box::new(Request {
        header,
        api_key,
        body,
        received_at,
    })))
}

/// Frames a response: size prefix, response header, then the body `write_body` appends.
pub fn frame_response<E: std::fmt::Display>(
    correlation_id: i32,
    header_version: i16,
    write_body: impl FnOnce(&mut BytesMut) -> Result<(), E>,
) -> Option<Bytes> {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    if let Err(e) = header.encode(&mut buf, header_version) {
        tracing::error!(error = %e, "response header encoding failed");
        return None;
    }
    if let Err(e) = write_body(&mut buf) {
        // Our own response failed to encode: a bug. Answer nothing rather than garbage.
        tracing::error!(error = %e, "response encoding failed");
        return None;
    }
    let size = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&size.to_be_bytes());
    Some(buf.freeze())
}

/// Runs a request and returns its framed response (`None` for acks=0 produce).
pub async fn handle(shard: Rc<Shard>, request: Request) -> Option<Bytes> {
    let version = request.header.request_api_version;
    let correlation_id = request.header.correlation_id;
    let api_key = request.api_key;
    let ctx = handlers::Context {
        shard,
        version,
        client_id: request
            .header
            .client_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        trace: Default::default(),
    };
    ctx.note(Stage::QueueWait, request.received_at.elapsed());
    let response = handlers::dispatch(&ctx, request.body).await;
    let elapsed = request.received_at.elapsed();
    metrics::registry::record_request(api_key as i16, elapsed);
    match api_key {
        ApiKey::Produce => metrics::record(Stage::ProduceTotal, elapsed),
        ApiKey::Fetch => metrics::record(Stage::FetchTotal, elapsed),
        _ => {}
    }
    if elapsed.as_millis() as u64 >= ctx.shard.config.slow_request_ms {
        log_slow_request(&ctx, api_key, correlation_id, elapsed);
    }
    let response = response?;
    error_codes::for_each_error(&response, |code| {
        metrics::registry::count_error(api_key as i16, code)
    });
    let header_version = api_key.response_header_version(version);
    let body_version = legacy::response_version(api_key, version);
    frame_response(
        correlation_id,
        header_version,
        |buf| match legacy::encode_response(api_key, version, &response, buf) {
            Some(encoded) => encoded,
            None => response
                .encode(buf, body_version)
                .map_err(|e| e.to_string()),
        },
    )
}

/// Logs a request that took longer than `--slow-request-ms`, once, with its stages.
fn log_slow_request(
    ctx: &handlers::Context,
    api_key: ApiKey,
    correlation_id: i32,
    elapsed: std::time::Duration,
) {
    let stages: Vec<String> = ctx
        .trace
        .borrow()
        .iter()
        .map(|(stage, d)| format!("{}={}us", stage.name(), d.as_micros()))
        .collect();
    tracing::warn!(
        ?api_key,
        version = ctx.version,
        correlation_id,
        client_id = %ctx.client_id,
        elapsed_ms = elapsed.as_millis() as u64,
        stages = %stages.join(" "),
        "slow request"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `request_decode` fuzz target: a 111-byte Fetch v12 whose topic array
    /// claims 4294967295 entries made the decoder allocate ~400 GB and abort the broker.
    #[test]
    fn an_array_count_larger_than_the_frame_is_an_error_not_an_abort() {
        let frame = Bytes::from_static(include_bytes!(
            "../../tests/data/fetch-4-billion-topics.bin"
        ));
        assert!(matches!(decode(frame), Err(DecodeError::Malformed { .. })));
    }

    #[test]
    fn frames_too_short_for_a_header_are_errors() {
        assert!(matches!(
            decode(Bytes::from_static(&[0, 1, 0])),
            Err(DecodeError::Truncated(3))
        ));
        assert!(matches!(
            decode(Bytes::from_static(&[0x7f, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0])),
            Err(DecodeError::UnknownApiKey(_))
        ));
    }
}
