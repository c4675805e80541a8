//! ApiVersions (key 18), v0-v4: which APIs and versions this broker speaks.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use super::Context;
use crate::kafka::versions::SUPPORTED;

/// The full table, as every successful ApiVersions answer carries it.
pub fn full_response() -> ApiVersionsResponse {
    let api_keys = SUPPORTED
        .iter()
        .map(|(key, min, max)| {
            ApiVersion::default()
                .with_api_key(*key as i16)
                .with_min_version(*min)
                .with_max_version(*max)
        })
        .collect();
    ApiVersionsResponse::default().with_api_keys(api_keys)
}

/// KIP-511: a client that asked with a version we do not know gets our table and
/// UNSUPPORTED_VERSION, encoded as v0 so any client can read it.
pub fn unsupported_version() -> ApiVersionsResponse {
    full_response().with_error_code(ResponseError::UnsupportedVersion.code())
}

/// Answers ApiVersions.
pub fn handle(_ctx: &Context, _request: ApiVersionsRequest) -> ApiVersionsResponse {
    full_response()
}
