//! Typed settings that a file, a `CAXTON_*` variable and a flag all write
//! as text: listen addresses parsed once, at load, and settings that may be
//! left unset. TOML has no null, and every key keeps a default (that is how
//! it gets its variable), so "unset" is written `""`.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A setting's value as text, both ways.
pub trait SettingText: Sized {
    /// Why `text` is not a value, to be shown beside the key.
    fn parse_text(text: &str) -> Result<Self, String>;
    fn to_text(&self) -> String;
}

impl SettingText for String {
    fn parse_text(text: &str) -> Result<Self, String> {
        Ok(text.to_owned())
    }
    fn to_text(&self) -> String {
        self.clone()
    }
}

impl SettingText for PathBuf {
    fn parse_text(text: &str) -> Result<Self, String> {
        Ok(PathBuf::from(text))
    }
    fn to_text(&self) -> String {
        self.display().to_string()
    }
}

/// An IP address and port this node binds (host names are for advertising).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddr(pub SocketAddr);

impl ListenAddr {
    pub fn new(addr: SocketAddr) -> Self {
        Self(addr)
    }

    pub fn get(self) -> SocketAddr {
        self.0
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl SettingText for ListenAddr {
    fn parse_text(text: &str) -> Result<Self, String> {
        text.trim()
            .parse()
            .map(ListenAddr)
            .map_err(|_| format!("expected an IP address and port like 127.0.0.1:8080, not `{text}`"))
    }
    fn to_text(&self) -> String {
        self.0.to_string()
    }
}

impl Serialize for ListenAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_text())
    }
}

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse_text(&text).map_err(serde::de::Error::custom)
    }
}

/// A setting that may be left unset (`""`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unset<T>(Option<T>);

impl<T> Default for Unset<T> {
    fn default() -> Self {
        Self(None)
    }
}

impl<T> Unset<T> {
    pub fn set(value: T) -> Self {
        Self(Some(value))
    }

    pub fn get(&self) -> Option<&T> {
        self.0.as_ref()
    }

    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }
}

impl<T: SettingText> fmt::Display for Unset<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.as_ref().map(T::to_text).unwrap_or_default())
    }
}

impl<T: SettingText> Serialize for Unset<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de, T: SettingText> Deserialize<'de> for Unset<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text.trim().is_empty() {
            return Ok(Self(None));
        }
        T::parse_text(&text).map(|v| Self(Some(v))).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Doc {
        listen: ListenAddr,
        metrics: Unset<ListenAddr>,
        dir: Unset<PathBuf>,
    }

    #[test]
    fn empty_is_unset_and_values_round_trip() {
        let doc: Doc = toml::from_str("listen = \"127.0.0.1:1\"\nmetrics = \"\"\ndir = \"/x\"\n").unwrap();
        assert_eq!(doc.listen.get(), "127.0.0.1:1".parse().unwrap());
        assert!(!doc.metrics.is_set());
        assert_eq!(doc.dir.get(), Some(&PathBuf::from("/x")));
        assert_eq!(toml::from_str::<Doc>(&toml::to_string(&doc).unwrap()).unwrap(), doc);
    }

    #[test]
    fn a_bad_address_is_named_with_what_was_expected() {
        let e = toml::from_str::<Doc>("listen = \"nowhere\"\nmetrics = \"\"\ndir = \"\"\n").unwrap_err().to_string();
        assert!(e.contains("expected an IP address and port") && e.contains("`nowhere`"), "{e}");
        let e = toml::from_str::<Doc>("listen = \"127.0.0.1:1\"\nmetrics = \"x:y\"\ndir = \"\"\n").unwrap_err();
        assert!(e.to_string().contains("`x:y`"), "{e}");
    }
}
