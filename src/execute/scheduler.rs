//! The scheduler: hands ready nodes to the workers, one at a time per worker, in topological
//! rank order; a finished node releases its children, a failed one skips them (and theirs).
//! `--fail-fast` and Ctrl-C skip everything that has not started.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use super::output::describe;
use super::{CANCELLED, Runner, data_test, unit_test};
use crate::adapter::Connection;
use crate::artifacts::{NodeResult, Status};
use crate::diagnostics::Problem;
use crate::graph::{Materialization, Node, ResourceType};

/// The scheduler's shared state.
pub(super) struct Schedule {
    pub(super) ready: BinaryHeap<Reverse<(usize, usize)>>,
    pub(super) pending: Vec<usize>,
    pub(super) blocked_by: Vec<Option<String>>,
    pub(super) results: Vec<Option<NodeResult>>,
    pub(super) problems: Vec<(usize, Problem)>,
    /// Slots being built now (names can repeat: unit tests of different models).
    pub(super) running: BTreeSet<usize>,
    pub(super) done: usize,
    pub(super) reported: usize,
    /// `--fail-fast`: the node whose failure stopped the run.
    pub(super) stopped_by: Option<String>,
}

enum Outcome {
    Built(super::node::Built),
    Test(data_test::TestOutcome),
    Unit(unit_test::UnitOutcome),
}

impl Runner<'_> {
    fn is_reportable(&self, i: usize) -> bool {
        !self.graph.nodes[i].is_ephemeral()
    }

    /// A worker's loop: take the next ready node, run it on this worker's connection, report
    /// it and release its children, until every node is done or the run is cancelled.
    pub(super) fn work(
        &self,
        state: &Mutex<Schedule>,
        cvar: &Condvar,
        worker: &Arc<dyn Connection>,
        thread: usize,
    ) {
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
            worker.working_on(&node.unique_id);
            let outcome = if node.resource_type == ResourceType::Test {
                data_test::run(
                    self.session,
                    self.graph,
                    &self.compiler,
                    self.dialect,
                    i,
                    worker,
                )
                .map(Outcome::Test)
            } else if node.resource_type == ResourceType::UnitTest {
                unit_test::run(
                    self.session,
                    self.graph,
                    &self.compiler,
                    i,
                    worker,
                    self.warehouse,
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
                response: None,
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
                Ok(Outcome::Built(super::node::Built { rows, sql })) => {
                    result.rows_affected = rows;
                    result.response = worker.response();
                    result.compiled_code = sql;
                    result.message = match rows {
                        Some(n) if node.resource_type == ResourceType::Seed => {
                            format!("INSERT {n}")
                        }
                        Some(n) if node.materialized() == Materialization::Table => {
                            format!("SELECT {n}")
                        }
                        Some(n) if node.materialized() == Materialization::Incremental => {
                            format!("{n} rows")
                        }
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
        response: None,
    }
}
