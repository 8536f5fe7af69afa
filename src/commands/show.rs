//! `xform show`: preview the rows of a node's compiled query, or of `--inline` SQL, on the
//! target's database, without building anything (dbt's `show`): a table on the terminal, or
//! JSON with `--output json`.

use std::sync::Arc;

use super::{EXIT_FAILED, EXIT_OK, EXIT_USAGE, Session, report};
use crate::cli::ShowArgs;
use crate::compile::{Compiler, parse};
use crate::diagnostics::{Code, Problem};
use crate::graph::ResourceType;
use crate::render::{Introspect, QueryTable};

pub fn show(s: &Session, args: &ShowArgs) -> i32 {
    if !matches!(args.output.as_str(), "text" | "json") {
        report(&[Problem::new(
            Code::Selection,
            format!("unknown --output `{}`", args.output),
        )
        .help("use --output text (a table) or --output json")]);
        return EXIT_USAGE;
    }
    if args.inline.is_none() && args.common.select.is_empty() && args.common.selector.is_none() {
        report(&[
            Problem::new(Code::Selection, "show needs a node or a query")
                .help("name a node with -s orders, or give SQL with --inline \"select …\""),
        ]);
        return EXIT_USAGE;
    }
    let (renderer, graph) = match parse(&s.project, &s.target, &s.run) {
        Ok(parsed) => parsed,
        Err(problems) => {
            report(&problems);
            return EXIT_USAGE;
        }
    };
    // The warehouse stays open for as long as its connection is used.
    let (_warehouse, worker) = match super::connect(s) {
        Ok(c) => c,
        Err(p) => {
            report(&[p]);
            return EXIT_USAGE;
        }
    };
    let introspector: Arc<dyn Introspect> = worker;
    let dialect = crate::dialect::of(&s.target);
    let mut compiler = Compiler::new(&graph, &renderer, dialect);
    if s.run.empty {
        compiler.read_empty_inputs();
    }
    // What to preview: (its name, its query).
    let mut previews: Vec<(String, Result<String, Problem>)> = Vec::new();
    if let Some(text) = &args.inline {
        previews.push((
            "inline_query".to_string(),
            compiler.render_inline(text, &introspector),
        ));
    } else {
        // The tests of a selected model do not come along: show previews what was named.
        let types = [
            ResourceType::Model,
            ResourceType::Seed,
            ResourceType::Snapshot,
        ];
        let selection = match super::choose(s, &graph, &args.common, &types) {
            Ok(c) => c,
            Err(p) => {
                report(&[p]);
                return EXIT_USAGE;
            }
        };
        for e in &selection.unmatched {
            eprintln!("warning: the selector `{e}` matches no node");
        }
        for &i in &selection.nodes {
            let node = &graph.nodes[i];
            let query = match node.resource_type {
                // A seed or snapshot has no query of its own: its relation's rows.
                ResourceType::Seed | ResourceType::Snapshot => {
                    Ok(dialect.select_all(&node.relation))
                }
                _ => compiler
                    .compiled(i, Some(&introspector), false)
                    .map(|sql| sql.to_string()),
            };
            previews.push((node.name.clone(), query));
        }
    }
    let mut failed = false;
    for (name, query) in previews {
        let shown = query.and_then(|sql| {
            let body = sql.trim_end().trim_end_matches(';');
            let sql = if args.limit < 0 {
                body.to_string()
            } else {
                dialect.limit(
                    &format!("select * from (\n{body}\n) as preview"),
                    args.limit,
                )
            };
            introspector.query(&sql).map_err(|e| {
                Problem::new(
                    Code::Database,
                    format!("cannot preview `{name}`: {}", e.message),
                )
                .help("fix the query; `xform compile` writes it to target/compiled/")
            })
        });
        match shown {
            Ok(table) if args.output == "json" => {
                println!("{}", crate::env::mask(&json_text(&name, &table)));
            }
            Ok(table) => {
                println!("Previewing node '{name}':");
                println!("{}", crate::env::mask(&text_table(&table)));
            }
            Err(p) => {
                report(&[p]);
                failed = true;
            }
        }
    }
    if failed { EXIT_FAILED } else { EXIT_OK }
}

/// `{"node": …, "show": [rows]}`, each row an object with the columns in the query's order
/// (a repeated name gets `_2`, `_3`…, as agate names them).
fn json_text(node: &str, table: &QueryTable) -> String {
    let quote = |s: &str| serde_json::Value::String(s.to_string()).to_string();
    let mut names: Vec<String> = Vec::with_capacity(table.columns.len());
    for c in &table.columns {
        let mut name = c.clone();
        let mut n = 1;
        while names.contains(&name) {
            n += 1;
            name = format!("{c}_{n}");
        }
        names.push(name);
    }
    let rows: Vec<String> = table
        .rows
        .iter()
        .map(|row| {
            let cells: Vec<String> = names
                .iter()
                .zip(row)
                .map(|(c, v)| format!("{}: {v}", quote(c)))
                .collect();
            format!("    {{{}}}", cells.join(", "))
        })
        .collect();
    let show = if rows.is_empty() {
        "[]".to_string()
    } else {
        format!("[\n{}\n  ]", rows.join(",\n"))
    };
    format!("{{\n  \"node\": {},\n  \"show\": {show}\n}}", quote(node))
}

/// A Markdown-style table: text left-aligned, numbers right-aligned, null as empty.
fn text_table(table: &QueryTable) -> String {
    let cell = |v: &serde_json::Value| match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let cells: Vec<Vec<String>> = table
        .rows
        .iter()
        .map(|r| r.iter().map(cell).collect())
        .collect();
    let numeric: Vec<bool> = (0..table.columns.len())
        .map(|c| {
            table
                .rows
                .iter()
                .all(|r| r.get(c).is_none_or(|v| v.is_number() || v.is_null()))
        })
        .collect();
    let widths: Vec<usize> = table
        .columns
        .iter()
        .enumerate()
        .map(|(c, name)| {
            cells
                .iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
                .max(name.chars().count())
                .max(1)
        })
        .collect();
    let pad = |text: &str, c: usize| {
        let fill = " ".repeat(widths[c].saturating_sub(text.chars().count()));
        if numeric[c] {
            format!("{fill}{text}")
        } else {
            format!("{text}{fill}")
        }
    };
    let line = |items: Vec<String>| format!("| {} |", items.join(" | "));
    let mut out = vec![
        line(
            table
                .columns
                .iter()
                .enumerate()
                .map(|(c, n)| format!("{n:<w$}", w = widths[c]))
                .collect(),
        ),
        line(widths.iter().map(|w| "-".repeat(*w)).collect()),
    ];
    for row in &cells {
        out.push(line(
            row.iter().enumerate().map(|(c, t)| pad(t, c)).collect(),
        ));
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_rows_keep_the_query_s_column_order() {
        let table = QueryTable {
            columns: vec!["b".to_string(), "a".to_string(), "b".to_string()],
            rows: vec![vec![
                serde_json::json!(1),
                serde_json::json!("x"),
                serde_json::Value::Null,
            ]],
        };
        let text = json_text("m", &table);
        assert_eq!(
            text,
            "{\n  \"node\": \"m\",\n  \"show\": [\n    {\"b\": 1, \"a\": \"x\", \"b_2\": null}\n  ]\n}"
        );
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["show"][0]["a"], "x");
    }

    #[test]
    fn numbers_align_right_and_text_left() {
        let table = QueryTable {
            columns: vec!["id".to_string(), "name".to_string()],
            rows: vec![
                vec![serde_json::json!(1), serde_json::json!("ann")],
                vec![serde_json::json!(12), serde_json::Value::Null],
            ],
        };
        assert_eq!(
            text_table(&table),
            "| id | name |\n| -- | ---- |\n|  1 | ann  |\n| 12 |      |"
        );
    }
}
