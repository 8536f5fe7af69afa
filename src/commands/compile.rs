//! `xform compile`: parse, build the graph, render the selected models and their data tests, and write
//! `target/compiled/` and `manifest.json`. No database is opened; introspective calls
//! (`run_query`, `adapter.get_relation`) return nothing here. Every broken model is reported in
//! one run. Compiled SQL is parsed with sqlparser; what it cannot parse is a warning only.

use std::collections::BTreeMap;

use rayon::prelude::*;
use sqlparser::dialect::DuckDbDialect;
use sqlparser::parser::Parser;

use super::{EXIT_OK, EXIT_USAGE, Session, report};
use crate::artifacts::{sql_path, write_files, write_manifest};
use crate::cli::CommonArgs;
use crate::compile::{Compiler, parse};
use crate::diagnostics::{Code, Problem};
use crate::graph::ResourceType;
use crate::graph::select::select;

pub fn compile(s: &Session, args: &CommonArgs) -> i32 {
    let (renderer, graph) = match parse(&s.project, &s.target, &s.run) {
        Ok(g) => g,
        Err(p) => {
            report(&p);
            return EXIT_USAGE;
        }
    };
    let (chosen, empty) = match select(
        &graph,
        &args.select,
        &args.exclude,
        &[ResourceType::Model, ResourceType::Test],
    ) {
        Ok(c) => c,
        Err(p) => {
            report(&[p]);
            return EXIT_USAGE;
        }
    };
    for e in &empty {
        eprintln!("warning: the selector `{e}` matches no node");
    }
    let compiler = Compiler::new(&graph, &renderer);
    let results: Vec<(usize, Result<String, Problem>)> = chosen
        .par_iter()
        .map(|&i| (i, compiler.compiled(i, None, false)))
        .collect();
    crate::timings::mark("compile pass");
    let mut problems = Vec::new();
    let mut compiled = BTreeMap::new();
    let mut warnings = Vec::new();
    for (i, r) in results {
        match r {
            Ok(sql) => {
                compiled.insert(i, sql);
            }
            Err(p) => problems.push(p),
        }
    }
    let files: Vec<(std::path::PathBuf, &[u8])> = compiled
        .iter()
        .map(|(&i, sql)| {
            let path = sql_path(
                &s.target_dir,
                "compiled",
                &s.project.name,
                &graph.nodes[i].compiled_file(),
            );
            (path, sql.as_bytes())
        })
        .collect();
    problems.extend(write_files(&files));
    crate::timings::mark("write compiled");
    // Lineage needs the SQL parsed; what sqlparser cannot read is a warning, never a failure.
    // Each model's own SQL and each ephemeral once: injected CTEs are not parsed again.
    let bodies = compiler.compiled_bodies();
    let unparsable: Vec<Problem> = bodies
        .par_iter()
        .filter_map(|(&i, sql)| {
            let node = &graph.nodes[i];
            Parser::parse_sql(&DuckDbDialect {}, sql).err().map(|e| {
                Problem::new(
                    Code::Jinja,
                    format!(
                        "the compiled SQL of `{}` could not be parsed for lineage: {e}",
                        node.name
                    ),
                )
                .help("DuckDB may still accept it; the model is compiled")
                .warning()
            })
        })
        .collect();
    warnings.extend(unparsable);
    crate::timings::mark("sql parse");
    report(&warnings);
    if let Err(p) = write_manifest(
        &s.target_dir,
        &s.project.name,
        &s.target,
        &graph,
        &compiled,
        &s.run,
    ) {
        problems.push(p);
    }
    crate::timings::mark("manifest");
    // The process ends next: freeing thousands of compiled templates and strings one by one
    // would only delay the exit.
    drop(compiler);
    let tests = compiled
        .keys()
        .filter(|&&i| graph.nodes[i].resource_type == ResourceType::Test)
        .count();
    let models = compiled.len() - tests;
    std::mem::forget(compiled);
    std::mem::forget(graph);
    std::mem::forget(renderer);
    if !problems.is_empty() {
        report(&problems);
        eprintln!(
            "{} of {} models failed to compile",
            problems.len(),
            chosen.len()
        );
        return EXIT_USAGE;
    }
    let tests = match tests {
        0 => String::new(),
        1 => " and 1 test".to_string(),
        n => format!(" and {n} tests"),
    };
    println!(
        "Compiled {models} models{tests} to {}",
        s.target_dir.join("compiled").display()
    );
    EXIT_OK
}
