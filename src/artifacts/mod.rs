//! Artifacts in the target folder, with dbt's top-level shape: `manifest.json`,
//! `run_results.json`, and the `compiled/` and `run/` SQL of each node.
//!
//! The only module that serializes project state. Output is deterministic: maps are ordered
//! by key and timestamps come from the run (or `SOURCE_DATE_EPOCH` when set).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Value as Json, json};

use crate::config::Target;
use crate::diagnostics::Problem;
use crate::graph::{Graph, ResourceType};
use crate::render::RunInfo;

pub const MANIFEST_SCHEMA: &str = "https://schemas.getdbt.com/dbt/manifest/v12.json";
pub const RUN_RESULTS_SCHEMA: &str = "https://schemas.getdbt.com/dbt/run-results/v6.json";

/// The outcome of one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Success,
    Error,
    Skipped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::Error => "error",
            Status::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Clone)]
pub struct NodeResult {
    pub unique_id: String,
    pub status: Status,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub completed_at: chrono::DateTime<chrono::Utc>,
    pub thread: usize,
    pub rows_affected: Option<usize>,
    pub message: String,
    pub compiled_code: Option<String>,
    pub relation_name: Option<String>,
}

fn time(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Write a file, creating its folder, through a buffer.
pub fn write_file(path: &Path, contents: &[u8]) -> Result<(), Problem> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Problem::io(dir, &e))?;
    }
    let file = std::fs::File::create(path).map_err(|e| Problem::io(path, &e))?;
    let mut w = std::io::BufWriter::new(file);
    w.write_all(contents)
        .and_then(|()| w.flush())
        .map_err(|e| Problem::io(path, &e))
}

/// `target/compiled/<project>/<path>` or `target/run/<project>/<path>`.
pub fn sql_path(target_dir: &Path, kind: &str, project: &str, path: &str) -> PathBuf {
    target_dir.join(kind).join(project).join(path)
}

fn metadata(schema: &str, project: &str, target: &Target, run: &RunInfo) -> Json {
    json!({
        "dbt_schema_version": schema,
        "dbt_version": concat!("xform-", env!("CARGO_PKG_VERSION")),
        "generated_at": time(&run.started_at),
        "invocation_id": run.invocation_id,
        "project_name": project,
        "adapter_type": target.adapter,
        "env": {},
    })
}

/// Write `manifest.json`. `compiled` holds the compiled SQL of the nodes compiled in this run.
pub fn write_manifest(
    target_dir: &Path,
    project: &str,
    target: &Target,
    graph: &Graph,
    compiled: &BTreeMap<usize, String>,
    run: &RunInfo,
) -> Result<(), Problem> {
    let mut nodes = serde_json::Map::new();
    let mut sources = serde_json::Map::new();
    let mut parent_map = serde_json::Map::new();
    let mut child_map = serde_json::Map::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        let columns: serde_json::Map<String, Json> = node
            .columns
            .iter()
            .map(|c| {
                (
                    c.name.clone(),
                    json!({"name": c.name, "description": c.description, "data_type": c.data_type, "meta": {}, "tags": []}),
                )
            })
            .collect();
        let parents: Vec<&str> = graph
            .parents(i)
            .iter()
            .map(|&p| graph.nodes[p].unique_id.as_str())
            .collect();
        let children: Vec<&str> = graph
            .children(i)
            .iter()
            .map(|&c| graph.nodes[c].unique_id.as_str())
            .collect();
        parent_map.insert(node.unique_id.clone(), json!(parents));
        child_map.insert(node.unique_id.clone(), json!(children));
        let relation_name = if node.is_ephemeral() {
            Json::Null
        } else {
            json!(node.relation.to_string())
        };
        if node.resource_type == ResourceType::Source {
            let s = node.source.as_ref();
            sources.insert(
                node.unique_id.clone(),
                json!({
                    "unique_id": node.unique_id,
                    "resource_type": "source",
                    "package_name": project,
                    "name": node.name,
                    "source_name": s.map(|s| s.source_name.as_str()),
                    "source_description": s.map(|s| s.source_description.as_str()),
                    "loader": s.map(|s| s.loader.as_str()),
                    "identifier": node.relation.identifier,
                    "schema": node.relation.schema,
                    "database": node.relation.database,
                    "path": node.path,
                    "original_file_path": node.path,
                    "fqn": node.fqn,
                    "description": node.description,
                    "columns": columns,
                    "relation_name": relation_name,
                    "config": {"enabled": true},
                }),
            );
            continue;
        }
        let raw_code = node.file.as_ref().map_or("", |f| &f.text);
        let mut entry = json!({
            "unique_id": node.unique_id,
            "resource_type": node.resource_type.as_str(),
            "package_name": project,
            "name": node.name,
            "path": node.relative,
            "original_file_path": node.path,
            "patch_path": node.patch_path.as_ref().map(|p| format!("{project}://{p}")),
            "fqn": node.fqn,
            "alias": node.relation.identifier,
            "schema": node.relation.schema,
            "database": node.relation.database,
            "relation_name": relation_name,
            "config": node.config.to_json(),
            "tags": node.config.tags(),
            "description": node.description,
            "columns": columns,
            "meta": node.config.get("meta").cloned().unwrap_or(json!({})),
            "language": "sql",
            "raw_code": raw_code,
            "refs": node.refs.iter().map(|r| json!({"name": r.name, "package": r.package, "version": null})).collect::<Vec<_>>(),
            "sources": node.sources.iter().map(|(s, t)| json!([s, t])).collect::<Vec<_>>(),
            "depends_on": {"macros": [], "nodes": node.depends_on},
        });
        if let Some(code) = compiled.get(&i) {
            entry["compiled"] = json!(true);
            entry["compiled_code"] = json!(code);
            entry["compiled_path"] =
                json!(format!("{}/compiled/{project}/{}", "target", node.path));
        }
        if let Some(seed) = &node.seed_path {
            entry["root_path"] = json!(seed.parent().map(|p| p.display().to_string()));
        }
        nodes.insert(node.unique_id.clone(), entry);
    }
    let manifest = json!({
        "metadata": metadata(MANIFEST_SCHEMA, project, target, run),
        "nodes": nodes,
        "sources": sources,
        "macros": {},
        "docs": {},
        "exposures": {},
        "metrics": {},
        "groups": {},
        "selectors": {},
        "disabled": {},
        "parent_map": parent_map,
        "child_map": child_map,
        "group_map": {},
        "saved_queries": {},
        "semantic_models": {},
        "unit_tests": {},
    });
    let text = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    write_file(&target_dir.join("manifest.json"), &text)
}

/// Write `run_results.json`.
pub fn write_run_results(
    target_dir: &Path,
    project: &str,
    target: &Target,
    run: &RunInfo,
    results: &[NodeResult],
    elapsed: f64,
    args: &Json,
) -> Result<(), Problem> {
    let results: Vec<Json> = results
        .iter()
        .map(|r| {
            json!({
                "unique_id": r.unique_id,
                "status": r.status.as_str(),
                "timing": if r.status == Status::Skipped { json!([]) } else { json!([
                    {"name": "compile", "started_at": time(&r.started_at), "completed_at": time(&r.started_at)},
                    {"name": "execute", "started_at": time(&r.started_at), "completed_at": time(&r.completed_at)},
                ]) },
                "thread_id": format!("Thread-{}", r.thread),
                "execution_time": (r.completed_at - r.started_at).num_microseconds().unwrap_or(0) as f64 / 1e6,
                "adapter_response": match r.rows_affected { Some(n) => json!({"_message": "OK", "rows_affected": n}), None => json!({}) },
                "message": r.message,
                "failures": null,
                "compiled_code": r.compiled_code,
                "relation_name": r.relation_name,
            })
        })
        .collect();
    let doc = json!({
        "metadata": metadata(RUN_RESULTS_SCHEMA, project, target, run),
        "results": results,
        "elapsed_time": elapsed,
        "args": args,
    });
    let text = serde_json::to_vec_pretty(&doc).unwrap_or_default();
    write_file(&target_dir.join("run_results.json"), &text)
}
