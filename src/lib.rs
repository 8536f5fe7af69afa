//! xform: a fast SQL transformation compiler in the family of dbt.
//!
//! The pipeline, one module per stage: `project` (load files) → `render` (minijinja) →
//! `compile` (parse pass, graph, compile pass) → `graph` (DAG, selection) → `materialize`
//! (plans) → `dialect` (SQL) → `adapter` (DuckDB) → `artifacts`. `commands` wires them per
//! subcommand; `main.rs` only calls [`run`].

#![cfg_attr(not(feature = "duckdb"), allow(dead_code, unused_imports))]

pub(crate) mod adapter;
pub(crate) mod artifacts;
pub(crate) mod cli;
pub(crate) mod commands;
pub(crate) mod compile;
pub(crate) mod config;
pub(crate) mod deps;
pub mod diagnostics;
pub(crate) mod dialect;
pub(crate) mod docs;
pub(crate) mod env;
#[cfg(feature = "duckdb")]
pub(crate) mod execute;
pub(crate) mod graph;
pub(crate) mod materialize;
pub(crate) mod project;
pub(crate) mod relation;
pub(crate) mod render;
pub(crate) mod select;
pub(crate) mod suggest;
pub(crate) mod timings;

use std::ffi::OsString;

use clap::Parser;

/// Run xform with command-line arguments (the first is the program name); returns the exit code.
pub fn run<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    timings::init();
    match cli::Cli::try_parse_from(args) {
        Ok(cli) => commands::dispatch(cli),
        Err(e) => {
            let _ = e.print();
            if e.use_stderr() {
                commands::EXIT_USAGE
            } else {
                commands::EXIT_OK
            }
        }
    }
}
