//! `xform run-operation MACRO --args '{...}'`: call a macro with `execute` true on a connection
//! to the target, for the SQL it runs (`run_query`, `statement`), as dbt's run-operation does.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{EXIT_FAILED, EXIT_OK, EXIT_USAGE, Session, report};
use crate::cli::RunOperationArgs;
use crate::compile::{Compiler, parse};
use crate::diagnostics::{Code, Problem, SourceFile};
use crate::project::{parse_yaml, yaml_to_json};

pub fn run_operation(s: &Session, args: &RunOperationArgs) -> i32 {
    let name = &args.macro_name;
    if name.is_empty()
        || !name.split('.').all(|part| {
            !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
    {
        report(&[
            Problem::new(Code::ProjectConfig, format!("`{name}` is not a macro name"))
                .help("name a macro as `name` or `package.name`"),
        ]);
        return EXIT_USAGE;
    }
    let kwargs = match macro_args(args.args.as_deref()) {
        Ok(k) => k,
        Err(p) => {
            report(&[p]);
            return EXIT_USAGE;
        }
    };
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
    let compiler = Compiler::new(&graph, &renderer, crate::dialect::of(&s.target));
    let introspector: Arc<dyn crate::render::Introspect> = worker;
    match compiler.run_operation(name, kwargs, Some(&introspector)) {
        Ok(_) => {
            println!("Ran macro `{name}`");
            EXIT_OK
        }
        Err(p) => {
            report(&[p]);
            EXIT_FAILED
        }
    }
}

/// `--args` as keyword arguments.
fn macro_args(text: Option<&str>) -> Result<BTreeMap<String, minijinja::Value>, Problem> {
    let Some(text) = text else {
        return Ok(BTreeMap::new());
    };
    let file = SourceFile::new("--args", text.to_string());
    match parse_yaml(&file)? {
        serde_yaml::Value::Mapping(m) => Ok(m
            .iter()
            .map(|(k, v)| {
                (
                    crate::project::config::yaml_key(k),
                    crate::render::context::to_value(yaml_to_json(v)),
                )
            })
            .collect()),
        serde_yaml::Value::Null => Ok(BTreeMap::new()),
        _ => Err(
            Problem::new(Code::ProjectConfig, "--args must be a YAML mapping")
                .help("write it as --args '{key: value}'"),
        ),
    }
}
