//! `xform run`, `seed`, `snapshot`, `test` and `build`: execute the selected nodes on DuckDB in
//! graph order with `--threads` workers, each on its own connection.
//!
//! A node starts when all its selected parents succeeded; a failure marks its descendants
//! skipped while the rest of the graph goes on. In a build, the other children of a tested node
//! also wait for its tests, so that a failing test (severity error) skips them too. Ctrl-C
//! cancels running queries (rolled back by the worker), skips what had not started and still
//! writes `run_results.json`.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

use super::{EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, Session, report};
use crate::adapter::{DbError, Warehouse, Worker, error_line};
use crate::artifacts::{
    NodeResult, Status, sql_path, write_file, write_manifest, write_run_results,
};
use crate::cli::CommonArgs;
use crate::compile::{Compiler, parse};
use crate::diagnostics::{Code, Problem};
use crate::dialect::duckdb::DUPLICATE_KEY_MARKER;
use crate::dialect::duckdb::DuckDb;
use crate::dialect::{Dialect, Statement};
use crate::graph::{Graph, Node, ResourceType};
use crate::materialize::{Existing, Kind, Step, incremental, microbatch, plan, snapshot};
use crate::render::{Introspect, spans};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Run,
    Seed,
    Snapshot,
    Build,
    Test,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Run => "run",
            Mode::Seed => "seed",
            Mode::Snapshot => "snapshot",
            Mode::Build => "build",
            Mode::Test => "test",
        }
    }

    fn types(self) -> Vec<ResourceType> {
        match self {
            Mode::Run => vec![ResourceType::Model],
            Mode::Seed => vec![ResourceType::Seed],
            Mode::Snapshot => vec![ResourceType::Snapshot],
            Mode::Build => vec![
                ResourceType::Seed,
                ResourceType::Snapshot,
                ResourceType::Model,
                ResourceType::Test,
                ResourceType::UnitTest,
            ],
            Mode::Test => vec![ResourceType::Test, ResourceType::UnitTest],
        }
    }
}

static CANCELLED: AtomicBool = AtomicBool::new(false);
static ON_CANCEL: Mutex<Vec<Arc<duckdb::InterruptHandle>>> = Mutex::new(Vec::new());

fn install_ctrl_c(handles: Vec<Arc<duckdb::InterruptHandle>>) {
    *ON_CANCEL.lock().expect("cancel lock") = handles;
    let _ = ctrlc::set_handler(|| {
        CANCELLED.store(true, Ordering::SeqCst);
        for h in ON_CANCEL.lock().expect("cancel lock").iter() {
            h.interrupt();
        }
    });
}

/// Let Ctrl-C interrupt these connections too (a unit test's own databases).
pub(super) fn cancel_with(handles: Vec<Arc<duckdb::InterruptHandle>>) {
    ON_CANCEL.lock().expect("cancel lock").extend(handles);
}

/// Whether Ctrl-C was pressed.
pub(super) fn cancelled() -> bool {
    CANCELLED.load(Ordering::SeqCst)
}

/// The scheduler's shared state.
struct Schedule {
    ready: BinaryHeap<Reverse<(usize, usize)>>,
    pending: Vec<usize>,
    blocked_by: Vec<Option<String>>,
    results: Vec<Option<NodeResult>>,
    problems: Vec<(usize, Problem)>,
    /// Slots being built now (names can repeat: unit tests of different models).
    running: BTreeSet<usize>,
    done: usize,
    reported: usize,
    /// `--fail-fast`: the node whose failure stopped the run.
    stopped_by: Option<String>,
}

struct Runner<'a> {
    session: &'a Session,
    graph: &'a Graph,
    compiler: Compiler<'a>,
    warehouse: &'a Warehouse,
    /// Selected node positions; a slot is an index into this.
    slots: Vec<usize>,
    slot_of: HashMap<usize, usize>,
    /// Build only: for a test, the selected nodes that wait for it besides its children.
    gated: HashMap<usize, Vec<usize>>,
    reportable: usize,
    progress: Output,
    /// `--event-time-start` / `--event-time-end`, for microbatch models.
    event_time_start: Option<chrono::NaiveDateTime>,
    event_time_end: Option<chrono::NaiveDateTime>,
    /// `--fail-fast`: the first failure stops the run.
    fail_fast: bool,
    /// Column lists of unit-test inputs, learnt once per run.
    shapes: Mutex<super::unit_test::ShapeCache>,
}

/// Where per-node lines go: a progress bar on a terminal, plain lines otherwise.
struct Output {
    bar: Option<ProgressBar>,
}

impl Output {
    fn new(total: usize) -> Self {
        if std::io::stderr().is_terminal() && total > 0 {
            let bar = ProgressBar::new(total as u64);
            bar.set_style(
                ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            Output { bar: Some(bar) }
        } else {
            Output { bar: None }
        }
    }

    fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => println!("{text}"),
        }
    }

    fn running(&self, running: &[&str], done: usize) {
        if let Some(bar) = &self.bar {
            bar.set_position(done as u64);
            let names: Vec<&str> = running.iter().copied().take(4).collect();
            bar.set_message(format!("running: {}", names.join(", ")));
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn describe(node: &Node) -> String {
    match node.resource_type {
        ResourceType::Seed => format!("seed {}", node.relation),
        ResourceType::Test => format!("test {}", node.name),
        ResourceType::UnitTest => format!(
            "unit test {}.{}",
            node.unit.as_ref().map_or("", |u| u.model.as_str()),
            node.name
        ),
        _ => format!("{} {}", node.materialized(), node.relation),
    }
}

impl Runner<'_> {
    fn is_reportable(&self, i: usize) -> bool {
        !self.graph.nodes[i].is_ephemeral()
    }

    /// Build one node on a worker's connection.
    fn build(
        &self,
        i: usize,
        worker: &Arc<Worker>,
    ) -> Result<(Option<usize>, Option<String>), Problem> {
        let node = &self.graph.nodes[i];
        let introspector: Arc<dyn Introspect> = worker.clone();
        if node.resource_type == ResourceType::Model && microbatch::is_microbatch(node) {
            return self.build_microbatch(i, worker, &introspector);
        }
        // `is_incremental()`: an incremental model whose table exists, outside a full refresh.
        let incremental = node.resource_type == ResourceType::Model
            && node.materialized() == "incremental"
            && !incremental::full_refresh(node, self.session.run.full_refresh)
            && self.warehouse.kind_of(&node.relation) == Some(Kind::Table);
        let has_sql = matches!(
            node.resource_type,
            ResourceType::Model | ResourceType::Snapshot
        );
        let sql = if has_sql {
            self.compiler
                .compiled(i, Some(&introspector), incremental)?
                .to_string()
        } else {
            String::new()
        };
        let project = &self.session.project.name;
        // A file may hold several snapshots (or be YAML): each gets `<folder>/<name>.sql`.
        let artifact = if node.resource_type == ResourceType::Snapshot {
            match node.path.rsplit_once('/') {
                Some((dir, _)) => format!("{dir}/{}.sql", node.name),
                None => format!("{}.sql", node.name),
            }
        } else {
            node.path.clone()
        };
        if has_sql {
            write_file(
                &sql_path(&self.session.target_dir, "compiled", project, &artifact),
                sql.as_bytes(),
            )?;
        }
        if node.is_ephemeral() {
            return Ok((None, Some(sql)));
        }
        let plan = node_plan(
            node,
            &sql,
            self.warehouse,
            worker,
            incremental,
            &|stmt, e| self.db_problem(node, &sql, std::slice::from_ref(stmt), e),
        )?;
        let statements: Vec<Statement> = plan.steps.iter().map(|s| DuckDb.statement(s)).collect();
        let mut run_sql: String = statements
            .iter()
            .map(|s| format!("{};\n", s.sql))
            .collect::<Vec<_>>()
            .join("\n");
        if run_sql.is_empty() {
            run_sql.push('\n');
        }
        let run_path = sql_path(&self.session.target_dir, "run", project, &artifact);
        write_file(&run_path, run_sql.as_bytes())?;
        match worker.run(&statements) {
            Ok(rows) => {
                self.warehouse.record(&node.relation, plan.result);
                Ok((Some(rows), has_sql.then_some(sql)))
            }
            Err(e) => Err(match plan.steps.get(e.statement) {
                Some(Step::AssertUniqueKey { key, .. }) => duplicate_key_problem(node, key, &e),
                _ => self.db_problem(node, &sql, &statements, &e),
            }),
        }
    }

    /// Build a microbatch model: one render and one transaction per batch. A failed batch is
    /// reported with its window and the other batches still land; the node then fails with a
    /// problem naming every failed batch.
    fn build_microbatch(
        &self,
        i: usize,
        worker: &Arc<Worker>,
        introspector: &Arc<dyn Introspect>,
    ) -> Result<(Option<usize>, Option<String>), Problem> {
        let node = &self.graph.nodes[i];
        incremental::Settings::of(node)?;
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
        let project = &self.session.project.name;
        let compiled_path = sql_path(&self.session.target_dir, "compiled", project, &node.path);
        let run_path = sql_path(&self.session.target_dir, "run", project, &node.path);
        // The table is (re)built whole by the first batch that succeeds on a first run.
        let mut create = first_run;
        let mut rows = 0;
        let mut last_sql = None;
        let mut run_sql = String::new();
        let mut failed: Vec<(microbatch::Window, Problem)> = Vec::new();
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
            );
            let (word, extra) = match &outcome {
                Ok((r, sql, statements)) => {
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
            return Ok((Some(rows), last_sql));
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
    fn build_batch(
        &self,
        i: usize,
        worker: &Arc<Worker>,
        introspector: &Arc<dyn Introspect>,
        window: microbatch::Window,
        create: bool,
        compiled_path: Option<&std::path::Path>,
    ) -> Result<(usize, String, String), Problem> {
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
            let describe = DuckDb.describe_query(&sql);
            let new = worker.describe(&describe).map_err(|e| {
                in_batch(
                    self.db_problem(node, &sql, std::slice::from_ref(&describe), &e),
                    window,
                )
            })?;
            let table = table_columns(worker, node)?;
            incremental::plan(node, &sql, self.warehouse, &table, &new, Some(&window))?
        };
        let statements: Vec<Statement> = plan.steps.iter().map(|s| DuckDb.statement(s)).collect();
        let text: String = statements
            .iter()
            .map(|s| format!("{};\n", s.sql))
            .collect::<Vec<_>>()
            .join("\n");
        match worker.run(&statements) {
            Ok(rows) => {
                self.warehouse.record(&node.relation, plan.result);
                Ok((rows, sql, text))
            }
            Err(e) => Err(in_batch(
                self.db_problem(node, &sql, &statements, &e),
                window,
            )),
        }
    }

    fn db_problem(&self, node: &Node, sql: &str, statements: &[Statement], e: &DbError) -> Problem {
        if e.interrupted {
            return Problem::new(
                Code::Interrupted,
                format!(
                    "{} `{}` was cancelled",
                    node.resource_type.as_str(),
                    node.name
                ),
            )
            .help("the node's changes were rolled back");
        }
        let first = e.message.lines().next().unwrap_or(&e.message).to_string();
        let mut p = Problem::new(
            Code::Database,
            format!(
                "{} `{}` failed: {first}",
                node.resource_type.as_str(),
                node.name
            ),
        );
        let compiled_path = sql_path(
            &self.session.target_dir,
            "compiled",
            &self.session.project.name,
            &node.path,
        );
        let stmt = &statements[e.statement];
        let compiled_line = match (stmt.body_line, error_line(&e.message)) {
            (Some(body), Some(line)) if line >= body => Some(line - body + 1),
            _ => None,
        };
        let in_cte = compiled_line.and_then(|line| self.in_ephemeral(node, sql, line));
        if let Some((eph, file, local)) = in_cte {
            p = p.at_line(
                file,
                local,
                format!(
                    "DuckDB points here, in the ephemeral model `{eph}` that `{}` reads",
                    node.name
                ),
            );
        } else if let (Some(file), Some(line)) = (&node.file, compiled_line) {
            let template_line = spans::template_line(&file.text, sql, line);
            p = p.at_line(file, template_line, "DuckDB points here");
        } else if let Some(file) = &node.file {
            p = p.at(file, 0, 0, "in this model");
        }
        let location = match compiled_line {
            Some(l) => format!("{}:{l}", compiled_path.display()),
            None => compiled_path.display().to_string(),
        };
        let what = if node.resource_type == ResourceType::Seed {
            format!("check the CSV file {}", node.path)
        } else {
            format!("compiled SQL: {location}")
        };
        p.help(format!(
            "{what}\nDuckDB says: {}\nthe previous relation, if any, is unchanged",
            e.message.trim()
        ))
    }

    /// When line `line` of a node's compiled SQL is inside an injected ephemeral CTE: that
    /// model's name, its file and the line of its template.
    fn in_ephemeral<'g>(
        &'g self,
        node: &Node,
        sql: &str,
        line: usize,
    ) -> Option<(&'g str, &'g crate::diagnostics::SourceFile, usize)> {
        let i = self
            .graph
            .nodes
            .iter()
            .position(|n| n.unique_id == node.unique_id)?;
        for e in self.graph.ephemeral_ancestors(i) {
            let eph = &self.graph.nodes[e];
            let marker = format!("__dbt__cte__{} as (\n", eph.name);
            let at = sql.find(&marker)? + marker.len();
            let first = crate::diagnostics::line_of(sql, at);
            let body = self.compiler.cached_body(e)?;
            let lines = body.lines().count().max(1);
            if (first..first + lines).contains(&line) {
                let file = eph.file.as_ref()?;
                let local = spans::template_line(&file.text, &body, line - first + 1);
                return Some((eph.name.as_str(), file, local));
            }
        }
        None
    }

    fn work(&self, state: &Mutex<Schedule>, cvar: &Condvar, worker: &Arc<Worker>, thread: usize) {
        loop {
            let slot = {
                let mut s = state.lock().expect("schedule lock");
                loop {
                    if s.done == self.slots.len() {
                        return;
                    }
                    if CANCELLED.load(Ordering::SeqCst) {
                        self.cancel_rest(&mut s, "interrupted");
                        cvar.notify_all();
                        return;
                    }
                    if let Some(failed) = s.stopped_by.clone() {
                        self.cancel_rest(
                            &mut s,
                            &format!("skipped: --fail-fast stopped the run when `{failed}` failed"),
                        );
                        cvar.notify_all();
                        return;
                    }
                    if let Some(Reverse((_, slot))) = s.ready.pop() {
                        s.running.insert(slot);
                        self.show_running(&s);
                        break slot;
                    }
                    s = cvar.wait(s).expect("schedule wait");
                }
            };
            let i = self.slots[slot];
            let node = &self.graph.nodes[i];
            let started = chrono::Utc::now();
            let clock = Instant::now();
            let outcome = if node.resource_type == ResourceType::Test {
                super::test::run(self.session, self.graph, &self.compiler, i, worker)
                    .map(Outcome::Test)
            } else if node.resource_type == ResourceType::UnitTest {
                super::unit_test::run(
                    self.session,
                    self.graph,
                    &self.compiler,
                    i,
                    worker,
                    &self.shapes,
                )
                .map(Outcome::Unit)
            } else {
                self.build(i, worker).map(Outcome::Built)
            };
            let completed = chrono::Utc::now();
            let mut result = NodeResult {
                unique_id: node.unique_id.clone(),
                status: Status::Success,
                started_at: started,
                completed_at: completed,
                thread,
                rows_affected: None,
                message: String::new(),
                compiled_code: None,
                relation_name: (!node.is_ephemeral()).then(|| node.relation.to_string()),
                failures: None,
            };
            let mut problem = None;
            match outcome {
                Ok(Outcome::Test(t)) => {
                    result.status = t.status;
                    result.failures = Some(t.failures);
                    result.message = t.message;
                    result.compiled_code = Some(t.sql);
                    if !t.stored {
                        result.relation_name = None;
                    }
                    problem = t.problem;
                }
                Ok(Outcome::Unit(u)) => {
                    result.status = u.status;
                    result.failures = Some(u.failures);
                    result.message = u.message;
                    result.compiled_code = Some(u.sql);
                    result.relation_name = None;
                    problem = u.problem;
                }
                Ok(Outcome::Built((rows, sql))) => {
                    result.rows_affected = rows;
                    result.compiled_code = sql;
                    result.message = match rows {
                        Some(n) if node.resource_type == ResourceType::Seed => {
                            format!("INSERT {n}")
                        }
                        Some(n) if node.materialized() == "table" => format!("SELECT {n}"),
                        Some(n) if node.materialized() == "incremental" => format!("{n} rows"),
                        _ => "OK".to_string(),
                    };
                }
                Err(p) => {
                    result.status = Status::Error;
                    result.message.clone_from(&p.message);
                    problem = Some(p);
                }
            }
            let mut s = state.lock().expect("schedule lock");
            s.running.remove(&slot);
            if self.is_reportable(i) {
                s.reported += 1;
                let failures = result.failures.unwrap_or(0).to_string();
                let (word, extra) = match result.status {
                    Status::Success => ("OK", result.message.clone()),
                    Status::Pass => ("PASS", String::new()),
                    Status::Warn => ("WARN", failures),
                    Status::Fail => ("FAIL", failures),
                    _ => ("ERROR", String::new()),
                };
                let extra = if extra.is_empty() {
                    String::new()
                } else {
                    format!(" {extra}")
                };
                self.progress.line(&format!(
                    "{:>4} of {} {word:<5} {}{extra} ({:.2} s)",
                    s.reported,
                    self.reportable,
                    describe(node),
                    clock.elapsed().as_secs_f64()
                ));
            }
            let failed = !matches!(result.status, Status::Success | Status::Pass | Status::Warn);
            if failed && self.fail_fast && s.stopped_by.is_none() {
                s.stopped_by = Some(node.name.clone());
            }
            if let Some(p) = problem {
                s.problems.push((i, p));
            }
            s.results[slot] = Some(result);
            s.done += 1;
            self.release(&mut s, i, failed);
            self.show_running(&s);
            cvar.notify_all();
        }
    }

    /// A node finished: unlock its children, or skip them (and theirs) when it failed.
    fn release(&self, s: &mut Schedule, finished: usize, failed: bool) {
        let mut stack = vec![(finished, failed)];
        while let Some((i, failed)) = stack.pop() {
            // A unit test runs before its model: the model does not release it.
            let mut next: Vec<usize> = self
                .graph
                .children(i)
                .into_iter()
                .filter(|&c| self.graph.nodes[c].resource_type != ResourceType::UnitTest)
                .collect();
            next.extend(self.gated.get(&i).into_iter().flatten().copied());
            for c in next {
                let Some(&slot) = self.slot_of.get(&c) else {
                    continue;
                };
                if failed && s.blocked_by[slot].is_none() {
                    let name = s.blocked_by[self.slot_of[&i]]
                        .clone()
                        .unwrap_or_else(|| self.graph.nodes[i].name.clone());
                    s.blocked_by[slot] = Some(name);
                }
                s.pending[slot] -= 1;
                if s.pending[slot] > 0 {
                    continue;
                }
                if let Some(upstream) = s.blocked_by[slot].clone() {
                    let node = &self.graph.nodes[c];
                    if self.is_reportable(c) {
                        s.reported += 1;
                        self.progress.line(&format!(
                            "{:>4} of {} SKIP  {} (upstream {upstream} failed)",
                            s.reported,
                            self.reportable,
                            describe(node)
                        ));
                    }
                    let mut result = skipped(node, format!("skipped because `{upstream}` failed"));
                    if matches!(
                        node.resource_type,
                        ResourceType::Test | ResourceType::UnitTest
                    ) {
                        result.relation_name = None;
                    }
                    s.results[slot] = Some(result);
                    s.done += 1;
                    stack.push((c, true));
                } else {
                    s.ready.push(Reverse((self.graph.rank(c), slot)));
                }
            }
        }
    }

    fn show_running(&self, s: &Schedule) {
        let names: Vec<&str> = s
            .running
            .iter()
            .map(|&slot| self.graph.nodes[self.slots[slot]].name.as_str())
            .collect();
        self.progress.running(&names, s.reported);
    }

    fn cancel_rest(&self, s: &mut Schedule, why: &str) {
        for slot in 0..self.slots.len() {
            if s.results[slot].is_none() && !s.running.contains(&slot) {
                s.results[slot] = Some(skipped(
                    &self.graph.nodes[self.slots[slot]],
                    why.to_string(),
                ));
                s.done += 1;
            }
        }
        s.ready.clear();
    }
}

/// The plan that builds `node` from its compiled SQL: a snapshot's merge, an incremental
/// step on the existing table, or a (re)build. Queries the warehouse for column lists.
pub(super) fn node_plan(
    node: &Node,
    sql: &str,
    warehouse: &Warehouse,
    worker: &Worker,
    incremental: bool,
    db_problem: &dyn Fn(&Statement, &DbError) -> Problem,
) -> Result<crate::materialize::Plan, Problem> {
    if node.resource_type == ResourceType::Snapshot {
        let describe = DuckDb.describe_query(sql);
        let query = worker
            .describe(&describe)
            .map_err(|e| db_problem(&describe, &e))?;
        let table = match warehouse.kind_of(&node.relation) {
            Some(_) => Some(table_columns(worker, node)?),
            None => None,
        };
        snapshot::plan(node, sql, warehouse, table.as_deref(), &query)
    } else if incremental {
        let describe = DuckDb.describe_query(sql);
        let new = worker
            .describe(&describe)
            .map_err(|e| db_problem(&describe, &e))?;
        let table = table_columns(worker, node)?;
        incremental::plan(node, sql, warehouse, &table, &new, None)
    } else {
        plan(node, sql, warehouse)
    }
}

/// The columns of an incremental model's existing table.
fn table_columns(worker: &Worker, node: &Node) -> Result<Vec<crate::materialize::Column>, Problem> {
    worker.relation_columns(&node.relation).map_err(|e| {
        Problem::new(
            Code::Database,
            format!(
                "cannot read the columns of {}: {}",
                node.relation, e.message
            ),
        )
    })
}

/// New rows that repeat a unique key: dbt on DuckDB would let the last one win silently.
fn duplicate_key_problem(node: &Node, key: &[String], e: &DbError) -> Problem {
    let values = e
        .message
        .find(DUPLICATE_KEY_MARKER)
        .map_or(e.message.as_str(), |at| {
            &e.message[at + DUPLICATE_KEY_MARKER.len()..]
        })
        .lines()
        .next()
        .unwrap_or_default();
    let key_text = if key.len() == 1 {
        key[0].clone()
    } else {
        format!("({})", key.join(", "))
    };
    let rows = if node.resource_type == ResourceType::Snapshot {
        "the snapshot query's rows"
    } else {
        "the new rows"
    };
    let mut p = Problem::new(
        Code::DuplicateKey,
        format!(
            "{} `{}`: {rows} repeat unique_key {key_text} values: {values}",
            node.resource_type.as_str(),
            node.name
        ),
    )
    .help("each key may appear once in the new rows: deduplicate them in the query, or choose a key that is unique\nnothing was written: the table is unchanged");
    if let Some(file) = &node.file {
        p = match crate::graph::find_call(&file.text, "config", &key[0]) {
            Some((at, len)) => p.at(file, at, len, "the unique_key is set here"),
            None => p.at(file, 0, 0, "in this model"),
        };
    }
    p
}

/// A problem of one microbatch batch: its message names the batch's window.
fn in_batch(mut p: Problem, window: microbatch::Window) -> Problem {
    p.message = format!("batch {}: {}", window.label(), p.message);
    p
}

fn skipped(node: &Node, message: String) -> NodeResult {
    let now = chrono::Utc::now();
    NodeResult {
        unique_id: node.unique_id.clone(),
        status: Status::Skipped,
        started_at: now,
        completed_at: now,
        thread: 0,
        rows_affected: None,
        message,
        compiled_code: None,
        relation_name: (!node.is_ephemeral()).then(|| node.relation.to_string()),
        failures: None,
    }
}

enum Outcome {
    Built((Option<usize>, Option<String>)),
    Test(super::test::TestOutcome),
    Unit(super::unit_test::UnitOutcome),
}

pub fn execute(s: &Session, args: &CommonArgs, mode: Mode) -> i32 {
    let clock = Instant::now();
    let (renderer, graph) = match parse(&s.project, &s.target, &s.run) {
        Ok(g) => g,
        Err(p) => {
            report(&p);
            return EXIT_USAGE;
        }
    };
    let (slots, empty) = match super::choose(s, &graph, args, &mode.types()) {
        Ok(c) => c,
        Err(p) => {
            report(&[p]);
            return EXIT_USAGE;
        }
    };
    for e in &empty {
        eprintln!("warning: the selector `{e}` matches no node");
    }
    let mut times = [None, None];
    for (slot, (flag, value)) in times.iter_mut().zip([
        ("--event-time-start", &args.event_time_start),
        ("--event-time-end", &args.event_time_end),
    ]) {
        if let Some(text) = value {
            let Some(t) = microbatch::parse_time(text) else {
                report(&[Problem::new(
                    Code::ProjectConfig,
                    format!("{flag} `{text}` is not a date or timestamp"),
                )
                .help("write it as an ISO date or timestamp: 2024-01-31 or 2024-01-31T06:00:00")]);
                return EXIT_USAGE;
            };
            *slot = Some(t);
        }
    }
    let [event_time_start, event_time_end] = times;
    if let (Some(start), Some(end)) = (event_time_start, event_time_end)
        && start >= end
    {
        report(&[Problem::new(
            Code::ProjectConfig,
            "--event-time-start must be before --event-time-end",
        )]);
        return EXIT_USAGE;
    }
    // Unit tests bring their own databases and only read the project's catalog: a run of
    // nothing else does not create the project's database.
    let only_unit_tests = !slots.is_empty()
        && slots
            .iter()
            .all(|&i| graph.nodes[i].resource_type == ResourceType::UnitTest);
    let mut opened = s.target.clone();
    if only_unit_tests {
        opened.attach.clear();
        if !opened.path.exists() {
            opened.path = ":memory:".into();
        }
    }
    // Read-only then: another process may be writing to it.
    let warehouse = match Warehouse::open_mode(&opened, only_unit_tests) {
        Ok(w) => w,
        Err(p) => {
            report(&[p]);
            return EXIT_USAGE;
        }
    };
    let threads = s.target.threads.clamp(1, slots.len().max(1));
    let mut workers = Vec::with_capacity(threads);
    for _ in 0..threads {
        match warehouse.worker() {
            Ok(w) => workers.push(Arc::new(w)),
            Err(p) => {
                report(&[p]);
                return EXIT_USAGE;
            }
        }
    }
    install_ctrl_c(warehouse.interrupt_handles());
    let mut schemas: Vec<(Option<String>, String)> = slots
        .iter()
        .map(|&i| &graph.nodes[i])
        .filter(|n| {
            !n.is_ephemeral()
                && !matches!(n.resource_type, ResourceType::Test | ResourceType::UnitTest)
        })
        .map(|n| (n.relation.database.clone(), n.relation.schema.clone()))
        .collect();
    schemas.sort();
    schemas.dedup();
    if let Err(p) = warehouse.create_schemas(&schemas) {
        report(&[p]);
        return EXIT_FAILED;
    }

    let slot_of: HashMap<usize, usize> = slots.iter().enumerate().map(|(k, &i)| (i, k)).collect();
    let mut pending = vec![0; slots.len()];
    let mut gated: HashMap<usize, Vec<usize>> = HashMap::new();
    if mode == Mode::Build {
        for &t in slots
            .iter()
            .filter(|&&t| graph.nodes[t].resource_type == ResourceType::Test)
        {
            let waiting: Vec<usize> = super::test::gated_children(&graph, t)
                .into_iter()
                .filter(|c| slot_of.contains_key(c))
                .collect();
            for c in &waiting {
                pending[slot_of[c]] += 1;
            }
            gated.insert(t, waiting);
        }
    }
    // A unit test runs in its own database. In a build it waits for what its model waits for
    // (so the catalog it may read types from is complete, as in dbt), and its model waits for
    // it: a failing unit test skips the model and everything downstream.
    if mode == Mode::Build {
        for &u in slots
            .iter()
            .filter(|&&u| graph.nodes[u].resource_type == ResourceType::UnitTest)
        {
            for m in graph.parents(u) {
                let Some(&model_slot) = slot_of.get(&m) else {
                    continue;
                };
                pending[model_slot] += 1;
                gated.entry(u).or_default().push(m);
                for p in graph
                    .parents(m)
                    .into_iter()
                    .filter(|p| slot_of.contains_key(p))
                {
                    pending[slot_of[&u]] += 1;
                    gated.entry(p).or_default().push(u);
                }
            }
        }
    }
    let mut ready = BinaryHeap::new();
    for (slot, &i) in slots.iter().enumerate() {
        if graph.nodes[i].resource_type != ResourceType::UnitTest {
            pending[slot] += graph
                .parents(i)
                .iter()
                .filter(|p| slot_of.contains_key(p))
                .count();
        }
        if pending[slot] == 0 {
            ready.push(Reverse((graph.rank(i), slot)));
        }
    }
    let reportable = slots
        .iter()
        .filter(|&&i| !graph.nodes[i].is_ephemeral())
        .count();
    let mut compiler = Compiler::new(&graph, &renderer);
    if args.defer {
        let exists = |r: &crate::render::Relation| Some(warehouse.kind_of(r).is_some());
        match super::apply_defer(
            &mut compiler,
            &graph,
            &|i| slot_of.contains_key(&i),
            &exists,
            args,
        ) {
            Ok(()) => {}
            Err(p) => {
                report(&[p]);
                return EXIT_USAGE;
            }
        }
    }
    let runner = Runner {
        session: s,
        graph: &graph,
        compiler,
        warehouse: &warehouse,
        slots: slots.clone(),
        slot_of,
        gated,
        reportable,
        progress: Output::new(reportable),
        event_time_start,
        event_time_end,
        fail_fast: args.fail_fast,
        shapes: Mutex::default(),
    };
    let state = Mutex::new(Schedule {
        ready,
        pending,
        blocked_by: vec![None; slots.len()],
        results: vec![None; slots.len()],
        problems: Vec::new(),
        running: BTreeSet::new(),
        done: 0,
        reported: 0,
        stopped_by: None,
    });
    let cvar = Condvar::new();
    if reportable > 0 {
        runner.progress.line(&format!(
            "Running {reportable} nodes with {threads} threads on {}",
            opened.path.display()
        ));
    }
    std::thread::scope(|scope| {
        for (t, worker) in workers.iter().enumerate() {
            let (runner, state, cvar) = (&runner, &state, &cvar);
            scope.spawn(move || runner.work(state, cvar, worker, t + 1));
        }
    });
    runner.progress.finish();
    let schedule = state.into_inner().expect("schedule lock");
    let results: Vec<NodeResult> = schedule
        .results
        .iter()
        .zip(&slots)
        .filter(|(_, i)| !graph.nodes[**i].is_ephemeral())
        .filter_map(|(r, _)| r.clone())
        .collect();
    let elapsed = clock.elapsed().as_secs_f64();
    let mut compiled = runner.compiler.compiled_bodies();
    for (r, &i) in schedule.results.iter().zip(&slots) {
        if let Some(code) = r.as_ref().and_then(|r| r.compiled_code.as_deref()) {
            compiled.insert(i, std::sync::Arc::from(code));
        }
    }
    let run_args = serde_json::json!({
        "which": mode.name(),
        "select": args.select,
        "exclude": args.exclude,
        "threads": threads,
        "full_refresh": args.full_refresh,
        "state": args.state.as_ref().map(|p| p.display().to_string()),
        "defer": args.defer,
        "favor_state": args.favor_state,
        "event_time_start": args.event_time_start,
        "event_time_end": args.event_time_end,
        "target": s.target.name,
    });
    let mut ordered = schedule.problems;
    ordered.sort_by_key(|(i, _)| graph.rank(*i));
    let mut problems: Vec<Problem> = ordered.into_iter().map(|(_, p)| p).collect();
    if let Err(p) = write_run_results(
        &s.target_dir,
        &s.project.name,
        &s.target,
        &s.run,
        &results,
        elapsed,
        &run_args,
    ) {
        problems.push(p);
    }
    if let Err(p) = write_manifest(
        &s.target_dir,
        &s.project.target_path,
        &s.project.name,
        &s.target,
        &graph,
        &compiled,
        &s.run,
    ) {
        problems.push(p);
    }
    let count = |st: Status| results.iter().filter(|r| r.status == st).count();
    let (passed, failed, skipped, warned) = (
        count(Status::Success) + count(Status::Pass),
        count(Status::Error) + count(Status::Fail),
        count(Status::Skipped),
        count(Status::Warn),
    );
    let interrupted = CANCELLED.load(Ordering::SeqCst);
    let warned = if warned > 0 {
        format!("{warned} warned, ")
    } else {
        String::new()
    };
    let mut summary = format!(
        "Done in {elapsed:.2} s: {passed} passed, {warned}{failed} failed, {skipped} skipped"
    );
    if interrupted {
        summary.push_str(" (interrupted)");
    }
    report(&problems);
    println!("{summary}");
    if interrupted {
        EXIT_INTERRUPTED
    } else if failed > 0 || problems.iter().any(|p| !p.warning) {
        EXIT_FAILED
    } else {
        EXIT_OK
    }
}
