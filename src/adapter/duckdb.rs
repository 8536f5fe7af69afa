//! The DuckDB adapter: DuckDB in-process, through the `duckdb` crate. `Warehouse` opens the
//! target's file once per run (a lock held by another process becomes `xform::database_locked`),
//! attaches the profile's `attach:` files, lists the schemas and relations that exist, and hands
//! each worker a cloned connection (`Worker`). A worker runs statements by their kind, retries a
//! statement list that met a catalog conflict (DuckDB's catalog is optimistic, and a conflict is
//! rolled back whole), classifies errors into `Failure`, and answers introspection. DuckDB
//! reports an error's type only in its message, so `failed` is the one place that reads it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use duckdb::Config;
use duckdb::types::Value as DuckValue;
use serde_json::Value as Json;

use super::{Adapter, Connection, DbError, Failure, Interrupt, Scratch};
use crate::artifacts::catalog::{CatalogColumn, CatalogTable};
use crate::config::{Credentials, DuckDbFile, Target};
use crate::diagnostics::{Code, Problem};
use crate::dialect::{Statement, StatementKind};
use crate::materialize::{Column, Existing, Kind};
use crate::render::{Introspect, QueryError, QueryTable, Relation};

fn key(database: &str, schema: &str, name: &str) -> String {
    format!(
        "{}\u{1f}{}\u{1f}{}",
        database.to_lowercase(),
        schema.to_lowercase(),
        name.to_lowercase()
    )
}

fn relation_key(rel: &Relation, default_db: &str) -> String {
    key(
        rel.database.as_deref().unwrap_or(default_db),
        &rel.schema,
        &rel.identifier,
    )
}

/// The target database for one run.
pub struct Warehouse {
    /// The run's first connection: used on the main thread only, behind a lock so the
    /// warehouse can be shared with the workers.
    conn: Mutex<duckdb::Connection>,
    database: String,
    /// The file (or `:memory:`).
    location: String,
    relations: Mutex<HashMap<String, Kind>>,
    schemas: Mutex<std::collections::HashSet<String>>,
    interrupts: Arc<Mutex<Vec<Arc<duckdb::InterruptHandle>>>>,
}

/// A profile's `extensions:`, `settings:` and `secrets:`, on the database as it opens (each
/// holds for every connection to it, as in dbt-duckdb). A secret's values never reach a
/// message: only its name and type do.
fn set_up(conn: &duckdb::Connection, setup: &crate::config::DuckDbSetup) -> Result<(), Problem> {
    let profile_problem = |what: String, e: &duckdb::Error, help: &str| {
        Problem::new(
            Code::Profile,
            format!("{what}: {}", crate::env::mask(&e.to_string())),
        )
        .help(help.to_string())
    };
    let literal = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => format!("'{}'", s.replace('\'', "''")),
        other => other.to_string(),
    };
    for (name, repo) in &setup.extensions {
        let ident = name.replace('"', "\"\"");
        if conn.execute_batch(&format!("load \"{ident}\"")).is_ok() {
            continue;
        }
        let from = repo.as_ref().map_or_else(String::new, |r| {
            format!(" from '{}'", r.replace('\'', "''"))
        });
        conn.execute_batch(&format!("install \"{ident}\"{from}; load \"{ident}\""))
            .map_err(|e| {
                profile_problem(
                    format!("cannot install and load the DuckDB extension `{name}` of the profile"),
                    &e,
                    "check the name in `extensions:`, and that this machine can download it (or has it installed)",
                )
            })?;
    }
    for (key, value) in &setup.settings {
        conn.execute_batch(&format!(
            "set \"{}\" = {}",
            key.replace('"', "\"\""),
            literal(value)
        ))
        .map_err(|e| {
            profile_problem(
                format!("cannot apply the setting `{key}` of the profile"),
                &e,
                "check `settings:` in profiles.yml against DuckDB's configuration options",
            )
        })?;
    }
    for secret in &setup.secrets {
        let get = |k: &str| secret.iter().find(|(key, _)| key == k).map(|(_, v)| v);
        let kind = get("type").and_then(|v| v.as_str()).unwrap_or("");
        let name = get("name").and_then(|v| v.as_str()).map(String::from);
        let persistent = get("persistent").and_then(serde_json::Value::as_bool) == Some(true);
        let params: Vec<String> = secret
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "name" | "persistent"))
            .map(|(k, v)| format!("{k} {}", literal(v)))
            .collect();
        let sql = format!(
            "create or replace {}secret {}({})",
            if persistent { "persistent " } else { "" },
            name.as_ref()
                .map_or_else(String::new, |n| format!("\"{}\" ", n.replace('"', "\"\""))),
            params.join(", ")
        );
        conn.execute_batch(&sql).map_err(|e| {
            let label = name.clone().unwrap_or_else(|| format!("of type `{kind}`"));
            // DuckDB's message may quote the statement: only its first line is kept, and it
            // never holds a parameter's value.
            let message = e.to_string();
            let first = message.lines().next().unwrap_or_default().to_string();
            let hidden = secret
                .iter()
                .filter_map(|(_, v)| v.as_str())
                .filter(|v| v.len() > 2)
                .fold(first, |m, v| m.replace(v, "*****"));
            Problem::new(
                Code::Profile,
                format!("cannot create the secret {label} of the profile: {}", crate::env::mask(&hidden)),
            )
            .help("check `secrets:` in profiles.yml; a secret type comes from its extension (s3, gcs, r2: httpfs)")
        })?;
    }
    Ok(())
}

/// Opening or attaching a database file failed: a lock held by another process is named.
fn open_problem(path: &std::path::Path, verb: &str, e: &duckdb::Error) -> Problem {
    let message = e.to_string();
    if message.contains("lock") {
        lock_problem(path, &message)
    } else {
        Problem::new(
            Code::Database,
            format!("cannot {verb} `{}`: {message}", path.display()),
        )
    }
}

fn lock_problem(path: &std::path::Path, message: &str) -> Problem {
    let holder = message.find("Conflicting lock is held in ").map_or_else(
        || "another process".to_string(),
        |at| {
            let rest = &message[at + "Conflicting lock is held in ".len()..];
            rest.split(" by user")
                .next()
                .unwrap_or(rest)
                .trim_end_matches('.')
                .to_string()
        },
    );
    Problem::new(
        Code::DatabaseLocked,
        format!("the database `{}` is in use by {holder}", path.display()),
    )
    .help("DuckDB allows one writing process per file: wait for the other run to finish or close that program, then run again")
}

impl Warehouse {
    pub fn open(target: &Target) -> Result<Warehouse, Problem> {
        Self::open_mode(target, false)
    }

    /// Open the target's database, read-only when asked (for reading its catalog only).
    pub fn open_mode(target: &Target, read_only: bool) -> Result<Warehouse, Problem> {
        // `--threads` is how many nodes run at once; each query keeps DuckDB's own parallelism,
        // as dbt-duckdb leaves it.
        let Credentials::DuckDb(file) = &target.credentials else {
            return Err(Problem::new(
                Code::Profile,
                format!("target `{}` is not a DuckDB target", target.name),
            ));
        };
        let mut config = Config::default();
        if read_only && !file.in_memory() {
            config = config
                .access_mode(duckdb::AccessMode::ReadOnly)
                .map_err(|e| Problem::new(Code::Database, e.to_string()))?;
        }
        let opened = if file.in_memory() {
            duckdb::Connection::open_in_memory_with_flags(config)
        } else {
            if let Some(dir) = file.path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| Problem::io(dir, &e))?;
            }
            duckdb::Connection::open_with_flags(&file.path, config)
        };
        let conn = opened.map_err(|e| open_problem(&file.path, "open", &e))?;
        set_up(&conn, &file.setup)?;
        for a in &file.attach {
            let mut options = Vec::new();
            if let Some(kind) = &a.kind {
                options.push(format!("type {kind}"));
            }
            if a.read_only {
                options.push("read_only".to_string());
            }
            let mode = if options.is_empty() {
                String::new()
            } else {
                format!(" ({})", options.join(", "))
            };
            let sql = format!(
                "attach if not exists '{}' as \"{}\"{mode}",
                a.path.display().to_string().replace('\'', "''"),
                a.alias.replace('"', "\"\"")
            );
            conn.execute_batch(&sql).map_err(|e| {
                open_problem(&a.path, "attach", &e)
                    .help("check the `attach:` entries of the target in profiles.yml")
            })?;
        }
        let database: String = conn
            .query_row("select current_database()", [], |r| r.get(0))
            .map_err(|e| Problem::new(Code::Database, e.to_string()))?;
        let warehouse = Warehouse {
            conn: Mutex::new(conn),
            database,
            location: file.path.display().to_string(),
            relations: Mutex::new(HashMap::new()),
            schemas: Mutex::new(std::collections::HashSet::new()),
            interrupts: Arc::default(),
        };
        warehouse.refresh()?;
        Ok(warehouse)
    }

    /// A scratch database for a unit test: in memory, with an empty catalog for the target's
    /// database and each of `catalogs`, so that every relation keeps its real name, and the
    /// connection to use it through (its default catalog is the target's database).
    pub fn scratch(
        target: &Target,
        catalogs: &std::collections::BTreeSet<String>,
    ) -> Result<(Warehouse, Worker), Problem> {
        let mut memory = target.clone();
        let setup = match &target.credentials {
            Credentials::DuckDb(file) => file.setup.clone(),
            _ => crate::config::DuckDbSetup::default(),
        };
        memory.credentials = Credentials::DuckDb(DuckDbFile {
            path: ":memory:".into(),
            attach: Vec::new(),
            setup,
        });
        let warehouse = Warehouse::open(&memory)?;
        let mut names = catalogs.clone();
        names.insert(target.database.to_lowercase());
        names.remove(&warehouse.database.to_lowercase());
        let quote = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
        let mut sql: Vec<String> = names
            .iter()
            .map(|d| format!("attach ':memory:' as {}", quote(d)))
            .collect();
        sql.push(format!("use {}", quote(&target.database)));
        let worker = warehouse.worker()?;
        let set_up = worker
            .conn
            .lock()
            .expect("connection lock")
            .execute_batch(&sql.join(";\n"));
        set_up.map_err(|e| {
            Problem::new(
                Code::Database,
                format!("cannot set up a unit test database: {e}"),
            )
        })?;
        Ok((warehouse, worker))
    }

    /// Read the list of schemas, tables and views once.
    fn refresh(&self) -> Result<(), Problem> {
        {
            let conn = self.conn.lock().expect("connection lock");
            let mut stmt = conn
                .prepare("select catalog_name, schema_name from information_schema.schemata")
                .map_err(|e| Problem::new(Code::Database, e.to_string()))?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .map_err(|e| Problem::new(Code::Database, e.to_string()))?;
            let mut schemas = self.schemas.lock().expect("schemas lock");
            for row in rows {
                let (db, schema) = row.map_err(|e| Problem::new(Code::Database, e.to_string()))?;
                schemas.insert(key(&db, &schema, ""));
            }
        }
        let conn = self.conn.lock().expect("connection lock");
        let mut stmt = conn
            .prepare("select table_catalog, table_schema, table_name, table_type from information_schema.tables")
            .map_err(|e| Problem::new(Code::Database, e.to_string()))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .map_err(|e| Problem::new(Code::Database, e.to_string()))?;
        let mut relations = self.relations.lock().expect("relations lock");
        relations.clear();
        for row in rows {
            let (db, schema, name, kind) =
                row.map_err(|e| Problem::new(Code::Database, e.to_string()))?;
            let kind = if kind.eq_ignore_ascii_case("VIEW") {
                Kind::View
            } else {
                Kind::Table
            };
            relations.insert(key(&db, &schema, &name), kind);
        }
        Ok(())
    }

    /// Create every schema the run will build in, up front and on one connection: DuckDB's
    /// optimistic catalog would let two workers creating the same schema conflict.
    pub fn create_schemas(&self, schemas: &[(Option<String>, String)]) -> Result<(), Problem> {
        for (database, schema) in schemas {
            if self.schema_exists(database.as_deref(), schema) {
                continue;
            }
            let step = crate::materialize::Step::CreateSchema {
                database: database.clone(),
                schema: schema.clone(),
            };
            let sql = crate::dialect::script(&crate::dialect::Dialect::lower(
                &crate::dialect::duckdb::DuckDb,
                &step,
            ));
            self.conn
                .lock()
                .expect("connection lock")
                .execute_batch(&sql)
                .map_err(|e| {
                    Problem::new(
                        Code::Database,
                        format!("cannot create schema `{schema}`: {e}"),
                    )
                    .help("check that the target database is writable")
                })?;
            let db = database.as_deref().unwrap_or(&self.database);
            self.schemas
                .lock()
                .expect("schemas lock")
                .insert(key(db, schema, ""));
        }
        Ok(())
    }

    /// Record what a successful plan left behind.
    pub fn record(&self, relation: &Relation, kind: Option<Kind>) {
        let k = relation_key(relation, &self.database);
        let mut relations = self.relations.lock().expect("relations lock");
        match kind {
            Some(kind) => relations.insert(k, kind),
            None => relations.remove(&k),
        };
        for suffix in [
            crate::materialize::TMP_SUFFIX,
            crate::materialize::BACKUP_SUFFIX,
        ] {
            relations.remove(&relation_key(&relation.with_suffix(suffix), &self.database));
        }
    }

    /// A connection for one worker thread.
    pub fn worker(&self) -> Result<Worker, Problem> {
        let conn = self
            .conn
            .lock()
            .expect("connection lock")
            .try_clone()
            .map_err(|e| Problem::new(Code::Database, format!("cannot open a connection: {e}")))?;
        self.interrupts
            .lock()
            .expect("interrupts lock")
            .push(conn.interrupt_handle());
        Ok(Worker {
            conn: Mutex::new(conn),
            database: self.database.clone(),
        })
    }

    /// Interrupts every connection handed out so far or later.
    pub fn interrupter(&self) -> Interrupt {
        let handles = self.interrupts.clone();
        Box::new(move || {
            for h in handles.lock().expect("interrupts lock").iter() {
                h.interrupt();
            }
        })
    }
}

impl Existing for Warehouse {
    fn kind_of(&self, relation: &Relation) -> Option<Kind> {
        self.relations
            .lock()
            .expect("relations lock")
            .get(&relation_key(relation, &self.database))
            .copied()
    }

    fn schema_exists(&self, database: Option<&str>, schema: &str) -> bool {
        self.schemas.lock().expect("schemas lock").contains(&key(
            database.unwrap_or(&self.database),
            schema,
            "",
        ))
    }
}

/// One worker thread's connection.
pub struct Worker {
    conn: Mutex<duckdb::Connection>,
    database: String,
}

fn to_json(value: DuckValue) -> Json {
    match value {
        DuckValue::Null => Json::Null,
        DuckValue::Boolean(b) => Json::Bool(b),
        DuckValue::TinyInt(i) => Json::from(i),
        DuckValue::SmallInt(i) => Json::from(i),
        DuckValue::Int(i) => Json::from(i),
        DuckValue::BigInt(i) => Json::from(i),
        DuckValue::UTinyInt(i) => Json::from(i),
        DuckValue::USmallInt(i) => Json::from(i),
        DuckValue::UInt(i) => Json::from(i),
        DuckValue::UBigInt(i) => Json::from(i),
        DuckValue::HugeInt(i) => {
            i64::try_from(i).map_or_else(|_| Json::String(i.to_string()), Json::from)
        }
        DuckValue::Float(f) => Json::from(f64::from(f)),
        DuckValue::Double(f) => Json::from(f),
        DuckValue::Text(s) | DuckValue::Enum(s) => Json::String(s),
        DuckValue::Date32(days) => chrono::NaiveDate::from_ymd_opt(1970, 1, 1)
            .and_then(|d| d.checked_add_signed(chrono::Duration::days(i64::from(days))))
            .map_or(Json::Null, |d| Json::String(d.to_string())),
        // A number when a double holds it exactly (up to 15 digits), otherwise its text.
        DuckValue::Decimal(d) => {
            let text = d.to_string();
            let digits = text.chars().filter(char::is_ascii_digit).count();
            match text.parse::<f64>() {
                Ok(f) if digits <= 15 => Json::from(f),
                _ => Json::String(text),
            }
        }
        DuckValue::Timestamp(unit, v) => {
            let micros = match unit {
                duckdb::types::TimeUnit::Second => v.saturating_mul(1_000_000),
                duckdb::types::TimeUnit::Millisecond => v.saturating_mul(1_000),
                duckdb::types::TimeUnit::Microsecond => v,
                duckdb::types::TimeUnit::Nanosecond => v / 1_000,
            };
            chrono::DateTime::from_timestamp_micros(micros)
                .map_or(Json::Null, |t| Json::String(t.naive_utc().to_string()))
        }
        DuckValue::UHugeInt(i) => {
            u64::try_from(i).map_or_else(|_| Json::String(i.to_string()), Json::from)
        }
        DuckValue::List(items) | DuckValue::Array(items) => {
            Json::Array(items.into_iter().map(to_json).collect())
        }
        DuckValue::Struct(fields) => Json::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), to_json(v.clone())))
                .collect(),
        ),
        // A map's keys as text, as a JSON object needs them.
        DuckValue::Map(entries) => Json::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    let key = match to_json(k.clone()) {
                        Json::String(s) => s,
                        other => other.to_string(),
                    };
                    (key, to_json(v.clone()))
                })
                .collect(),
        ),
        DuckValue::Union(inner) => to_json(*inner),
        DuckValue::Time64(unit, v) => {
            let micros = match unit {
                duckdb::types::TimeUnit::Second => v.saturating_mul(1_000_000),
                duckdb::types::TimeUnit::Millisecond => v.saturating_mul(1_000),
                duckdb::types::TimeUnit::Microsecond => v,
                duckdb::types::TimeUnit::Nanosecond => v / 1_000,
            };
            let secs = u32::try_from(micros.div_euclid(1_000_000)).unwrap_or(0);
            let nanos = u32::try_from(micros.rem_euclid(1_000_000) * 1_000).unwrap_or(0);
            chrono::NaiveTime::from_num_seconds_from_midnight_opt(secs, nanos)
                .map_or(Json::Null, |t| Json::String(t.to_string()))
        }
        DuckValue::Interval {
            months,
            days,
            nanos,
        } => Json::String(interval_text(months, days, nanos)),
        other => {
            let text = format!("{other:?}");
            text.parse::<f64>().map_or(Json::String(text), Json::from)
        }
    }
}

/// An interval as DuckDB prints it: `1 year 2 months 3 days 04:05:06.5`.
fn interval_text(months: i32, days: i32, nanos: i64) -> String {
    let plural = |n: i64, unit: &str| {
        if n.abs() == 1 {
            format!("{n} {unit}")
        } else {
            format!("{n} {unit}s")
        }
    };
    let mut parts = Vec::new();
    let (years, months) = (i64::from(months) / 12, i64::from(months) % 12);
    if years != 0 {
        parts.push(plural(years, "year"));
    }
    if months != 0 {
        parts.push(plural(months, "month"));
    }
    if days != 0 {
        parts.push(plural(i64::from(days), "day"));
    }
    if nanos != 0 || parts.is_empty() {
        let micros = nanos / 1_000;
        let sign = if micros < 0 { "-" } else { "" };
        let micros = micros.unsigned_abs();
        let (h, m, s, f) = (
            micros / 3_600_000_000,
            micros / 60_000_000 % 60,
            micros / 1_000_000 % 60,
            micros % 1_000_000,
        );
        let mut time = format!("{sign}{h:02}:{m:02}:{s:02}");
        if f != 0 {
            time.push_str(format!(".{f:06}").trim_end_matches('0'));
        }
        parts.push(time);
    }
    parts.join(" ")
}

impl Worker {
    /// Run statements in order. On failure, roll back an open transaction so that the
    /// warehouse is as it was before the node started.
    pub fn run_rendering(
        &self,
        statements: &[Statement],
        render: &mut dyn FnMut(usize) -> Result<String, DbError>,
    ) -> Result<usize, DbError> {
        // DuckDB's catalog is optimistic: two workers changing it at once can conflict. Such a
        // conflict is rolled back whole, so running the node again is safe.
        let mut attempt = 0;
        loop {
            match self.run_once(statements, render) {
                Err(e) if e.failure == Failure::Conflict && attempt < 5 => {
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(5 << attempt));
                }
                other => return other,
            }
        }
    }

    fn run_once(
        &self,
        statements: &[Statement],
        render: &mut dyn FnMut(usize) -> Result<String, DbError>,
    ) -> Result<usize, DbError> {
        let mut conn = self.conn.lock().expect("connection lock");
        let mut rows = 0usize;
        let mut in_transaction = false;
        for (i, s) in statements.iter().enumerate() {
            // A hook rendered only now: the lock is let go meanwhile, for the template's own
            // questions to this connection (in the same transaction).
            let rendered;
            let s = if s.kind == StatementKind::PendingHook {
                drop(conn);
                let sql = render(i);
                conn = self.conn.lock().expect("connection lock");
                match sql {
                    Ok(sql) => {
                        rendered = Statement::new(StatementKind::Hook, sql);
                        &rendered
                    }
                    Err(e) => {
                        if in_transaction {
                            let _ = conn.execute_batch("rollback");
                        }
                        return Err(e);
                    }
                }
            } else {
                s
            };
            let result =
                match s.kind {
                    // DML reports how many rows it changed, which needs a prepared statement.
                    StatementKind::Dml => conn.execute(&s.sql, []).map_err(|e| failed(i, &e)),
                    StatementKind::Check => check(&conn, &s.sql)
                        .map_err(|e| failed(i, &e))
                        .and_then(|(values, total)| {
                            if values.is_empty() {
                                Ok(0)
                            } else {
                                Err(DbError {
                                    statement: i,
                                    message: format!(
                                        "repeated values: {}",
                                        Failure::listed(&values, total)
                                    ),
                                    failure: Failure::Check { values, total },
                                    line: None,
                                })
                            }
                        }),
                    // Everything else runs in a single pass: preparing a statement and then
                    // executing it binds its query twice, and binding a view over views is most
                    // of what building one costs.
                    _ => conn
                        .execute_batch(&s.sql)
                        .and_then(|()| match &s.counts {
                            Some(query) => conn
                                .query_row(query, [], |r| r.get::<_, i64>(0))
                                .map(|n| usize::try_from(n).unwrap_or(0)),
                            None => Ok(0),
                        })
                        .map_err(|e| failed(i, &e)),
                };
            match result {
                Ok(n) => {
                    rows = rows.max(n);
                    match s.kind {
                        StatementKind::Begin => in_transaction = true,
                        StatementKind::Commit => in_transaction = false,
                        _ => {}
                    }
                }
                Err(e) => {
                    if in_transaction {
                        let _ = conn.execute_batch("rollback");
                    }
                    return Err(e);
                }
            }
        }
        Ok(rows)
    }
}

fn query_error(e: duckdb::Error) -> QueryError {
    QueryError {
        message: e.to_string(),
    }
}

/// A statement's error, classified. DuckDB's C API reports an error's type only as the start
/// of its message ("INTERRUPT Error: Interrupted!", "TransactionContext Error: … conflict …"),
/// so this is the one place that reads it.
fn failed(statement: usize, e: &duckdb::Error) -> DbError {
    let message = e.to_string();
    let failure = if message.contains("INTERRUPT") || message.contains("nterrupted") {
        Failure::Interrupted
    } else if message.contains("onflict") {
        Failure::Conflict
    } else {
        Failure::Other
    };
    DbError {
        statement,
        line: error_line(&message),
        message,
        failure,
    }
}

/// `LINE n:` in a DuckDB error message: the line of the statement it points at.
fn error_line(message: &str) -> Option<usize> {
    let at = message.find("LINE ")?;
    let rest = &message[at + 5..];
    let end = rest.find(':')?;
    rest[..end].trim().parse().ok()
}

/// Run a check statement: the first column of each row as text, and the second column of the
/// first row (the total count) when there is one.
fn check(conn: &duckdb::Connection, sql: &str) -> Result<(Vec<String>, usize), duckdb::Error> {
    let mut stmt = conn.prepare(sql)?;
    let mut rows = stmt.query([])?;
    let mut values = Vec::new();
    let mut total = 0;
    while let Some(row) = rows.next()? {
        if values.is_empty() {
            total = row
                .get::<_, i64>(1)
                .ok()
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(0);
        }
        values.push(row.get::<_, Option<String>>(0)?.unwrap_or_default());
    }
    let shown = values.len();
    Ok((values, total.max(shown)))
}

impl Worker {
    /// The columns a query returns, found by binding it (it is not run).
    pub fn describe(&self, statement: &Statement) -> Result<Vec<Column>, DbError> {
        let conn = self.conn.lock().expect("connection lock");
        let failed = |e: duckdb::Error| failed(0, &e);
        let mut stmt = conn.prepare(&statement.sql).map_err(failed)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Column {
                    name: r.get(0)?,
                    data_type: r.get(1)?,
                })
            })
            .map_err(failed)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(failed)
    }

    /// The columns of an existing relation.
    pub fn relation_columns(&self, relation: &Relation) -> Result<Vec<Column>, DbError> {
        Introspect::columns(self, relation).map_err(|e| DbError::other(e.message))
    }
}

impl Worker {
    /// Every table and view of the database and the databases it attaches, with columns in
    /// order, for `catalog.json` and the docs site.
    pub fn catalog(&self) -> Result<Vec<CatalogTable>, QueryError> {
        let conn = self.conn.lock().expect("connection lock");
        let text = |row: &duckdb::Row<'_>, i: usize| row.get::<_, Option<String>>(i);
        let mut tables: Vec<CatalogTable> = conn
            .prepare(
                "select database_name, schema_name, table_name, 'BASE TABLE', comment from duckdb_tables() where not internal and not temporary \
                 union all select database_name, schema_name, view_name, 'VIEW', comment from duckdb_views() where not internal and not temporary \
                 order by 1, 2, 3",
            )
            .and_then(|mut stmt| {
                stmt.query_map([], |r| {
                    Ok(CatalogTable {
                        database: text(r, 0)?.unwrap_or_default(),
                        schema: text(r, 1)?.unwrap_or_default(),
                        name: text(r, 2)?.unwrap_or_default(),
                        kind: text(r, 3)?.unwrap_or_default(),
                        comment: text(r, 4)?,
                        columns: Vec::new(),
                    })
                })?
                .collect()
            })
            .map_err(query_error)?;
        let mut columns: Vec<((String, String, String), CatalogColumn)> = conn
            .prepare(
                "select database_name, schema_name, table_name, column_name, column_index, data_type, comment \
                 from duckdb_columns() where not internal order by 1, 2, 3, 5",
            )
            .and_then(|mut stmt| {
                stmt.query_map([], |r| {
                    let key = (
                        text(r, 0)?.unwrap_or_default(),
                        text(r, 1)?.unwrap_or_default(),
                        text(r, 2)?.unwrap_or_default(),
                    );
                    let column = CatalogColumn {
                        name: text(r, 3)?.unwrap_or_default(),
                        index: usize::try_from(r.get::<_, i64>(4)?).unwrap_or(0),
                        data_type: text(r, 5)?.unwrap_or_default(),
                        comment: text(r, 6)?,
                    };
                    Ok((key, column))
                })?
                .collect()
            })
            .map_err(query_error)?;
        let at: std::collections::HashMap<(String, String, String), usize> = tables
            .iter()
            .enumerate()
            .map(|(i, t)| ((t.database.clone(), t.schema.clone(), t.name.clone()), i))
            .collect();
        for (key, column) in columns.drain(..) {
            if let Some(&i) = at.get(&key) {
                tables[i].columns.push(column);
            }
        }
        Ok(tables)
    }
}

impl Introspect for Worker {
    fn query(&self, sql: &str) -> Result<QueryTable, QueryError> {
        let conn = self.conn.lock().expect("connection lock");
        let mut stmt = conn.prepare(sql).map_err(query_error)?;
        let mut rows_out = Vec::new();
        let mut rows = stmt.query([]).map_err(query_error)?;
        let mut width = 0;
        while let Some(row) = rows.next().map_err(query_error)? {
            let stmt_ref = row.as_ref();
            width = stmt_ref.column_count();
            let mut values = Vec::with_capacity(width);
            for c in 0..width {
                values.push(to_json(row.get::<_, DuckValue>(c).map_err(query_error)?));
            }
            rows_out.push(values);
        }
        drop(rows);
        let columns = stmt.column_names();
        let _ = width;
        Ok(QueryTable {
            columns,
            rows: rows_out,
        })
    }

    fn relation_kind(&self, relation: &Relation) -> Result<Option<Kind>, QueryError> {
        let conn = self.conn.lock().expect("connection lock");
        let db = relation
            .database
            .clone()
            .unwrap_or_else(|| self.database.clone());
        let mut stmt = conn
            .prepare(
                "select table_type from information_schema.tables where lower(table_catalog) = lower(?) and lower(table_schema) = lower(?) and lower(table_name) = lower(?)",
            )
            .map_err(query_error)?;
        let mut rows = stmt
            .query([
                db.as_str(),
                relation.schema.as_str(),
                relation.identifier.as_str(),
            ])
            .map_err(query_error)?;
        match rows.next().map_err(query_error)? {
            Some(row) => {
                let t: String = row.get(0).map_err(query_error)?;
                Ok(Some(if t.eq_ignore_ascii_case("VIEW") {
                    Kind::View
                } else {
                    Kind::Table
                }))
            }
            None => Ok(None),
        }
    }

    fn columns(&self, relation: &Relation) -> Result<Vec<Column>, QueryError> {
        let conn = self.conn.lock().expect("connection lock");
        let db = relation
            .database
            .clone()
            .unwrap_or_else(|| self.database.clone());
        let mut stmt = conn
            .prepare(
                "select column_name, data_type from information_schema.columns where lower(table_catalog) = lower(?) and lower(table_schema) = lower(?) and lower(table_name) = lower(?) order by ordinal_position",
            )
            .map_err(query_error)?;
        let rows = stmt
            .query_map(
                [
                    db.as_str(),
                    relation.schema.as_str(),
                    relation.identifier.as_str(),
                ],
                |r| {
                    Ok(Column {
                        name: r.get(0)?,
                        data_type: r.get(1)?,
                    })
                },
            )
            .map_err(query_error)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(query_error)
    }
}

impl Adapter for Warehouse {
    fn database(&self) -> &str {
        &self.database
    }

    fn location(&self) -> &str {
        &self.location
    }

    fn connect(&self) -> Result<Arc<dyn Connection>, Problem> {
        Ok(Arc::new(self.worker()?))
    }

    fn create_schemas(&self, schemas: &[(Option<String>, String)]) -> Result<(), Problem> {
        Warehouse::create_schemas(self, schemas)
    }

    fn record(&self, relation: &Relation, kind: Option<Kind>) {
        Warehouse::record(self, relation, kind);
    }

    fn interrupter(&self) -> Interrupt {
        Warehouse::interrupter(self)
    }

    fn scratch(
        &self,
        target: &Target,
        catalogs: &std::collections::BTreeSet<String>,
    ) -> Result<Scratch, Problem> {
        let (warehouse, worker) = Warehouse::scratch(target, catalogs)?;
        Ok(Scratch {
            adapter: Arc::new(warehouse),
            connection: Arc::new(worker),
        })
    }
}

impl Connection for Worker {
    fn run_rendering(
        &self,
        statements: &[Statement],
        render: &mut dyn FnMut(usize) -> Result<String, DbError>,
    ) -> Result<Option<usize>, DbError> {
        Worker::run_rendering(self, statements, render).map(Some)
    }

    fn describe(&self, statement: &Statement) -> Result<Vec<Column>, DbError> {
        Worker::describe(self, statement)
    }

    fn relation_columns(&self, relation: &Relation) -> Result<Vec<Column>, DbError> {
        Worker::relation_columns(self, relation)
    }

    fn catalog(&self) -> Result<Vec<CatalogTable>, QueryError> {
        Worker::catalog(self)
    }
}

/// Introspection for `xform compile`: the target's database is opened read-only the first time
/// a template asks, and only if the file exists. Until then (and when it cannot be opened)
/// questions get empty answers, as when a model is parsed.
pub struct LazyCatalog {
    target: Target,
    opened: std::sync::OnceLock<Option<(Warehouse, Worker)>>,
}

impl LazyCatalog {
    /// A catalog for the target when its data exists (the file was built); `None` before the
    /// first build, when templates see no database at all, as while parsing.
    pub fn if_built(target: &Target) -> Option<Self> {
        (matches!(target.credentials, Credentials::DuckDb(_)) && super::data_exists(target))
            .then(|| Self::new(target))
    }

    pub fn new(target: &Target) -> Self {
        LazyCatalog {
            target: target.clone(),
            opened: std::sync::OnceLock::new(),
        }
    }

    /// Whether the database has the relation; `None` when it cannot be opened.
    pub fn has_relation(&self, relation: &Relation) -> Option<bool> {
        let worker = self.worker()?;
        worker.relation_kind(relation).ok().map(|k| k.is_some())
    }

    fn worker(&self) -> Option<&Worker> {
        self.opened
            .get_or_init(|| {
                let Credentials::DuckDb(file) = &self.target.credentials else {
                    return None;
                };
                if file.in_memory() || !file.path.exists() {
                    return None;
                }
                let opened = Warehouse::open_mode(&self.target, true)
                    .and_then(|w| w.worker().map(|worker| (w, worker)));
                match opened {
                    Ok(pair) => Some(pair),
                    Err(p) => {
                        eprintln!(
                            "warning: introspective queries get no answer in this compile: {}",
                            p.message
                        );
                        None
                    }
                }
            })
            .as_ref()
            .map(|(_, worker)| worker)
    }
}

impl Introspect for LazyCatalog {
    fn query(&self, sql: &str) -> Result<QueryTable, QueryError> {
        self.worker()
            .map_or_else(|| Ok(QueryTable::default()), |w| w.query(sql))
    }

    fn relation_kind(&self, relation: &Relation) -> Result<Option<Kind>, QueryError> {
        self.worker()
            .map_or(Ok(None), |w| w.relation_kind(relation))
    }

    fn columns(&self, relation: &Relation) -> Result<Vec<Column>, QueryError> {
        self.worker()
            .map_or_else(|| Ok(Vec::new()), |w| w.columns(relation))
    }
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

    #[test]
    fn nested_and_temporal_values_read_as_json() {
        let conn = duckdb::Connection::open_in_memory().unwrap();
        let row: Vec<serde_json::Value> = conn
            .query_row(
                "select [1, 2], {'a': 'x', 'b': [true]}, map {'k': 1}, time '04:05:06.5', \
                 interval 14 month + interval 3 day + interval 90 minute, interval 0 second",
                [],
                |r| {
                    (0..6)
                        .map(|i| r.get::<_, duckdb::types::Value>(i))
                        .collect::<Result<Vec<_>, _>>()
                },
            )
            .unwrap()
            .into_iter()
            .map(super::to_json)
            .collect();
        assert_eq!(
            serde_json::Value::Array(row),
            serde_json::json!([
                [1, 2],
                {"a": "x", "b": [true]},
                {"k": 1},
                "04:05:06.500",
                "1 year 2 months 3 days 01:30:00",
                "00:00:00"
            ])
        );
    }
}
