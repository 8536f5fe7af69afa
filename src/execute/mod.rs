//! Execution: runs the selected nodes of a graph on the target's warehouse in graph order,
//! with `--threads` workers, each on its own connection, and writes `run_results.json` and the
//! manifest. Nothing here knows a warehouse's SQL: plans come from `materialize`, their
//! statements from the target's `Dialect`, and only `adapter` talks to the database.
//!
//! - `scheduler.rs`: who runs when. A node starts when all its selected parents succeeded; a
//!   failure marks its descendants skipped while the rest of the graph goes on. In a build, the
//!   other children of a tested node also wait for its tests, so that a failing test (severity
//!   error) skips them too.
//! - `node.rs`: building one seed, model or snapshot (compile, plan, statements, run) and
//!   turning a database error into a diagnostic that points into the model.
//! - `microbatch.rs`: a microbatch model, one render and transaction per batch.
//! - `data_test.rs` and `unit_test.rs`: one data test, one unit test.
//! - `output.rs`: the progress bar or plain lines.
//!
//! Ctrl-C cancels running queries (rolled back by the worker), skips what had not started and
//! still writes `run_results.json`. `commands/execute.rs` turns flags into a `Request`.

mod data_test;
mod microbatch;
mod node;
mod output;
mod scheduler;
mod unit_inline;
mod unit_test;

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use crate::adapter::{self, Adapter, Interrupt};
use crate::artifacts::{NodeResult, Status, write_manifest, write_run_results};
use crate::compile::Compiler;
use crate::config::Session;
use crate::diagnostics::Problem;
use crate::dialect::Dialect;
use crate::graph::{Graph, ResourceType};
use crate::render::{Relation, Renderer};

pub use node::node_plan;
use output::Output;
use scheduler::Schedule;

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

    pub fn types(self) -> Vec<ResourceType> {
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
static ON_CANCEL: Mutex<Vec<Interrupt>> = Mutex::new(Vec::new());

fn install_ctrl_c(interrupt: Interrupt) {
    *ON_CANCEL.lock().expect("cancel lock") = vec![interrupt];
    let _ = ctrlc::set_handler(|| {
        CANCELLED.store(true, Ordering::SeqCst);
        for interrupt in ON_CANCEL.lock().expect("cancel lock").iter() {
            interrupt();
        }
    });
}

/// Let Ctrl-C interrupt these connections too (a unit test's own databases).
pub(crate) fn cancel_with(interrupt: Interrupt) {
    ON_CANCEL.lock().expect("cancel lock").push(interrupt);
}

/// Whether Ctrl-C was pressed.
pub(crate) fn cancelled() -> bool {
    CANCELLED.load(Ordering::SeqCst)
}

/// Everything the workers share during one run.
struct Runner<'a> {
    session: &'a Session,
    graph: &'a Graph,
    compiler: Compiler<'a>,
    /// How the target's warehouse spells the plans.
    dialect: &'static dyn Dialect,
    warehouse: &'a dyn Adapter,
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
    shapes: Mutex<unit_test::ShapeCache>,
}

/// What to run, from the command's flags.
pub struct Request<'a> {
    pub mode: Mode,
    /// Selected node positions, in the order the scheduler takes ties.
    pub slots: Vec<usize>,
    /// `--event-time-start` / `--event-time-end`, for microbatch models.
    pub event_time_start: Option<chrono::NaiveDateTime>,
    pub event_time_end: Option<chrono::NaiveDateTime>,
    /// `--fail-fast`.
    pub fail_fast: bool,
    /// `--defer`: points the compiler's refs of unselected nodes at the state's relations.
    /// It is given which nodes are selected and whether the warehouse has a relation.
    pub defer: Option<&'a Defer<'a>>,
    /// The run's arguments as `run_results.json` records them (`threads` is filled in here).
    pub args: serde_json::Value,
    /// Unique ids reported as `no-op` after the nodes: `build`'s saved queries, which xform
    /// (like dbt with no exports configured) has nothing to run for.
    pub no_ops: Vec<String>,
}

/// See `Request::defer`.
pub type Defer<'a> = dyn Fn(
        &mut Compiler<'_>,
        &dyn Fn(usize) -> bool,
        &dyn Fn(&Relation) -> Option<bool>,
    ) -> Result<(), Problem>
    + 'a;

/// How a run ended.
pub struct Finished {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub warned: usize,
    pub elapsed: f64,
    pub interrupted: bool,
    /// Failures and warnings, in graph order, then any artifact that could not be written.
    pub problems: Vec<Problem>,
}

/// A run that stopped before any node ran.
pub enum Stopped {
    /// The project, flags or target are wrong.
    Usage(Vec<Problem>),
    /// The warehouse refused the set-up (schemas).
    Failed(Vec<Problem>),
}

/// Run the selected nodes of `graph`. `clock` started with the command.
pub fn run(
    s: &Session,
    renderer: &Renderer,
    graph: &Graph,
    req: Request<'_>,
    clock: Instant,
) -> Result<Finished, Stopped> {
    // Unit tests bring their own databases and only read the project's catalog: a run of
    // nothing else does not create the project's database.
    let slots = req.slots;
    let only_unit_tests = !slots.is_empty()
        && slots
            .iter()
            .all(|&i| graph.nodes[i].resource_type == ResourceType::UnitTest);
    let opened = if only_unit_tests {
        adapter::open_catalog(&s.target)
    } else {
        adapter::open(&s.target, false)
    };
    let warehouse = match opened {
        Ok(w) => w,
        Err(p) => {
            return Err(Stopped::Usage(vec![p]));
        }
    };
    let threads = s.target.threads.clamp(1, slots.len().max(1));
    let mut workers = Vec::with_capacity(threads);
    for _ in 0..threads {
        match warehouse.connect() {
            Ok(w) => workers.push(w),
            Err(p) => {
                return Err(Stopped::Usage(vec![p]));
            }
        }
    }
    install_ctrl_c(warehouse.interrupter());
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
        return Err(Stopped::Failed(vec![p]));
    }

    let slot_of: HashMap<usize, usize> = slots.iter().enumerate().map(|(k, &i)| (i, k)).collect();
    let mut pending = vec![0; slots.len()];
    let mut gated: HashMap<usize, Vec<usize>> = HashMap::new();
    if req.mode == Mode::Build {
        for &t in slots
            .iter()
            .filter(|&&t| graph.nodes[t].resource_type == ResourceType::Test)
        {
            let waiting: Vec<usize> = data_test::gated_children(graph, t)
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
    if req.mode == Mode::Build {
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
    let dialect = crate::dialect::of(&s.target);
    let mut compiler = Compiler::new(graph, renderer, dialect);
    if let Some(defer) = req.defer {
        let exists = |r: &crate::render::Relation| Some(warehouse.kind_of(r).is_some());
        if let Err(p) = defer(&mut compiler, &|i| slot_of.contains_key(&i), &exists) {
            return Err(Stopped::Usage(vec![p]));
        }
    }
    if s.run.empty {
        compiler.read_empty_inputs();
    }
    let runner = Runner {
        session: s,
        graph,
        compiler,
        dialect,
        warehouse: &*warehouse,
        slots: slots.clone(),
        slot_of,
        gated,
        reportable,
        progress: Output::new(reportable),
        event_time_start: req.event_time_start,
        event_time_end: req.event_time_end,
        fail_fast: req.fail_fast,
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
    // `on-run-start`: before any node; a failure runs nothing, and the results say so.
    let mut start_results = Vec::new();
    if let Err(p) = run_project_hooks(
        &runner.compiler,
        "on-run-start",
        &s.project.run_hooks(false),
        &workers[0],
        &std::collections::BTreeMap::new(),
        &mut start_results,
    ) {
        let mut problems = vec![p];
        if let Err(p) = write_run_results(
            &s.target_dir,
            &s.project.name,
            &s.target,
            &s.run,
            &start_results,
            clock.elapsed().as_secs_f64(),
            &req.args,
        ) {
            problems.push(p);
        }
        return Err(Stopped::Failed(problems));
    }
    if reportable > 0 {
        runner.progress.line(&format!(
            "Running {reportable} nodes with {threads} threads on {}",
            warehouse.location()
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
    let mut results: Vec<NodeResult> = start_results;
    results.extend(
        schedule
            .results
            .iter()
            .zip(&slots)
            .filter(|(_, i)| !graph.nodes[**i].is_ephemeral())
            .filter_map(|(r, _)| r.clone()),
    );
    // Not after Ctrl-C or `--fail-fast` stopped the run.
    if !CANCELLED.load(Ordering::SeqCst) && schedule.stopped_by.is_none() {
        let now = chrono::Utc::now();
        results.extend(req.no_ops.iter().map(|id| NodeResult {
            unique_id: id.clone(),
            status: Status::NoOp,
            started_at: now,
            completed_at: now,
            thread: 1,
            rows_affected: None,
            message: "NO-OP".to_string(),
            compiled_code: None,
            relation_name: None,
            failures: Some(0),
            response: None,
        }));
    }
    let elapsed = clock.elapsed().as_secs_f64();
    let mut compiled = runner.compiler.compiled_bodies();
    for (r, &i) in schedule.results.iter().zip(&slots) {
        if let Some(code) = r.as_ref().and_then(|r| r.compiled_code.as_deref()) {
            compiled.insert(i, std::sync::Arc::from(code));
        }
    }
    let mut run_args = req.args;
    run_args["threads"] = serde_json::json!(threads);
    let mut ordered = schedule.problems;
    ordered.sort_by_key(|(i, _)| graph.rank(*i));
    let mut problems: Vec<Problem> = ordered.into_iter().map(|(_, p)| p).collect();
    // `on-run-end`: after the last node, with the run's `results` (its nodes') and `schemas`.
    let end_hooks = s.project.run_hooks(true);
    if !end_hooks.is_empty() && !CANCELLED.load(Ordering::SeqCst) {
        let nodes: Vec<NodeResult> = results
            .iter()
            .filter(|r| !r.unique_id.starts_with("operation."))
            .cloned()
            .collect();
        let context = run_end_context(graph, &nodes, &schemas);
        if let Err(p) = run_project_hooks(
            &runner.compiler,
            "on-run-end",
            &end_hooks,
            &workers[0],
            &context,
            &mut results,
        ) {
            problems.push(p);
        }
    }
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
        &s.project,
        &s.target,
        graph,
        &compiled,
        &s.run,
    ) {
        problems.push(p);
    }
    let count = |st: Status| results.iter().filter(|r| r.status == st).count();
    Ok(Finished {
        passed: count(Status::Success) + count(Status::Pass),
        failed: count(Status::Error) + count(Status::Fail),
        skipped: count(Status::Skipped),
        warned: count(Status::Warn),
        elapsed,
        interrupted: CANCELLED.load(Ordering::SeqCst),
        problems,
    })
}

/// Run the `on-run-start` or `on-run-end` hooks, in order, each on its own, adding each one's
/// result (`operation.<package>.<package>-on-run-start-<n>`, on thread `main`) to `results`
/// as dbt does: named by its place in the whole list, and after a failure the rest skipped.
fn run_project_hooks(
    compiler: &Compiler<'_>,
    key: &str,
    hooks: &[crate::project::ProjectHook],
    worker: &std::sync::Arc<dyn adapter::Connection>,
    context: &std::collections::BTreeMap<String, minijinja::Value>,
    results: &mut Vec<NodeResult>,
) -> Result<(), Problem> {
    let introspector: std::sync::Arc<dyn crate::render::Introspect> = worker.clone();
    let mut failed: Option<Problem> = None;
    for (place, hook) in hooks.iter().enumerate() {
        let name = format!("{}.{key}.{place}", hook.package);
        let started_at = chrono::Utc::now();
        let mut entry = NodeResult {
            unique_id: hook.unique_id(key),
            status: Status::Skipped,
            started_at,
            completed_at: started_at,
            thread: crate::artifacts::MAIN_THREAD,
            rows_affected: None,
            message: format!("{name} skipped"),
            compiled_code: None,
            relation_name: None,
            failures: Some(1),
            response: None,
        };
        if failed.is_none() {
            let outcome = compiler
                .run_hook(key, hook, Some(&introspector), context)
                .and_then(|rendered| {
                    let statement = crate::dialect::Statement::new(
                        crate::dialect::StatementKind::Hook,
                        rendered.sql.clone(),
                    );
                    worker
                        .run(std::slice::from_ref(&statement))
                        .map(|_| rendered.sql.clone())
                        .map_err(|e| {
                            node::hook_failed(
                                &rendered,
                                &e,
                                &format!(
                                    "fix it under `{key}:` in the project file of `{}`",
                                    hook.package
                                ),
                            )
                        })
                });
            entry.completed_at = chrono::Utc::now();
            match outcome {
                Ok(sql) => {
                    entry.status = Status::Success;
                    entry.message = format!("{name} passed");
                    entry.compiled_code = Some(sql);
                    entry.failures = Some(0);
                }
                Err(p) => {
                    entry.status = Status::Error;
                    entry.message = format!("{name} failed, error:\n {}", p.message);
                    failed = Some(p);
                }
            }
        }
        results.push(entry);
    }
    failed.map_or(Ok(()), Err)
}

/// What an `on-run-end` hook sees: `results` (each node's `status`, `message`,
/// `execution_time` and `node` with its `unique_id`, `name`, `resource_type`), `schemas` and
/// `database_schemas` (where the run built).
fn run_end_context(
    graph: &Graph,
    results: &[NodeResult],
    schemas: &[(Option<String>, String)],
) -> std::collections::BTreeMap<String, minijinja::Value> {
    let by_id: HashMap<&str, &crate::graph::Node> = graph
        .nodes
        .iter()
        .map(|n| (n.unique_id.as_str(), n))
        .collect();
    let results: Vec<serde_json::Value> = results
        .iter()
        .map(|r| {
            let node = by_id.get(r.unique_id.as_str());
            serde_json::json!({
                "status": r.status.as_str(),
                "message": r.message,
                "execution_time": (r.completed_at - r.started_at).num_microseconds().unwrap_or(0) as f64 / 1e6,
                "unique_id": r.unique_id,
                "node": {
                    "unique_id": r.unique_id,
                    "name": node.map(|n| n.name.clone()),
                    "resource_type": node.map(|n| n.resource_type.as_str()),
                    "relation_name": r.relation_name,
                },
            })
        })
        .collect();
    let names: Vec<&str> = schemas.iter().map(|(_, s)| s.as_str()).collect();
    let pairs: Vec<Vec<Option<&str>>> = schemas
        .iter()
        .map(|(d, s)| vec![d.as_deref(), Some(s.as_str())])
        .collect();
    let to = crate::render::context::to_value;
    [
        ("results", to(&serde_json::json!(results))),
        ("schemas", to(&serde_json::json!(names))),
        ("database_schemas", to(&serde_json::json!(pairs))),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}
