//! The documentation site `xform docs generate` writes: one self-contained
//! `target/index.html` (inline style and script, the project's data embedded as JSON), so it
//! opens from the file system and publishes to any static host as it is.
//!
//! The page (`templates/docs/index.html`) is a minijinja template rendered with HTML escaping;
//! the data is JSON in a `<script type="application/json">` element with every `<` escaped,
//! and the page's script builds the view with `textContent`, never with markup from the data.
//! Nodes are ordered by id and every map is ordered, so the same project gives the same file.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;
use serde_json::{Value as Json, json};

use crate::artifacts::catalog::Catalog;
use crate::config::RunInfo;
use crate::config::Target;
use crate::diagnostics::{Code, Problem};
use crate::graph::{Graph, Node};

const PAGE: &str = include_str!("../../templates/docs/index.html");

/// Write `index.html` into `target_dir` and return its path.
pub fn write_site(
    target_dir: &Path,
    project: &str,
    target: &Target,
    run: &RunInfo,
    graph: &Graph,
    compiled: &BTreeMap<usize, Arc<str>>,
    catalog: &Catalog,
) -> Result<PathBuf, Problem> {
    let generated_at = run.started_at.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let mut order: Vec<usize> = (0..graph.nodes.len()).collect();
    order.sort_by(|&a, &b| graph.nodes[a].unique_id.cmp(&graph.nodes[b].unique_id));
    let listed: Vec<Json> = order
        .iter()
        .map(|&i| {
            let n = &graph.nodes[i];
            json!({"id": n.unique_id, "name": n.name, "type": n.resource_type.as_str()})
        })
        .collect();
    let mut env = minijinja::Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    let page_problem = |e: &minijinja::Error| {
        Problem::new(
            Code::Jinja,
            format!("the docs page template failed to render: {e}"),
        )
        .help("this is a bug in xform; please report it with the project that shows it")
    };
    env.add_template("index.html", PAGE)
        .map_err(|e| page_problem(&e))?;
    // The page is rendered around a marker that the data, written straight to the file a
    // chunk of nodes at a time, then replaces: the data (most of the page) is never held
    // whole in memory, nor copied.
    let html = env
        .get_template("index.html")
        .and_then(|t| {
            t.render(minijinja::context! {
                project => project,
                generated_at => &generated_at,
                node_count => graph.nodes.len(),
                data_json => DATA_MARKER,
                nodes => crate::render::context::to_value(Json::Array(listed)),
            })
        })
        .map_err(|e| page_problem(&e))?;
    let (head, tail) = html.split_once(DATA_MARKER).ok_or_else(|| {
        page_problem(&minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            "the page has no place for its data",
        ))
    })?;
    let path = target_dir.join("index.html");
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(target_dir)?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&path)?);
        w.write_all(head.as_bytes())?;
        let start = json!({"project": project, "generated_at": generated_at}).to_string();
        w.write_all(escape(start.trim_end_matches('}')).as_bytes())?;
        w.write_all(b",\"nodes\":[")?;
        for (k, chunk) in order.chunks(1024).enumerate() {
            let texts: Vec<String> = chunk
                .par_iter()
                .map(|&i| {
                    escape(
                        &node_data(graph, i, compiled.get(&i).map(|c| &**c), catalog, target)
                            .to_string(),
                    )
                })
                .collect();
            for (j, text) in texts.iter().enumerate() {
                if k > 0 || j > 0 {
                    w.write_all(b",")?;
                }
                w.write_all(text.as_bytes())?;
            }
        }
        w.write_all(b"]}")?;
        w.write_all(tail.as_bytes())?;
        w.flush()?;
        drop(w);
        crate::env::mask_file(&path)
    };
    write().map_err(|e| Problem::io(&path, &e))?;
    Ok(path)
}

/// Stands for the data while the page is rendered.
const DATA_MARKER: &str = "\u{0}xform-docs-data\u{0}";

/// JSON made safe inside a script element: `<` only ever appears inside JSON strings, where
/// `\u003c` means the same, so the data can never close its element or open a comment there.
fn escape(json: &str) -> String {
    json.replace('<', "\\u003c")
}

/// One node as the page reads it.
fn node_data(
    graph: &Graph,
    i: usize,
    compiled: Option<&str>,
    catalog: &Catalog,
    target: &Target,
) -> Json {
    let node = &graph.nodes[i];
    let ids = |mut v: Vec<usize>| -> Vec<&str> {
        v.sort_by(|&a, &b| graph.nodes[a].unique_id.cmp(&graph.nodes[b].unique_id));
        v.iter()
            .map(|&j| graph.nodes[j].unique_id.as_str())
            .collect()
    };
    json!({
        "id": node.unique_id,
        "name": node.name,
        "type": node.resource_type.as_str(),
        "materialized": node.materialized().as_str(),
        "relation": node.has_relation().then(|| node.relation.to_string()),
        "path": node.path,
        "description": node.description,
        "tags": node.config.tags(),
        "columns": columns(node, catalog, target),
        "raw_code": node.raw_code(),
        "compiled_code": compiled,
        "parents": ids(graph.parents(i)),
        "children": ids(graph.children(i)),
    })
}

/// The relation's columns from the database in their order, with the descriptions (and
/// declared types, when the database has none) of the YAML; then the YAML's columns that the
/// database does not have.
fn columns(node: &Node, catalog: &Catalog, target: &Target) -> Vec<Json> {
    let mut out = Vec::new();
    let mut described: Vec<bool> = vec![false; node.columns.len()];
    if let Some(table) = catalog.table_of(node, target) {
        for c in &table.columns {
            let yaml = node
                .columns
                .iter()
                .position(|p| p.name.eq_ignore_ascii_case(&c.name));
            if let Some(k) = yaml {
                described[k] = true;
            }
            let description = yaml
                .map(|k| node.columns[k].description.as_str())
                .filter(|d| !d.is_empty())
                .or(c.comment.as_deref())
                .unwrap_or("");
            out.push(json!({
                "name": c.name,
                "type": c.data_type,
                "description": description,
                "index": c.index,
            }));
        }
    }
    for (k, p) in node.columns.iter().enumerate() {
        if !described[k] {
            out.push(json!({
                "name": p.name,
                "type": p.data_type,
                "description": p.description,
                "index": Json::Null,
            }));
        }
    }
    out
}
