//! The Kafka error codes a response carries, for the `sluice_errors_total` counter.
//!
//! Collected from the decoded response before it is encoded: the top-level code and the
//! per-topic, per-partition or per-group codes of the APIs that have them.

use kafka_protocol::messages::ResponseKind;

/// Calls `count` with every non-zero error code in `response`.
pub fn for_each_error(response: &ResponseKind, mut count: impl FnMut(i16)) {
    let mut c = |code: i16| {
        if code != 0 {
            count(code)
        }
    };
    match response {
        ResponseKind::Produce(r) => r
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .for_each(|p| c(p.error_code)),
        ResponseKind::Fetch(r) => {
            c(r.error_code);
            r.responses
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| c(p.error_code));
        }
        ResponseKind::ListOffsets(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| c(p.error_code)),
        ResponseKind::Metadata(r) => r.topics.iter().for_each(|t| c(t.error_code)),
        ResponseKind::OffsetCommit(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| c(p.error_code)),
        ResponseKind::OffsetFetch(r) => {
            c(r.error_code);
            r.groups.iter().for_each(|g| c(g.error_code));
        }
        ResponseKind::FindCoordinator(r) => {
            c(r.error_code);
            r.coordinators.iter().for_each(|k| c(k.error_code));
        }
        ResponseKind::JoinGroup(r) => c(r.error_code),
        ResponseKind::SyncGroup(r) => c(r.error_code),
        ResponseKind::Heartbeat(r) => c(r.error_code),
        ResponseKind::LeaveGroup(r) => c(r.error_code),
        ResponseKind::InitProducerId(r) => c(r.error_code),
        ResponseKind::EndTxn(r) => c(r.error_code),
        ResponseKind::AddOffsetsToTxn(r) => c(r.error_code),
        ResponseKind::CreateTopics(r) => r.topics.iter().for_each(|t| c(t.error_code)),
        ResponseKind::DeleteTopics(r) => r.responses.iter().for_each(|t| c(t.error_code)),
        ResponseKind::CreatePartitions(r) => r.results.iter().for_each(|t| c(t.error_code)),
        ResponseKind::DeleteRecords(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| c(p.error_code)),
        ResponseKind::OffsetForLeaderEpoch(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| c(p.error_code)),
        ResponseKind::DescribeConfigs(r) => r.results.iter().for_each(|x| c(x.error_code)),
        ResponseKind::AlterConfigs(r) => r.responses.iter().for_each(|x| c(x.error_code)),
        ResponseKind::IncrementalAlterConfigs(r) => {
            r.responses.iter().for_each(|x| c(x.error_code))
        }
        ResponseKind::ApiVersions(r) => c(r.error_code),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };
    use kafka_protocol::messages::ProduceResponse;

    #[test]
    fn per_partition_codes_are_found_and_zeros_skipped() {
        let response = ResponseKind::Produce(ProduceResponse::default().with_responses(vec![
            TopicProduceResponse::default().with_partition_responses(vec![
                PartitionProduceResponse::default().with_error_code(2),
                PartitionProduceResponse::default(),
                PartitionProduceResponse::default().with_error_code(10),
            ]),
        ]));
        let mut seen = Vec::new();
        for_each_error(&response, |code| seen.push(code));
        assert_eq!(seen, vec![2, 10]);
    }
}
