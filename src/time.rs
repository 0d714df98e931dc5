//! Wall-clock time as records carry it: milliseconds since the Unix epoch.
//! Taken once by the proposer and written into the command, so every
//! replica applies the same instant.

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
