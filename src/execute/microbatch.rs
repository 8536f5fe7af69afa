//! A microbatch model: one render, plan and transaction per batch, in order. A failed batch is
//! reported with its window while the other batches still land; the node then fails with one
//! problem naming every failed batch.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::node::{Built, Live};
use super::node::{trace, with_hooks};
use super::{CANCELLED, Runner};
use crate::adapter::Connection;
use crate::artifacts::{sql_path, write_file};
use crate::compile::RenderedHook;
use crate::diagnostics::{Code, Problem};
use crate::dialect::{Statement, lower, script};
use crate::materialize::hooks::When;
use crate::materialize::{Columns, Kind, incremental, microbatch, plan};
use crate::render::Introspect;

/// What one batch wrote: its rows, its compiled SQL and the statements run, as text.
struct Batch {
    rows: usize,
    sql: String,
    statements: String,
}

impl Runner<'_> {
    /// Build a microbatch model: one render and one transaction per batch. A failed batch is
    /// reported with its window and the other batches still land; the node then fails with a
    /// problem naming every failed batch.
    pub(super) fn build_microbatch(
        &self,
        i: usize,
        worker: &Arc<dyn Connection>,
        introspector: &Arc<dyn Introspect>,
    ) -> Result<Built, Problem> {
        let node = &self.graph.nodes[i];
        incremental::Settings::of(node, incremental::AdapterRules::DUCKDB)?;
        let batching = microbatch::Settings::of(node)?;
        let exists = self.warehouse.kind_of(&node.relation) == Some(Kind::Table);
        let first_run = incremental::full_refresh(node, self.session.run.full_refresh) || !exists;
        let end = self
            .event_time_end
            .unwrap_or_else(|| self.session.run.started_at.naive_utc());
        let windows = batching.batches(first_run, self.event_time_start, end);
        if windows.is_empty() {
            // Nothing to run is almost always a mistake in `begin` or the flags: say so.
            self.progress.line(&format!(
                "warning: microbatch model `{}` has no batch to run: the start ({}) is not before the end ({})",
                node.name,
                microbatch::Window::text(
                    self.event_time_start
                        .unwrap_or(batching.begin)
                ),
                microbatch::Window::text(end)
            ));
        }
        let project = node.package();
        let compiled_path = sql_path(&self.session.target_dir, "compiled", project, &node.path);
        let run_path = sql_path(&self.session.target_dir, "run", project, &node.path);
        // The table is (re)built whole by the first batch that succeeds on a first run.
        let mut create = first_run;
        let mut rows = 0;
        let mut last_sql = None;
        let mut run_sql = String::new();
        let mut failed: Vec<(microbatch::Window, Problem)> = Vec::new();
        // As dbt runs them for a microbatch model: the pre-hooks with the first batch, the
        // post-hooks with the last.
        let pre = self
            .compiler
            .hooks(i, When::Pre, Some(introspector), !first_run)?;
        let post = self
            .compiler
            .hooks(i, When::Post, Some(introspector), !first_run)?;
        for (n, window) in windows.iter().enumerate() {
            if CANCELLED.load(Ordering::SeqCst) {
                return Err(Problem::new(
                    Code::Interrupted,
                    format!("model `{}` was cancelled", node.name),
                )
                .help(format!(
                    "the batches before {} were written; the rest were not run",
                    window.label()
                )));
            }
            let clock = Instant::now();
            // The compiled file follows the batches until one fails: it then keeps the failed
            // batch's SQL, which the first related problem points into.
            let outcome = self.build_batch(
                i,
                worker,
                introspector,
                *window,
                create,
                failed.is_empty().then_some(compiled_path.as_path()),
                (
                    if n == 0 { &pre[..] } else { &[] },
                    if n + 1 == windows.len() {
                        &post[..]
                    } else {
                        &[]
                    },
                ),
            );
            let (word, extra) = match &outcome {
                Ok(Batch {
                    rows: r,
                    sql,
                    statements,
                }) => {
                    rows += r;
                    create = false;
                    last_sql = Some(sql.clone());
                    let _ = writeln!(run_sql, "-- batch {}\n{statements}", window.label());
                    ("OK", format!(" {r} rows"))
                }
                Err(_) => ("ERROR", String::new()),
            };
            self.progress.line(&format!(
                "        batch {} of {} {word:<5} {} {}{extra} ({:.2} s)",
                n + 1,
                windows.len(),
                node.name,
                window.label(),
                clock.elapsed().as_secs_f64()
            ));
            if let Err(p) = outcome {
                if p.code == Code::Interrupted {
                    return Err(p);
                }
                failed.push((*window, p));
            }
        }
        if run_sql.is_empty() {
            run_sql.push('\n');
        }
        write_file(&run_path, run_sql.as_bytes())?;
        if failed.is_empty() {
            return Ok(Built {
                rows: Some(rows),
                sql: last_sql,
            });
        }
        let labels: Vec<String> = failed.iter().map(|(w, _)| w.label()).collect();
        let landed = windows.len() - failed.len();
        let mut p = Problem::new(
            Code::BatchFailed,
            format!(
                "microbatch model `{}`: {} of {} batches failed: {}",
                node.name,
                failed.len(),
                windows.len(),
                labels.join(", ")
            ),
        )
        .help(format!(
            "the other {landed} batches were written (a partial success); fix the cause and rebuild the failed windows with --event-time-start/--event-time-end"
        ))
        .related(failed.into_iter().map(|(_, p)| p).collect());
        if let Some(file) = &node.file {
            p = p.at(file, 0, 0, "in this model");
        }
        Err(p)
    }

    /// One batch of a microbatch model: render it for `window`, then build the table from it
    /// (`create`) or delete the window and insert, in one transaction. Returns the rows
    /// written, the compiled SQL and the statements run.
    #[allow(
        clippy::too_many_arguments,
        reason = "the batch's window, whether it creates the table, and its hooks"
    )]
    fn build_batch(
        &self,
        i: usize,
        worker: &Arc<dyn Connection>,
        introspector: &Arc<dyn Introspect>,
        window: microbatch::Window,
        create: bool,
        compiled_path: Option<&std::path::Path>,
        (pre, post): (&[RenderedHook], &[RenderedHook]),
    ) -> Result<Batch, Problem> {
        let node = &self.graph.nodes[i];
        let batching = microbatch::Settings::of(node)?;
        let sql = self
            .compiler
            .compiled_batch(
                i,
                Some(introspector),
                !create,
                window,
                &window.id(batching.batch_size),
            )
            .map_err(|p| in_batch(p, window))?;
        if let Some(path) = compiled_path {
            write_file(path, sql.as_bytes())?;
        }
        let plan = if create {
            plan(node, &sql, self.warehouse)?
        } else {
            let db_problem = |describe: &Statement, e: &crate::adapter::DbError| {
                in_batch(
                    self.db_problem(node, &sql, std::slice::from_ref(describe), e),
                    window,
                )
            };
            let live = Live {
                worker: &**worker,
                dialect: self.dialect,
                db_problem: &db_problem,
            };
            let new = live.of_query(&sql)?;
            let table = live.of_relation(&node.relation)?;
            incremental::plan(node, &sql, self.warehouse, &table, &new, Some(&window))?
        };
        let statements = lower(self.dialect, &plan.steps).statements;
        let (all, placed) = with_hooks(&statements, pre, post);
        let text = script(&all);
        match worker.run(&all) {
            Ok(rows) => {
                self.warehouse.record(&node.relation, plan.result);
                Ok(Batch {
                    rows: rows.unwrap_or(0),
                    sql,
                    statements: text,
                })
            }
            Err(e) => Err(in_batch(
                match trace(node, &placed, (pre, post), e) {
                    Err(hook) => hook,
                    Ok(e) => self.db_problem(node, &sql, &statements, &e),
                },
                window,
            )),
        }
    }
}

/// A problem of one microbatch batch: its message names the batch's window.
fn in_batch(mut p: Problem, window: microbatch::Window) -> Problem {
    p.message = format!("batch {}: {}", window.label(), p.message);
    p
}
