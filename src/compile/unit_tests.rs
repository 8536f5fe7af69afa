//! Unit-test nodes: one per enabled `unit_tests:` entry whose model exists, its inputs checked
//! against what the model reads, so that `xform compile` already reports a missing or stray
//! input.

use std::collections::HashMap;
use std::sync::Arc;

use super::naming::in_target;
use super::{Compiler, model_value};
use crate::config::Target;
use crate::diagnostics::{Code, Problem};
use crate::graph::{Definition, Graph, Node, ResourceType};
use crate::project::unit_tests::{Input, UnitTestDef};
use crate::project::{Project, TestTarget};
use crate::render::{Introspect, RefCall, Relation, RenderRequest, Resolve};

/// The unit-test nodes: one per enabled `unit_tests:` entry whose model exists. Each depends
/// on its model (as in dbt's manifest); the scheduler runs it before the model instead. Its
/// inputs are checked against what the model reads, so `xform compile` already reports a
/// missing or stray input.
pub(super) fn unit_test_nodes(
    renderer: &crate::render::Renderer,
    project: &Project,
    target: &Target,
    nodes: &mut Vec<Node>,
    problems: &mut Vec<Problem>,
) {
    let mut units = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    'defs: for def in &project.unit_tests {
        let at = |p: Problem, label: &str| {
            p.at(&def.file, def.offset, def.name.len(), label.to_string())
        };
        // A disabled unit test is not checked at all.
        let mut fqn = vec![def.package.clone()];
        if let Some((dir, _)) = def.path.rsplit_once('/') {
            fqn.extend(dir.split('/').skip(1).map(String::from));
        }
        fqn.push(def.model.clone());
        fqn.push(def.name.clone());
        let mut config = project.tree_config(crate::project::TreeKind::Tests, &fqn);
        config.apply(&def.config);
        let owner = format!("unit_test.{}.{}", def.package, def.name);
        if let Err(p) =
            renderer.render_config(&owner, &mut config, &format!("unit test `{}`", def.name))
        {
            problems.push(p);
            continue;
        }
        if !config.enabled() {
            continue;
        }
        // The model by its name (a versioned model's latest version; its versions are found
        // below); a package's unit test finds its own package's model first.
        let candidates = || {
            nodes.iter().filter(|n| {
                n.ref_names().any(|r| r == def.model.as_str())
                    && matches!(
                        n.resource_type,
                        ResourceType::Model | ResourceType::Snapshot
                    )
            })
        };
        let own = candidates().find(|n| n.package() == def.package);
        // A unit test of a model its package has but turned off is off too.
        if own.is_none()
            && project.models.iter().any(|m| {
                m.fqn.first() == Some(&def.package)
                    && (m.name == def.model || m.fqn.last() == Some(&def.model))
            })
        {
            continue;
        }
        let tested = own.or_else(|| candidates().next());
        let Some(model) = tested else {
            let names = nodes
                .iter()
                .filter(|n| n.resource_type == ResourceType::Model)
                .map(|n| n.name.as_str());
            let near = crate::suggest::suggestions(&def.model, names);
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
        if !seen.insert((def.package.clone(), def.model.clone(), def.name.clone())) {
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
        // A versioned model's unit test tests each of its versions (`versions:` narrows them),
        // as `<name>_v<version>`, as in dbt.
        let targets: Vec<&Node> = match &model.version {
            None => {
                if def
                    .versions
                    .as_ref()
                    .is_some_and(|(include, exclude)| !include.is_empty() || !exclude.is_empty())
                {
                    problems.push(at(
                        Problem::new(
                            Code::UnitTest,
                            format!(
                                "unit test `{}` has `versions:` but the model `{}` is not versioned",
                                def.name, def.model
                            ),
                        ),
                        "this unit test",
                    )
                    .help("remove `versions:`, or version the model under `versions:` in its YAML"));
                    continue;
                }
                vec![model]
            }
            Some(v) => {
                let mut all: Vec<&Node> = nodes
                    .iter()
                    .filter(|n| {
                        n.resource_type == ResourceType::Model
                            && n.package() == model.package()
                            && n.version.as_ref().is_some_and(|o| o.name == v.name)
                    })
                    .filter(|n| {
                        let version = n.version.as_ref().map_or("", |o| o.version.as_str());
                        // As dbt: `exclude:` when it lists any, else `include:` when it does.
                        def.versions.as_ref().is_none_or(|(include, exclude)| {
                            if exclude.is_empty() {
                                include.is_empty() || include.iter().any(|i| i == version)
                            } else {
                                !exclude.iter().any(|e| e == version)
                            }
                        })
                    })
                    .collect();
                all.sort_by(|a, b| a.unique_id.cmp(&b.unique_id));
                if all.is_empty() {
                    problems.push(at(
                        Problem::new(
                            Code::UnitTest,
                            format!(
                                "unit test `{}` names versions of `{}` that do not exist",
                                def.name, def.model
                            ),
                        ),
                        "this unit test",
                    )
                    .help("list existing versions under `versions: {include: [...]}` or `exclude:`"));
                    continue;
                }
                all
            }
        };
        let mut built = Vec::new();
        for model in targets {
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
                continue 'defs;
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
                continue 'defs;
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
                continue 'defs;
            }
            built.push(Node {
                path: def.path.clone(),
                relative: def.path.clone(),
                fqn: fqn.clone(),
                config: config.clone(),
                description: def.description.clone(),
                refs: vec![RefCall {
                    package: None,
                    name: model.ref_name().into_owned(),
                    version: model.version.as_ref().map(|v| v.version.clone()),
                }],
                definition: Definition::UnitTest(Arc::new(def.clone())),
                ..Node::new(
                    ResourceType::UnitTest,
                    match &model.version {
                        Some(v) => format!(
                            "unit_test.{}.{}.{}_v{}",
                            def.package, def.model, def.name, v.version
                        ),
                        None => format!("unit_test.{}.{}.{}", def.package, def.model, def.name),
                    },
                    &def.name,
                    in_target(target, Some(&target.database), &target.schema, &def.name),
                )
            });
        }
        units.extend(built);
    }
    nodes.extend(units);
}

/// Every `ref()` and `source()` resolves to its node's relation: ephemeral models too, since in
/// a unit test's database every input is a table.
pub(crate) struct TableResolver {
    refs: HashMap<String, Relation>,
    sources: HashMap<(String, String), Relation>,
}

impl TableResolver {
    pub(crate) fn new(graph: &Graph) -> Self {
        let mut refs = HashMap::new();
        let mut sources = HashMap::new();
        for n in &graph.nodes {
            match (n.resource_type, n.source()) {
                (ResourceType::Source, Some(s)) => {
                    // A source read from files is a table of given rows here.
                    let relation = Relation {
                        external: None,
                        ..n.relation.clone()
                    };
                    sources.insert((s.source_name.clone(), s.name.clone()), relation);
                }
                (ResourceType::Model | ResourceType::Seed | ResourceType::Snapshot, _) => {
                    for name in n.ref_names() {
                        refs.insert(name.to_string(), n.relation.clone());
                    }
                }
                _ => {}
            }
        }
        TableResolver { refs, sources }
    }
}

impl Resolve for TableResolver {
    fn resolve_ref(&self, _package: Option<&str>, name: &str) -> Option<Relation> {
        self.refs.get(name).cloned()
    }
    fn resolve_source(&self, source: &str, table: &str) -> Option<Relation> {
        self.sources
            .get(&(source.to_string(), table.to_string()))
            .cloned()
    }
}

/// `ref()` and `source()` of a given input read its CTE; any other input its relation.
pub(crate) struct GivenResolver {
    pub given: HashMap<Input, Relation>,
    pub base: TableResolver,
}

impl Resolve for GivenResolver {
    fn resolve_ref(&self, package: Option<&str>, name: &str) -> Option<Relation> {
        self.given
            .get(&Input::Node(TestTarget::Ref(name.to_string())))
            .cloned()
            .or_else(|| self.base.resolve_ref(package, name))
    }
    fn resolve_source(&self, source: &str, table: &str) -> Option<Relation> {
        self.given
            .get(&Input::Node(TestTarget::Source(
                source.to_string(),
                table.to_string(),
            )))
            .cloned()
            .or_else(|| self.base.resolve_source(source, table))
    }
}

/// Render a model (or snapshot) for a unit test with its overrides: every input as `resolver`
/// says, `this` as given, `is_incremental()` as asked unless the overrides say otherwise.
pub(crate) fn render_unit(
    compiler: &Compiler<'_>,
    node: &Node,
    resolver: Arc<dyn Resolve>,
    introspector: Option<Arc<dyn Introspect>>,
    this: Relation,
    is_incremental: bool,
    unit: Option<&UnitTestDef>,
) -> Result<String, Problem> {
    let Some(file) = &node.file else {
        return Ok(String::new());
    };
    let rendered = compiler.renderer().render_with(
        RenderRequest {
            template: node.template.as_deref().unwrap_or(&file.name),
            name: &node.name,
            unique_id: &node.unique_id,
            execute: true,
            is_incremental,
            config: node.config.clone(),
            this,
            resolver,
            introspector,
            model: model_value(node),
        },
        unit.map(|u| &u.overrides),
    )?;
    Ok(rendered.sql)
}

/// A unit test's model (its first model or snapshot parent) and, for each given input, the
/// node it stands for (`None`: the model does not read it).
pub(crate) fn given_nodes(graph: &Graph, test: usize) -> Option<(usize, Vec<Option<usize>>)> {
    let unit = graph.nodes[test].unit()?;
    let model = graph.parents(test).into_iter().find(|&p| {
        matches!(
            graph.nodes[p].resource_type,
            ResourceType::Model | ResourceType::Snapshot
        )
    })?;
    let parents = graph.parents(model);
    let owners = unit
        .given
        .iter()
        .map(|g| match &g.input {
            Input::This => Some(model),
            Input::Node(TestTarget::Ref(name)) => parents.iter().copied().find(|&p| {
                graph.nodes[p].resource_type != ResourceType::Source
                    && graph.nodes[p].ref_names().any(|r| r == name.as_str())
            }),
            Input::Node(TestTarget::Source(source, table)) => parents.iter().copied().find(|&p| {
                graph.nodes[p]
                    .source()
                    .is_some_and(|s| &s.source_name == source && &s.name == table)
            }),
        })
        .collect();
    Some((model, owners))
}

/// Render unit test `test`'s model as a warehouse runs it: each given input reads its CTE
/// (`materialize::unit_test`), `this` too when it is given; a seed given without rows reads
/// its relation.
pub(crate) fn render_inline(
    compiler: &Compiler<'_>,
    graph: &Graph,
    test: usize,
    introspector: Option<Arc<dyn Introspect>>,
) -> Option<Result<String, Problem>> {
    let unit = graph.nodes[test].unit()?;
    let (model, _) = given_nodes(graph, test)?;
    let model = &graph.nodes[model];
    let given: HashMap<Input, Relation> = unit
        .given
        .iter()
        .filter(|g| g.rows != crate::project::unit_tests::Rows::Missing)
        .map(|g| {
            (
                g.input.clone(),
                crate::materialize::unit_test::fixture_relation(&g.input),
            )
        })
        .collect();
    let this = given
        .get(&Input::This)
        .cloned()
        .unwrap_or_else(|| model.relation.clone());
    let resolver = Arc::new(GivenResolver {
        given,
        base: TableResolver::new(graph),
    });
    Some(render_unit(
        compiler,
        model,
        resolver,
        introspector,
        this,
        false,
        Some(unit),
    ))
}
