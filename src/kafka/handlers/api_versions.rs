//! ApiVersions (key 18), v0-v4: which APIs and versions this broker speaks, and (v3+) the
//! features it runs with: `transaction.version` finalized at 2, which tells a Kafka 4 Java
//! producer to use transactions v2 (KIP-890 part 2: EndTxn v5 with an epoch bump per
//! transaction, partitions and offsets added by Produce v12+ and TxnOffsetCommit v5).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::{
    ApiVersion, FinalizedFeatureKey, SupportedFeatureKey,
};
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::StrBytes;

use super::Context;
use crate::kafka::versions::SUPPORTED;

/// The feature clients read to choose transactions v1 or v2, and its highest level.
const TRANSACTION_VERSION: (&str, i16) = ("transaction.version", 2);

/// Epoch of the finalized features: they never change while a broker runs, and only
/// grow with a Sluice release, so a constant epoch is one clients can trust.
const FINALIZED_FEATURES_EPOCH: i64 = 1;

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
    let (feature, level) = TRANSACTION_VERSION;
    ApiVersionsResponse::default()
        .with_api_keys(api_keys)
        .with_supported_features(vec![SupportedFeatureKey::default()
            .with_name(StrBytes::from_static_str(feature))
            .with_min_version(0)
            .with_max_version(level)])
        .with_finalized_features_epoch(FINALIZED_FEATURES_EPOCH)
        .with_finalized_features(vec![FinalizedFeatureKey::default()
            .with_name(StrBytes::from_static_str(feature))
            .with_min_version_level(level)
            .with_max_version_level(level)])
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
