//! GetTelemetrySubscriptions (key 71, v0) and PushTelemetry (key 72, v0), KIP-714.
//!
//! Sluice keeps no client-metrics subscriptions, so every client gets Kafka's "nothing
//! requested" answer: an empty metric list with Kafka's default 5-minute push interval.
//! KIP-714 clients then push nothing and only ask again at that interval; without an
//! answer at all, the Java client would log its failure to get a subscription.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    GetTelemetrySubscriptionsRequest, GetTelemetrySubscriptionsResponse, PushTelemetryRequest,
    PushTelemetryResponse,
};

/// Kafka's `ClientMetricsConfigs.DEFAULT_INTERVAL_MS`.
const PUSH_INTERVAL_MS: i32 = 5 * 60 * 1000;
/// Kafka's `telemetry.max.bytes` default.
const TELEMETRY_MAX_BYTES: i32 = 1024 * 1024;
/// The compression types Kafka accepts for pushed metrics: zstd, lz4, gzip, snappy.
const ACCEPTED_COMPRESSION_TYPES: [i8; 4] = [4, 3, 1, 2];
/// The one subscription every client gets: the empty one.
const EMPTY_SUBSCRIPTION_ID: i32 = 0;

/// Answers GetTelemetrySubscriptions: a client instance id (a new one if the client has
/// none yet) and the empty subscription.
pub fn get_subscriptions(
    request: GetTelemetrySubscriptionsRequest,
) -> GetTelemetrySubscriptionsResponse {
    let client_instance_id = if request.client_instance_id.is_nil() {
        uuid::Uuid::new_v4()
    } else {
        request.client_instance_id
    };
    GetTelemetrySubscriptionsResponse::default()
        .with_client_instance_id(client_instance_id)
        .with_subscription_id(EMPTY_SUBSCRIPTION_ID)
        .with_accepted_compression_types(ACCEPTED_COMPRESSION_TYPES.to_vec())
        .with_push_interval_ms(PUSH_INTERVAL_MS)
        .with_telemetry_max_bytes(TELEMETRY_MAX_BYTES)
        .with_delta_temporality(true)
        .with_requested_metrics(Vec::new())
}

/// Answers PushTelemetry with Kafka's validation; metrics that pass it are dropped,
/// since none were requested.
pub fn push(request: PushTelemetryRequest) -> PushTelemetryResponse {
    let error = if request.client_instance_id.is_nil() {
        ResponseError::InvalidRequest.code()
    } else if request.subscription_id != EMPTY_SUBSCRIPTION_ID {
        ResponseError::UnknownSubscriptionId.code()
    } else if request.compression_type != 0
        && !ACCEPTED_COMPRESSION_TYPES.contains(&request.compression_type)
    {
        ResponseError::UnsupportedCompressionType.code()
    } else if request.metrics.len() > TELEMETRY_MAX_BYTES as usize {
        ResponseError::TelemetryTooLarge.code()
    } else {
        0
    };
    PushTelemetryResponse::default().with_error_code(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_client_gets_an_id_and_the_empty_subscription() {
        let answer = get_subscriptions(GetTelemetrySubscriptionsRequest::default());
        assert!(!answer.client_instance_id.is_nil());
        assert!(answer.requested_metrics.is_empty());
        assert_eq!(answer.push_interval_ms, 300_000);
        let known = uuid::Uuid::new_v4();
        let again = get_subscriptions(
            GetTelemetrySubscriptionsRequest::default().with_client_instance_id(known),
        );
        assert_eq!(again.client_instance_id, known);
    }

    #[test]
    fn pushes_are_validated_as_kafka_does() {
        let id = uuid::Uuid::new_v4();
        let push_with = |r: PushTelemetryRequest| push(r).error_code;
        let ok = PushTelemetryRequest::default().with_client_instance_id(id);
        assert_eq!(push_with(ok.clone()), 0);
        assert_eq!(push_with(PushTelemetryRequest::default()), 42);
        assert_eq!(push_with(ok.clone().with_subscription_id(7)), 117);
        assert_eq!(push_with(ok.clone().with_compression_type(9)), 76);
        let big = bytes::Bytes::from(vec![0u8; TELEMETRY_MAX_BYTES as usize + 1]);
        assert_eq!(push_with(ok.with_metrics(big)), 118);
    }
}
