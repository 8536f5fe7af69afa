//! The parse pass and the compile pass over a loaded project.
//!
//! Parse: every model is rendered once with `execute` false, in parallel, to learn its config,
//! refs and sources; with the property YAML and the project's config trees that gives each node
//! its final config and relation name. Refs, sources and `this` render as relations predicted
//! before the pass, so that the text can double as compiled SQL. Compile: a model's SQL is the
//! parse pass's text when a second render could not differ (its relations turned out as
//! predicted and it used nothing that depends on the pass); otherwise it is rendered again with
//! `execute` true (lazily, when a command needs its SQL). The ephemeral models it reads are
//! injected as CTEs. Neither pass touches the database except through the `Introspect` handle
//! a caller passes in.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use minijinja::value::Value;
use rayon::prelude::*;

use crate::config::Target;
use crate::diagnostics::{Code, Problem};
use crate::graph::{Graph, Node, ResourceType};
use crate::materialize::microbatch::Window;
use crate::project::unit_tests::Input;
use crate::project::{GenericTestDef, NodeConfig, Project, TestTarget};
use crate::render::{
    Introspect, Prerendered, RefCall, Relation, RenderRequest, Renderer, Resolve, RunInfo,
};

/// Resolves refs and sources to the relations the graph assigned.
#[derive(Debug, Default)]
pub struct GraphResolver {
    refs: HashMap<String, Relation>,
    sources: HashMap<(String, String), Relation>,
    /// The `event_time` column of the models and sources that have one.
    ref_event_times: HashMap<String, String>,
    source_event_times: HashMap<(String, String), String>,
}

/// Resolves like the graph, but an input with an `event_time` reads only the rows of one
/// microbatch window: `(select * from <relation> where <event_time in the window>)`.
struct BatchResolver {
    graph: Arc<GraphResolver>,
    window: Window,
}

impl BatchResolver {
    fn filtered(
        &self,
        relation: Option<Relation>,
        event_time: Option<&String>,
    ) -> Option<Relation> {
        let mut relation = relation?;
        if let Some(column) = event_time {
            relation.filter = Some(self.window.condition(column));
        }
        Some(relation)
    }
}

impl Resolve for BatchResolver {
    fn resolve_ref(&self, package: Option<&str>, name: &str) -> Option<Relation> {
        self.filtered(
            self.graph.resolve_ref(package, name),
            self.graph.ref_event_times.get(name),
        )
    }

    fn resolve_source(&self, source: &str, table: &str) -> Option<Relation> {
        self.filtered(
            self.graph.resolve_source(source, table),
            self.graph
                .source_event_times
                .get(&(source.to_string(), table.to_string())),
        )
    }
}

impl Resolve for GraphResolver {
    fn resolve_ref(&self, _package: Option<&str>, name: &str) -> Option<Relation> {
        self.refs.get(name).cloned()
    }

    fn resolve_source(&self, source: &str, table: &str) -> Option<Relation> {
        self.sources
            .get(&(source.to_string(), table.to_string()))
            .cloned()
    }
}

/// Resolves nothing: the parse pass only records calls.
struct NoResolver;

impl Resolve for NoResolver {
    fn resolve_ref(&self, _package: Option<&str>, _name: &str) -> Option<Relation> {
        None
    }

    fn resolve_source(&self, _source: &str, _table: &str) -> Option<Relation> {
        None
    }
}

/// The `model` value templates see.
pub fn model_value(node: &Node) -> Value {
    crate::render::context::to_value(model_json(node))
}

fn model_json(node: &Node) -> serde_json::Value {
    serde_json::json!({
        "name": node.name,
        "unique_id": node.unique_id,
        "resource_type": node.resource_type.as_str(),
        "path": node.relative,
        "original_file_path": node.path,
        "fqn": node.fqn,
        "alias": node.relation.identifier,
        "schema": node.relation.schema,
        "database": node.relation.database,
        "config": node.config.to_json(),
        "tags": node.config.tags(),
        "description": node.description,
        "package_name": node.fqn.first(),
    })
}

/// Where a node builds: its `database`, its `alias` or name, and the schema from the project's
/// `generate_schema_name` macro, or dbt's default (the target schema, `_<schema>` appended).
fn relation_for(renderer: &Renderer, target: &Target, node: &Node) -> Result<Relation, Problem> {
    if !renderer.has_macro("generate_schema_name") {
        return Ok(default_relation(target, &node.config, &node.name));
    }
    let custom = node.config.str("schema");
    let args = [
        custom.map_or(Value::from(()), Value::from),
        model_value(node),
    ];
    let schema = renderer.call_macro("generate_schema_name", &args, Arc::new(NoResolver))?;
    let database = node.config.str("database").unwrap_or(&target.database);
    let identifier = node.config.str("alias").unwrap_or(&node.name);
    Ok(Relation::new(Some(database), schema.trim(), identifier))
}

/// `relation_for` without a `generate_schema_name` macro.
fn default_relation(target: &Target, config: &NodeConfig, name: &str) -> Relation {
    let schema = match config.str("schema").map(str::trim) {
        Some(c) if !c.is_empty() => format!("{}_{c}", target.schema),
        _ => target.schema.clone(),
    };
    let database = config.str("database").unwrap_or(&target.database);
    let identifier = config.str("alias").unwrap_or(name);
    Relation::new(Some(database), &schema, identifier)
}

/// A snapshot's node before its parse-pass render, and its config from the project's
/// `snapshots:` tree and YAML (the block's `config()` comes on top when it is rendered).
fn snapshot_node(
    project: &Project,
    snapshot: &crate::project::SnapshotDef,
    placeholder: &Relation,
) -> (Node, NodeConfig) {
    let mut config = project.snapshots_tree.resolve(&snapshot.fqn);
    config.apply(&snapshot.props.config);
    let node = Node {
        unique_id: format!("snapshot.{}.{}", project.name, snapshot.name),
        resource_type: ResourceType::Snapshot,
        name: snapshot.name.clone(),
        path: snapshot.path.clone(),
        relative: snapshot.relative.clone(),
        fqn: snapshot.fqn.clone(),
        file: Some(snapshot.file.clone()),
        config: NodeConfig::default(),
        description: snapshot.props.description.clone(),
        columns: snapshot.props.columns.clone(),
        patch_path: (!snapshot.props.patch_path.is_empty())
            .then(|| snapshot.props.patch_path.clone()),
        refs: Vec::new(),
        sources: Vec::new(),
        depends_on: Vec::new(),
        relation: placeholder.clone(),
        seed_path: None,
        template: Some(snapshot.template_name()),
        source: None,
        test: None,
        unit: None,
        prerendered: None,
    };
    (node, config)
}

/// Where a snapshot builds: legacy `target_schema` / `target_database` place it as given;
/// otherwise `schema` goes through `generate_schema_name` like a model's.
fn snapshot_relation(
    renderer: &Renderer,
    target: &Target,
    node: &Node,
) -> Result<Relation, Problem> {
    Ok(match node.config.str("target_schema") {
        Some(schema) => Relation::new(
            Some(
                node.config
                    .str("target_database")
                    .or(node.config.str("database"))
                    .unwrap_or(&target.database),
            ),
            schema,
            node.config.str("alias").unwrap_or(&node.name),
        ),
        None => relation_for(renderer, target, node)?,
    })
}

/// A snapshot's node: config from the project's `snapshots:` tree, then YAML, then the
/// block's `config()`.
fn parse_snapshot(
    renderer: &Renderer,
    project: &Project,
    target: &Target,
    snapshot: &crate::project::SnapshotDef,
    placeholder: &Relation,
    predicted: &Predicted,
) -> Result<Option<Node>, Problem> {
    let (node, config) = snapshot_node(project, snapshot, placeholder);
    let template = snapshot.template_name();
    let Some(mut node) = parse_render(renderer, target, node, &template, config, predicted)? else {
        return Ok(None);
    };
    node.relation = snapshot_relation(renderer, target, &node)?;
    Ok(Some(node))
}

/// Where a test stores its failing rows: `<target schema>_dbt_test__audit.<test name>`.
/// Where a test stores its failures; `name` is the test's short name (its file's).
fn audit_relation(target: &Target, config: &NodeConfig, name: &str) -> Relation {
    let schema = match config.str("schema") {
        Some(s) => format!("{}_{s}", target.schema),
        None => format!("{}_dbt_test__audit", target.schema),
    };
    Relation::new(
        Some(config.str("database").unwrap_or(&target.database)),
        &schema,
        config.str("alias").unwrap_or(name),
    )
}

/// The test nodes: a generic test for each YAML declaration whose node exists and is enabled,
/// and a singular test for each `.sql` file in test-paths (parsed like a model).
fn test_nodes(
    renderer: &Renderer,
    project: &Project,
    target: &Target,
    nodes: &mut Vec<Node>,
    problems: &mut Vec<Problem>,
) {
    let refs: std::collections::BTreeSet<&str> = nodes
        .iter()
        .filter(|n| n.resource_type != ResourceType::Source)
        .map(|n| n.name.as_str())
        .collect();
    let sources: std::collections::BTreeSet<(&str, &str)> = nodes
        .iter()
        .filter_map(|n| n.source.as_ref())
        .map(|s| (s.source_name.as_str(), s.name.as_str()))
        .collect();
    let mut tests = Vec::with_capacity(project.generic_tests.len() + project.singular_tests.len());
    let mut seen = std::collections::BTreeSet::new();
    for def in &project.generic_tests {
        let exists = match &def.target {
            TestTarget::Ref(name) => refs.contains(name.as_str()),
            TestTarget::Source(s, t) => sources.contains(&(s.as_str(), t.as_str())),
        };
        if !exists {
            continue;
        }
        let name = def.node_name();
        let mut fqn = vec![project.name.clone()];
        if let Some((dir, _)) = def.path.rsplit_once('/') {
            fqn.extend(dir.split('/').skip(1).map(String::from));
        }
        fqn.push(name.clone());
        let mut config = project.tests_tree.resolve(&fqn);
        config.apply(&def.config);
        if !config.enabled() {
            continue;
        }
        if !renderer.has_test(&def.test_name) {
            let file = &def.path;
            let near = crate::graph::suggestions(
                &def.test_name,
                renderer.test_names().iter().map(String::as_str),
            );
            let help = match near.first() {
                Some(best) => format!("did you mean `{best}`?"),
                None => "the built-in tests are unique, not_null, accepted_values and relationships;\nothers are `{% test name(model, column_name) %}` blocks in a macro or test path".to_string(),
            };
            problems.push(
                Problem::new(
                    Code::UnknownTest,
                    format!(
                        "`{file}` applies the test `{}` to `{}`, but no test has this name",
                        def.test_name,
                        def.target.label()
                    ),
                )
                .at(
                    &def.file,
                    def.offset,
                    def.test_name.len(),
                    "no generic test has this name",
                )
                .help(help),
            );
            continue;
        }
        let mut node_refs = Vec::new();
        let mut node_sources = Vec::new();
        let mut add = |t: &TestTarget| match t {
            TestTarget::Ref(name) => node_refs.push(RefCall {
                package: None,
                name: name.clone(),
            }),
            TestTarget::Source(s, t) => node_sources.push((s.clone(), t.clone())),
        };
        // dbt lists what `to` points at before the tested model.
        if let Some(to) = def
            .args
            .get("to")
            .and_then(|v| v.as_str())
            .and_then(TestTarget::parse)
        {
            add(&to);
        }
        add(&def.target);
        if !seen.insert(name.clone()) {
            problems.push(
                Problem::new(
                    Code::DuplicateNode,
                    format!("two data tests are named `{name}`"),
                )
                .at(
                    &def.file,
                    def.offset,
                    def.test_name.len(),
                    "second definition",
                )
                .help(
                    "remove the repeated test, or give one of them another `name:` in its config",
                ),
            );
            continue;
        }
        tests.push(Node {
            unique_id: format!("test.{}.{name}.{}", project.name, def.id_hash(&name)),
            resource_type: ResourceType::Test,
            name: name.clone(),
            path: def.path.clone(),
            relative: def.path.clone(),
            fqn,
            file: None,
            relation: audit_relation(target, &config, def.short_name()),
            config,
            description: String::new(),
            columns: Vec::new(),
            patch_path: None,
            refs: node_refs,
            sources: node_sources,
            depends_on: Vec::new(),
            seed_path: None,
            template: None,
            source: None,
            test: Some(def.clone()),
            unit: None,
            prerendered: None,
        });
    }
    for file in &project.singular_tests {
        let config = project.tests_tree.resolve(&file.fqn);
        let mut node = Node {
            unique_id: format!("test.{}.{}", project.name, file.name),
            resource_type: ResourceType::Test,
            name: file.name.clone(),
            path: file.path.clone(),
            relative: file.relative.clone(),
            fqn: file.fqn.clone(),
            file: Some(file.file.clone()),
            config: NodeConfig::default(),
            description: String::new(),
            columns: Vec::new(),
            patch_path: None,
            refs: Vec::new(),
            sources: Vec::new(),
            depends_on: Vec::new(),
            relation: Relation::new(Some(&target.database), &target.schema, &file.name),
            seed_path: None,
            template: None,
            source: None,
            test: None,
            unit: None,
            prerendered: None,
        };
        let rendered = renderer.render(RenderRequest {
            template: &file.path,
            name: &file.name,
            unique_id: &node.unique_id,
            execute: false,
            is_incremental: false,
            config,
            this: node.relation.clone(),
            resolver: Arc::new(NoResolver),
            introspector: None,
            model: model_value(&node),
        });
        match rendered {
            Ok(r) => {
                node.config = r.config;
                if !node.config.enabled() {
                    continue;
                }
                node.refs = r.refs;
                node.sources = r.sources;
                node.relation = audit_relation(target, &node.config, &file.name);
                tests.push(node);
            }
            Err(e) => problems.push(e),
        }
    }
    nodes.extend(tests);
}

/// The unit-test nodes: one per enabled `unit_tests:` entry whose model exists. Each depends
/// on its model (as in dbt's manifest); the scheduler runs it before the model instead. Its
/// inputs are checked against what the model reads, so `xform compile` already reports a
/// missing or stray input.
fn unit_test_nodes(
    project: &Project,
    target: &Target,
    nodes: &mut Vec<Node>,
    problems: &mut Vec<Problem>,
) {
    let mut units = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for def in &project.unit_tests {
        let at = |p: Problem, label: &str| {
            p.at(&def.file, def.offset, def.name.len(), label.to_string())
        };
        // A disabled unit test is not checked at all.
        let mut fqn = vec![project.name.clone()];
        if let Some((dir, _)) = def.path.rsplit_once('/') {
            fqn.extend(dir.split('/').skip(1).map(String::from));
        }
        fqn.push(def.model.clone());
        fqn.push(def.name.clone());
        let mut config = project.tests_tree.resolve(&fqn);
        config.apply(&def.config);
        if !config.enabled() {
            continue;
        }
        let tested = nodes.iter().find(|n| {
            n.name == def.model
                && matches!(
                    n.resource_type,
                    ResourceType::Model | ResourceType::Snapshot
                )
        });
        let Some(model) = tested else {
            let names = nodes
                .iter()
                .filter(|n| n.resource_type == ResourceType::Model)
                .map(|n| n.name.as_str());
            let near = crate::graph::suggestions(&def.model, names);
            problems.push(
                at(
                    Problem::new(
                        Code::UnitTest,
                        format!(
                            "unit test `{}` tests the model `{}`, which does not exist",
                            def.name, def.model
                        ),
                    ),
                    "this unit test",
                )
                .help(match near.first() {
                    Some(best) => format!("did you mean `{best}`?"),
                    None => "fix the `model:` name, or remove the unit test".to_string(),
                }),
            );
            continue;
        };
        if model.resource_type == ResourceType::Snapshot && def.expect_table.is_none() {
            problems.push(at(
                Problem::new(
                    Code::UnitTest,
                    format!(
                        "unit test `{}` tests the snapshot `{}` with `expect:`",
                        def.name, def.model
                    ),
                ),
                "this unit test",
            )
            .help("a snapshot is tested by the table it leaves behind: use `expect_table:` with the rows after one run"));
            continue;
        }
        if !seen.insert((def.model.clone(), def.name.clone())) {
            problems.push(
                at(
                    Problem::new(
                        Code::DuplicateNode,
                        format!("two unit tests of `{}` are named `{}`", def.model, def.name),
                    ),
                    "second definition",
                )
                .help("give each unit test of a model its own name"),
            );
            continue;
        }
        // Every input must be something the model reads; everything the model reads except
        // seeds (read from their CSV file) must be given.
        let reads = |input: &Input| match input {
            Input::This => true,
            Input::Node(TestTarget::Ref(name)) => model.refs.iter().any(|r| &r.name == name),
            Input::Node(TestTarget::Source(s, t)) => {
                model.sources.iter().any(|(a, b)| a == s && b == t)
            }
        };
        if let Some(stray) = def.given.iter().find(|g| !reads(&g.input)) {
            problems.push(at(
                Problem::new(
                    Code::UnitTest,
                    format!(
                        "unit test `{}` gives `{}`, which the model `{}` does not read",
                        def.name,
                        stray.input.label(),
                        def.model
                    ),
                ),
                "this unit test",
            )
            .help("remove that input, or fix its name to one of the model's ref() or source() calls"));
            continue;
        }
        let given = |wanted: &Input| def.given.iter().any(|g| &g.input == wanted);
        let seeds: std::collections::BTreeSet<&str> = nodes
            .iter()
            .filter(|n| n.resource_type == ResourceType::Seed)
            .map(|n| n.name.as_str())
            .collect();
        // Only a seed may be given without rows: it is then read from its file.
        if let Some(bare) = def.given.iter().find(|g| {
            g.rows == crate::project::unit_tests::Rows::Missing
                && !matches!(&g.input, Input::Node(TestTarget::Ref(n)) if seeds.contains(n.as_str()))
        }) {
            problems.push(at(
                Problem::new(
                    Code::UnitTest,
                    format!(
                        "unit test `{}` gives `{}` without `rows:`",
                        def.name,
                        bare.input.label()
                    ),
                ),
                "this unit test",
            )
            .help("give its rows under `rows:` (`rows: []` for an empty input) or name a `fixture:`; only a seed may be given without rows (its file is read)"));
            continue;
        }
        let mut missing: Vec<String> = model
            .refs
            .iter()
            .filter(|r| !seeds.contains(r.name.as_str()))
            .map(|r| Input::Node(TestTarget::Ref(r.name.clone())))
            .chain(
                model
                    .sources
                    .iter()
                    .map(|(s, t)| Input::Node(TestTarget::Source(s.clone(), t.clone()))),
            )
            .filter(|i| !given(i))
            .map(|i| i.label())
            .collect();
        missing.dedup();
        if !missing.is_empty() {
            problems.push(
                at(
                    Problem::new(
                        Code::UnitTest,
                        format!(
                            "unit test `{}` does not give `{}`, which the model `{}` reads",
                            def.name,
                            missing.join("`, `"),
                            def.model
                        ),
                    ),
                    "this unit test",
                )
                .help(format!(
                    "add `- input: {}` under `given:` (with `rows: []` for an empty input)",
                    missing[0]
                )),
            );
            continue;
        }
        units.push(Node {
            unique_id: format!("unit_test.{}.{}.{}", project.name, def.model, def.name),
            resource_type: ResourceType::UnitTest,
            name: def.name.clone(),
            path: def.path.clone(),
            relative: def.path.clone(),
            fqn,
            file: None,
            config,
            description: def.description.clone(),
            columns: Vec::new(),
            patch_path: None,
            refs: vec![RefCall {
                package: None,
                name: def.model.clone(),
            }],
            sources: Vec::new(),
            depends_on: Vec::new(),
            relation: Relation::new(Some(&target.database), &target.schema, &def.name),
            seed_path: None,
            template: None,
            source: None,
            test: None,
            unit: Some(Arc::new(def.clone())),
            prerendered: None,
        });
    }
    nodes.extend(units);
}

/// Render a node's template in the parse pass (`execute` false) and keep what it recorded:
/// its final config, refs and sources, and its text when the compile pass may reuse it.
/// `None` when the config turns out to disable the node.
fn parse_render(
    renderer: &Renderer,
    target: &Target,
    mut node: Node,
    template: &str,
    config: NodeConfig,
    predicted: &Predicted,
) -> Result<Option<Node>, Problem> {
    let this = predicted
        .this
        .get(&node.unique_id)
        .cloned()
        .unwrap_or_else(|| Relation::new(Some(&target.database), &target.schema, &node.name));
    let rendered = renderer.render(RenderRequest {
        template,
        name: &node.name,
        unique_id: &node.unique_id,
        execute: false,
        is_incremental: false,
        config,
        this: this.clone(),
        resolver: predicted.resolver.clone(),
        introspector: None,
        model: model_value(&node),
    })?;
    node.config = rendered.config;
    if !node.config.enabled() {
        return Ok(None);
    }
    node.refs = rendered.refs;
    node.sources = rendered.sources;
    if rendered.reusable {
        node.prerendered = Some(Prerendered {
            sql: Arc::from(rendered.sql),
            this,
            resolved: rendered.resolved,
        });
    }
    Ok(Some(node))
}

/// A model's node before its parse-pass render, and its config from the project's `models:`
/// tree and YAML (the file's `config()` comes on top when it is rendered).
fn model_node(
    project: &Project,
    model: &crate::project::ModelFile,
    placeholder: &Relation,
) -> (Node, NodeConfig) {
    let props = project.model_props.get(&model.name);
    let mut config = project.models_tree.resolve(&model.fqn);
    if let Some(p) = props {
        config.apply(&p.config);
    }
    let node = Node {
        unique_id: format!("model.{}.{}", project.name, model.name),
        resource_type: ResourceType::Model,
        name: model.name.clone(),
        path: model.path.clone(),
        relative: model.relative.clone(),
        fqn: model.fqn.clone(),
        file: Some(model.file.clone()),
        config: NodeConfig::default(),
        description: props.map(|p| p.description.clone()).unwrap_or_default(),
        columns: props.map(|p| p.columns.clone()).unwrap_or_default(),
        patch_path: props.map(|p| p.patch_path.clone()),
        refs: Vec::new(),
        sources: Vec::new(),
        depends_on: Vec::new(),
        relation: placeholder.clone(),
        seed_path: None,
        template: None,
        source: None,
        test: None,
        unit: None,
        prerendered: None,
    };
    (node, config)
}

/// A seed's node, `None` when its config disables it. Its relation is final: a seed has no
/// template.
fn seed_node(
    renderer: &Renderer,
    project: &Project,
    target: &Target,
    seed: &crate::project::SeedFile,
    placeholder: &Relation,
) -> Option<Result<Node, Problem>> {
    let props = project.seed_props.get(&seed.name);
    let mut config = project.seeds_tree.resolve(&seed.fqn);
    if let Some(p) = props {
        config.apply(&p.config);
    }
    if !config.enabled() {
        return None;
    }
    let mut node = Node {
        unique_id: format!("seed.{}.{}", project.name, seed.name),
        resource_type: ResourceType::Seed,
        name: seed.name.clone(),
        path: seed.path.clone(),
        relative: seed.relative.clone(),
        fqn: seed.fqn.clone(),
        file: None,
        config,
        description: props.map(|p| p.description.clone()).unwrap_or_default(),
        columns: props.map(|p| p.columns.clone()).unwrap_or_default(),
        patch_path: props.map(|p| p.patch_path.clone()),
        refs: Vec::new(),
        sources: Vec::new(),
        depends_on: Vec::new(),
        relation: placeholder.clone(),
        seed_path: Some(seed.absolute.clone()),
        template: None,
        source: None,
        test: None,
        unit: None,
        prerendered: None,
    };
    Some(relation_for(renderer, target, &node).map(|r| {
        node.relation = r;
        node
    }))
}

/// The relations the parse pass renders `ref()`, `source()` and `this` as: what each node's
/// project and YAML config give, before its own `config()` calls are known. Where a
/// prediction turns out wrong, the compile pass renders the models that used it again.
struct Predicted {
    resolver: Arc<GraphResolver>,
    /// `this` by unique id.
    this: HashMap<String, Relation>,
}

fn predict(
    renderer: &Renderer,
    project: &Project,
    target: &Target,
    broken: &std::collections::BTreeSet<String>,
    placeholder: &Relation,
) -> Predicted {
    let mut resolver = GraphResolver::default();
    let mut this = HashMap::new();
    let custom_schemas = renderer.has_macro("generate_schema_name");
    let models: Vec<(String, String, bool, Relation)> = project
        .models
        .par_iter()
        .filter(|model| !broken.contains(&model.path))
        .filter_map(|model| {
            let (unique_id, config, relation) = if custom_schemas {
                let (mut node, mut config) = model_node(project, model, placeholder);
                for (key, value) in literal_config(&model.file.text) {
                    config.set(key, serde_json::Value::String(value.to_string()));
                }
                node.config = config;
                let relation = relation_for(renderer, target, &node).ok()?;
                (node.unique_id, node.config, Some(relation))
            } else {
                let mut config = project.models_tree.resolve(&model.fqn);
                if let Some(p) = project.model_props.get(&model.name) {
                    config.apply(&p.config);
                }
                for (key, value) in literal_config(&model.file.text) {
                    config.set(key, serde_json::Value::String(value.to_string()));
                }
                (
                    format!("model.{}.{}", project.name, model.name),
                    config,
                    None,
                )
            };
            if !config.enabled() {
                return None;
            }
            let relation = match relation {
                Some(r) => r,
                None => default_relation(target, &config, &model.name),
            };
            let ephemeral = config.materialized() == "ephemeral";
            Some((model.name.clone(), unique_id, ephemeral, relation))
        })
        .collect();
    for (name, unique_id, ephemeral, relation) in models {
        let as_ref = if ephemeral {
            Relation::cte(&name)
        } else {
            relation.clone()
        };
        resolver.refs.insert(name, as_ref);
        this.insert(unique_id, relation);
    }
    let mut add = |node: &Node, relation: Relation| {
        resolver.refs.insert(node.name.clone(), relation.clone());
        this.insert(node.unique_id.clone(), relation);
    };
    for seed in &project.seeds {
        if let Some(Ok(node)) = seed_node(renderer, project, target, seed, placeholder) {
            add(&node, node.relation.clone());
        }
    }
    for snapshot in &project.snapshots {
        let (mut node, config) = snapshot_node(project, snapshot, placeholder);
        node.config = config;
        if let Ok(relation) = snapshot_relation(renderer, target, &node) {
            add(&node, relation);
        }
    }
    for source in &project.sources {
        resolver.sources.insert(
            (source.source_name.clone(), source.name.clone()),
            source_relation(target, source),
        );
    }
    Predicted {
        resolver: Arc::new(resolver),
        this,
    }
}

/// The keys that decide a model's relation, where its file sets them to a string literal in a
/// `config(...)` call (`config(materialized='ephemeral')`). Only a hint for `predict`: a wrong
/// or missed hint costs a second render, never a wrong result, so the scan is plain text.
fn literal_config(text: &str) -> Vec<(&'static str, &str)> {
    const KEYS: [&str; 4] = ["materialized", "schema", "alias", "database"];
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find("config(") {
        let start = from + at + "config(".len();
        from = start;
        let before = text[..start - "config(".len()].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.') {
            continue;
        }
        let args = &text[start..];
        let args = &args[..args.find(')').unwrap_or(args.len())];
        for key in KEYS {
            let Some(k) = args.find(key) else { continue };
            let rest = args[k + key.len()..].trim_start();
            let Some(rest) = rest.strip_prefix('=') else {
                continue;
            };
            let rest = rest.trim_start();
            let Some(quote) = rest.chars().next().filter(|c| *c == '\'' || *c == '"') else {
                continue;
            };
            if let Some(end) = rest[1..].find(quote) {
                found.push((key, &rest[1..=end]));
            }
        }
    }
    found
}

fn source_relation(target: &Target, source: &crate::project::SourceTable) -> Relation {
    let database = source.database.as_deref().unwrap_or(&target.database);
    Relation::new(Some(database), &source.schema, &source.identifier)
}

/// Parse every model and build the graph. Returns every problem found, not just the first.
pub fn parse(
    project: &Project,
    target: &Target,
    run: &RunInfo,
) -> Result<(Renderer, Graph), Vec<Problem>> {
    let (renderer, mut problems) = Renderer::new(project, target, run)?;
    crate::timings::mark("templates");
    let broken: std::collections::BTreeSet<String> = problems
        .iter()
        .filter_map(|p| p.label.as_ref().map(|l| l.file.name.clone()))
        .collect();
    let placeholder = Relation::new(Some(&target.database), &target.schema, "");
    let predicted = predict(&renderer, project, target, &broken, &placeholder);
    let parsed: Vec<Result<Option<Node>, Problem>> = project
        .models
        .par_iter()
        .filter(|model| !broken.contains(&model.path))
        .map(|model| {
            let (node, config) = model_node(project, model, &placeholder);
            let Some(mut node) =
                parse_render(&renderer, target, node, &model.path, config, &predicted)?
            else {
                return Ok(None);
            };
            node.relation = relation_for(&renderer, target, &node)?;
            Ok(Some(node))
        })
        .collect();
    crate::timings::mark("parse pass");
    // Room for every node up front: growing a vector of nodes this size copies them all and
    // holds both copies for a moment (30 MB at 10,000 models).
    let mut nodes = Vec::with_capacity(
        parsed.len()
            + project.seeds.len()
            + project.snapshots.len()
            + project.sources.len()
            + project.generic_tests.len()
            + project.singular_tests.len()
            + project.unit_tests.len(),
    );
    let unparsed: std::collections::BTreeSet<String> = project
        .models
        .iter()
        .filter(|m| broken.contains(&m.path))
        .map(|m| m.name.clone())
        .collect();
    for p in parsed {
        match p {
            Ok(Some(n)) => nodes.push(n),
            Ok(None) => {}
            Err(e) => problems.push(e),
        }
    }
    let mut unparsed = unparsed;
    for p in &problems {
        if let Some(l) = &p.label
            && let Some(m) = project.models.iter().find(|m| m.path == l.file.name)
        {
            unparsed.insert(m.name.clone());
        }
    }
    for seed in &project.seeds {
        match seed_node(&renderer, project, target, seed, &placeholder) {
            Some(Ok(node)) => nodes.push(node),
            Some(Err(e)) => problems.push(e),
            None => {}
        }
    }
    for snapshot in &project.snapshots {
        match parse_snapshot(
            &renderer,
            project,
            target,
            snapshot,
            &placeholder,
            &predicted,
        ) {
            Ok(Some(node)) => nodes.push(node),
            Ok(None) => {}
            Err(e) => {
                unparsed.insert(snapshot.name.clone());
                problems.push(e);
            }
        }
    }
    for source in &project.sources {
        nodes.push(Node {
            unique_id: format!(
                "source.{}.{}.{}",
                project.name, source.source_name, source.name
            ),
            resource_type: ResourceType::Source,
            name: source.name.clone(),
            path: source.path.clone(),
            relative: source.path.clone(),
            fqn: source.fqn.clone(),
            file: None,
            config: NodeConfig::default(),
            description: source.description.clone(),
            columns: source.columns.clone(),
            patch_path: None,
            refs: Vec::new(),
            sources: Vec::new(),
            depends_on: Vec::new(),
            relation: source_relation(target, source),
            seed_path: None,
            template: None,
            source: Some(source.clone()),
            test: None,
            unit: None,
            prerendered: None,
        });
    }
    test_nodes(&renderer, project, target, &mut nodes, &mut problems);
    unit_test_nodes(project, target, &mut nodes, &mut problems);
    let graph = Graph::build(nodes, &unparsed);
    crate::timings::mark("graph");
    match graph {
        Ok(graph) if problems.is_empty() => Ok((renderer, graph)),
        Ok(_) => Err(problems),
        Err(more) => {
            problems.extend(more);
            Err(problems)
        }
    }
}

/// Compiles models on demand, each at most once, and injects ephemeral CTEs.
pub struct Compiler<'a> {
    pub graph: &'a Graph,
    renderer: &'a Renderer,
    resolver: Arc<GraphResolver>,
    bodies: Vec<OnceLock<Result<Arc<str>, Problem>>>,
}

impl<'a> Compiler<'a> {
    pub fn new(graph: &'a Graph, renderer: &'a Renderer) -> Self {
        let mut resolver = GraphResolver::default();
        for node in &graph.nodes {
            match node.resource_type {
                ResourceType::Source => {
                    if let Some(s) = &node.source {
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
                    if let Some(column) = node.config.str("event_time") {
                        resolver
                            .ref_event_times
                            .insert(node.name.clone(), column.to_string());
                    }
                    resolver
                        .refs
                        .insert(node.name.clone(), Relation::cte(&node.name));
                }
                _ => {
                    if let Some(column) = node.config.str("event_time") {
                        resolver
                            .ref_event_times
                            .insert(node.name.clone(), column.to_string());
                    }
                    resolver
                        .refs
                        .insert(node.name.clone(), node.relation.clone());
                }
            }
        }
        Compiler {
            graph,
            renderer,
            resolver: Arc::new(resolver),
            bodies: (0..graph.nodes.len()).map(|_| OnceLock::new()).collect(),
        }
    }

    pub fn renderer(&self) -> &Renderer {
        self.renderer
    }

    /// Resolve `ref()`s of the named (unselected) nodes to other relations: `--defer` reads them
    /// where an earlier run's state says they are. Call before compiling anything.
    pub fn defer(&mut self, relations: Vec<(String, Relation)>) {
        let resolver =
            Arc::get_mut(&mut self.resolver).expect("defer is called before any compilation");
        resolver.refs.extend(relations);
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
                if let Some(test) = &node.test {
                    return self.generic_test(node, test).map(Arc::from);
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
            eprintln!("{}: {line}", node.name);
        }
        Ok(rendered.sql)
    }

    /// A generic test's query: its test block called with the tested relation (narrowed by
    /// `where:`), the column and the YAML arguments (`to:` resolved to a relation).
    fn generic_test(&self, node: &Node, test: &GenericTestDef) -> Result<String, Problem> {
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
            Some(w) => Value::from(format!("(select * from {relation} where {w}) dbt_subquery")),
            None => Value::from_object(relation),
        };
        let mut args: BTreeMap<String, Value> = test
            .args
            .iter()
            .map(|(k, v)| (k.clone(), crate::render::context::to_value(v)))
            .collect();
        if let Some(to) = test
            .args
            .get("to")
            .and_then(|v| v.as_str())
            .and_then(TestTarget::parse)
            .and_then(|t| resolve(&t))
        {
            args.insert("to".to_string(), Value::from_object(to));
        }
        args.insert("model".to_string(), model);
        if let Some(c) = &test.column {
            args.insert("column_name".to_string(), Value::from(c.clone()));
        }
        self.renderer
            .render_test(&test.test_name, &node.name, &args, self.resolver.clone())
    }

    /// The compiled SQL of a model: its body with every ephemeral it reads as a leading CTE.
    pub fn compiled(
        &self,
        i: usize,
        introspector: Option<&Arc<dyn Introspect>>,
        is_incremental: bool,
    ) -> Result<Arc<str>, Problem> {
        let body = self.body(i, introspector, is_incremental)?;
        let ephemerals = self.graph.ephemeral_ancestors(i);
        if ephemerals.is_empty() {
            return Ok(body);
        }
        let mut ctes = Vec::with_capacity(ephemerals.len());
        for e in ephemerals {
            let sql = self.body(e, introspector, false)?;
            ctes.push((self.graph.nodes[e].name.clone(), sql));
        }
        Ok(Arc::from(inject_ctes(&body, &ctes)))
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
                graph: self.resolver.clone(),
                window,
            }),
            introspector,
            crate::render::context::to_value(model),
        )?;
        let ephemerals = self.graph.ephemeral_ancestors(i);
        if ephemerals.is_empty() {
            return Ok(sql);
        }
        let mut ctes = Vec::with_capacity(ephemerals.len());
        for e in ephemerals {
            let sql = self.body(e, introspector, false)?;
            ctes.push((self.graph.nodes[e].name.clone(), sql));
        }
        Ok(inject_ctes(&sql, &ctes))
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

/// Length of leading whitespace and SQL comments.
fn leading_trivia(sql: &str) -> usize {
    let mut pos = 0;
    loop {
        let rest = &sql[pos..];
        let trimmed = rest.trim_start();
        pos += rest.len() - trimmed.len();
        if trimmed.starts_with("--") {
            pos += trimmed.find('\n').map_or(trimmed.len(), |i| i + 1);
        } else if trimmed.starts_with("/*") {
            pos += trimmed.find("*/").map_or(trimmed.len(), |i| i + 2);
        } else {
            return pos;
        }
    }
}

/// Where `inject_ctes` moved a query's lines: lines from the first returned (1-based, the line
/// its CTEs went into) on are that many lines further down in `compiled`. `compiled` is
/// `inject_ctes(sql, …)`, or `sql` itself when nothing was injected (a shift of 0).
pub fn injected_line_shift(sql: &str, compiled: &str) -> (usize, usize) {
    let lines = |t: &str| t.bytes().filter(|&b| b == b'\n').count();
    let from = 1 + lines(&sql[..leading_trivia(sql)]);
    (from, lines(compiled).saturating_sub(lines(sql)))
}

/// Put ephemeral CTEs in front of a query: into its leading `with`, or as a new one.
pub fn inject_ctes(sql: &str, ctes: &[(String, Arc<str>)]) -> String {
    let defs: Vec<String> = ctes
        .iter()
        .map(|(name, body)| format!("__dbt__cte__{name} as (\n{body}\n)"))
        .collect();
    let defs = defs.join(", ");
    let start = leading_trivia(sql);
    let rest = &sql[start..];
    let lower: String = rest
        .chars()
        .take(16)
        .collect::<String>()
        .to_ascii_lowercase();
    if lower.starts_with("with") && rest[4..].starts_with(char::is_whitespace) {
        let mut head = 4;
        let after = rest[4..].trim_start();
        if after.to_ascii_lowercase().starts_with("recursive")
            && after[9..].starts_with(char::is_whitespace)
        {
            head = rest.len() - after.len() + 9;
        }
        format!(
            "{}{} {defs}, {}",
            &sql[..start],
            &rest[..head],
            rest[head..].trim_start()
        )
    } else {
        format!("{}with {defs}\n{rest}", &sql[..start])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_of_the_query_is_found_below_the_injected_ctes() {
        let ctes = vec![("e".to_string(), Arc::from("select 1\nfrom x"))];
        for sql in [
            "-- m\nselect *\nfrom __dbt__cte__e\nwhere )",
            "-- m\nwith\n  a as (select 1)\nselect * from a, __dbt__cte__e\nwhere )",
        ] {
            let compiled = inject_ctes(sql, &ctes);
            let (from, shift) = injected_line_shift(sql, &compiled);
            assert_eq!(from, 2, "{sql}");
            let last = sql.lines().count();
            assert_eq!(
                compiled.lines().nth(last - 1 + shift),
                sql.lines().nth(last - 1),
                "{compiled}"
            );
        }
        assert_eq!(injected_line_shift("select 1", "select 1"), (1, 0));
    }

    #[test]
    fn literal_config_finds_relation_keys_only() {
        let text = "{{ config(materialized='ephemeral', tags=['a'], alias=\"x\") }}\n\
                    {{ my_config(schema='no') }} {{ config(schema=var('s')) }}";
        assert_eq!(
            literal_config(text),
            vec![("materialized", "ephemeral"), ("alias", "x")]
        );
    }

    #[test]
    fn ctes_join_a_leading_with_or_start_one() {
        let ctes = vec![("a".to_string(), Arc::from("select 1"))];
        assert_eq!(
            inject_ctes("select * from __dbt__cte__a", &ctes),
            "with __dbt__cte__a as (\nselect 1\n)\nselect * from __dbt__cte__a"
        );
        assert_eq!(
            inject_ctes("-- c\nWITH x as (select 2) select 1", &ctes),
            "-- c\nWITH __dbt__cte__a as (\nselect 1\n), x as (select 2) select 1"
        );
    }
}
