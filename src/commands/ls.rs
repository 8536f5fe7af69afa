//! `xform ls`: the selected nodes, as selectors, names, paths or JSON lines.

use super::{EXIT_OK, EXIT_USAGE, Session, report};
use crate::cli::LsArgs;
use crate::compile::parse;
use crate::diagnostics::{Code, Problem};
use crate::graph::ResourceType;

/// The keys of a node that `ls --output json` prints by default, as dbt's.
const JSON_KEYS: &[&str] = &[
    "alias",
    "config",
    "depends_on",
    "name",
    "original_file_path",
    "package_name",
    "resource_type",
    "source_name",
    "tags",
    "unique_id",
];

pub fn ls(s: &Session, args: &LsArgs) -> i32 {
    let (renderer, graph) = match parse(&s.project, &s.target, &s.run) {
        Ok(g) => g,
        Err(p) => {
            report(&p);
            return EXIT_USAGE;
        }
    };
    let mut types = Vec::new();
    for t in &args.resource_type {
        match t.as_str() {
            "model" => types.push(ResourceType::Model),
            "seed" => types.push(ResourceType::Seed),
            "snapshot" => types.push(ResourceType::Snapshot),
            "source" => types.push(ResourceType::Source),
            "test" => types.push(ResourceType::Test),
            "unit_test" => types.push(ResourceType::UnitTest),
            "analysis" => types.push(ResourceType::Analysis),
            other => {
                report(&[Problem::new(
                    Code::Selection,
                    format!("unknown resource type `{other}`"),
                )
                .help("use model, seed, snapshot, source, test, unit_test or analysis")]);
                return EXIT_USAGE;
            }
        }
    }
    if types.is_empty() {
        types = vec![
            ResourceType::Model,
            ResourceType::Seed,
            ResourceType::Snapshot,
            ResourceType::Source,
            ResourceType::Test,
            ResourceType::UnitTest,
            ResourceType::Analysis,
        ];
    }
    let crate::select::Selection {
        nodes: chosen,
        unmatched: empty,
    } = match super::choose(s, &graph, &args.common, &types) {
        Ok(c) => c,
        Err(p) => {
            report(&[p]);
            return EXIT_USAGE;
        }
    };
    for e in &empty {
        eprintln!("warning: the selector `{e}` matches no node");
    }
    // dbt's keys of a node for `--output json`, unless `--output-keys` names others.
    let keys: Vec<String> = if args.output_keys.is_empty() {
        JSON_KEYS.iter().map(ToString::to_string).collect()
    } else {
        args.output_keys
            .iter()
            .flat_map(|k| k.split([' ', ',']))
            .filter(|k| !k.is_empty())
            .map(String::from)
            .collect()
    };
    let mut lines: Vec<String> = chosen
        .iter()
        .map(|&i| {
            let n = &graph.nodes[i];
            match args.output.as_str() {
                "name" => n.name.clone(),
                "path" => n.path.clone(),
                "json" => {
                    let entry = crate::artifacts::manifest_entry(n, &s.project.target_path);
                    let picked: serde_json::Map<String, serde_json::Value> = entry
                        .as_object()
                        .into_iter()
                        .flatten()
                        .filter(|(k, _)| keys.iter().any(|w| w == *k))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    serde_json::Value::Object(picked).to_string()
                }
                _ => match n.resource_type {
                    ResourceType::Source => format!("source:{}", n.fqn.join(".")),
                    _ => n.fqn.join("."),
                },
            }
        })
        .collect();
    if args.output != "json" {
        lines.sort();
    }
    let mut out = lines.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    print!("{out}");
    std::mem::forget(renderer);
    // The process ends next; freeing the graph node by node would only delay the exit.
    std::mem::forget(graph);
    EXIT_OK
}
