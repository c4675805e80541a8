//! The Kafka listener: accepting connections, framing, and the in-order response pipeline.

pub mod admin;
pub mod connection;
pub mod frame;
pub mod listener;
