//! `xform source freshness`: for each selected source table with `freshness:` and a
//! `loaded_at_field`, the newest load time against the thresholds, printed as it goes and
//! written to `target/sources.json` (dbt's schema), which `source_status:fresher` selection
//! compares with an earlier run's.

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use super::{EXIT_FAILED, EXIT_OK, EXIT_USAGE, Session, report};
use crate::cli::FreshnessArgs;
use crate::compile::parse;
use crate::diagnostics::{Code, Problem};
use crate::graph::ResourceType;
use crate::project::freshness::Status;
use crate::render::Introspect;

pub fn freshness(s: &Session, args: &FreshnessArgs) -> i32 {
    let (renderer, graph) = match parse(&s.project, &s.target, &s.run) {
        Ok(parsed) => parsed,
        Err(problems) => {
            report(&problems);
            return EXIT_USAGE;
        }
    };
    let selection = match super::choose(s, &graph, &args.common, &[ResourceType::Source]) {
        Ok(c) => c,
        Err(p) => {
            report(&[p]);
            return EXIT_USAGE;
        }
    };
    for e in &selection.unmatched {
        eprintln!("warning: the selector `{e}` matches no node");
    }
    let mut checked = Vec::new();
    for &i in &selection.nodes {
        let node = &graph.nodes[i];
        let Some(source) = node.source() else {
            continue;
        };
        match (&source.freshness, &source.loaded_at_field) {
            (Some(f), Some(field)) if f.is_set() => checked.push((node, f, field)),
            (Some(f), None) if f.is_set() => eprintln!(
                "warning: source `{}.{}` has freshness criteria but no `loaded_at_field`: it is not checked",
                source.source_name, source.name
            ),
            _ => {}
        }
    }
    // The warehouse stays open for as long as its connection is used.
    let (_warehouse, connection) = match super::connect(s) {
        Ok(c) => c,
        Err(p) => {
            report(&[p]);
            return EXIT_USAGE;
        }
    };
    let worker: Arc<dyn Introspect> = connection;
    let dialect = crate::dialect::of(&s.target);
    let started = Instant::now();
    let total = checked.len();
    println!(
        "Checking the freshness of {total} source table{}",
        if total == 1 { "" } else { "s" }
    );
    let (mut passed, mut warned, mut errored) = (0, 0, 0);
    let mut results = Vec::with_capacity(total);
    let mut problems = Vec::new();
    for (n, (node, criteria, field)) in checked.into_iter().enumerate() {
        let source = node.source().expect("a source node");
        let label = format!("{}.{}", source.source_name, source.name);
        let began = chrono::Utc::now();
        let clock = Instant::now();
        let sql = dialect.freshness_query(&node.relation, field, criteria.filter.as_deref());
        let measured = worker.query(&sql).map_err(|e| e.message).and_then(|table| {
            let row = table.rows.first().ok_or("the query returned no row")?;
            let at =
                |v: Option<&serde_json::Value>| v.and_then(|v| v.as_str()).and_then(parse_time);
            match (at(row.first()), at(row.get(1))) {
                (Some(loaded), Some(now)) => Ok((loaded, now)),
                (None, _) if row.first().is_some_and(serde_json::Value::is_null) => {
                    Err("the table has no rows with a loaded_at_field value".to_string())
                }
                _ => Err(format!(
                    "`{field}` is not a date or timestamp: {}",
                    row.first().map_or_else(String::new, ToString::to_string)
                )),
            }
        });
        let seconds = clock.elapsed().as_secs_f64();
        let timing = json!([
            {"name": "compile", "started_at": crate::artifacts::iso_time(&began), "completed_at": crate::artifacts::iso_time(&began)},
            {"name": "execute", "started_at": crate::artifacts::iso_time(&began), "completed_at": crate::artifacts::iso_time(&chrono::Utc::now())},
        ]);
        let (word, result) = match measured {
            Ok((loaded, now)) => {
                let age = (now - loaded).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6;
                let status = criteria.status(age);
                match status {
                    Status::Pass => passed += 1,
                    Status::Warn => warned += 1,
                    Status::Error => errored += 1,
                }
                (
                    status.as_str().to_ascii_uppercase(),
                    json!({
                        "unique_id": node.unique_id,
                        "max_loaded_at": loaded.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string(),
                        "snapshotted_at": now.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string(),
                        "max_loaded_at_time_ago_in_s": age,
                        "status": status.as_str(),
                        "criteria": criteria.criteria_json(),
                        "adapter_response": {},
                        "timing": timing,
                        "thread_id": "Thread-1",
                        "execution_time": seconds,
                    }),
                )
            }
            Err(message) => {
                errored += 1;
                problems.push(
                    Problem::new(
                        Code::Database,
                        format!("cannot check the freshness of source `{label}`: {message}"),
                    )
                    .help(format!(
                        "check `loaded_at_field: {field}` and the table {} (the query: {sql})",
                        node.relation
                    )),
                );
                (
                    "ERROR".to_string(),
                    json!({
                        "unique_id": node.unique_id,
                        "error": message,
                        "status": "runtime error",
                        "criteria": criteria.criteria_json(),
                        "timing": timing,
                        "thread_id": "Thread-1",
                        "execution_time": seconds,
                    }),
                )
            }
        };
        println!(
            "{:>4} of {total} {word:<5} freshness of {label} ({seconds:.2} s)",
            n + 1
        );
        results.push(result);
    }
    let path = args
        .output
        .clone()
        .unwrap_or_else(|| s.target_dir.join("sources.json"));
    if let Err(p) = crate::artifacts::write_sources(
        &path,
        &s.project.name,
        &s.target,
        &s.run,
        results,
        started.elapsed().as_secs_f64(),
    ) {
        problems.push(p);
    }
    report(&problems);
    println!(
        "Done in {:.2} s: {passed} passed, {warned} warned, {errored} errored",
        started.elapsed().as_secs_f64()
    );
    std::mem::forget(renderer);
    std::mem::forget(graph);
    if errored > 0 || !problems.is_empty() {
        EXIT_FAILED
    } else {
        EXIT_OK
    }
}

/// A timestamp as the database returns it (UTC): `2024-01-02 03:04:05[.ffffff]`, or a date.
fn parse_time(text: &str) -> Option<chrono::NaiveDateTime> {
    let text = text.trim().trim_end_matches("+00:00").trim_end_matches('Z');
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f"))
        .ok()
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_parse_as_the_database_writes_them() {
        let t = super::parse_time("2024-01-02 03:04:05.5").unwrap();
        assert_eq!(t.to_string(), "2024-01-02 03:04:05.500");
        assert!(super::parse_time("2024-01-02").is_some());
        assert!(super::parse_time("yesterday").is_none());
    }
}
