//! A frame body (no size prefix) as the broker hands it to `kafka::decode`.
//! Any input must give `Ok` or `Err`, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::kafka::{decode, Decoded};

fuzz_target!(|data: &[u8]| {
    match decode(bytes::Bytes::copy_from_slice(data)) {
        Ok(Decoded::Request(request)) => {
            // The header the handler will see matches the bytes it came from.
            assert_eq!(request.api_key as i16, i16::from_be_bytes([data[0], data[1]]));
            assert_eq!(
                request.header.request_api_version,
                i16::from_be_bytes([data[2], data[3]])
            );
        }
        Ok(Decoded::Answer(answer)) => {
            // A framed response: its size prefix counts the rest.
            assert!(answer.len() >= 4);
            let size = i32::from_be_bytes([answer[0], answer[1], answer[2], answer[3]]);
            assert_eq!(size as usize, answer.len() - 4);
        }
        Err(_) => {}
    }
});
