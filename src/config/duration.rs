//! Human durations in config files: `"250ms"`, `"30s"`, `"5m"`, `"1h"`, `"30d"`, or a
//! bare integer meaning seconds.

use std::time::Duration;

pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("`{text}` is not a duration like \"30s\", \"500ms\" or \"2m\""))?;
    let ms = match unit.trim() {
        "ms" => n,
        "" | "s" => n.saturating_mul(1000),
        "m" => n.saturating_mul(60_000),
        "h" => n.saturating_mul(3_600_000),
        "d" => n.saturating_mul(86_400_000),
        other => return Err(format!("unknown duration unit `{other}` in `{text}` (use ms, s, m, h or d)")),
    };
    Ok(Duration::from_millis(ms))
}

/// A duration that can be switched off: `"off"` or `"10m"` in config.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DurationOrOff(pub Option<Duration>);

impl std::fmt::Display for DurationOrOff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Some(d) = self.0 else { return f.write_str("off") };
        let ms = d.as_millis() as u64;
        let units = [(86_400_000, "d"), (3_600_000, "h"), (60_000, "m"), (1000, "s")];
        match units.iter().find(|(size, _)| ms >= *size && ms.is_multiple_of(*size)) {
            Some((size, unit)) => write!(f, "{}{unit}", ms / size),
            None => write!(f, "{ms}ms"),
        }
    }
}

impl serde::Serialize for DurationOrOff {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for DurationOrOff {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text.trim() == "off" {
            return Ok(Self(None));
        }
        parse(&text).map(|d| Self(Some(d))).map_err(|why| serde::de::Error::custom(format!("{why}, or `off`")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse("30d").unwrap(), Duration::from_secs(30 * 86_400));
        assert!(parse("2 days").is_err());
        assert!(parse("fast").is_err());
    }

    #[test]
    fn durations_that_can_be_off_read_back_as_written() {
        for text in ["off", "10m", "90s", "1h", "2d", "1500ms"] {
            let value: DurationOrOff = serde_json::from_value(serde_json::json!(text)).unwrap();
            assert_eq!(value.to_string(), text);
        }
        let e = serde_json::from_value::<DurationOrOff>(serde_json::json!("soon")).unwrap_err().to_string();
        assert!(e.contains("soon") && e.contains("off"), "{e}");
    }
}
