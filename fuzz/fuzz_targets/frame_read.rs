//! A byte stream as a client socket delivers it, split into frames by `net::frame::read_frame`
//! until it errors or reaches a clean EOF. Any input must never panic.
#![no_main]

use futures::executor::block_on;
use libfuzzer_sys::fuzz_target;
use sluice::net::frame::{read_frame, REQUEST_SIZE_MIN_BYTES};

/// Frame limit (`--max-request-bytes`). Far below the 100 MiB default so oversized
/// prefixes hit `TooLarge` rather than allocating; the run uses -max_len=65536, so
/// prefixes between this and the input size exercise the truncated-body path.
const LIMIT_BYTES: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let mut reader = futures::io::Cursor::new(data);
    let mut consumed = 0usize;
    // Each successful read consumes at least 4 + REQUEST_SIZE_MIN_BYTES bytes, so this ends.
    while let Ok(Some(frame)) = block_on(read_frame(&mut reader, LIMIT_BYTES)) {
        assert!(frame.len() >= REQUEST_SIZE_MIN_BYTES as usize);
        assert!(frame.len() <= LIMIT_BYTES);
        // The frame is exactly the bytes after its size prefix.
        let start = consumed + 4;
        assert_eq!(&frame[..], &data[start..start + frame.len()]);
        consumed = start + frame.len();
        assert_eq!(reader.position() as usize, consumed);
    }
});
