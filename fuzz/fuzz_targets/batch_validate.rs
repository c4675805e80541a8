//! A produce partition payload (one or more v2 record batches) through
//! `storage::batch::validate_produce`, and its first 61 bytes through `BatchHeader::parse`.
//! Any input must never panic; an accepted payload must be accepted again, identically.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::storage::batch::{validate_produce, BatchHeader, TimestampPolicy};

/// `max.message.bytes` default (1 MiB).
const MAX_MESSAGE_BYTES: usize = 1_048_588;
/// Broker clock at validation. The seed batches carry timestamps at this instant.
const NOW_MS: i64 = 1_700_000_000_000;

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = BatchHeader::parse(data) {
        // Pure accessors on whatever the header holds. (`last_offset` is left out: until
        // the broker stamps its own base offset, base_offset is the producer's and can
        // overflow the addition; the broker never calls it on unstamped batches.)
        let _ = header.total_size_bytes();
        let _ = header.compression();
        let _ = (header.is_control(), header.is_transactional(), header.is_log_append_time());
        let _ = header.check_record_count();
    }
    let policy = TimestampPolicy::default();
    let first = validate_produce(data, MAX_MESSAGE_BYTES, NOW_MS, policy);
    if let Ok(summary) = first {
        let again = validate_produce(data, MAX_MESSAGE_BYTES, NOW_MS, policy);
        assert_eq!(again, Ok(summary), "re-validating an accepted payload changed the result");
        assert!(summary.batch_count >= 1);
        assert!(summary.record_count >= summary.batch_count as i64);
        assert_eq!(summary.total_bytes, data.len());
        // Every accepted payload starts with a header that parses on its own.
        assert!(BatchHeader::parse(data).is_ok());
    }
});
