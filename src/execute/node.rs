//! Building one seed, model or snapshot: compile it, plan it against what the warehouse
//! holds, lower the plan with the target's dialect, run it on a worker's connection, and turn
//! a database error into a diagnostic that points into the model's file.

use std::sync::Arc;

use super::Runner;
use crate::adapter::{Adapter, Connection, DbError, Failure};
use crate::artifacts::{sql_path, write_file};
use crate::compile::RenderedHook;
use crate::diagnostics::{Code, Problem};
use crate::dialect::{Dialect, Lowered, Statement, StatementKind, lower, script};
use crate::graph::{Materialization, Node, ResourceType};
use crate::materialize::hooks::When;
use crate::materialize::{self, Column, Columns, Kind, Plan, Step, incremental, microbatch};
use crate::render::{Introspect, Relation, spans};

/// What building a node did.
pub(super) struct Built {
    /// Rows written (`None`: nothing was run, as for an ephemeral model).
    pub(super) rows: Option<usize>,
    /// The compiled SQL, for models and snapshots.
    pub(super) sql: Option<String>,
}

impl Runner<'_> {
    /// Build one node on a worker's connection.
    pub(super) fn build(&self, i: usize, worker: &Arc<dyn Connection>) -> Result<Built, Problem> {
        let node = &self.graph.nodes[i];
        let introspector: Arc<dyn Introspect> = worker.clone();
        if node.resource_type == ResourceType::Model && microbatch::is_microbatch(node) {
            return self.build_microbatch(i, worker, &introspector);
        }
        // `is_incremental()`: an incremental model whose table exists, outside a full refresh.
        let incremental = node.resource_type == ResourceType::Model
            && node.materialized() == Materialization::Incremental
            && !incremental::full_refresh(node, self.session.run.full_refresh)
            && self.warehouse.kind_of(&node.relation) == Some(Kind::Table);
        // `--empty` reads every input as zero rows: an existing snapshot would see every row
        // deleted (and close them all with `hard_deletes`). It is left as it is.
        if self.session.run.empty
            && node.resource_type == ResourceType::Snapshot
            && self.warehouse.kind_of(&node.relation).is_some()
        {
            return Ok(Built {
                rows: Some(0),
                sql: None,
            });
        }
        if !incremental
            && node.materialized() == Materialization::Incremental
            && let Some(warning) = incremental::unknown_strategy(node)
        {
            crate::commands::report(&[warning]);
        }
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
        let project = node.package();
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
            return Ok(Built {
                rows: None,
                sql: Some(sql),
            });
        }
        let plan = node_plan(
            node,
            &sql,
            self.warehouse,
            &**worker,
            self.dialect,
            incremental,
            &|stmt, e| self.db_problem(node, &sql, std::slice::from_ref(stmt), e),
        )?;
        let Lowered {
            statements,
            step_of,
        } = lower(self.dialect, &plan.steps);
        let pre = self
            .compiler
            .hooks(i, When::Pre, Some(&introspector), incremental)?;
        // Post-hooks are rendered when they run, after the node's statements (a hook may ask
        // the database about what they built, or drop it): placed here without SQL.
        let post_hooks = crate::materialize::hooks::of(&node.config, When::Post);
        let mut post: Vec<RenderedHook> = post_hooks
            .iter()
            .enumerate()
            .map(|(k, h)| RenderedHook {
                sql: String::new(),
                transaction: h.transaction,
                what: format!("{} {} of `{}`", When::Post.key(), k + 1, node.name),
            })
            .collect();
        let (mut all, placed) = with_hooks(&statements, &pre, &post);
        for (statement, at) in all.iter_mut().zip(&placed) {
            if matches!(at, Placed::Hook(k) if *k >= pre.len()) {
                statement.kind = StatementKind::PendingHook;
            }
        }
        let mut run_sql = script(&all);
        if run_sql.is_empty() {
            run_sql.push('\n');
        }
        let run_path = sql_path(&self.session.target_dir, "run", project, &artifact);
        write_file(&run_path, run_sql.as_bytes())?;
        // The folder an `external` model writes its files into, when it is a local one.
        for step in &plan.steps {
            if let crate::materialize::Step::CopyTo {
                location,
                partition_by,
                ..
            } = step
                && !location.contains("://")
            {
                let path = std::path::Path::new(location);
                let dir = if partition_by.is_empty() {
                    path.parent()
                } else {
                    Some(path)
                };
                if let Some(dir) = dir.filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| Problem::io(dir, &e))?;
                }
            }
        }
        let mut rendered: Vec<Option<String>> = vec![None; post.len()];
        let mut render_problem: Option<Problem> = None;
        let outcome = worker.run_rendering(&all, &mut |at| {
            let Some(k) = (match placed.get(at) {
                Some(Placed::Hook(k)) => k.checked_sub(pre.len()),
                _ => None,
            }) else {
                return Err(not_rendered(at));
            };
            match self.compiler.render_node_hook(
                i,
                When::Post,
                k,
                &post_hooks[k],
                Some(&introspector),
                incremental,
            ) {
                Ok(hook) => {
                    rendered[k] = Some(hook.sql.clone());
                    Ok(hook.sql)
                }
                Err(p) => {
                    render_problem = Some(p);
                    Err(not_rendered(at))
                }
            }
        });
        // `target/run` shows the post-hooks as they ran.
        if rendered.iter().any(Option::is_some) {
            for (hook, sql) in post.iter_mut().zip(&rendered) {
                if let Some(sql) = sql {
                    hook.sql.clone_from(sql);
                }
            }
            let (all, _) = with_hooks(&statements, &pre, &post);
            write_file(&run_path, script(&all).as_bytes())?;
        }
        if let Some(p) = render_problem {
            return Err(p);
        }
        match outcome {
            Ok(rows) => {
                self.warehouse.record(&node.relation, plan.result);
                Ok(Built {
                    rows,
                    sql: has_sql.then_some(sql),
                })
            }
            Err(e) => Err(match trace(node, &placed, (&pre, &post), e) {
                Err(hook) => hook,
                Ok(e) => match (
                    &e.failure,
                    step_of.get(e.statement).map(|&s| &plan.steps[s]),
                ) {
                    (Failure::Check { values, total }, Some(Step::AssertUniqueKey { key, .. })) => {
                        duplicate_key_problem(node, key, values, *total)
                    }
                    _ => self.db_problem(node, &sql, &statements, &e),
                },
            }),
        }
    }

    /// A database error of a node's statements as a problem pointing at the model's line (or
    /// the ephemeral model's) that the database names.
    pub(super) fn db_problem(
        &self,
        node: &Node,
        sql: &str,
        statements: &[Statement],
        e: &DbError,
    ) -> Problem {
        if e.interrupted() {
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
            node.package(),
            &node.path,
        );
        let stmt = &statements[e.statement];
        let compiled_line = match (stmt.body_line, e.line) {
            (Some(body), Some(line)) if line >= body => Some(line - body + 1),
            _ => None,
        };
        let in_cte = compiled_line.and_then(|line| self.in_ephemeral(node, sql, line));
        if let Some((eph, file, local)) = in_cte {
            p = p.at_line(
                file,
                local,
                format!(
                    "{} points here, in the ephemeral model `{eph}` that `{}` reads",
                    self.dialect.name(),
                    node.name
                ),
            );
        } else if let (Some(file), Some(line)) = (&node.file, compiled_line) {
            let template_line = spans::template_line(&file.text, sql, line);
            p = p.at_line(
                file,
                template_line,
                format!("{} points here", self.dialect.name()),
            );
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
            "{what}\n{} says: {}\nthe previous relation, if any, is unchanged",
            self.dialect.name(),
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
}

/// Where a statement of a node's run comes from: the plan's statement `k`, or hook `k` (pre-hooks
/// first, then post-hooks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Placed {
    Plan(usize),
    Hook(usize),
}

/// A node's statements with its hooks where dbt runs them: pre-hooks with `transaction: false`
/// first, then up to the plan's first `begin`, the other pre-hooks, the plan up to its last
/// `commit`, the other post-hooks, the commit and what follows it, then post-hooks with
/// `transaction: false`. A plan without a transaction runs its hooks just before and after it.
pub(super) fn with_hooks(
    statements: &[Statement],
    pre: &[RenderedHook],
    post: &[RenderedHook],
) -> (Vec<Statement>, Vec<Placed>) {
    let begin = statements
        .iter()
        .position(|s| s.kind == StatementKind::Begin)
        .map_or(0, |b| b + 1);
    let commit = statements
        .iter()
        .rposition(|s| s.kind == StatementKind::Commit)
        .filter(|&c| c >= begin)
        .unwrap_or(statements.len());
    let mut out = Vec::with_capacity(statements.len() + pre.len() + post.len());
    let mut placed = Vec::with_capacity(out.capacity());
    let hooks = |out: &mut Vec<Statement>,
                 placed: &mut Vec<Placed>,
                 offset: usize,
                 list: &[RenderedHook],
                 inside: bool| {
        for (k, h) in list.iter().enumerate() {
            if h.transaction == inside {
                out.push(Statement::new(StatementKind::Hook, h.sql.clone()));
                placed.push(Placed::Hook(offset + k));
            }
        }
    };
    let plan =
        |out: &mut Vec<Statement>, placed: &mut Vec<Placed>, range: std::ops::Range<usize>| {
            for k in range {
                out.push(statements[k].clone());
                placed.push(Placed::Plan(k));
            }
        };
    hooks(&mut out, &mut placed, 0, pre, false);
    plan(&mut out, &mut placed, 0..begin);
    hooks(&mut out, &mut placed, 0, pre, true);
    plan(&mut out, &mut placed, begin..commit);
    hooks(&mut out, &mut placed, pre.len(), post, true);
    plan(&mut out, &mut placed, commit..statements.len());
    hooks(&mut out, &mut placed, pre.len(), post, false);
    (out, placed)
}

/// The error of a hook that could not be rendered (its problem is reported instead).
fn not_rendered(statement: usize) -> DbError {
    DbError {
        statement,
        message: "the hook could not be rendered".to_string(),
        failure: Failure::Other,
        line: None,
    }
}

/// A failed statement of a node's run with its hooks (`with_hooks`): the hook's problem when
/// a hook failed, else the error with the index of the plan statement that failed.
pub(super) fn trace(
    node: &Node,
    placed: &[Placed],
    (pre, post): (&[RenderedHook], &[RenderedHook]),
    e: DbError,
) -> Result<DbError, Problem> {
    match placed.get(e.statement) {
        Some(Placed::Hook(k)) => Err(hook_problem(
            node,
            pre.iter().chain(post).nth(*k).expect("a placed hook"),
            &e,
        )),
        Some(Placed::Plan(k)) => Ok(DbError { statement: *k, ..e }),
        None => Ok(e),
    }
}

/// A hook (a node's, or the project's `on-run-start` / `on-run-end`) that the database refused:
/// the database's words, the SQL that ran, and where to fix it.
pub(super) fn hook_failed(hook: &RenderedHook, e: &DbError, fix: &str) -> Problem {
    let first = e.message.lines().next().unwrap_or(&e.message);
    Problem::new(Code::Database, format!("{} failed: {first}", hook.what))
        .help(format!("the hook ran:\n{}\n{fix}", hook.sql.trim()))
}

/// A hook the database refused: the node fails (its transaction, if the hook ran inside it, is
/// rolled back).
fn hook_problem(node: &Node, hook: &RenderedHook, e: &DbError) -> Problem {
    let key = if hook.what.starts_with("pre") {
        "pre-hook"
    } else {
        "post-hook"
    };
    let rolled_back = if hook.transaction {
        "; the node's changes were rolled back"
    } else {
        ""
    };
    let mut p = hook_failed(
        hook,
        e,
        &format!("fix the hook's SQL in the node's `{key}` config{rolled_back}"),
    );
    if let Some(file) = &node.file {
        p = p.at(
            file,
            0,
            0,
            format!(
                "in the hooks of {} `{}`",
                node.resource_type.as_str(),
                node.name
            ),
        );
    }
    p
}

/// Column lists from a worker's connection: a query's by binding it with the dialect's
/// `describe`, a relation's from the catalog.
pub(super) struct Live<'a> {
    pub(super) worker: &'a dyn Connection,
    pub(super) dialect: &'a dyn Dialect,
    /// Turns a failed `describe` into the node's problem.
    pub(super) db_problem: &'a dyn Fn(&Statement, &DbError) -> Problem,
}

impl Columns for Live<'_> {
    fn of_relation(&self, relation: &Relation) -> Result<Vec<Column>, Problem> {
        self.worker.relation_columns(relation).map_err(|e| {
            Problem::new(
                Code::Database,
                format!("cannot read the columns of {relation}: {}", e.message),
            )
        })
    }

    fn of_query(&self, sql: &str) -> Result<Vec<Column>, Problem> {
        let describe = self.dialect.describe_query(sql);
        self.worker
            .describe(&describe)
            .map_err(|e| (self.db_problem)(&describe, &e))
    }

    fn declared_types(&self, types: &[String]) -> Result<Vec<String>, Problem> {
        if types.is_empty() {
            return Ok(Vec::new());
        }
        let items: Vec<String> = types
            .iter()
            .enumerate()
            .map(|(i, t)| format!("{} as c{i}", self.dialect.cast("null", t)))
            .collect();
        let describe = self
            .dialect
            .describe_query(&format!("select {}", items.join(", ")));
        let columns = self.worker.describe(&describe).map_err(|e| {
            Problem::new(
                Code::Contract,
                format!(
                    "the contract's data types ({}) are not all types the warehouse knows: {}",
                    types.join(", "),
                    e.message
                ),
            )
            .help("fix the column's `data_type:` in the model's YAML")
        })?;
        Ok(columns.into_iter().map(|c| c.data_type).collect())
    }
}

/// The plan that builds `node` from its compiled SQL, with column lists read on `worker`.
pub fn node_plan(
    node: &Node,
    sql: &str,
    warehouse: &dyn Adapter,
    worker: &dyn Connection,
    dialect: &dyn Dialect,
    incremental: bool,
    db_problem: &dyn Fn(&Statement, &DbError) -> Problem,
) -> Result<Plan, Problem> {
    let live = Live {
        worker,
        dialect,
        db_problem,
    };
    materialize::node_plan(node, sql, warehouse, &live, incremental)
}

/// New rows that repeat a unique key: dbt on DuckDB would let the last one win silently.
pub(super) fn duplicate_key_problem(
    node: &Node,
    key: &[String],
    shown: &[String],
    total: usize,
) -> Problem {
    let values = Failure::listed(shown, total);
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
        p = match crate::suggest::find_call(&file.text, "config", &key[0]) {
            Some((at, len)) => p.at(file, at, len, "the unique_key is set here"),
            None => p.at(file, 0, 0, "in this model"),
        };
    }
    p
}
