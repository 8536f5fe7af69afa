//! Node selection: `--select` / `--exclude` values as dbt users write them.
//!
//! Supported now: names and globs (`stg_*`), dotted fqns, paths (`models/staging`, or values
//! with `/`), `tag:`, `path:`, `source:`, `resource_type:`, `fqn:`, `test_type:`, `test_name:`,
//! `package:`, `config.<key>:` (a list config matches when it contains the value),
//! and graph operators `+x`, `x+`, `n+x`, `x+n`, `@x`. Space-separated values are a union;
//! `a,b` is an intersection; exclusions are taken away last. With `--state DIR`,
//! `state:new|modified|modified.body|modified.configs|unmodified` compare each node with the
//! manifest in DIR, and `result:<status>` reads DIR's `run_results.json`. Then every test of a selected
//! node is added (dbt's eager indirect selection) unless it was excluded itself. The result is
//! in topological order.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use serde_json::Value as Json;

use crate::diagnostics::{Code, Problem};
use crate::graph::{Graph, Node, ResourceType};
use crate::render::Relation;

/// What a previous run left in `--state DIR`: each node's code and config from its manifest,
/// and each node's status from its run results.
#[derive(Debug, Default)]
pub struct PreviousState {
    /// Whether `--state` was given at all.
    pub given: bool,
    /// Each node's code, config and checksum.
    nodes: HashMap<String, (String, Json, String)>,
    /// Where each model, seed and snapshot was built, for `--defer`.
    relations: HashMap<String, Relation>,
    results: HashMap<String, String>,
    /// Each source's newest load time in `sources.json`: the earlier run's (in `--state`), and
    /// this project's last `xform source freshness` (in the target folder).
    previous_sources: HashMap<String, String>,
    current_sources: HashMap<String, String>,
}

/// The `max_loaded_at` of each source measured in a `sources.json` (none when it is missing
/// or unreadable; runtime errors have none).
fn loaded_times(path: &Path) -> HashMap<String, String> {
    let Ok(bytes) = std::fs::read(path) else {
        return HashMap::new();
    };
    let Ok(doc) = serde_json::from_slice::<Json>(&bytes) else {
        return HashMap::new();
    };
    doc["results"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            Some((
                r["unique_id"].as_str()?.to_string(),
                r["max_loaded_at"].as_str()?.to_string(),
            ))
        })
        .collect()
}

impl PreviousState {
    /// Read `manifest.json` (required) and `run_results.json` (optional) from `dir`.
    pub fn load(dir: &Path) -> Result<PreviousState, Problem> {
        let path = dir.join("manifest.json");
        let read = |p: &Path| -> Result<Json, Problem> {
            let bytes = std::fs::read(p).map_err(|e| {
                Problem::io(p, &e)
                    .help("--state names the target folder of an earlier run (its manifest.json)")
            })?;
            serde_json::from_slice(&bytes).map_err(|e| {
                Problem::new(
                    Code::Selection,
                    format!("`{}` is not valid JSON: {e}", p.display()),
                )
            })
        };
        let manifest = read(&path)?;
        let mut nodes = HashMap::new();
        let mut relations = HashMap::new();
        for section in ["nodes", "sources", "unit_tests"] {
            for (id, node) in manifest[section].as_object().into_iter().flatten() {
                let code = node["raw_code"].as_str().unwrap_or_default().to_string();
                let sum = node["checksum"]["checksum"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                nodes.insert(id.clone(), (code, node["config"].clone(), sum));
                if let (Some(schema), Some(alias)) =
                    (node["schema"].as_str(), node["alias"].as_str())
                    && node["relation_name"].is_string()
                {
                    relations.insert(
                        id.clone(),
                        Relation::new(node["database"].as_str(), schema, alias),
                    );
                }
            }
        }
        let mut results = HashMap::new();
        let results_path = dir.join("run_results.json");
        if results_path.is_file() {
            for r in read(&results_path)?["results"]
                .as_array()
                .into_iter()
                .flatten()
            {
                if let (Some(id), Some(status)) = (r["unique_id"].as_str(), r["status"].as_str()) {
                    results.insert(id.to_string(), status.to_string());
                }
            }
        }
        Ok(PreviousState {
            given: true,
            nodes,
            relations,
            results,
            previous_sources: loaded_times(&dir.join("sources.json")),
            current_sources: HashMap::new(),
        })
    }

    /// Read this project's last `sources.json` (in `target_dir`), for `source_status:`.
    #[must_use]
    pub fn with_current_sources(mut self, target_dir: &Path) -> Self {
        self.current_sources = loaded_times(&target_dir.join("sources.json"));
        self
    }

    /// `source_status:fresher`: a source whose newest load is later now than in the earlier
    /// run (or that the earlier run did not measure).
    fn source_status(&self, node: &Node, value: &str) -> bool {
        if value != "fresher" || node.resource_type != ResourceType::Source {
            return false;
        }
        let Some(now) = self.current_sources.get(&node.unique_id) else {
            return false;
        };
        // ISO 8601 times in UTC with the same layout compare as text.
        self.previous_sources
            .get(&node.unique_id)
            .is_none_or(|before| now > before)
    }

    /// The relation a node was built as in the earlier run.
    pub fn relation_of(&self, unique_id: &str) -> Option<&Relation> {
        self.relations.get(unique_id)
    }

    fn state_matches(&self, node: &Node, value: &str) -> bool {
        let code = node.raw_code();
        let previous = self.nodes.get(&node.unique_id);
        // A seed has no code: its file's checksum tells whether its rows changed; a unit
        // test's is that of its YAML entry.
        let body_changed = previous.is_some_and(|(old, _, sum)| {
            if matches!(
                node.resource_type,
                ResourceType::Seed | ResourceType::UnitTest
            ) {
                node.checksum().is_none_or(|now| &now != sum)
            } else {
                old != code
            }
        });
        let configs_changed = previous.is_some_and(|(_, old, _)| {
            node.resource_type != ResourceType::Source
                && *old != crate::artifacts::manifest_config(node)
        });
        match value {
            "new" => previous.is_none(),
            "modified" => previous.is_none() || body_changed || configs_changed,
            "modified.body" => body_changed,
            "modified.configs" => configs_changed,
            "unmodified" => previous.is_some() && !body_changed && !configs_changed,
            _ => false,
        }
    }
}
fn glob_match(pattern: &str, text: &str) -> bool {
    if !pattern.contains(['*', '?', '[']) {
        return pattern == text;
    }
    glob::Pattern::new(pattern).is_ok_and(|p| p.matches(text))
}

fn matches(graph: &Graph, state: &PreviousState, i: usize, method: &str, value: &str) -> bool {
    let node = &graph.nodes[i];
    match method {
        "state" => state.state_matches(node, value),
        "source_status" => state.source_status(node, value),
        "result" => state
            .results
            .get(&node.unique_id)
            .is_some_and(|s| s == value),
        "tag" => node.config.tags().iter().any(|t| glob_match(value, t)),
        "path" | "file" => {
            let v = value.trim_end_matches('/');
            node.path == v
                || node.path.starts_with(&format!("{v}/"))
                || glob_match(v, &node.path)
                || node.path.rsplit('/').next().is_some_and(|f| f == v)
        }
        "source" => {
            node.resource_type == ResourceType::Source
                && node.source().is_some_and(|s| {
                    glob_match(value, &s.source_name)
                        || glob_match(value, &format!("{}.{}", s.source_name, s.name))
                })
        }
        "resource_type" => node.resource_type.as_str() == value,
        "test_type" => match value {
            "unit" => node.resource_type == ResourceType::UnitTest,
            "generic" => node.resource_type == ResourceType::Test && node.test().is_some(),
            "singular" => node.resource_type == ResourceType::Test && node.test().is_none(),
            "data" => node.resource_type == ResourceType::Test,
            _ => false,
        },
        "test_name" => {
            matches!(
                node.resource_type,
                ResourceType::Test | ResourceType::UnitTest
            ) && match node.test() {
                Some(t) => glob_match(value, &t.test_name),
                None => glob_match(value, &node.name),
            }
        }
        "config.materialized" => node.materialized().as_str() == value,
        "package" => node.fqn.first().is_some_and(|p| glob_match(value, p)),
        "version" => {
            let order = |v: &crate::project::ModelVersion| match (
                v.version.parse::<f64>(),
                v.latest.parse::<f64>(),
            ) {
                (Ok(a), Ok(b)) => a.total_cmp(&b),
                _ => v.version.cmp(&v.latest),
            };
            match (value, &node.version) {
                ("none", v) => v.is_none(),
                ("latest", Some(v)) => order(v).is_eq(),
                ("prerelease", Some(v)) => order(v).is_gt(),
                ("old", Some(v)) => order(v).is_lt(),
                _ => false,
            }
        }
        m if m.starts_with("config.") => {
            // A scalar config equals the value; a list config contains it.
            let found = node.config.get(&m["config.".len()..]);
            let same = |v: &Json| match v {
                Json::String(s) => glob_match(value, s),
                other => value.parse::<Json>().is_ok_and(|v| v == *other),
            };
            found.is_some_and(|v| match v {
                Json::Array(items) => items.iter().any(same),
                other => same(other),
            })
        }
        "fqn" | "" => {
            let ext = std::path::Path::new(value)
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase);
            if method.is_empty()
                && (value.contains('/') || matches!(ext.as_deref(), Some("sql" | "csv")))
            {
                return matches(graph, state, i, "path", value);
            }
            // A version is also `name.v2` (its fqn's last two parts) or `name_v2`.
            let version_name = node.version.as_ref().is_some_and(|v| {
                value == v.key()
                    || node.fqn.len() >= 2 && value == node.fqn[node.fqn.len() - 2..].join(".")
            });
            glob_match(value, &node.name)
                || version_name
                || (value.contains('.') && glob_match(value, &node.fqn.join(".")))
                || (value.contains('.') && node.fqn.join(".").starts_with(&format!("{value}.")))
                || node.fqn.first().is_some_and(|p| p == value)
        }
        _ => false,
    }
}

fn closure(
    graph: &Graph,
    start: &BTreeSet<usize>,
    up: bool,
    depth: Option<usize>,
) -> BTreeSet<usize> {
    let mut out = start.clone();
    let mut frontier: Vec<usize> = start.iter().copied().collect();
    let mut level = 0;
    while !frontier.is_empty() && depth.is_none_or(|d| level < d) {
        let mut next = Vec::new();
        for i in frontier {
            let around = if up {
                graph.parents(i)
            } else {
                graph.children(i)
            };
            for j in around {
                if out.insert(j) {
                    next.push(j);
                }
            }
        }
        frontier = next;
        level += 1;
    }
    out
}

/// Nodes matching one selector term (no spaces or commas).
fn term(graph: &Graph, state: &PreviousState, raw: &str) -> Result<BTreeSet<usize>, Problem> {
    let mut s = raw;
    let at = s.starts_with('@');
    if at {
        s = &s[1..];
    }
    let mut up: Option<Option<usize>> = None;
    if let Some(plus) = s
        .find('+')
        .filter(|&p| s[..p].chars().all(|c| c.is_ascii_digit()) && !s[..p].contains(':'))
    {
        up = Some(s[..plus].parse().ok());
        s = &s[plus + 1..];
    }
    let mut down: Option<Option<usize>> = None;
    if let Some(plus) = s
        .rfind('+')
        .filter(|&p| s[p + 1..].chars().all(|c| c.is_ascii_digit()))
    {
        down = Some(s[plus + 1..].parse().ok());
        s = &s[..plus];
    }
    let (method, value) = match s.split_once(':') {
        Some((m, v)) => (m, v),
        None => ("", s),
    };
    let known = [
        "",
        "tag",
        "path",
        "file",
        "source",
        "resource_type",
        "fqn",
        "config.materialized",
        "package",
        "version",
        "test_type",
        "test_name",
        "state",
        "result",
        "source_status",
    ];
    if !known.contains(&method) && !method.starts_with("config.") {
        return Err(Problem::new(
            Code::Selection,
            format!("unknown selector method `{method}` in `{raw}`"),
        )
        .help("use a name, a glob, `tag:`, `path:`, `source:`, `resource_type:`, `test_type:`, `test_name:`, `fqn:`, `package:`, `version:`, `state:` or `result:`"));
    }
    if matches!(method, "state" | "result" | "source_status") && !state.given {
        return Err(Problem::new(Code::Selection, format!("`{raw}` compares with an earlier run, but no --state was given"))
            .help("pass --state <folder> with the manifest.json (and run_results.json) of the run to compare with"));
    }
    if method == "state"
        && ![
            "new",
            "modified",
            "modified.body",
            "modified.configs",
            "unmodified",
        ]
        .contains(&value)
    {
        return Err(Problem::new(Code::Selection, format!("unknown state `{value}` in `{raw}`"))
            .help("use state:new, state:modified, state:modified.body, state:modified.configs or state:unmodified"));
    }
    let base: BTreeSet<usize> = (0..graph.nodes.len())
        .filter(|&i| matches(graph, state, i, method, value))
        .collect();
    let mut out = base.clone();
    if let Some(depth) = up {
        out.extend(closure(graph, &base, true, depth));
    }
    if let Some(depth) = down {
        out.extend(closure(graph, &base, false, depth));
    }
    if at {
        let below = closure(graph, &base, false, None);
        out.extend(below.iter().copied());
        out.extend(closure(graph, &below, true, None));
    }
    Ok(out)
}

fn expression(
    graph: &Graph,
    state: &PreviousState,
    values: &[String],
) -> Result<(BTreeSet<usize>, Vec<String>), Problem> {
    let mut union = BTreeSet::new();
    let mut empty = Vec::new();
    for value in values.iter().flat_map(|v| v.split_whitespace()) {
        let mut parts = value.split(',');
        let mut acc = term(graph, state, parts.next().unwrap_or_default())?;
        for p in parts {
            let other = term(graph, state, p)?;
            acc = acc.intersection(&other).copied().collect();
        }
        if acc.is_empty() {
            empty.push(value.to_string());
        }
        union.extend(acc);
    }
    Ok((union, empty))
}

/// Nodes chosen by a `selectors.yml` definition: a selector string, a `method`/`value` map
/// (with `parents`, `children`, their depths and `childrens_parents`), or `union` /
/// `intersection` lists whose items may be `exclude` lists.
fn definition(
    graph: &Graph,
    state: &PreviousState,
    def: &serde_yaml::Value,
) -> Result<BTreeSet<usize>, Problem> {
    use serde_yaml::Value as Yaml;
    let list = |key: &str| -> Option<&Vec<Yaml>> { def.get(key).and_then(Yaml::as_sequence) };
    if let Some(s) = def.as_str() {
        return Ok(expression(graph, state, &[s.to_string()])?.0);
    }
    if let Some(items) = list("union") {
        let mut out = BTreeSet::new();
        let mut minus = BTreeSet::new();
        for item in items {
            match item.get("exclude") {
                Some(ex) => minus.extend(definition(
                    graph,
                    state,
                    &Yaml::Mapping([(Yaml::from("union"), ex.clone())].into_iter().collect()),
                )?),
                None => out.extend(definition(graph, state, item)?),
            }
        }
        return Ok(out.difference(&minus).copied().collect());
    }
    if let Some(items) = list("intersection") {
        let mut acc: Option<BTreeSet<usize>> = None;
        let mut minus = BTreeSet::new();
        for item in items {
            if let Some(ex) = item.get("exclude") {
                minus.extend(definition(
                    graph,
                    state,
                    &Yaml::Mapping([(Yaml::from("union"), ex.clone())].into_iter().collect()),
                )?);
                continue;
            }
            let set = definition(graph, state, item)?;
            acc = Some(match acc {
                Some(a) => a.intersection(&set).copied().collect(),
                None => set,
            });
        }
        return Ok(acc
            .unwrap_or_default()
            .difference(&minus)
            .copied()
            .collect());
    }
    if let (Some(method), Some(value)) =
        (def.get("method").and_then(Yaml::as_str), def.get("value"))
    {
        let value = match value {
            Yaml::String(s) => s.clone(),
            other => serde_yaml::to_string(other)
                .unwrap_or_default()
                .trim()
                .to_string(),
        };
        let flag = |k: &str| def.get(k).and_then(Yaml::as_bool).unwrap_or(false);
        let depth = |k: &str| {
            def.get(k)
                .and_then(Yaml::as_u64)
                .map_or(String::new(), |d| d.to_string())
        };
        let mut term_text = String::new();
        if flag("childrens_parents") {
            term_text.push('@');
        } else if flag("parents") {
            term_text.push_str(&depth("parents_depth"));
            term_text.push('+');
        }
        if method == "fqn" {
            term_text.push_str(&value);
        } else {
            term_text.push_str(method);
            term_text.push(':');
            term_text.push_str(&value);
        }
        if flag("children") {
            term_text.push('+');
            term_text.push_str(&depth("children_depth"));
        }
        return term(graph, state, &term_text);
    }
    Err(Problem::new(Code::Selection, "a selector definition must be a string, a `method`/`value` map, or a `union` or `intersection` list")
        .help("see the selectors.yml format: definition: {method: tag, value: nightly, children: true}"))
}

/// The nodes of the selector `name` in `selectors.yml` (in the project folder).
pub fn named_selector(
    graph: &Graph,
    state: &PreviousState,
    root: &Path,
    name: &str,
) -> Result<BTreeSet<usize>, Problem> {
    let path = root.join("selectors.yml");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Problem::io(&path, &e)
            .help("--selector reads its definitions from selectors.yml in the project folder")
    })?;
    let file = crate::diagnostics::SourceFile::new("selectors.yml", text);
    let doc = crate::project::parse_yaml(&file)?;
    let selectors = doc
        .get("selectors")
        .and_then(serde_yaml::Value::as_sequence)
        .cloned()
        .unwrap_or_default();
    let names: Vec<String> = selectors
        .iter()
        .filter_map(|s| {
            s.get("name")
                .and_then(serde_yaml::Value::as_str)
                .map(String::from)
        })
        .collect();
    let Some(found) = selectors
        .iter()
        .find(|s| s.get("name").and_then(serde_yaml::Value::as_str) == Some(name))
    else {
        let near = crate::suggest::suggestions(name, names.iter().map(String::as_str));
        return Err(Problem::new(
            Code::Selection,
            format!("selectors.yml has no selector `{name}`"),
        )
        .help(match near.first() {
            Some(best) => format!("did you mean `{best}`?"),
            None => format!("selectors defined: {}", names.join(", ")),
        }));
    };
    let def = found
        .get("definition")
        .cloned()
        .unwrap_or(serde_yaml::Value::Null);
    definition(graph, state, &def)
}

/// What a selection chose.
#[derive(Debug, Default)]
pub struct Selection {
    /// Node positions of the given resource types, in topological order.
    pub nodes: Vec<usize>,
    /// The selector values that matched nothing (each a warning).
    pub unmatched: Vec<String>,
}

/// Which tests come along with the selected nodes (`--indirect-selection`, dbt's modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Indirect {
    /// A test of any selected node.
    #[default]
    Eager,
    /// A test whose every parent is selected.
    Cautious,
    /// A test whose every parent is selected or upstream of a selected node.
    Buildable,
    /// No test that was not selected itself.
    Empty,
}

impl Indirect {
    pub fn parse(text: &str) -> Option<Indirect> {
        match text {
            "eager" => Some(Indirect::Eager),
            "cautious" => Some(Indirect::Cautious),
            "buildable" => Some(Indirect::Buildable),
            "empty" => Some(Indirect::Empty),
            _ => None,
        }
    }
}

/// The selected nodes of the given resource types. A resolved `--selector` takes the place of
/// `--select`. Tests come along as `indirect` says; a test that reads an excluded node is
/// left out, however it was chosen, as in dbt.
pub fn select_with(
    graph: &Graph,
    select: &[String],
    exclude: &[String],
    types: &[ResourceType],
    state: &PreviousState,
    selector: Option<BTreeSet<usize>>,
    indirect: Indirect,
) -> Result<Selection, Problem> {
    let (mut chosen, mut empty) = if let Some(nodes) = selector {
        (nodes, Vec::new())
    } else if select.is_empty() {
        ((0..graph.nodes.len()).collect(), Vec::new())
    } else {
        expression(graph, state, select)?
    };
    let mut excluded = BTreeSet::new();
    if !exclude.is_empty() {
        (excluded, _) = expression(graph, state, exclude)?;
        chosen = chosen.difference(&excluded).copied().collect();
    }
    let is_test = |i: usize| {
        matches!(
            graph.nodes[i].resource_type,
            ResourceType::Test | ResourceType::UnitTest
        )
    };
    // What a `buildable` test may read: the selection and everything upstream of it.
    let buildable: BTreeSet<usize> = if indirect == Indirect::Buildable {
        closure(graph, &chosen, true, None)
    } else {
        BTreeSet::new()
    };
    let tests: Vec<usize> = (0..graph.nodes.len())
        .filter(|&i| is_test(i) && !chosen.contains(&i) && !excluded.contains(&i))
        .filter(|&i| {
            let parents = graph.parents(i);
            match indirect {
                Indirect::Eager => parents.iter().any(|p| chosen.contains(p)),
                Indirect::Cautious => {
                    !parents.is_empty() && parents.iter().all(|p| chosen.contains(p))
                }
                Indirect::Buildable => {
                    parents.iter().any(|p| chosen.contains(p))
                        && parents.iter().all(|p| buildable.contains(p))
                }
                Indirect::Empty => false,
            }
        })
        .collect();
    chosen.extend(tests);
    if !excluded.is_empty() {
        chosen.retain(|&i| !is_test(i) || !graph.parents(i).iter().any(|p| excluded.contains(p)));
    }
    empty.sort();
    let ordered = graph
        .order()
        .iter()
        .copied()
        .filter(|i| chosen.contains(i) && types.contains(&graph.nodes[*i].resource_type))
        .collect();
    Ok(Selection {
        nodes: ordered,
        unmatched: empty,
    })
}
