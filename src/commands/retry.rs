//! `xform retry`: run again what errored, failed or was skipped in the last run, with that
//! run's command and arguments, from `target/run_results.json`.

use serde_json::Value as Json;

use super::execute;
use super::{EXIT_OK, EXIT_USAGE, report};
use crate::cli::CommonArgs;
use crate::config::Session;
use crate::diagnostics::{Code, Problem};
use crate::execute::Mode;

/// The selector of a node in a unique id: `model.shop.orders` → `orders`,
/// `test.shop.name.hash` → `name`, a model version `model.shop.orders.v2` → `orders.v2`.
fn name_of(unique_id: &str) -> Option<String> {
    let parts: Vec<&str> = unique_id.split('.').collect();
    match parts.as_slice() {
        ["model", _, name, version] => Some(format!("{name}.{version}")),
        ["test", _, name, _] | ["unit_test", _, _, name] | [_, _, name] => {
            Some((*name).to_string())
        }
        _ => None,
    }
}

pub fn retry(s: &mut Session, args: &CommonArgs) -> i32 {
    let path = s.target_dir.join("run_results.json");
    let results: Json = match std::fs::read(&path)
        .map_err(|e| Problem::io(&path, &e))
        .and_then(|b| {
            serde_json::from_slice(&b).map_err(|e| {
                Problem::new(
                    Code::ProjectConfig,
                    format!("`{}` is not valid JSON: {e}", path.display()),
                )
            })
        }) {
        Ok(r) => r,
        Err(p) => {
            report(&[p.help("run `xform run`, `build`, `seed`, `snapshot` or `test` first; retry reruns what it left unfinished")]);
            return EXIT_USAGE;
        }
    };
    let mode = match results["args"]["which"].as_str() {
        Some("run") => Mode::Run,
        Some("seed") => Mode::Seed,
        Some("snapshot") => Mode::Snapshot,
        Some("test") => Mode::Test,
        Some("build") => Mode::Build,
        other => {
            report(&[Problem::new(
                Code::ProjectConfig,
                format!(
                    "the last run (`{}`) cannot be retried",
                    other.unwrap_or("unknown")
                ),
            )
            .help("retry follows run, seed, snapshot, test and build")]);
            return EXIT_USAGE;
        }
    };
    let mut select: Vec<String> = results["results"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| matches!(r["status"].as_str(), Some("error" | "fail" | "skipped")))
        .filter_map(|r| r["unique_id"].as_str().and_then(name_of))
        .collect();
    select.sort();
    select.dedup();
    if select.is_empty() {
        println!(
            "Nothing to retry: the last `{}` had no errors, failures or skipped nodes",
            mode.name()
        );
        return EXIT_OK;
    }
    let previous = &results["args"];
    let retried = CommonArgs {
        project: args.project.clone(),
        select,
        exclude: Vec::new(),
        threads: args.threads.or(previous["threads"]
            .as_u64()
            .and_then(|t| usize::try_from(t).ok())),
        full_refresh: args.full_refresh || previous["full_refresh"].as_bool().unwrap_or(false),
        empty: args.empty || previous["empty"].as_bool().unwrap_or(false),
        fail_fast: args.fail_fast,
        state: args
            .state
            .clone()
            .or_else(|| previous["state"].as_str().map(std::path::PathBuf::from)),
        defer: args.defer || previous["defer"].as_bool().unwrap_or(false),
        favor_state: args.favor_state || previous["favor_state"].as_bool().unwrap_or(false),
        selector: None,
        indirect_selection: args.indirect_selection.clone(),
        event_time_start: previous["event_time_start"].as_str().map(String::from),
        event_time_end: previous["event_time_end"].as_str().map(String::from),
        dry_run: false,
    };
    println!(
        "Retrying {} nodes of the last `{}`",
        retried.select.len(),
        mode.name()
    );
    s.run.empty = retried.empty;
    execute::execute(s, &retried, mode)
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_come_from_unique_ids() {
        assert_eq!(
            super::name_of("model.shop.orders").as_deref(),
            Some("orders")
        );
        assert_eq!(
            super::name_of("model.shop.orders.v2").as_deref(),
            Some("orders.v2")
        );
        assert_eq!(
            super::name_of("test.shop.not_null_orders_id.0123456789").as_deref(),
            Some("not_null_orders_id")
        );
        assert_eq!(super::name_of("source.shop.raw.orders"), None);
        assert_eq!(
            super::name_of("unit_test.shop.orders.orders_sum").as_deref(),
            Some("orders_sum")
        );
    }
}
