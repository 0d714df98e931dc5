//! The console's files, compiled in. Flat names: `/ui/{file}` is one path
//! segment, so no request can reach outside this table.

pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
    hash: u64,
}

impl Asset {
    /// A strong validator from the content (FNV-1a, computed at compile time).
    pub fn etag(&self) -> String {
        format!("\"{:016x}\"", self.hash)
    }
}

const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!("files/", $name)),
            hash: fnv1a(include_bytes!(concat!("files/", $name))),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

pub static INDEX: &Asset = &asset!("index.html", "text/html; charset=utf-8");

pub static ALL: &[Asset] = &[
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("svg.js", JS),
    asset!("cluster.js", JS),
    asset!("agents.js", JS),
    asset!("editor.js", JS),
    asset!("chat.js", JS),
    asset!("conversations.js", JS),
    asset!("memory.js", JS),
    asset!("tools.js", JS),
    asset!("keys.js", JS),
];

pub fn find(name: &str) -> Option<&'static Asset> {
    ALL.iter().find(|a| a.name == name)
}
