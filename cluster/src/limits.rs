//! Sizes the log and the transport agree on (at the bottom of the crate:
//! the façade, consensus settings and transport all read them).

/// The largest command the log takes; a bigger write is refused at
/// proposal (`WriteError::TooLarge`) instead of being replicated.
pub const MAX_ENTRY: usize = 64 << 20;
/// AppendEntries batches are cut at this many bytes of entries (and
/// `max_payload_entries` entries); a single larger entry travels alone.
pub const APPEND_BATCH: usize = 4 << 20;
/// Snapshots travel in chunks of this size, each its own request.
pub const SNAPSHOT_CHUNK: usize = 1 << 20;
