pub const MIGRATIONS: &str = "
CREATE TABLE IF NOT EXISTS agents (
    name_key     TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    revision     INTEGER NOT NULL,
    version      TEXT NOT NULL,
    spec         TEXT NOT NULL,
    toml         TEXT NOT NULL,
    source       TEXT NOT NULL,
    owner        INTEGER NOT NULL,
    shard        INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS agents_shard ON agents(shard);
-- A publication's fan-out reads only the agents whose definition
-- subscribes (topics::recipients): O(subscribers), not O(agents).
CREATE INDEX IF NOT EXISTS agents_subscribing ON agents(name_key)
    WHERE json_array_length(spec, '$.subscriptions') > 0;
CREATE TABLE IF NOT EXISTS shards (
    shard INTEGER PRIMARY KEY,
    owner INTEGER NOT NULL,
    epoch INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS agent_capabilities (
    capability TEXT NOT NULL,
    name_key   TEXT NOT NULL,
    PRIMARY KEY (capability, name_key)
);
-- A deploy replaces one agent's capabilities: by agent, not a scan of all.
CREATE INDEX IF NOT EXISTS agent_capabilities_agent ON agent_capabilities(name_key);
CREATE TABLE IF NOT EXISTS agent_versions (
    name_key    TEXT NOT NULL,
    revision    INTEGER NOT NULL,
    version     TEXT NOT NULL,
    toml        TEXT NOT NULL,
    deployed_at INTEGER NOT NULL,
    PRIMARY KEY (name_key, revision)
);
CREATE TABLE IF NOT EXISTS messages (
    id              TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    sender          TEXT NOT NULL,
    receiver        TEXT NOT NULL,
    receiver_key    TEXT NOT NULL,
    capability      TEXT,
    conversation_id TEXT NOT NULL,
    reply_to        TEXT,
    body            TEXT NOT NULL,
    status          TEXT NOT NULL,
    reply_id        TEXT,
    created_at      INTEGER NOT NULL,
    seq             INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_pending ON messages(receiver_key) WHERE status = 'accepted';
CREATE INDEX IF NOT EXISTS messages_conversation ON messages(conversation_id, seq);
CREATE INDEX IF NOT EXISTS messages_by_sender ON messages(sender, created_at);
CREATE TABLE IF NOT EXISTS memory_entities (
    id          INTEGER PRIMARY KEY,
    scope       TEXT NOT NULL,
    owner       TEXT NOT NULL,
    name        TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    UNIQUE (scope, owner, name)
);
CREATE TABLE IF NOT EXISTS memory_observations (
    id         INTEGER PRIMARY KEY,
    entity_id  INTEGER NOT NULL,
    text       TEXT NOT NULL,
    embedding  BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS memory_observations_entity ON memory_observations(entity_id);
CREATE TABLE IF NOT EXISTS memory_relations (
    scope         TEXT NOT NULL,
    owner         TEXT NOT NULL,
    from_name     TEXT NOT NULL,
    to_name       TEXT NOT NULL,
    relation_type TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (scope, owner, from_name, to_name, relation_type)
);
CREATE INDEX IF NOT EXISTS memory_relations_to ON memory_relations(scope, owner, to_name);
CREATE TABLE IF NOT EXISTS mcp_servers (
    name        TEXT PRIMARY KEY,
    manifest    TEXT NOT NULL,
    hash        TEXT NOT NULL,
    module      BLOB NOT NULL,
    tools       TEXT NOT NULL,
    deployed_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    hash       TEXT NOT NULL,
    grants     TEXT NOT NULL,
    expires_at INTEGER,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX IF NOT EXISTS api_keys_live ON api_keys(name) WHERE revoked_at IS NULL;
CREATE TABLE IF NOT EXISTS conversations (
    id         TEXT PRIMARY KEY,
    protocol   TEXT NOT NULL,
    state      TEXT NOT NULL,
    initiator  TEXT NOT NULL,
    detail     TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS rollouts (
    name_key TEXT PRIMARY KEY,
    active   INTEGER NOT NULL,
    body     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS revision_outcomes (
    name_key TEXT NOT NULL,
    revision INTEGER NOT NULL,
    seq      INTEGER NOT NULL,
    outcome  TEXT NOT NULL,
    took_ms  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS revision_outcomes_by ON revision_outcomes(name_key, revision, seq);
CREATE TABLE IF NOT EXISTS shadow_requests (
    request_id TEXT PRIMARY KEY,
    name_key   TEXT NOT NULL,
    revision   INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    done       INTEGER NOT NULL DEFAULT 0,
    outcome    TEXT,
    took_ms    INTEGER,
    content    TEXT,
    similarity REAL
);
CREATE INDEX IF NOT EXISTS shadow_requests_by ON shadow_requests(name_key, revision);
CREATE TABLE IF NOT EXISTS subscriptions (
    id              TEXT PRIMARY KEY,
    agent_key       TEXT NOT NULL,
    pattern         TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    created_by      TEXT NOT NULL,
    created_at      INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS subscriptions_agent ON subscriptions(agent_key);
CREATE TABLE IF NOT EXISTS agent_usage (
    name_key        TEXT NOT NULL,
    day             INTEGER NOT NULL,
    tokens          INTEGER NOT NULL,
    spend_micro_usd INTEGER NOT NULL,
    turns           INTEGER NOT NULL,
    PRIMARY KEY (name_key, day)
);
CREATE TABLE IF NOT EXISTS auctions (
    id         TEXT PRIMARY KEY,
    state      TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS auctions_open ON auctions(created_at) WHERE state = 'open';
CREATE TABLE IF NOT EXISTS negotiations (
    id         TEXT PRIMARY KEY,
    state      TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS negotiations_open ON negotiations(created_at) WHERE state = 'open';
CREATE TABLE IF NOT EXISTS publications (
    position   INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    topic      TEXT NOT NULL,
    publisher  TEXT NOT NULL,
    content    TEXT NOT NULL,
    recipients INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    seq        INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cluster_settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL,
    set_at INTEGER NOT NULL
);
";

/// Columns added to existing tables after the first version, as
/// (table, column, definition). SQLite has no `ADD COLUMN IF NOT EXISTS`,
/// so [`migrate`] adds each one a table lacks.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("agent_versions", "spec", "TEXT"),
    ("agent_versions", "deployed_by", "TEXT"),
    ("agent_versions", "source", "TEXT"),
    ("mcp_servers", "deployed_by", "TEXT"),
    ("mcp_servers", "deployed_by_admin", "INTEGER NOT NULL DEFAULT 1"),
    ("conversations", "expires_at", "INTEGER"),
];

/// Brings a replica's schema to this version's; the same on every replica.
pub fn migrate(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    conn.execute_batch(MIGRATIONS)?;
    for (table, column, definition) in ADDED_COLUMNS {
        let exists: bool = conn.query_row(
            &format!("SELECT COUNT(*) > 0 FROM pragma_table_info('{table}') WHERE name = ?1"),
            [column],
            |r| r.get(0),
        )?;
        if !exists {
            conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {definition}"))?;
        }
    }
    // Revisions stored before their spec was: the serving one has it in `agents`.
    conn.execute_batch(
        "UPDATE agent_versions SET spec = (SELECT a.spec FROM agents a WHERE a.name_key = agent_versions.name_key
                                           AND a.revision = agent_versions.revision)
         WHERE spec IS NULL",
    )
}

/// Column `i` read back as the type whose spelling it stores. A spelling
/// this version never writes (a newer node's, or damage) is an error that
/// names it, never a silent default: an unknown memory scope must not read
/// as `global`.
pub(crate) fn spelled<T>(
    r: &rusqlite::Row<'_>,
    i: usize,
    what: &'static str,
    parse: impl Fn(&str) -> Option<T>,
) -> rusqlite::Result<T> {
    let text: String = r.get(i)?;
    parse(&text).ok_or_else(|| unknown_spelling(i, what, &text))
}

/// The error [`spelled`] gives, for a value already read.
pub(crate) fn unknown_spelling(i: usize, what: &str, text: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        i,
        rusqlite::types::Type::Text,
        format!("unknown {what} `{text}` in the replica (written by a newer version?)").into(),
    )
}
