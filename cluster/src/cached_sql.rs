//! Statements parsed once per connection.
//!
//! SQLite takes about as long to parse and plan a short statement as to
//! run it, and `Connection::execute` / `query_row` parse on every call. An
//! applied deploy runs about a dozen statements: parsing them was a sixth
//! of a 3-node cluster's CPU under write load. These go through the
//! connection's prepared-statement cache instead, so only a statement's
//! first use on a connection pays for the parse.

use rusqlite::{Connection, Params, Row};

/// `execute` and `query_row` over the connection's statement cache. The
/// SQL must be one of a fixed set (a literal or built from constants): the
/// cache is keyed by the text.
pub trait CachedSql {
    /// Runs one statement; the number of rows it changed.
    fn exec<P: Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;

    /// The first row of a query, mapped by `f` (`QueryReturnedNoRows` when
    /// there is none, as `query_row`).
    fn row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: Params,
        F: FnOnce(&Row<'_>) -> rusqlite::Result<T>;
}

impl CachedSql for Connection {
    fn exec<P: Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: Params,
        F: FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    {
        self.prepare_cached(sql)?.query_row(params, f)
    }
}
