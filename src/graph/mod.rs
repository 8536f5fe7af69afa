//! The lineage graph: every seed, model and source as a node, `ref()` and `source()` calls as
//! edges, in a petgraph DAG.
//!
//! Building the graph checks what only the whole project can tell: unknown refs and sources
//! (with the closest names as suggestions) and cycles (with the whole path). Node ids are
//! stable strings and every order it hands out is deterministic: ties break on the node id.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::path::PathBuf;

use petgraph::graph::{DiGraph, NodeIndex};

use crate::diagnostics::{Code, Problem, SourceFile};
use crate::project::{ColumnProps, GenericTestDef, NodeConfig, SourceTable};
use crate::render::{Prerendered, RefCall, Relation};
use crate::suggest::{find_call, suggestions};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceType {
    Seed,
    Model,
    Source,
    Snapshot,
    Test,
    UnitTest,
    /// A `.sql` file of analysis-paths: compiled (its refs resolved), never run.
    Analysis,
}

impl ResourceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::Seed => "seed",
            ResourceType::Model => "model",
            ResourceType::Source => "source",
            ResourceType::Snapshot => "snapshot",
            ResourceType::Test => "test",
            ResourceType::UnitTest => "unit_test",
            ResourceType::Analysis => "analysis",
        }
    }
}

/// How a node is built: a model's `materialized` config, or what dbt records for the other
/// kinds of node (`seed`, `snapshot`, `test`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Materialization {
    View,
    Table,
    Incremental,
    Ephemeral,
    /// dbt-duckdb's `external`: files written at `location`, and a view over them.
    External,
    Seed,
    Snapshot,
    Source,
    Test,
    UnitTest,
    Analysis,
    /// A materialization xform cannot build (a project's own, such as `materialized_view`).
    Other(String),
}

impl Materialization {
    /// A model's `materialized` config.
    pub fn of_model(name: &str) -> Materialization {
        match name {
            "view" => Materialization::View,
            "table" => Materialization::Table,
            "incremental" => Materialization::Incremental,
            "ephemeral" => Materialization::Ephemeral,
            "external" => Materialization::External,
            other => Materialization::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Materialization::View => "view",
            Materialization::Table => "table",
            Materialization::Incremental => "incremental",
            Materialization::Ephemeral => "ephemeral",
            Materialization::External => "external",
            Materialization::Seed => "seed",
            Materialization::Snapshot => "snapshot",
            Materialization::Source => "source",
            Materialization::Test => "test",
            Materialization::UnitTest => "unit_test",
            Materialization::Analysis => "analysis",
            Materialization::Other(name) => name,
        }
    }
}

/// What a node is defined by, beyond its template: one variant per kind of node that has
/// something of its own.
#[derive(Debug, Clone, Default)]
pub enum Definition {
    /// Nothing but its template (`Node::file`): a model, a snapshot, a singular test.
    #[default]
    Template,
    /// A seed's CSV file.
    Seed { path: PathBuf },
    /// A source table's YAML definition.
    Source(SourceTable),
    /// A generic test's YAML declaration.
    GenericTest(GenericTestDef),
    /// A unit test's declaration.
    UnitTest(std::sync::Arc<crate::project::UnitTestDef>),
}

/// A node of the project after the parse pass.
#[derive(Debug, Clone)]
pub struct Node {
    pub unique_id: String,
    pub resource_type: ResourceType,
    pub name: String,
    /// Path relative to the project root (`original_file_path`).
    pub path: String,
    /// Path relative to its resource folder.
    pub relative: String,
    pub fqn: Vec<String>,
    /// A versioned model's version and its model's latest version (`versions:` in YAML).
    pub version: Option<crate::project::ModelVersion>,
    /// The file holding the template, for models and snapshots.
    pub file: Option<SourceFile>,
    /// The template's name when it is not the file's name (a snapshot block).
    pub template: Option<String>,
    pub config: NodeConfig,
    pub description: String,
    pub columns: Vec<ColumnProps>,
    /// A model's model-level `constraints:` (its columns' are in `columns`).
    pub constraints: Vec<serde_json::Value>,
    pub patch_path: Option<String>,
    pub refs: Vec<RefCall>,
    pub sources: Vec<(String, String)>,
    /// Unique ids of the nodes this one reads, deduplicated, in first-use order.
    pub depends_on: Vec<String>,
    /// The macros its template (and hooks) call directly, as dbt's `depends_on.macros`:
    /// `macro.<package>.<name>`, in the order first called.
    pub depends_on_macros: Vec<String>,
    pub relation: Relation,
    /// What only this kind of node has: a seed's file, a source's or a test's declaration.
    pub definition: Definition,
    /// The parse pass's text, when the compile pass may use it instead of rendering again.
    pub prerendered: Option<Prerendered>,
}

impl Node {
    /// A node of this kind with nothing read, declared or configured yet: every node is made
    /// from this (`Node { name, path, ..Node::new(…) }`), so a new field has one default.
    pub fn new(
        resource_type: ResourceType,
        unique_id: String,
        name: &str,
        relation: Relation,
    ) -> Node {
        Node {
            unique_id,
            resource_type,
            name: name.to_string(),
            path: String::new(),
            relative: String::new(),
            fqn: Vec::new(),
            version: None,
            file: None,
            template: None,
            config: NodeConfig::default(),
            description: String::new(),
            columns: Vec::new(),
            constraints: Vec::new(),
            patch_path: None,
            refs: Vec::new(),
            sources: Vec::new(),
            depends_on: Vec::new(),
            depends_on_macros: Vec::new(),
            relation,
            definition: Definition::Template,
            prerendered: None,
        }
    }

    /// The name `ref()` finds the node by: a versioned model's `<name>_v<version>`, else its
    /// name. (The latest version is also found by its model's name.)
    pub fn ref_name(&self) -> std::borrow::Cow<'_, str> {
        match &self.version {
            Some(v) => std::borrow::Cow::Owned(v.key()),
            None => std::borrow::Cow::Borrowed(&self.name),
        }
    }

    /// Every name `ref()` finds the node by: `ref_name()`, and for the latest version of a
    /// versioned model its model's name too.
    pub fn ref_names(&self) -> impl Iterator<Item = std::borrow::Cow<'_, str>> {
        let latest = self
            .version
            .as_ref()
            .filter(|v| v.version == v.latest)
            .map(|_| std::borrow::Cow::Borrowed(self.name.as_str()));
        std::iter::once(self.ref_name()).chain(latest)
    }

    /// The project or installed package the node belongs to (`package_name`).
    pub fn package(&self) -> &str {
        self.fqn.first().map_or("", String::as_str)
    }

    /// A seed's CSV file.
    pub fn seed_path(&self) -> Option<&std::path::Path> {
        match &self.definition {
            Definition::Seed { path } => Some(path),
            _ => None,
        }
    }

    /// A source's YAML definition.
    pub fn source(&self) -> Option<&SourceTable> {
        match &self.definition {
            Definition::Source(s) => Some(s),
            _ => None,
        }
    }

    /// A generic test's declaration (a singular test has none).
    pub fn test(&self) -> Option<&GenericTestDef> {
        match &self.definition {
            Definition::GenericTest(t) => Some(t),
            _ => None,
        }
    }

    /// A unit test's declaration.
    pub fn unit(&self) -> Option<&crate::project::UnitTestDef> {
        match &self.definition {
            Definition::UnitTest(u) => Some(u),
            _ => None,
        }
    }

    pub fn materialized(&self) -> Materialization {
        match self.resource_type {
            ResourceType::Seed => Materialization::Seed,
            ResourceType::Source => Materialization::Source,
            ResourceType::Snapshot => Materialization::Snapshot,
            ResourceType::Test => Materialization::Test,
            ResourceType::UnitTest => Materialization::UnitTest,
            ResourceType::Analysis => Materialization::Analysis,
            ResourceType::Model => Materialization::of_model(self.config.materialized()),
        }
    }

    /// Whether the node is, or reads, a relation of the database (an ephemeral model, a test
    /// and a unit test are not).
    pub fn has_relation(&self) -> bool {
        match self.resource_type {
            ResourceType::Model => !self.is_ephemeral(),
            ResourceType::Seed | ResourceType::Snapshot | ResourceType::Source => true,
            ResourceType::Test | ResourceType::UnitTest | ResourceType::Analysis => false,
        }
    }

    /// Where the node's compiled SQL goes below `target/compiled/<project>/`: its file, or for a
    /// generic test `<yaml file>/<test name, shortened when long>.sql` (as dbt writes it).
    pub fn compiled_file(&self) -> String {
        if let Some(test) = self.test() {
            format!("{}/{}.sql", self.path, test.short_name())
        } else if let Some(unit) = self.unit() {
            format!("{}/{}/{}.sql", self.path, unit.model, self.name)
        } else {
            self.path.clone()
        }
    }

    /// The sha256 of what the node is made from, as dbt's manifest records it: a seed's file
    /// (read now: only the manifest and `state:` ask), a unit test's YAML entry, otherwise the
    /// file its code is in. `state:modified` compares it.
    pub fn checksum(&self) -> Option<String> {
        if let Some(unit) = self.unit() {
            return Some(unit.checksum.clone());
        }
        match (self.seed_path(), &self.file) {
            (Some(path), _) => crate::project::file_sha256(path),
            (None, Some(_)) => Some(crate::project::sha256(self.raw_code().as_bytes())),
            (None, None) => None,
        }
    }

    /// The node's code as dbt records it (`raw_code`, and what its checksum covers): the
    /// file's text without leading and trailing whitespace.
    pub fn raw_code(&self) -> &str {
        self.file.as_ref().map_or("", |f| f.text.trim())
    }

    pub fn is_ephemeral(&self) -> bool {
        self.resource_type == ResourceType::Model && self.config.materialized() == "ephemeral"
    }
}

/// The DAG over all nodes.
#[derive(Debug)]
pub struct Graph {
    pub nodes: Vec<Node>,
    /// The exposures, metrics, semantic models, saved queries and groups as the manifest
    /// writes them, by kind (`exposures`…): not nodes of the run, but part of the `graph`
    /// global introspective packages read.
    pub resources: std::collections::BTreeMap<&'static str, serde_json::Value>,
    dag: DiGraph<usize, ()>,
    /// Node positions in a deterministic topological order.
    order: Vec<usize>,
    /// Topological rank of each node (its place in `order`).
    rank: Vec<usize>,
}

impl Graph {
    /// Link nodes by their refs and sources, and check the result is a DAG.
    /// `unparsed` names models that failed to render: refs to them are not reported again.
    pub fn build(mut nodes: Vec<Node>, unparsed: &BTreeSet<String>) -> Result<Graph, Vec<Problem>> {
        nodes.sort_by(|a, b| a.unique_id.cmp(&b.unique_id));
        let mut by_name: BTreeMap<std::borrow::Cow<'_, str>, usize> = BTreeMap::new();
        let mut problems = Vec::new();
        let mut sources: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for (i, n) in nodes.iter().enumerate() {
            match n.resource_type {
                ResourceType::Source => {
                    if let Some(s) = n.source() {
                        sources.insert((s.source_name.as_str(), s.name.as_str()), i);
                    }
                }
                ResourceType::Test | ResourceType::UnitTest | ResourceType::Analysis => {}
                _ => {
                    for name in n.ref_names() {
                        // Two enabled nodes of one name (a project's and a package's): `ref()`
                        // could not tell them apart.
                        if let Some(&other) = by_name.get(&name) {
                            let other: &Node = &nodes[other];
                            problems.push(
                                Problem::new(
                                    Code::DuplicateNode,
                                    format!(
                                        "two nodes are named `{name}`: `{}` of `{}` and `{}` of `{}`",
                                        other.path,
                                        other.package(),
                                        n.path,
                                        n.package()
                                    ),
                                )
                                .help(format!(
                                    "rename one, or turn the package's off in the project file: `models: {{<package>: {{{name}: {{+enabled: false}}}}}}`"
                                )),
                            );
                            continue;
                        }
                        by_name.insert(name, i);
                    }
                }
            }
        }
        let mut deps: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
        for (i, node) in nodes.iter().enumerate() {
            let text = node.file.as_ref().map_or("", |f| &f.text);
            // dbt lists a node's sources before its refs in `depends_on`.
            let mut ref_deps = Vec::new();
            for r in &node.refs {
                // `ref('package', 'name')` must name the package the node is in.
                let found = by_name
                    .get(r.name.as_str())
                    .filter(|&&d| r.package.as_deref().is_none_or(|p| p == nodes[d].package()));
                match found {
                    Some(&d) => ref_deps.push(d),
                    None if unparsed.contains(&r.name) => {}
                    None => {
                        let mut p = Problem::new(
                            Code::UnknownRef,
                            format!(
                                "{} `{}` refers to `{}`, which does not exist",
                                node.resource_type.as_str(),
                                node.name,
                                r.name
                            ),
                        );
                        if let (Some(file), Some((at, len))) =
                            (&node.file, find_call(text, "ref", &r.name))
                        {
                            p = p.at(file, at, len, "no model, seed or snapshot has this name");
                        }
                        let near = suggestions(&r.name, by_name.keys().map(AsRef::as_ref));
                        p = match near.first() {
                            Some(best) => {
                                let path = &nodes[by_name[best.as_str()]].path;
                                p.help(format!("did you mean `{best}` ({path})?"))
                            }
                            None => p.help("create the model or seed, or fix the name in ref()"),
                        };
                        problems.push(p);
                    }
                }
            }
            for (s, t) in &node.sources {
                if let Some(&d) = sources.get(&(s.as_str(), t.as_str())) {
                    deps[i].push(d);
                } else {
                    let mut p = Problem::new(
                        Code::UnknownSource,
                        format!(
                            "{} `{}` reads source `{s}.{t}`, which is not defined",
                            node.resource_type.as_str(),
                            node.name
                        ),
                    );
                    if let (Some(file), Some((at, len))) =
                        (&node.file, find_call(text, "source", t))
                    {
                        p = p.at(file, at, len, "no source table with this name");
                    }
                    let names: Vec<String> =
                        sources.keys().map(|(a, b)| format!("{a}.{b}")).collect();
                    let near = suggestions(&format!("{s}.{t}"), names.iter().map(String::as_str));
                    p = match near.first() {
                        Some(best) => p.help(format!("did you mean `{best}`? sources are declared under `sources:` in a YAML file")),
                        None => p.help("declare it under `sources:` in a YAML file in a model path"),
                    };
                    problems.push(p);
                }
            }
            deps[i].extend(ref_deps);
        }
        let mut dag = DiGraph::with_capacity(nodes.len(), deps.iter().map(Vec::len).sum());
        let idx: Vec<NodeIndex> = (0..nodes.len()).map(|i| dag.add_node(i)).collect();
        for (i, ds) in deps.iter_mut().enumerate() {
            let mut seen = BTreeSet::new();
            ds.retain(|d| seen.insert(*d));
            for &d in ds.iter() {
                dag.add_edge(idx[d], idx[i], ());
            }
            nodes[i].depends_on = ds.iter().map(|&d| nodes[d].unique_id.clone()).collect();
        }
        let mut graph = Graph {
            nodes,
            resources: std::collections::BTreeMap::new(),
            dag,
            order: Vec::new(),
            rank: Vec::new(),
        };
        match graph.topological() {
            Ok(order) if problems.is_empty() => graph.order = order,
            Ok(_) => return Err(problems),
            Err(cycle) => {
                problems.extend(cycle);
                return Err(problems);
            }
        }
        graph.rank = vec![0; graph.nodes.len()];
        for (r, &i) in graph.order.iter().enumerate() {
            graph.rank[i] = r;
        }
        Ok(graph)
    }

    /// Kahn's algorithm with ties broken by node id, so the order never changes between runs.
    fn topological(&self) -> Result<Vec<usize>, Vec<Problem>> {
        let n = self.nodes.len();
        let mut indegree: Vec<usize> = (0..n)
            .map(|i| {
                self.dag
                    .neighbors_directed(NodeIndex::new(i), petgraph::Direction::Incoming)
                    .count()
            })
            .collect();
        let mut ready: BinaryHeap<Reverse<usize>> =
            (0..n).filter(|&i| indegree[i] == 0).map(Reverse).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(Reverse(i)) = ready.pop() {
            order.push(i);
            for child in self
                .dag
                .neighbors_directed(NodeIndex::new(i), petgraph::Direction::Outgoing)
            {
                let c = child.index();
                indegree[c] -= 1;
                if indegree[c] == 0 {
                    ready.push(Reverse(c));
                }
            }
        }
        if order.len() == n {
            return Ok(order);
        }
        Err(vec![self.cycle_problem()])
    }

    fn cycle_problem(&self) -> Problem {
        let sccs = petgraph::algo::tarjan_scc(&self.dag);
        let mut cyclic: Vec<Vec<usize>> = sccs
            .into_iter()
            .map(|c| c.into_iter().map(NodeIndex::index).collect::<Vec<_>>())
            .filter(|c| {
                c.len() > 1
                    || self
                        .dag
                        .contains_edge(NodeIndex::new(c[0]), NodeIndex::new(c[0]))
            })
            .collect();
        for c in &mut cyclic {
            c.sort_unstable();
        }
        cyclic.sort();
        let Some(component) = cyclic.first() else {
            return Problem::new(Code::Cycle, "the graph has a cycle");
        };
        let members: BTreeSet<usize> = component.iter().copied().collect();
        let start = component[0];
        // Breadth-first search from `start` back to itself inside the component.
        let mut prev: HashMap<usize, usize> = HashMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        let mut found = false;
        'search: while let Some(i) = queue.pop_front() {
            let mut children: Vec<usize> = self
                .dag
                .neighbors_directed(NodeIndex::new(i), petgraph::Direction::Outgoing)
                .map(NodeIndex::index)
                .filter(|c| members.contains(c))
                .collect();
            children.sort_unstable();
            for c in children {
                if c == start {
                    prev.insert(start, i);
                    found = true;
                    break 'search;
                }
                if let std::collections::hash_map::Entry::Vacant(e) = prev.entry(c) {
                    e.insert(i);
                    queue.push_back(c);
                }
            }
        }
        // `prev` links lead backwards along "is read by" edges; walking them from `start`
        // gives the cycle in "refers to" order.
        let mut path = vec![start];
        if found {
            let mut at = prev[&start];
            while at != start {
                path.push(at);
                at = prev[&at];
            }
        }
        path.push(start);
        let names: Vec<&str> = path.iter().map(|&i| self.nodes[i].name.as_str()).collect();
        let mut p = Problem::new(
            Code::Cycle,
            format!(
                "the models form a cycle: {} (each refers to the next)",
                names.join(" → ")
            ),
        )
        .help(
            "a model cannot depend on itself, directly or through others; remove one of these refs",
        );
        let first = &self.nodes[path[0]];
        let next = &self.nodes[path[1]];
        if let Some(file) = &first.file {
            p = match find_call(&file.text, "ref", &next.name) {
                Some((at, len)) => p.at(
                    file,
                    at,
                    len,
                    format!("`{}` refers to `{}` here", first.name, next.name),
                ),
                None => p.at(file, 0, 0, "part of the cycle"),
            };
        }
        p
    }

    /// Node positions in topological order.
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    pub fn rank(&self, i: usize) -> usize {
        self.rank[i]
    }

    /// Positions of the direct parents of a node.
    pub fn parents(&self, i: usize) -> Vec<usize> {
        let mut v: Vec<usize> = self
            .dag
            .neighbors_directed(NodeIndex::new(i), petgraph::Direction::Incoming)
            .map(NodeIndex::index)
            .collect();
        v.sort_unstable();
        v
    }

    /// Positions of the direct children of a node.
    pub fn children(&self, i: usize) -> Vec<usize> {
        let mut v: Vec<usize> = self
            .dag
            .neighbors_directed(NodeIndex::new(i), petgraph::Direction::Outgoing)
            .map(NodeIndex::index)
            .collect();
        v.sort_unstable();
        v
    }

    /// Ephemeral models a node reads, directly or through other ephemerals, each once, in
    /// dependency order (a CTE comes after the CTEs it reads).
    pub fn ephemeral_ancestors(&self, i: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        self.collect_ephemerals(i, &mut seen, &mut out);
        out
    }

    fn collect_ephemerals(&self, i: usize, seen: &mut BTreeSet<usize>, out: &mut Vec<usize>) {
        for p in self.parents(i) {
            if self.nodes[p].is_ephemeral() && seen.insert(p) {
                self.collect_ephemerals(p, seen, out);
                out.push(p);
            }
        }
    }
}
