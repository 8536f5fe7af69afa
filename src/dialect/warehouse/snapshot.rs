//! Snapshot statements in Snowflake's and BigQuery's SQL: the same changes as DuckDB's (new and
//! changed rows, rows to close, hard deletes), staged with one branch per kind of change. Each
//! branch names every staging column, as neither warehouse has DuckDB's `union all by name`.
//!
//! `dbt_scd_id` hashes as each warehouse's dbt adapter hashes it, so that ids written by xform
//! and by dbt agree: on Snowflake dbt's default, the md5 of the parts cast to `varchar` joined
//! with `|`; on BigQuery the hex of the md5 of the parts cast to `string`, `concat`ed with `|`.
//! The snapshot time is each adapter's too: UTC without a zone on Snowflake, BigQuery's
//! `current_timestamp()`.

use std::fmt::Write as _;

use super::{Flavor, ident};
use crate::materialize::snapshot::{HardDeletes, Spec, Strategy};
use crate::relation::Relation;

/// The staging column that says what a row of changes does.
const CHANGE: &str = "dbt_change_type";

fn now(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::Snowflake => "to_timestamp_ntz(convert_timezone('UTC', current_timestamp()))",
        Flavor::BigQuery => "current_timestamp()",
    }
}

/// dbt's `dbt_scd_id`: the key parts and the timestamp, hashed as the warehouse's adapter does.
fn scd_hash(flavor: Flavor, parts: &[String], ts: &str) -> String {
    let mut all: Vec<&str> = parts.iter().map(String::as_str).collect();
    all.push(ts);
    match flavor {
        Flavor::Snowflake => {
            let cast: Vec<String> = all
                .iter()
                .map(|p| format!("coalesce(cast({p} as varchar), '')"))
                .collect();
            format!("md5({})", cast.join(" || '|' || "))
        }
        Flavor::BigQuery => {
            let cast: Vec<String> = all
                .iter()
                .map(|p| format!("coalesce(cast({p} as string), '')"))
                .collect();
            format!("to_hex(md5(concat({})))", cast.join(", '|', "))
        }
    }
}

fn ts_of(flavor: Flavor, spec: &Spec) -> String {
    match &spec.strategy {
        Strategy::Timestamp { updated_at } => updated_at.clone(),
        Strategy::Check { .. } => now(flavor).to_string(),
    }
}

fn open_valid_to(spec: &Spec, ts: &str) -> String {
    spec.open_valid_to(ts)
}

/// Whether a row of the snapshot table is current.
pub(super) fn is_current(flavor: Flavor, spec: &Spec, alias: &str) -> String {
    spec.is_current(&format!("{alias}{}", ident(flavor, &spec.meta.valid_to)))
}

/// The first run: the staged query's rows with their meta columns.
pub(super) fn create(
    flavor: Flavor,
    head: &str,
    target: &Relation,
    source: &Relation,
    spec: &Spec,
) -> String {
    let ts = ts_of(flavor, spec);
    let m = &spec.meta;
    let q = |c: &str| ident(flavor, c);
    let mut sql = format!(
        "{head} {target}\nas (\nselect *,\n  {} as {},\n  {ts} as {},\n  {ts} as {},\n  {} as {}",
        scd_hash(flavor, &spec.unique_key, &ts),
        q(&m.scd_id),
        q(&m.updated_at),
        q(&m.valid_from),
        open_valid_to(spec, &ts),
        q(&m.valid_to),
    );
    if spec.hard_deletes == HardDeletes::NewRecord {
        let _ = write!(sql, ",\n  'False' as {}", q(&m.is_deleted));
    }
    let _ = write!(sql, "\nfrom {source}\n)");
    sql
}

/// One branch of the staged changes: a value for every staging column, in order (`None`: a
/// null).
struct Branch<'a> {
    change: &'a str,
    columns: Option<&'a str>,
    scd_id: String,
    updated_at: Option<String>,
    valid_from: Option<String>,
    valid_to: String,
    is_deleted: Option<&'a str>,
    from: String,
}

/// The select of the changes a later run applies: new versions to insert (`insert`), current
/// rows they replace (`update`) and, with hard deletes, rows gone from the source (`delete`).
pub(super) fn stage(flavor: Flavor, target: &Relation, source: &Relation, spec: &Spec) -> String {
    let m = &spec.meta;
    let q = |c: &str| ident(flavor, c);
    let ts = ts_of(flavor, spec);
    let now = now(flavor);
    let crate::dialect::SnapshotMatch {
        keys,
        join,
        changed,
    } = crate::dialect::SnapshotMatch::of(spec, &q);
    let prefixed = |alias: &str| {
        spec.columns
            .iter()
            .map(|c| format!("{alias}.{}", q(c)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (s_cols, t_cols) = (prefixed("s"), prefixed("t"));
    let gone = {
        let mut gone = format!(
            "snapshotted as t left join source_data as s on {join}\nwhere s.__xform_scd is null"
        );
        if spec.hard_deletes == HardDeletes::NewRecord {
            let _ = write!(gone, " and t.{} is distinct from 'True'", q(&m.is_deleted));
        }
        gone
    };
    let mut branches = vec![
        Branch {
            change: "insert",
            columns: Some(&s_cols),
            scd_id: "s.__xform_scd".into(),
            updated_at: Some("s.__xform_ts".into()),
            valid_from: Some("s.__xform_ts".into()),
            valid_to: open_valid_to(spec, "s.__xform_ts"),
            is_deleted: Some("'False'"),
            from: format!(
                "source_data as s left join snapshotted as t on {join}\nwhere t.{} is null or {changed}",
                q(&m.scd_id)
            ),
        },
        Branch {
            change: "update",
            columns: None,
            scd_id: format!("t.{}", q(&m.scd_id)),
            updated_at: None,
            valid_from: None,
            valid_to: "s.__xform_ts".into(),
            is_deleted: None,
            from: format!("source_data as s join snapshotted as t on {join}\nwhere {changed}"),
        },
    ];
    if spec.hard_deletes != HardDeletes::Ignore {
        branches.push(Branch {
            change: "delete",
            columns: None,
            scd_id: format!("t.{}", q(&m.scd_id)),
            updated_at: None,
            valid_from: None,
            valid_to: now.to_string(),
            is_deleted: None,
            from: gone.clone(),
        });
    }
    // dbt hashes a deletion record's id from the closed row's id and the snapshot time.
    let closed = [format!("t.{}", q(&m.scd_id))];
    if spec.hard_deletes == HardDeletes::NewRecord {
        branches.push(Branch {
            change: "insert",
            columns: Some(&t_cols),
            scd_id: scd_hash(flavor, &closed, now),
            updated_at: Some(now.to_string()),
            valid_from: Some(now.to_string()),
            valid_to: open_valid_to(spec, now),
            is_deleted: Some("'True'"),
            from: gone,
        });
    }
    let nulls = vec!["null"; spec.columns.len()].join(", ");
    let selects: Vec<String> = branches
        .iter()
        .map(|b| {
            let mut sql = format!(
                "select '{}' as {CHANGE}, {}, {} as {}, {} as {}, {} as {}, {} as {}",
                b.change,
                b.columns.unwrap_or(&nulls),
                b.scd_id,
                q(&m.scd_id),
                b.updated_at.as_deref().unwrap_or("null"),
                q(&m.updated_at),
                b.valid_from.as_deref().unwrap_or("null"),
                q(&m.valid_from),
                b.valid_to,
                q(&m.valid_to),
            );
            if spec.hard_deletes == HardDeletes::NewRecord {
                let _ = write!(
                    sql,
                    ", {} as {}",
                    b.is_deleted.unwrap_or("cast(null as string)"),
                    q(&m.is_deleted)
                );
            }
            let _ = write!(sql, "\nfrom {}", b.from);
            sql
        })
        .collect();
    format!(
        "with source_data as (\n  select *, {keys}, {ts} as __xform_ts, {scd} as __xform_scd from {source}\n),\n\
         snapshotted as (\n  select *, {keys} from {target} where {current}\n)\n{}",
        selects.join("\nunion all\n"),
        scd = scd_hash(flavor, &spec.unique_key, &ts),
        current = is_current(flavor, spec, ""),
    )
}

/// Close the current rows that changed or left the source.
pub(super) fn close(flavor: Flavor, target: &Relation, staging: &Relation, spec: &Spec) -> String {
    use crate::dialect::{DEST, SOURCE};
    let valid_to = ident(flavor, &spec.meta.valid_to);
    let scd_id = ident(flavor, &spec.meta.scd_id);
    format!(
        "update {target} as {DEST}\nset {valid_to} = {SOURCE}.{valid_to}\nfrom {staging} as {SOURCE}\nwhere {SOURCE}.{scd_id} = {DEST}.{scd_id}\n  and {SOURCE}.{CHANGE} in ('update', 'delete')\n  and {}",
        is_current(flavor, spec, &format!("{DEST}."))
    )
}

/// Insert the new versions whose `dbt_scd_id` the table does not hold yet. dbt-snowflake and
/// dbt-bigquery apply a snapshot with one `merge` on `dbt_scd_id` that inserts only rows it
/// does not match: a row deleted (`invalidate`) and back with the same `updated_at` hashes to
/// the id of its closed version, and stays closed, as there.
pub(super) fn insert(flavor: Flavor, target: &Relation, staging: &Relation, spec: &Spec) -> String {
    let mut cols = spec.columns.clone();
    cols.extend(spec.meta_columns());
    let list = cols
        .iter()
        .map(|c| format!("s.{}", ident(flavor, c)))
        .collect::<Vec<_>>()
        .join(", ");
    let names = cols
        .iter()
        .map(|c| ident(flavor, c))
        .collect::<Vec<_>>()
        .join(", ");
    let scd_id = ident(flavor, &spec.meta.scd_id);
    format!(
        "insert into {target} ({names})\nselect {list} from {staging} as s\nwhere s.{CHANGE} = 'insert'\n  and not exists (select 1 from {target} as t where t.{scd_id} = s.{scd_id})"
    )
}
