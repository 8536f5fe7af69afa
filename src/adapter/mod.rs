//! The database: the only module that talks to DuckDB.
//!
//! `Warehouse` opens the target's file once per run (turning DuckDB's lock error into a clear
//! diagnostic), lists the relations that exist, and hands each worker thread its own
//! connection. A `Worker` runs a node's statements, rolling back on failure so that nothing
//! half-built stays behind, and answers templates' introspection questions.

#[cfg(feature = "duckdb")]
mod duckdb;

#[cfg(feature = "duckdb")]
pub use self::duckdb::{LazyCatalog, Warehouse, Worker};

/// A failed statement.
#[derive(Debug, Clone)]
pub struct DbError {
    /// Index of the failing statement in what was run.
    pub statement: usize,
    pub message: String,
    pub interrupted: bool,
}

/// `LINE n:` in a DuckDB error message: the line of the statement it points at.
pub fn error_line(message: &str) -> Option<usize> {
    let at = message.find("LINE ")?;
    let rest = &message[at + 5..];
    let end = rest.find(':')?;
    rest[..end].trim().parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_duckdb_error_lines() {
        assert_eq!(
            super::error_line("Binder Error: x\n\nLINE 4:   bad\n   ^"),
            Some(4)
        );
        assert_eq!(super::error_line("Catalog Error: no"), None);
    }
}
