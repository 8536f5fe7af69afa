//! `xform run-operation MACRO --args '{...}'`: call a macro with `execute` true on a connection
//! to the target, for the SQL it runs (`run_query`, `statement`), as dbt's run-operation does.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{EXIT_FAILED, EXIT_OK, EXIT_USAGE, Session, report};
use crate::artifacts::{NodeResult, Status, write_run_results};
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
    let started_at = chrono::Utc::now();
    let outcome = compiler.run_operation(name, kwargs, Some(&introspector));
    // `run_results.json` with the macro's one result, as dbt writes it.
    let package = renderer
        .macro_package(name)
        .unwrap_or_else(|| s.project.name.clone());
    let bare = name.rsplit('.').next().unwrap_or(name);
    let result = NodeResult {
        unique_id: format!("macro.{package}.{bare}"),
        status: if outcome.is_ok() {
            Status::Success
        } else {
            Status::Error
        },
        started_at,
        completed_at: chrono::Utc::now(),
        thread: crate::artifacts::OPERATION_THREAD,
        rows_affected: None,
        message: match &outcome {
            Ok(_) => String::new(),
            Err(p) => p.message.clone(),
        },
        compiled_code: None,
        relation_name: None,
        failures: Some(i64::from(outcome.is_err())),
        response: None,
    };
    let written = write_run_results(
        &s.target_dir,
        &s.project.name,
        &s.target,
        &s.run,
        &[result],
        (chrono::Utc::now() - started_at)
            .num_microseconds()
            .unwrap_or(0) as f64
            / 1e6,
        &serde_json::json!({
            "which": "run-operation",
            "macro": name,
            "args": args.args,
            "target": s.target.name,
        }),
    );
    let mut problems = Vec::new();
    if let Err(p) = written {
        problems.push(p);
    }
    match outcome {
        Ok(_) => {
            report(&problems);
            println!("Ran macro `{name}`");
            if problems.is_empty() {
                EXIT_OK
            } else {
                EXIT_FAILED
            }
        }
        Err(p) => {
            problems.insert(0, p);
            report(&problems);
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
