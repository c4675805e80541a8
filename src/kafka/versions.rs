//! The ApiVersions table: every API Sluice implements and the versions it accepts.
//!
//! A request for an API or version outside this table is refused (ApiVersions answers with
//! UNSUPPORTED_VERSION, as KIP-511 asks; other APIs close the connection, as Kafka does).
//! docs/compatibility.md mirrors this table.

use kafka_protocol::messages::ApiKey;

/// (API, min version, max version) for every implemented API.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 13),
    (ApiKey::Fetch, 4, 18),
    (ApiKey::ListOffsets, 0, 10),
    (ApiKey::Metadata, 0, 13),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 2),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 0, 10),
    (ApiKey::OffsetFetch, 1, 10),
    (ApiKey::DescribeGroups, 0, 6),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
    (ApiKey::AddPartitionsToTxn, 0, 5),
    (ApiKey::AddOffsetsToTxn, 0, 4),
    (ApiKey::EndTxn, 0, 5),
    (ApiKey::WriteTxnMarkers, 1, 1),
    (ApiKey::TxnOffsetCommit, 0, 5),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 2),
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::GetTelemetrySubscriptions, 0, 0),
    (ApiKey::PushTelemetry, 0, 0),
    (ApiKey::ListConfigResources, 0, 1),
    (ApiKey::DescribeTopicPartitions, 0, 0),
];

/// The supported version range of `key`, if Sluice implements it.
pub fn supported(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, min, max)| (*min, *max))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::Message;

    /// Every advertised range must be one the protocol crate can decode and encode.
    #[test]
    fn advertised_ranges_are_within_the_protocol_crate() {
        for (key, min, max) in SUPPORTED {
            let valid = key.valid_versions();
            assert!(min <= max, "{key:?}");
            // Versions below the crate's are decoded by `kafka::legacy`.
            let oldest = if crate::kafka::legacy::is_legacy(*key, *min) {
                valid.min
            } else {
                *min
            };
            assert!(
                oldest >= valid.min && *max <= valid.max,
                "{key:?} {min}..{max} not in {valid}"
            );
        }
        const { assert!(ProduceRequest::VERSIONS.max >= 12) };
    }

    /// docs/compatibility.md must say exactly what ApiVersions advertises.
    #[test]
    fn compatibility_matrix_matches_the_table() {
        let doc = include_str!("../../docs/compatibility.md");
        let mut documented = Vec::new();
        for line in doc.lines() {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            if cells.len() < 6 || cells[4] != "supported" {
                continue;
            }
            let key: i16 = cells[1].parse().expect("API key column");
            let (min, max) = cells[3].split_once('–').expect("versions column like 3–12");
            documented.push((
                key,
                min.parse::<i16>().unwrap(),
                max.parse::<i16>().unwrap(),
            ));
        }
        let mut advertised: Vec<(i16, i16, i16)> = SUPPORTED
            .iter()
            .map(|(k, min, max)| (*k as i16, *min, *max))
            .collect();
        advertised.sort();
        documented.sort();
        assert_eq!(
            documented, advertised,
            "docs/compatibility.md is out of date"
        );
    }
}
