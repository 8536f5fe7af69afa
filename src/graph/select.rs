//! Node selection: `--select` / `--exclude` values as dbt users write them.
//!
//! Supported now: names and globs (`stg_*`), dotted fqns, paths (`models/staging`, or values
//! with `/`), `tag:`, `path:`, `source:`, `resource_type:`, `fqn:`, `test_type:`, `test_name:`,
//! and graph operators `+x`, `x+`, `n+x`, `x+n`, `@x`. Space-separated values are a union;
//! `a,b` is an intersection; exclusions are taken away last. Then every test of a selected
//! node is added (dbt's eager indirect selection) unless it was excluded itself. The result is
//! in topological order.

use std::collections::BTreeSet;

use super::{Graph, ResourceType};
use crate::diagnostics::{Code, Problem};

fn glob_match(pattern: &str, text: &str) -> bool {
    if !pattern.contains(['*', '?', '[']) {
        return pattern == text;
    }
    glob::Pattern::new(pattern).is_ok_and(|p| p.matches(text))
}

fn matches(graph: &Graph, i: usize, method: &str, value: &str) -> bool {
    let node = &graph.nodes[i];
    match method {
        "tag" => node.config.tags().iter().any(|t| glob_match(value, t)),
        "path" | "file" => {
            let v = value.trim_end_matches('/');
            node.path == v
                || node.path.starts_with(&format!("{v}/"))
                || glob_match(v, &node.path)
                || node.path.rsplit('/').next().is_some_and(|f| f == v)
        }
        "source" => {
            node.resource_type == ResourceType::Source
                && node.source.as_ref().is_some_and(|s| {
                    glob_match(value, &s.source_name)
                        || glob_match(value, &format!("{}.{}", s.source_name, s.name))
                })
        }
        "resource_type" => node.resource_type.as_str() == value,
        "test_type" => {
            node.resource_type == ResourceType::Test
                && match value {
                    "generic" => node.test.is_some(),
                    "singular" => node.test.is_none(),
                    "data" => true,
                    _ => false,
                }
        }
        "test_name" => {
            node.resource_type == ResourceType::Test
                && match &node.test {
                    Some(t) => glob_match(value, &t.test_name),
                    None => glob_match(value, &node.name),
                }
        }
        "config.materialized" => node.materialized() == value,
        "fqn" | "" => {
            let ext = std::path::Path::new(value)
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase);
            if method.is_empty()
                && (value.contains('/') || matches!(ext.as_deref(), Some("sql" | "csv")))
            {
                return matches(graph, i, "path", value);
            }
            glob_match(value, &node.name)
                || (value.contains('.') && glob_match(value, &node.fqn.join(".")))
                || (value.contains('.') && node.fqn.join(".").starts_with(&format!("{value}.")))
                || node.fqn.first().is_some_and(|p| p == value)
        }
        _ => false,
    }
}

fn closure(
    graph: &Graph,
    start: &BTreeSet<usize>,
    up: bool,
    depth: Option<usize>,
) -> BTreeSet<usize> {
    let mut out = start.clone();
    let mut frontier: Vec<usize> = start.iter().copied().collect();
    let mut level = 0;
    while !frontier.is_empty() && depth.is_none_or(|d| level < d) {
        let mut next = Vec::new();
        for i in frontier {
            let around = if up {
                graph.parents(i)
            } else {
                graph.children(i)
            };
            for j in around {
                if out.insert(j) {
                    next.push(j);
                }
            }
        }
        frontier = next;
        level += 1;
    }
    out
}

/// Nodes matching one selector term (no spaces or commas).
fn term(graph: &Graph, raw: &str) -> Result<BTreeSet<usize>, Problem> {
    let mut s = raw;
    let at = s.starts_with('@');
    if at {
        s = &s[1..];
    }
    let mut up: Option<Option<usize>> = None;
    if let Some(plus) = s
        .find('+')
        .filter(|&p| s[..p].chars().all(|c| c.is_ascii_digit()) && !s[..p].contains(':'))
    {
        up = Some(s[..plus].parse().ok());
        s = &s[plus + 1..];
    }
    let mut down: Option<Option<usize>> = None;
    if let Some(plus) = s
        .rfind('+')
        .filter(|&p| s[p + 1..].chars().all(|c| c.is_ascii_digit()))
    {
        down = Some(s[plus + 1..].parse().ok());
        s = &s[..plus];
    }
    let (method, value) = match s.split_once(':') {
        Some((m, v)) => (m, v),
        None => ("", s),
    };
    let known = [
        "",
        "tag",
        "path",
        "file",
        "source",
        "resource_type",
        "fqn",
        "config.materialized",
        "test_type",
        "test_name",
    ];
    if !known.contains(&method) {
        return Err(Problem::new(
            Code::Selection,
            format!("unknown selector method `{method}` in `{raw}`"),
        )
        .help("use a name, a glob, `tag:`, `path:`, `source:`, `resource_type:`, `test_type:`, `test_name:` or `fqn:`"));
    }
    let base: BTreeSet<usize> = (0..graph.nodes.len())
        .filter(|&i| matches(graph, i, method, value))
        .collect();
    let mut out = base.clone();
    if let Some(depth) = up {
        out.extend(closure(graph, &base, true, depth));
    }
    if let Some(depth) = down {
        out.extend(closure(graph, &base, false, depth));
    }
    if at {
        let below = closure(graph, &base, false, None);
        out.extend(below.iter().copied());
        out.extend(closure(graph, &below, true, None));
    }
    Ok(out)
}

fn expression(graph: &Graph, values: &[String]) -> Result<(BTreeSet<usize>, Vec<String>), Problem> {
    let mut union = BTreeSet::new();
    let mut empty = Vec::new();
    for value in values.iter().flat_map(|v| v.split_whitespace()) {
        let mut parts = value.split(',');
        let mut acc = term(graph, parts.next().unwrap_or_default())?;
        for p in parts {
            let other = term(graph, p)?;
            acc = acc.intersection(&other).copied().collect();
        }
        if acc.is_empty() {
            empty.push(value.to_string());
        }
        union.extend(acc);
    }
    Ok((union, empty))
}

/// The selected nodes of the given resource types, in topological order, and the selector
/// values that matched nothing.
pub fn select(
    graph: &Graph,
    select: &[String],
    exclude: &[String],
    types: &[ResourceType],
) -> Result<(Vec<usize>, Vec<String>), Problem> {
    let (mut chosen, mut empty) = if select.is_empty() {
        ((0..graph.nodes.len()).collect(), Vec::new())
    } else {
        expression(graph, select)?
    };
    let mut excluded = BTreeSet::new();
    if !exclude.is_empty() {
        (excluded, _) = expression(graph, exclude)?;
        chosen = chosen.difference(&excluded).copied().collect();
    }
    // Eager indirect selection: a test comes along with any node it tests.
    let tests: Vec<usize> = (0..graph.nodes.len())
        .filter(|&i| {
            graph.nodes[i].resource_type == ResourceType::Test
                && !chosen.contains(&i)
                && !excluded.contains(&i)
                && graph.parents(i).iter().any(|p| chosen.contains(p))
        })
        .collect();
    chosen.extend(tests);
    empty.sort();
    let ordered = graph
        .order()
        .iter()
        .copied()
        .filter(|i| chosen.contains(i) && types.contains(&graph.nodes[*i].resource_type))
        .collect();
    Ok((ordered, empty))
}
