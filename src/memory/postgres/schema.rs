//! The memory tables in PostgreSQL, as numbered migrations applied at
//! start. Every node runs `migrate`; an advisory lock held for the
//! migration's transaction makes nodes starting together migrate once,
//! the others waiting and then finding nothing left to do.

use tokio_postgres::Client;

/// Advisory lock key of the migration (an arbitrary constant: "caxton").
const MIGRATION_LOCK: i64 = 0x6361_7874_6f6e;

/// (version, what it does, SQL). Append only: a released migration never changes.
const MIGRATIONS: &[(i32, &str, &str)] = &[(
    1,
    "memory tables, HNSW index over observation vectors",
    r#"
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE caxton_memory_entities (
    id          BIGSERIAL PRIMARY KEY,
    scope       TEXT NOT NULL,
    owner       TEXT NOT NULL,
    name        TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (scope, owner, name)
);
-- The entity's place and type are repeated on each observation so that a
-- filtered search reads one table while it walks the vector index.
CREATE TABLE caxton_memory_observations (
    id          BIGSERIAL PRIMARY KEY,
    entity_id   BIGINT NOT NULL REFERENCES caxton_memory_entities(id) ON DELETE CASCADE,
    scope       TEXT NOT NULL,
    owner       TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    text        TEXT NOT NULL,
    embedding   vector(384) NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX caxton_memory_observations_entity ON caxton_memory_observations (entity_id);
CREATE INDEX caxton_memory_observations_place ON caxton_memory_observations (scope, owner, entity_type);
CREATE INDEX caxton_memory_observations_hnsw ON caxton_memory_observations
    USING hnsw (embedding vector_cosine_ops);
CREATE TABLE caxton_memory_relations (
    id            BIGSERIAL PRIMARY KEY,
    scope         TEXT NOT NULL,
    owner         TEXT NOT NULL,
    from_name     TEXT NOT NULL,
    to_name       TEXT NOT NULL,
    relation_type TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    UNIQUE (scope, owner, from_name, to_name, relation_type)
);
CREATE INDEX caxton_memory_relations_to ON caxton_memory_relations (scope, owner, to_name);
"#,
)];

/// The schema version this binary reads and writes.
pub fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
    #[error(
        "the memory database is at schema version {found}; this caxton knows versions up to {known}: \
         upgrade caxton on this node (a newer node migrated the database)"
    )]
    TooNew { found: i32, known: i32 },
}

/// Applies the migrations the database lacks; returns the versions applied.
pub async fn migrate(client: &mut Client) -> Result<Vec<i32>, MigrateError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS caxton_memory_migrations (
            version    INT PRIMARY KEY,
            name       TEXT NOT NULL,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )",
    )
    .await?;
    let found: Vec<i32> =
        tx.query("SELECT version FROM caxton_memory_migrations", &[]).await?.iter().map(|r| r.get(0)).collect();
    if let Some(&newest) = found.iter().max() {
        if newest > latest() {
            return Err(MigrateError::TooNew { found: newest, known: latest() });
        }
    }
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        if found.contains(version) {
            continue;
        }
        tx.batch_execute(sql).await?;
        tx.execute("INSERT INTO caxton_memory_migrations (version, name) VALUES ($1, $2)", &[version, name]).await?;
        applied.push(*version);
    }
    tx.commit().await?;
    Ok(applied)
}

/// The newest migration the database has (0: none).
pub async fn current(client: &Client) -> Result<i32, tokio_postgres::Error> {
    let row = client.query_one("SELECT coalesce(max(version), 0) FROM caxton_memory_migrations", &[]).await?;
    Ok(row.get(0))
}
