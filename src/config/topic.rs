//! Topic names and the patterns subscriptions match them with.
//!
//! A topic is dot-separated segments (`orders.eu.created`), each 1-64 of
//! letters, digits, `-`, `_` and `:`. A pattern is a topic whose segments
//! may also be `*` (exactly one segment) or, last, `>` (one or more
//! segments): `orders.*` matches `orders.created` but not
//! `orders.eu.created`; `orders.>` matches both, never `orders` itself.

/// At most this many bytes in a topic or a pattern.
pub const MAX_TOPIC_BYTES: usize = 200;

/// Why `topic` is not a topic one can publish to.
pub fn check_topic(topic: &str) -> Result<(), String> {
    check(topic, false)
}

/// Why `pattern` is not a pattern one can subscribe with.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    check(pattern, true)
}

fn check(text: &str, wildcards: bool) -> Result<(), String> {
    if text.is_empty() || text.len() > MAX_TOPIC_BYTES {
        return Err(format!("must be 1 to {MAX_TOPIC_BYTES} bytes"));
    }
    let segments: Vec<&str> = text.split('.').collect();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *segment {
            "*" if wildcards => {}
            ">" if wildcards && last => {}
            ">" if wildcards => return Err("`>` may only be the last segment".into()),
            "*" | ">" => return Err(format!("`{segment}` is a wildcard: publish to a concrete topic")),
            "" => return Err("has an empty segment (two dots, or a dot at an end)".into()),
            s if s.len() > 64 => return Err(format!("segment `{s}` is longer than 64 bytes")),
            s if !s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':')) => {
                return Err(format!(
                    "segment `{s}` may hold only letters, digits, `-`, `_` and `:` (wildcards: `*`, a final `>`)"
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether `pattern` (checked) matches `topic` (checked).
pub fn matches(pattern: &str, topic: &str) -> bool {
    let mut topic = topic.split('.');
    for segment in pattern.split('.') {
        match (segment, topic.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (literal, Some(t)) if literal == t => {}
            _ => return false,
        }
    }
    topic.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_as_documented() {
        assert!(matches("orders.*", "orders.created"));
        assert!(!matches("orders.*", "orders.eu.created"));
        assert!(!matches("orders.*", "orders"));
        assert!(matches("orders.>", "orders.eu.created"));
        assert!(matches("orders.>", "orders.created"));
        assert!(!matches("orders.>", "orders"));
        assert!(matches("*.created", "orders.created"));
        assert!(matches("orders.created", "orders.created"));
        assert!(!matches("orders.created", "orders.created.late"));
        assert!(!matches("orders.created", "Orders.created"));
    }

    #[test]
    fn topics_and_patterns_are_checked() {
        assert!(check_topic("orders.eu-1.created").is_ok());
        assert!(check_pattern("orders.*.>").is_ok());
        for bad in ["", "orders..x", ".x", "x.", "a b", "orders.*", "orders.>"] {
            assert!(check_topic(bad).is_err(), "{bad}");
        }
        for bad in ["orders.>.x", "a..b", "é"] {
            assert!(check_pattern(bad).is_err(), "{bad}");
        }
        assert!(check_topic(&"a".repeat(201)).is_err());
    }
}
