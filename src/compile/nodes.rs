//! Node building: a model's, seed's, snapshot's and data test's `Node` from the project's
//! files, YAML and config trees, before (or, for seeds and generic tests, instead of) a
//! render, and the `model` value templates see.

use std::sync::Arc;

use minijinja::value::Value;

use super::naming::in_target;
use super::naming::{audit_relation, relation_for};
use super::resolve::NoResolver;
use crate::config::Target;
use crate::diagnostics::{Code, Problem};
use crate::graph::{Definition, Node, ResourceType};
use crate::project::{NodeConfig, Project, TestTarget, TreeKind};
use crate::render::{RefCall, Relation, RenderRequest, Renderer};

/// The `model` value templates see.
pub fn model_value(node: &Node) -> Value {
    crate::render::context::to_value(model_json(node))
}

pub(super) fn model_json(node: &Node) -> serde_json::Value {
    let mut model = serde_json::json!({
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
        "package_name": node.package(),
    });
    // A versioned model's version (absent, so undefined, for the others: this runs per render).
    if let Some(v) = &node.version {
        model["version"] = serde_json::json!(v.version);
        model["latest_version"] = serde_json::json!(v.latest);
    }
    model
}

/// A model's node before its parse-pass render, and its config from the project's `models:`
/// tree and YAML (the file's `config()` comes on top when it is rendered).
pub(super) fn model_node(
    project: &Project,
    model: &crate::project::ModelFile,
    placeholder: &Relation,
) -> (Node, NodeConfig) {
    let props = project.model_props.get(&model.name);
    // A version's fqn ends with its model's name and `v<version>`, as in dbt.
    let fqn = match &model.version {
        Some(v) => {
            let mut fqn = model.fqn.clone();
            fqn.pop();
            fqn.push(v.name.clone());
            fqn.push(format!("v{}", v.version));
            fqn
        }
        None => model.fqn.clone(),
    };
    let mut config = project.tree_config(TreeKind::Models, &fqn);
    if let Some(p) = props {
        config.apply(&p.config);
    }
    let node = Node {
        path: model.path.clone(),
        relative: model.relative.clone(),
        fqn,
        version: model.version.clone(),
        file: Some(model.file.clone()),
        description: props.map(|p| p.description.clone()).unwrap_or_default(),
        columns: props.map(|p| p.columns.clone()).unwrap_or_default(),
        constraints: props.map(|p| p.constraints.clone()).unwrap_or_default(),
        patch_path: props.map(|p| p.patch_path.clone()),
        ..Node::new(
            ResourceType::Model,
            model.unique_id(),
            model.node_name(),
            placeholder.clone(),
        )
    };
    (node, config)
}

/// A seed's node, `None` when its config disables it. Its relation is final: a seed has no
/// template.
pub(super) fn seed_node(
    renderer: &Renderer,
    project: &Project,
    target: &Target,
    seed: &crate::project::SeedFile,
    placeholder: &Relation,
) -> Option<Result<Node, Problem>> {
    let props = project.seed_props.get(&seed.name);
    let mut config = project.tree_config(TreeKind::Seeds, &seed.fqn);
    if let Some(p) = props {
        config.apply(&p.config);
    }
    let id = format!("seed.{}.{}", seed.fqn[0], seed.name);
    if let Err(p) = renderer.render_config(&id, &mut config, &format!("seed `{}`", seed.name)) {
        return Some(Err(p));
    }
    if !config.enabled() {
        return None;
    }
    let mut node = Node {
        path: seed.path.clone(),
        relative: seed.relative.clone(),
        fqn: seed.fqn.clone(),
        config,
        description: props.map(|p| p.description.clone()).unwrap_or_default(),
        columns: props.map(|p| p.columns.clone()).unwrap_or_default(),
        patch_path: props.map(|p| p.patch_path.clone()),
        definition: Definition::Seed {
            path: seed.absolute.clone(),
        },
        ..Node::new(
            ResourceType::Seed,
            format!("seed.{}.{}", seed.fqn[0], seed.name),
            &seed.name,
            placeholder.clone(),
        )
    };
    Some(relation_for(renderer, target, &node).map(|r| {
        node.relation = r;
        node
    }))
}

/// A snapshot's node before its parse-pass render, and its config from the project's
/// `snapshots:` tree and YAML (the block's `config()` comes on top when it is rendered).
pub(super) fn snapshot_node(
    project: &Project,
    snapshot: &crate::project::SnapshotDef,
    placeholder: &Relation,
) -> (Node, NodeConfig) {
    let mut config = project.tree_config(TreeKind::Snapshots, &snapshot.fqn);
    config.apply(&snapshot.props.config);
    let node = Node {
        path: snapshot.path.clone(),
        relative: snapshot.relative.clone(),
        fqn: snapshot.fqn.clone(),
        file: Some(snapshot.file.clone()),
        description: snapshot.props.description.clone(),
        columns: snapshot.props.columns.clone(),
        patch_path: (!snapshot.props.patch_path.is_empty())
            .then(|| snapshot.props.patch_path.clone()),
        template: Some(snapshot.template_name()),
        ..Node::new(
            ResourceType::Snapshot,
            format!("snapshot.{}.{}", snapshot.fqn[0], snapshot.name),
            &snapshot.name,
            placeholder.clone(),
        )
    };
    (node, config)
}

/// The analyses: each rendered in the parse pass like a model, for its refs; compiled by
/// `compile`, never run.
pub(super) fn analysis_nodes(
    renderer: &Renderer,
    project: &Project,
    target: &Target,
    nodes: &mut Vec<Node>,
    problems: &mut Vec<Problem>,
) {
    for file in &project.analyses {
        let id = format!("analysis.{}.{}", file.fqn[0], file.name);
        match file_node(
            renderer,
            target,
            file,
            ResourceType::Analysis,
            id,
            NodeConfig::default(),
        ) {
            Ok(Some(node)) => nodes.push(node),
            Ok(None) => {}
            Err(e) => problems.push(e),
        }
    }
}

/// A node whose template is a file of its own that is never built (a singular test, an
/// analysis), rendered in the parse pass for its config, refs and sources. `None` when its
/// config disables it.
fn file_node(
    renderer: &Renderer,
    target: &Target,
    file: &crate::project::ModelFile,
    kind: ResourceType,
    unique_id: String,
    config: NodeConfig,
) -> Result<Option<Node>, Problem> {
    let mut node = Node {
        path: file.path.clone(),
        relative: file.relative.clone(),
        fqn: file.fqn.clone(),
        file: Some(file.file.clone()),
        ..Node::new(
            kind,
            unique_id,
            &file.name,
            in_target(target, Some(&target.database), &target.schema, &file.name),
        )
    };
    let rendered = renderer.render(RenderRequest {
        template: &file.file.name,
        name: &file.name,
        unique_id: &node.unique_id,
        execute: false,
        is_incremental: false,
        config,
        this: node.relation.clone(),
        resolver: Arc::new(NoResolver),
        introspector: None,
        model: model_value(&node),
    })?;
    node.config = rendered.config;
    if !node.config.enabled() {
        return Ok(None);
    }
    node.refs = rendered.refs;
    node.sources = rendered.sources;
    Ok(Some(node))
}

/// The test nodes: a generic test for each YAML declaration whose node exists and is enabled,
/// and a singular test for each `.sql` file in test-paths (parsed like a model).
pub(super) fn test_nodes(
    renderer: &Renderer,
    project: &Project,
    target: &Target,
    nodes: &mut Vec<Node>,
    problems: &mut Vec<Problem>,
) {
    // Every name a ref finds, with the version it names (a versioned model's `m_v2`).
    let refs: std::collections::BTreeMap<std::borrow::Cow<'_, str>, Option<&str>> = nodes
        .iter()
        .filter(|n| n.resource_type != ResourceType::Source)
        .flat_map(|n| {
            let version = n.version.as_ref().map(|v| v.version.as_str());
            n.ref_names().map(move |name| (name, version))
        })
        .collect();
    let sources: std::collections::BTreeSet<(&str, &str)> = nodes
        .iter()
        .filter_map(Node::source)
        .map(|s| (s.source_name.as_str(), s.name.as_str()))
        .collect();
    let mut tests = Vec::with_capacity(project.generic_tests.len() + project.singular_tests.len());
    let mut seen = std::collections::BTreeSet::new();
    for def in &project.generic_tests {
        let exists = match &def.target {
            TestTarget::Ref(name) => refs.contains_key(name.as_str()),
            TestTarget::Source(s, t) => sources.contains(&(s.as_str(), t.as_str())),
        };
        if !exists {
            continue;
        }
        let name = def.node_name();
        let mut fqn = vec![def.package.clone()];
        if let Some((dir, _)) = def.path.rsplit_once('/') {
            fqn.extend(dir.split('/').skip(1).map(String::from));
        }
        fqn.push(name.clone());
        let mut config = project.tree_config(TreeKind::Tests, &fqn);
        config.apply(&def.config);
        let owner = format!("test.{}.{name}", def.package);
        if let Err(p) = renderer.render_config(&owner, &mut config, &format!("test `{name}`")) {
            problems.push(p);
            continue;
        }
        if !config.enabled() {
            continue;
        }
        if !renderer.has_test(def.namespace.as_deref(), &def.test_name) {
            let file = &def.path;
            let near = crate::suggest::suggestions(
                &def.test_name,
                renderer.test_names().iter().map(String::as_str),
            );
            let full_name = match &def.namespace {
                Some(ns) => format!("{ns}.{}", def.test_name),
                None => def.test_name.clone(),
            };
            let help = match (&def.namespace, near.first()) {
                (Some(ns), _) if !renderer.has_package(ns) => format!(
                    "`{ns}` is not an installed package: add it to packages.yml and run `xform deps`"
                ),
                (Some(ns), _) => format!(
                    "the package `{ns}` has no `{{% test {} %}}` block",
                    def.test_name
                ),
                (None, Some(best)) => format!("did you mean `{best}`?"),
                (None, None) => "the built-in tests are unique, not_null, accepted_values and relationships;\nothers are `{% test name(model, column_name) %}` blocks in a macro or test path".to_string(),
            };
            problems.push(
                Problem::new(
                    Code::UnknownTest,
                    format!(
                        "`{file}` applies the test `{}` to `{}`, but no test has this name",
                        full_name,
                        def.target.label()
                    ),
                )
                .at(
                    &def.file,
                    def.offset,
                    full_name.len(),
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
                version: refs
                    .get(name.as_str())
                    .copied()
                    .flatten()
                    .filter(|v| name.ends_with(&crate::project::version_key("", v)))
                    .map(String::from),
            }),
            TestTarget::Source(s, t) => node_sources.push((s.clone(), t.clone())),
        };
        // dbt lists what the arguments point at (`to:`…) before the tested model.
        for (_, target) in def.relation_args() {
            add(&target);
        }
        add(&def.target);
        // Two tests may share a name (arguments that clean to the same text: `regex: "@[^.]*"`
        // and `"&[^.]*"`), as in dbt: their ids differ by the hash of their arguments. Only the
        // same test twice is refused.
        let unique_id = format!("test.{}.{name}.{}", def.package, def.id_hash(&name));
        if !seen.insert(unique_id.clone()) {
            problems.push(
                Problem::new(
                    Code::DuplicateNode,
                    format!("two data tests are named `{name}` with the same arguments"),
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
        let relation = audit_relation(target, &config, def.short_name());
        // dbt's `depends_on.macros` of a generic test: its test macro and the `where:` helper.
        let test_macro = format!("test_{}", def.test_name);
        let test_macro = match &def.namespace {
            Some(ns) => format!("{ns}.{test_macro}"),
            None => test_macro,
        };
        let depends_on_macros: Vec<String> = renderer
            .macro_package(&test_macro)
            .map(|p| format!("macro.{p}.test_{}", def.test_name))
            .into_iter()
            .chain(std::iter::once("macro.dbt.get_where_subquery".to_string()))
            .collect();
        tests.push(Node {
            path: def.path.clone(),
            relative: def.path.clone(),
            fqn,
            config,
            refs: node_refs,
            sources: node_sources,
            depends_on_macros,
            definition: Definition::GenericTest(def.clone()),
            ..Node::new(ResourceType::Test, unique_id, &name, relation)
        });
    }
    for file in &project.singular_tests {
        let mut config = project.tree_config(TreeKind::Tests, &file.fqn);
        let owner = format!("test.{}.{}", file.fqn[0], file.name);
        if let Err(p) =
            renderer.render_config(&owner, &mut config, &format!("test `{}`", file.name))
        {
            problems.push(p);
            continue;
        }
        let id = format!("test.{}.{}", file.fqn[0], file.name);
        match file_node(renderer, target, file, ResourceType::Test, id, config) {
            Ok(Some(mut node)) => {
                node.relation = audit_relation(target, &node.config, &file.name);
                tests.push(node);
            }
            Ok(None) => {}
            Err(e) => problems.push(e),
        }
    }
    nodes.extend(tests);
}
