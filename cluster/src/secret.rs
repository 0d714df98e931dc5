//! The cluster secret: one or more keys, one per line, compared in
//! constant time. At the bottom of the crate: gossip seals with it and the
//! loopback transport checks it.

/// The secrets in a cluster secret: one per line. The first is the one
/// this node uses (sends, seals gossip with); every one is accepted, so a
/// new secret can be rolled out and an old one retired without a moment
/// when two nodes do not understand each other.
pub(crate) fn secret_lines(secret: &str) -> impl Iterator<Item = &str> {
    secret.lines().map(str::trim).filter(|l| !l.is_empty())
}

/// Whether `given` is any of the secrets in `secret` (see `secret_lines`).
pub(crate) fn secret_accepted(secret: &str, given: &[u8]) -> bool {
    // Every line is compared, so the time taken does not say which matched.
    secret_lines(secret).fold(false, |ok, s| secrets_match(s.as_bytes(), given) | ok)
}

/// Compares secrets without leaking the position of the first difference.
pub(crate) fn secrets_match(expected: &[u8], given: &[u8]) -> bool {
    if expected.len() != given.len() {
        return false;
    }
    expected.iter().zip(given).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}
