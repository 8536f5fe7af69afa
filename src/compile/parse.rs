//! The parse pass: every model (and snapshot) rendered once with `execute` false, in
//! parallel, to learn its config, refs and sources; with the property YAML and the project's
//! config trees that gives each node its final config and relation. Refs, sources and `this`
//! render as relations predicted before the pass (`predict`), so that the text can double as
//! compiled SQL. Then the graph is built from every node.

use std::collections::HashMap;
use std::sync::Arc;

use rayon::prelude::*;

use super::naming::in_target;
use super::naming::{default_relation, relation_for, snapshot_relation, source_relation};
use super::nodes::{analysis_nodes, model_node, model_value, seed_node, snapshot_node, test_nodes};
use super::resolve::GraphResolver;
use super::unit_tests::unit_test_nodes;
use crate::config::{RunInfo, Target};
use crate::diagnostics::Problem;
use crate::graph::{Definition, Graph, Node, ResourceType};
use crate::project::{NodeConfig, Project, TreeKind};
use crate::render::{Prerendered, Relation, RenderRequest, Renderer};

/// A snapshot's node: config from the project's `snapshots:` tree, then YAML, then the
/// block's `config()`.
pub(super) fn parse_snapshot(
    renderer: &Renderer,
    project: &Project,
    target: &Target,
    snapshot: &crate::project::SnapshotDef,
    placeholder: &Relation,
    predicted: &Predicted,
) -> Result<Option<Node>, Problem> {
    let (node, mut config) = snapshot_node(project, snapshot, placeholder);
    renderer.render_config(
        &node.unique_id,
        &mut config,
        &format!("snapshot `{}`", snapshot.name),
    )?;
    let template = snapshot.template_name();
    let Some(mut node) = parse_render(renderer, target, node, &template, config, predicted)? else {
        return Ok(None);
    };
    node.relation = snapshot_relation(renderer, target, &node)?;
    Ok(Some(node))
}

/// Render a node's template in the parse pass (`execute` false) and keep what it recorded:
/// its final config, refs and sources, and its text when the compile pass may reuse it.
/// `None` when the config turns out to disable the node.
pub(super) fn parse_render(
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
        .unwrap_or_else(|| in_target(target, Some(&target.database), &target.schema, &node.name));
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
    node.depends_on_macros = rendered.macros;
    // Hooks are rendered when they run; the macros they name count as the node's, as dbt
    // finds them when it parses the hooks.
    for key in ["pre-hook", "post-hook"] {
        for hook in hook_texts(node.config.get(key)) {
            for id in renderer.macro_calls(&hook) {
                if !node.depends_on_macros.contains(&id) {
                    node.depends_on_macros.push(id);
                }
            }
        }
    }
    if rendered.reusable {
        node.prerendered = Some(Prerendered {
            sql: Arc::from(rendered.sql),
            this,
            resolved: rendered.resolved,
        });
    }
    Ok(Some(node))
}

/// The relations the parse pass renders `ref()`, `source()` and `this` as: what each node's
/// project and YAML config give, before its own `config()` calls are known. Where a
/// prediction turns out wrong, the compile pass renders the models that used it again.
pub(super) struct Predicted {
    resolver: Arc<GraphResolver>,
    /// `this` by unique id.
    this: HashMap<String, Relation>,
}

pub(super) fn predict(
    renderer: &Renderer,
    project: &Project,
    sources: &[crate::project::SourceTable],
    target: &Target,
    broken: &std::collections::BTreeSet<String>,
    placeholder: &Relation,
) -> Predicted {
    let mut resolver = GraphResolver::default();
    let mut this = HashMap::new();
    let custom_schemas = renderer.has_macro("generate_schema_name");
    let models: Vec<(Vec<String>, String, bool, Relation)> = project
        .models
        .par_iter()
        .filter(|model| !broken.contains(&model.file.name))
        .filter_map(|model| {
            let (unique_id, config, relation) = if custom_schemas {
                let (mut node, mut config) = model_node(project, model, placeholder);
                renderer
                    .render_config(&model.unique_id(), &mut config, "")
                    .ok()?;
                for (key, value) in literal_config(&model.file.text) {
                    config.set(key, serde_json::Value::String(value.to_string()));
                }
                node.config = config;
                let relation = relation_for(renderer, target, &node).ok()?;
                (node.unique_id, node.config, Some(relation))
            } else {
                let mut config = project.tree_config(TreeKind::Models, &model.fqn);
                if let Some(p) = project.model_props.get(&model.name) {
                    config.apply(&p.config);
                }
                renderer
                    .render_config(&model.unique_id(), &mut config, "")
                    .ok()?;
                for (key, value) in literal_config(&model.file.text) {
                    config.set(key, serde_json::Value::String(value.to_string()));
                }
                (model.unique_id(), config, None)
            };
            if !config.enabled() {
                return None;
            }
            let names = model.ref_names();
            let relation = match relation {
                Some(r) => r,
                None => default_relation(target, &config, &names[0]),
            };
            let ephemeral = config.materialized() == "ephemeral";
            Some((names, unique_id, ephemeral, relation))
        })
        .collect();
    for (names, unique_id, ephemeral, relation) in models {
        let as_ref = if ephemeral {
            Relation::cte(&names[0])
        } else {
            relation.clone()
        };
        for name in names {
            resolver.refs.insert(name, as_ref.clone());
        }
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
        let (mut node, mut config) = snapshot_node(project, snapshot, placeholder);
        if renderer
            .render_config(&node.unique_id, &mut config, "")
            .is_err()
        {
            continue;
        }
        node.config = config;
        if let Ok(relation) = snapshot_relation(renderer, target, &node) {
            add(&node, relation);
        }
    }
    for source in sources {
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

/// An `external` model's files: its `location` (relative to the project), or by default
/// `<external_root>/<identifier>.<format>` (the profile's `external_root`, else the project).
fn external_location(project: &Project, target: &Target, node: &mut Node) {
    if node.materialized() != crate::graph::Materialization::External {
        return;
    }
    let root = match &target.credentials {
        crate::config::Credentials::DuckDb(file) => file.setup.external_root.clone(),
        _ => None,
    }
    .unwrap_or_else(|| project.root.clone());
    let location = match node.config.str("location") {
        Some(l) if l.contains("://") || std::path::Path::new(l).is_absolute() => l.to_string(),
        Some(l) => project.root.join(l).display().to_string(),
        None => {
            let format = crate::materialize::FileFormat::of(node.config.str("format"), None)
                .map_or("parquet", crate::materialize::FileFormat::as_str);
            root.join(format!("{}.{format}", node.relation.identifier))
                .display()
                .to_string()
        }
    };
    node.config
        .set("location", serde_json::Value::String(location));
}

/// Descriptions with Jinja (`{{ doc('orders') }}`) of the nodes and their columns, rendered.
fn render_descriptions(renderer: &Renderer, nodes: &mut [Node], problems: &mut Vec<Problem>) {
    for node in nodes {
        let what = format!("{} `{}`", node.resource_type.as_str(), node.name);
        let owner = node.unique_id.clone();
        let mut one =
            |text: &mut String, what: &str| match renderer.render_property(&owner, text, what) {
                Ok(Some(rendered)) => *text = rendered,
                Ok(None) => {}
                Err(p) => problems.push(p),
            };
        one(&mut node.description, &format!("the description of {what}"));
        for c in &mut node.columns {
            one(
                &mut c.description,
                &format!("the description of column `{}` of {what}", c.name),
            );
            // `data_type: "{{ 'UInt8' if target.type == 'clickhouse' else 'integer' }}"`, as
            // dbt renders property YAML.
            if let Some(data_type) = c.data_type.as_mut()
                && crate::render::has_jinja(data_type)
            {
                let mut text = data_type.clone();
                one(
                    &mut text,
                    &format!("the data_type of column `{}` of {what}", c.name),
                );
                *data_type = text.trim().to_string();
            }
        }
        if let Definition::Source(s) = &mut node.definition {
            one(
                &mut s.source_description,
                &format!("the description of source `{}`", s.source_name),
            );
            s.description.clone_from(&node.description);
            s.columns.clone_from(&node.columns);
        }
    }
}

/// What a foreign key constraint's `to:` names: `ref('m')` or `source('s', 't')`.
/// `ref('m')`, `ref('pkg', 'm')` and `ref('m', v=2)` give the name `ref()` finds (`m_v2` for
/// a version); `source('s', 't')` the source.
fn foreign_key_target(text: &str) -> Option<(Option<String>, String)> {
    let text = text.trim();
    let (call, args) = text.strip_suffix(')')?.split_once('(')?;
    let unquote = |a: &str| a.trim().trim_matches(['\'', '"']).to_string();
    let mut positional = Vec::new();
    let mut version = None;
    for arg in args.split(',') {
        match arg.split_once('=') {
            Some((key, value)) if matches!(key.trim(), "v" | "version") => {
                version = Some(unquote(value));
            }
            Some(_) => return None,
            None => positional.push(unquote(arg)),
        }
    }
    match (call.trim(), positional.as_slice()) {
        ("ref", [.., name]) if positional.len() <= 2 => Some((
            None,
            match version {
                Some(v) => crate::project::version_key(name, &v),
                None => name.clone(),
            },
        )),
        ("source", [source, table]) => Some((Some(source.clone()), table.clone())),
        _ => None,
    }
}

/// The constraints of a node's contract, model-level and its columns'.
fn constraints_mut(node: &mut Node) -> impl Iterator<Item = &mut serde_json::Value> {
    node.constraints.iter_mut().chain(
        node.columns
            .iter_mut()
            .flat_map(|c| c.constraints.iter_mut()),
    )
}

/// A foreign key's `to:` makes the node depend on what it names, as in dbt: the referenced
/// table must be built first.
fn add_foreign_key_refs(node: &mut Node) {
    if !crate::materialize::contract::enforced(node) {
        return;
    }
    let mut refs = Vec::new();
    let mut sources = Vec::new();
    for c in constraints_mut(node) {
        match c
            .get("to")
            .and_then(serde_json::Value::as_str)
            .and_then(foreign_key_target)
        {
            Some((None, name)) => refs.push(crate::render::RefCall {
                package: None,
                name,
                version: None,
            }),
            Some((Some(source), table)) => sources.push((source, table)),
            None => {}
        }
    }
    node.refs.extend(refs);
    node.sources.extend(sources);
}

/// The SQL texts of a `pre-hook` / `post-hook` config value: a string, `{sql: ...}`, or a list
/// of them.
fn hook_texts(value: Option<&serde_json::Value>) -> Vec<String> {
    match value {
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        Some(serde_json::Value::Object(m)) => m
            .get("sql")
            .and_then(serde_json::Value::as_str)
            .map(String::from)
            .into_iter()
            .collect(),
        Some(serde_json::Value::Array(items)) => {
            items.iter().flat_map(|i| hook_texts(Some(i))).collect()
        }
        _ => Vec::new(),
    }
}

/// The sources with the Jinja in their `database`, `schema` and `identifier` rendered, as dbt
/// renders them (`schema: "{{ target.schema ~ '_raw' }}"`), each as its package's; borrowed as
/// they are when none has any.
fn render_sources<'p>(
    renderer: &Renderer,
    sources: &'p [crate::project::SourceTable],
    problems: &mut Vec<Problem>,
) -> std::borrow::Cow<'p, [crate::project::SourceTable]> {
    let jinja = |t: &str| t.contains("{{") || t.contains("{%");
    if !sources.iter().any(|s| {
        jinja(&s.schema) || jinja(&s.identifier) || s.database.as_deref().is_some_and(jinja)
    }) {
        return std::borrow::Cow::Borrowed(sources);
    }
    let mut out = sources.to_vec();
    for s in &mut out {
        let owner = format!("source.{}.{}.{}", s.fqn[0], s.source_name, s.name);
        let name = format!("{}.{}", s.source_name, s.name);
        let mut fields: Vec<(&str, &mut String)> =
            vec![("schema", &mut s.schema), ("identifier", &mut s.identifier)];
        if let Some(db) = s.database.as_mut() {
            fields.push(("database", db));
        }
        for (key, field) in fields {
            if !jinja(field) {
                continue;
            }
            let what = format!("the `{key}` of source `{name}`");
            match renderer.render_property(&owner, field, &what) {
                Ok(Some(text)) => *field = text.trim().to_string(),
                Ok(None) => {}
                Err(p) => problems.push(p),
            }
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Record the relation each foreign key's `to:` names, for the table's DDL.
fn resolve_foreign_keys(graph: &mut Graph) {
    let mut refs: HashMap<String, String> = HashMap::new();
    let mut sources: HashMap<(String, String), String> = HashMap::new();
    for n in &graph.nodes {
        match n.source() {
            Some(s) => {
                sources.insert(
                    (s.source_name.clone(), s.name.clone()),
                    n.relation.to_string(),
                );
            }
            None if n.has_relation() => {
                for name in n.ref_names() {
                    refs.insert(name.to_string(), n.relation.to_string());
                }
            }
            None => {}
        }
    }
    for node in &mut graph.nodes {
        if node.resource_type != ResourceType::Model
            || !crate::materialize::contract::enforced(node)
        {
            continue;
        }
        for c in constraints_mut(node) {
            let target = c
                .get("to")
                .and_then(serde_json::Value::as_str)
                .and_then(foreign_key_target);
            let relation = match target {
                Some((None, name)) => refs.get(&name).cloned(),
                Some((Some(s), t)) => sources.get(&(s, t)).cloned(),
                None => None,
            };
            if let (Some(relation), Some(map)) = (relation, c.as_object_mut()) {
                map.insert(
                    crate::materialize::contract::TO_RELATION.to_string(),
                    serde_json::Value::String(relation),
                );
            }
        }
    }
}

/// The keys that decide a model's relation, where its file sets them to a string literal in a
/// `config(...)` call (`config(materialized='ephemeral')`). Only a hint for `predict`: a wrong
/// or missed hint costs a second render, never a wrong result, so the scan is plain text.
pub(super) fn literal_config(text: &str) -> Vec<(&'static str, &str)> {
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

/// Parse every model and build the graph. Returns every problem found, not just the first.
pub fn parse(
    project: &Project,
    target: &Target,
    run: &RunInfo,
) -> Result<(Renderer, Graph), Vec<Problem>> {
    project.require_packages()?;
    let (renderer, mut problems) =
        Renderer::new(project, target, run, crate::dialect::quoting(target))?;
    crate::timings::mark("templates");
    let broken: std::collections::BTreeSet<String> = problems
        .iter()
        .filter_map(|p| p.label.as_ref().map(|l| l.file.name.clone()))
        .collect();
    let placeholder = in_target(target, Some(&target.database), &target.schema, "");
    let sources = render_sources(&renderer, &project.sources, &mut problems);
    let predicted = predict(&renderer, project, &sources, target, &broken, &placeholder);
    let parsed: Vec<Result<Option<Node>, Problem>> = project
        .models
        .par_iter()
        .filter(|model| !broken.contains(&model.file.name))
        .map(|model| {
            let (node, mut config) = model_node(project, model, &placeholder);
            renderer.render_config(
                &model.unique_id(),
                &mut config,
                &format!("model `{}`", model.name),
            )?;
            let Some(mut node) = parse_render(
                &renderer,
                target,
                node,
                &model.file.name,
                config,
                &predicted,
            )?
            else {
                return Ok(None);
            };
            node.relation = relation_for(&renderer, target, &node)?;
            external_location(project, target, &mut node);
            // A contract that cannot be enforced (an untyped column, an ephemeral model, a
            // malformed constraint) is a project error, found without a database.
            crate::materialize::contract::Contract::of(&node)?;
            add_foreign_key_refs(&mut node);
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
        .filter(|m| broken.contains(&m.file.name))
        .flat_map(crate::project::ModelFile::ref_names)
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
            && let Some(m) = project.models.iter().find(|m| m.file.name == l.file.name)
        {
            unparsed.extend(m.ref_names());
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
    for source in sources.iter() {
        nodes.push(Node {
            path: source.path.clone(),
            relative: source.path.clone(),
            fqn: source.fqn.clone(),
            description: source.description.clone(),
            columns: source.columns.clone(),
            definition: Definition::Source(source.clone()),
            ..Node::new(
                ResourceType::Source,
                format!(
                    "source.{}.{}.{}",
                    source.fqn[0], source.source_name, source.name
                ),
                &source.name,
                source_relation(target, source),
            )
        });
    }
    render_descriptions(&renderer, &mut nodes, &mut problems);
    test_nodes(&renderer, project, target, &mut nodes, &mut problems);
    analysis_nodes(&renderer, project, target, &mut nodes, &mut problems);
    unit_test_nodes(&renderer, project, target, &mut nodes, &mut problems);
    let graph = Graph::build(nodes, &unparsed);
    crate::timings::mark("graph");
    match graph {
        Ok(mut graph) if problems.is_empty() => {
            resolve_foreign_keys(&mut graph);
            if renderer.uses_graph() {
                graph.resources = crate::artifacts::graph_resources(project, &graph);
            }
            Ok((renderer, graph))
        }
        Ok(_) => Err(problems),
        Err(more) => {
            problems.extend(more);
            Err(problems)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_keys_name_refs_in_every_form() {
        assert_eq!(foreign_key_target("ref('m')"), Some((None, "m".into())));
        assert_eq!(
            foreign_key_target("ref('pkg', \"m\")"),
            Some((None, "m".into()))
        );
        assert_eq!(
            foreign_key_target("ref('m', v=2)"),
            Some((None, "m_v2".into()))
        );
        assert_eq!(
            foreign_key_target("source('raw', 'orders')"),
            Some((Some("raw".into()), "orders".into()))
        );
        assert_eq!(foreign_key_target("orders"), None);
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
}
