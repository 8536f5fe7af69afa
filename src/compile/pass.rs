//! The compile pass: a node's SQL, rendered with `execute` true lazily and at most once, or the
//! parse pass's text when a second render could not differ (its relations turned out as
//! predicted and it used nothing that depends on the pass). The ephemeral models it reads are
//! injected as CTEs. It touches the database only through the `Introspect` handle a caller
//! passes in.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use minijinja::value::Value;

use super::ctes::inject_ctes;
use super::nodes::{model_json, model_value};
use super::resolve::{BatchResolver, GraphResolver};
use crate::diagnostics::{Code, Problem};
use crate::dialect::Dialect;
use crate::graph::{Graph, Node, ResourceType};
use crate::materialize::microbatch::Window;
use crate::project::{GenericTestDef, TestTarget};
use crate::render::{Introspect, Relation, RenderRequest, Renderer, Resolve};

/// A hook's SQL, rendered.
#[derive(Debug, Clone)]
pub struct RenderedHook {
    pub sql: String,
    /// Inside the node's transaction.
    pub transaction: bool,
    /// `post-hook 2 of `orders``: how a diagnostic names it.
    pub what: String,
}

/// The `graph` global as dbt gives it to templates: `nodes` (models, seeds, snapshots, tests,
/// analyses) and `sources` by unique id, each as the manifest describes it.
fn graph_value(graph: &Graph) -> Value {
    let mut nodes = serde_json::Map::new();
    let mut sources = serde_json::Map::new();
    for node in &graph.nodes {
        let entry = crate::artifacts::manifest_entry(node, "target");
        match node.resource_type {
            ResourceType::Source => sources.insert(node.unique_id.clone(), entry),
            ResourceType::UnitTest => None,
            _ => nodes.insert(node.unique_id.clone(), entry),
        };
    }
    let mut value = serde_json::json!({
        "nodes": nodes,
        "sources": sources,
        "exposures": {},
        "metrics": {},
        "groups": {},
        "semantic_models": {},
        "saved_queries": {},
    });
    for (key, entries) in &graph.resources {
        value[*key] = entries.clone();
    }
    crate::render::context::to_value(value)
}

/// Compiles models on demand, each at most once, and injects ephemeral CTEs.
pub struct Compiler<'a> {
    pub graph: &'a Graph,
    renderer: &'a Renderer,
    resolver: Arc<GraphResolver>,
    bodies: Vec<OnceLock<Result<Arc<str>, Problem>>>,
    /// A generic test's config after its block's own `config()` calls, when they changed it.
    test_configs: Vec<OnceLock<crate::project::NodeConfig>>,
    /// How the target's warehouse spells a test's `where:` and a batch's window.
    dialect: &'static dyn Dialect,
}

impl<'a> Compiler<'a> {
    pub fn new(graph: &'a Graph, renderer: &'a Renderer, dialect: &'static dyn Dialect) -> Self {
        let mut resolver = GraphResolver::default();
        for node in &graph.nodes {
            match node.resource_type {
                ResourceType::Source => {
                    if let Some(s) = node.source() {
                        if let Some(column) = &s.event_time {
                            resolver
                                .source_event_times
                                .insert((s.source_name.clone(), s.name.clone()), column.clone());
                        }
                        resolver.sources.insert(
                            (s.source_name.clone(), s.name.clone()),
                            node.relation.clone(),
                        );
                    }
                }
                ResourceType::Test => {}
                _ if node.is_ephemeral() => {
                    // A microbatch model filters an ephemeral input with an `event_time` too.
                    let cte = Relation::cte(&node.ref_name());
                    for name in node.ref_names() {
                        if let Some(column) = node.config.str("event_time") {
                            resolver
                                .ref_event_times
                                .insert(name.to_string(), column.to_string());
                        }
                        resolver.refs.insert(name.to_string(), cte.clone());
                    }
                }
                _ => {
                    for name in node.ref_names() {
                        if let Some(column) = node.config.str("event_time") {
                            resolver
                                .ref_event_times
                                .insert(name.to_string(), column.to_string());
                        }
                        resolver
                            .refs
                            .insert(name.to_string(), node.relation.clone());
                    }
                }
            }
        }
        if renderer.uses_graph() {
            renderer.provide_graph(graph_value(graph));
        }
        Compiler {
            graph,
            renderer,
            resolver: Arc::new(resolver),
            dialect,
            bodies: (0..graph.nodes.len()).map(|_| OnceLock::new()).collect(),
            test_configs: (0..graph.nodes.len()).map(|_| OnceLock::new()).collect(),
        }
    }

    /// A test's config: its node's, with what its test block set through `config()` under it
    /// (known once the test is compiled).
    pub fn test_config(&self, i: usize) -> &crate::project::NodeConfig {
        self.test_configs[i]
            .get()
            .unwrap_or(&self.graph.nodes[i].config)
    }

    pub fn renderer(&self) -> &Renderer {
        self.renderer
    }

    /// Render SQL that is no node's (`xform show --inline`): refs and sources resolve as a
    /// model's do, with `execute` true.
    pub fn render_inline(
        &self,
        text: &str,
        introspector: &Arc<dyn Introspect>,
    ) -> Result<String, Problem> {
        self.renderer.render_text(
            text,
            "the inline query",
            None,
            self.resolver.clone(),
            Some(introspector.clone()),
            std::collections::BTreeMap::new(),
        )
    }

    /// `--empty`: every `ref()` and `source()` reads zero rows (`where false limit 0`), as
    /// dbt's `--empty` does; an ephemeral model's CTE is left alone (its own inputs are
    /// already empty). Call before compiling anything, after `defer`.
    pub fn read_empty_inputs(&mut self) {
        let resolver = Arc::get_mut(&mut self.resolver)
            .expect("read_empty_inputs is called before any compilation");
        for relation in resolver
            .refs
            .values_mut()
            .chain(resolver.sources.values_mut())
        {
            if !relation.cte {
                relation.filter = Some("false limit 0".to_string());
            }
        }
    }

    /// Resolve `ref()`s of the named (unselected) nodes to other relations: `--defer` reads them
    /// where an earlier run's state says they are. Call before compiling anything.
    /// The relations come from another run's manifest, so they take this run's quoting.
    pub fn defer(&mut self, relations: Vec<(String, Relation)>) {
        // The project's relations carry the target's quoting (its `quoting:` config included).
        let quoting = self
            .graph
            .nodes
            .iter()
            .find(|n| n.has_relation())
            .map_or_else(|| self.dialect.quoting(), |n| n.relation.quoting);
        let resolver =
            Arc::get_mut(&mut self.resolver).expect("defer is called before any compilation");
        resolver
            .refs
            .extend(relations.into_iter().map(|(name, relation)| {
                (
                    name,
                    Relation {
                        quoting,
                        ..relation
                    },
                )
            }));
    }

    /// The rendered SQL of a model, without injected CTEs.
    fn body(
        &self,
        i: usize,
        introspector: Option<&Arc<dyn Introspect>>,
        is_incremental: bool,
    ) -> Result<Arc<str>, Problem> {
        self.bodies[i]
            .get_or_init(|| {
                let node = &self.graph.nodes[i];
                if let Some(test) = node.test() {
                    return self.generic_test(i, test, introspector).map(Arc::from);
                }
                let Some(file) = &node.file else {
                    return Ok(Arc::from(""));
                };
                // The parse pass rendered the same template with the same inputs: reuse it.
                if !is_incremental
                    && let Some(pre) = &node.prerendered
                    && pre.still_valid(&node.relation, self.resolver.as_ref())
                {
                    return Ok(pre.sql.clone());
                }
                let sql = self.render_executed(
                    node,
                    file,
                    is_incremental,
                    self.resolver.clone(),
                    introspector,
                    model_value(node),
                )?;
                Ok(Arc::from(sql.as_str()))
            })
            .clone()
    }

    /// A node's pre- or post-hooks, rendered for execution in the node's context (`this` is its
    /// relation), in the order they run.
    pub fn hooks(
        &self,
        i: usize,
        when: crate::materialize::hooks::When,
        introspector: Option<&Arc<dyn Introspect>>,
        is_incremental: bool,
    ) -> Result<Vec<RenderedHook>, Problem> {
        let node = &self.graph.nodes[i];
        crate::materialize::hooks::of(&node.config, when)
            .iter()
            .enumerate()
            .map(|(k, hook)| self.render_node_hook(i, when, k, hook, introspector, is_incremental))
            .collect()
    }

    /// One of a node's hooks (the `k`-th of its `when` hooks), rendered for execution in the
    /// node's context. The executor renders a post-hook only when it is about to run.
    pub fn render_node_hook(
        &self,
        i: usize,
        when: crate::materialize::hooks::When,
        k: usize,
        hook: &crate::materialize::hooks::Hook,
        introspector: Option<&Arc<dyn Introspect>>,
        is_incremental: bool,
    ) -> Result<RenderedHook, Problem> {
        let node = &self.graph.nodes[i];
        let what = format!("{} {} of `{}`", when.key(), k + 1, node.name);
        let sql = self.renderer.render_text(
            &hook.sql,
            &what,
            Some(RenderRequest {
                template: &what,
                name: &node.name,
                unique_id: &node.unique_id,
                execute: true,
                is_incremental,
                config: node.config.clone(),
                this: node.relation.clone(),
                resolver: self.resolver.clone(),
                introspector: introspector.cloned(),
                model: model_value(node),
            }),
            self.resolver.clone(),
            introspector.cloned(),
            BTreeMap::new(),
        )?;
        Ok(RenderedHook {
            sql,
            transaction: hook.transaction,
            what,
        })
    }

    /// The project's `on-run-start` or `on-run-end` hooks, rendered with `extra` in their
    /// context (`results`, `schemas`…).
    /// Render one `on-run-start` or `on-run-end` hook, with `extra` (`results`, `schemas`) in
    /// its context.
    pub fn run_hook(
        &self,
        key: &str,
        hook: &crate::project::ProjectHook,
        introspector: Option<&Arc<dyn Introspect>>,
        extra: &BTreeMap<String, Value>,
    ) -> Result<RenderedHook, Problem> {
        let what = format!("{key} hook {} of `{}`", hook.index + 1, hook.package);
        // Rendered as its package's: its macros first, its vars.
        let sql = self.renderer.render_text_as(
            &hook.unique_id(key),
            &hook.sql,
            &what,
            None,
            self.resolver.clone(),
            introspector.cloned(),
            extra.clone(),
        )?;
        Ok(RenderedHook {
            sql,
            transaction: false,
            what,
        })
    }

    /// `xform run-operation`: call a macro (`name` or `package.name`) with keyword arguments,
    /// for what it does on the database (its `run_query` and `statement` calls); returns the
    /// text it rendered.
    pub fn run_operation(
        &self,
        name: &str,
        args: BTreeMap<String, Value>,
        introspector: Option<&Arc<dyn Introspect>>,
    ) -> Result<String, Problem> {
        let mut extra = BTreeMap::new();
        extra.insert("__args".to_string(), Value::from(args));
        self.renderer.render_text(
            &format!("{{{{ {name}(**__args) }}}}"),
            &format!("macro `{name}`"),
            None,
            self.resolver.clone(),
            introspector.cloned(),
            extra,
        )
    }

    /// Render a node's template for execution and show its `log(..., info=True)` lines.
    fn render_executed(
        &self,
        node: &Node,
        file: &crate::diagnostics::SourceFile,
        is_incremental: bool,
        resolver: Arc<dyn Resolve>,
        introspector: Option<&Arc<dyn Introspect>>,
        model: Value,
    ) -> Result<String, Problem> {
        let rendered = self.renderer.render(RenderRequest {
            template: node.template.as_deref().unwrap_or(&file.name),
            name: &node.name,
            unique_id: &node.unique_id,
            execute: true,
            is_incremental,
            config: node.config.clone(),
            this: node.relation.clone(),
            resolver,
            introspector: introspector.cloned(),
            model,
        })?;
        for line in &rendered.logs {
            eprintln!("{}", crate::env::mask(&format!("{}: {line}", node.name)));
        }
        Ok(rendered.sql)
    }

    /// A generic test's query: its test block called with the tested relation (narrowed by
    /// `where:`), the column and the YAML arguments (`to:` resolved to a relation).
    fn generic_test(
        &self,
        i: usize,
        test: &GenericTestDef,
        introspector: Option<&Arc<dyn Introspect>>,
    ) -> Result<String, Problem> {
        let node = &self.graph.nodes[i];
        let resolve = |t: &TestTarget| -> Option<Relation> {
            match t {
                TestTarget::Ref(name) => self.resolver.resolve_ref(None, name),
                TestTarget::Source(s, t) => self.resolver.resolve_source(s, t),
            }
        };
        let relation = resolve(&test.target).ok_or_else(|| {
            Problem::new(
                Code::UnknownRef,
                format!(
                    "test `{}` reads `{}`, which does not exist",
                    node.name,
                    test.target.label()
                ),
            )
        })?;
        // A relation object, as in dbt, so that a custom test can read `model.identifier`;
        // `where:` makes it a subquery text.
        let model = match node.config.str("where") {
            Some(w) => Value::from(self.dialect.where_subquery(&relation, w)),
            None => Value::from_object(relation),
        };
        // Jinja in an argument (`expression: "{{ dbt_date.day_name('d') }} = 'Monday'"`) is
        // rendered first, with the test's refs and sources, as dbt renders it.
        let resolver: Arc<dyn Resolve> = self.resolver.clone();
        let mut args = BTreeMap::new();
        for (k, v) in &test.args {
            let mut v = v.clone();
            self.renderer.render_json(
                &node.unique_id,
                &mut v,
                &format!("the argument `{k}` of test `{}`", node.name),
                &resolver,
            )?;
            args.insert(k.clone(), crate::render::context::to_value(&v));
        }
        for (key, target) in test.relation_args() {
            if let Some(relation) = resolve(&target) {
                args.insert(key.to_string(), Value::from_object(relation));
            }
        }
        args.insert("model".to_string(), model);
        if let Some(c) = &test.column {
            args.insert("column_name".to_string(), Value::from(c.clone()));
        }
        let (sql, mut config) = self.renderer.render_test(
            (test.namespace.as_deref(), &test.test_name),
            &node.name,
            &args,
            node.config.clone(),
            self.resolver.clone(),
            introspector.cloned(),
        )?;
        // The YAML's and the project's config win over the test block's own `config()`.
        config.apply(&node.config);
        if config != node.config {
            let _ = self.test_configs[i].set(config);
        }
        Ok(sql)
    }

    /// The compiled SQL of a model: its body with every ephemeral it reads as a leading CTE.
    pub fn compiled(
        &self,
        i: usize,
        introspector: Option<&Arc<dyn Introspect>>,
        is_incremental: bool,
    ) -> Result<Arc<str>, Problem> {
        let body = self.body(i, introspector, is_incremental)?;
        Ok(match self.with_ephemerals(i, &body, introspector)? {
            Some(sql) => Arc::from(sql),
            None => body,
        })
    }

    /// `sql` with the ephemeral models node `i` reads injected as leading CTEs; `None` when it
    /// reads none.
    fn with_ephemerals(
        &self,
        i: usize,
        sql: &str,
        introspector: Option<&Arc<dyn Introspect>>,
    ) -> Result<Option<String>, Problem> {
        let ephemerals = self.graph.ephemeral_ancestors(i);
        if ephemerals.is_empty() {
            return Ok(None);
        }
        let mut ctes = Vec::with_capacity(ephemerals.len());
        for e in ephemerals {
            let body = self.body(e, introspector, false)?;
            ctes.push((self.graph.nodes[e].name.clone(), body));
        }
        Ok(Some(inject_ctes(sql, &ctes)))
    }

    /// The compiled SQL of one microbatch batch of a model: rendered afresh (not cached), its
    /// inputs with an `event_time` filtered to `window`, and `model.batch` describing the batch.
    pub fn compiled_batch(
        &self,
        i: usize,
        introspector: Option<&Arc<dyn Introspect>>,
        is_incremental: bool,
        window: Window,
        batch_id: &str,
    ) -> Result<String, Problem> {
        let node = &self.graph.nodes[i];
        let Some(file) = &node.file else {
            return Ok(String::new());
        };
        let mut model = model_json(node);
        model["batch"] = serde_json::json!({
            "id": batch_id,
            "event_time_start": Window::text(window.start),
            "event_time_end": Window::text(window.end),
        });
        let sql = self.render_executed(
            node,
            file,
            is_incremental,
            Arc::new(BatchResolver {
                dialect: self.dialect,
                graph: self.resolver.clone(),
                window,
            }),
            introspector,
            crate::render::context::to_value(model),
        )?;
        Ok(self.with_ephemerals(i, &sql, introspector)?.unwrap_or(sql))
    }

    /// A body compiled earlier in this run, if any.
    pub fn cached_body(&self, i: usize) -> Option<Arc<str>> {
        self.bodies[i].get().and_then(|r| r.as_ref().ok()).cloned()
    }

    /// Bodies compiled so far, by node position (for artifacts).
    pub fn compiled_bodies(&self) -> BTreeMap<usize, Arc<str>> {
        self.bodies
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                c.get()
                    .and_then(|r| r.as_ref().ok())
                    .map(|s| (i, s.clone()))
            })
            .collect()
    }
}
