//! Small pieces every layer may use, depending on nothing else in the crate: the one clock,
//! the offset and epoch newtypes, and shard-local synchronisation primitives.

pub mod clock;
pub mod ids;
pub mod sync;
