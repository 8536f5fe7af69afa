//! Project loading: finds `xform.yml` (or `dbt_project.yml`), reads it, discovers models, seeds
//! and macros with walkdir, and reads the property YAML files (models, seeds, sources).
//!
//! This is the only stage that reads the user's files. It collects every problem it finds
//! instead of stopping at the first, and it never renders Jinja: templates are kept as text
//! for `render`.

pub mod blocks;
pub mod config;
pub mod data_tests;
mod discover;
pub mod freshness;
pub mod packages;
mod properties;
pub mod unit_tests;
mod yaml;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

use crate::diagnostics::{Code, Problem, SourceFile};
pub use config::{ConfigTree, NodeConfig, yaml_to_json};
pub use data_tests::{GenericTestDef, TestTarget};
pub use unit_tests::UnitTestDef;

/// Keys of the project file that xform reads or knowingly ignores.
const PROJECT_KEYS: &[&str] = &[
    "name",
    "version",
    "config-version",
    "profile",
    "model-paths",
    "seed-paths",
    "snapshot-paths",
    "macro-paths",
    "test-paths",
    "analysis-paths",
    "docs-paths",
    "asset-paths",
    "target-path",
    "log-path",
    "packages-install-path",
    "clean-targets",
    "vars",
    "models",
    "seeds",
    "snapshots",
    "data_tests",
    "tests",
    "sources",
    "on-run-start",
    "on-run-end",
    "dispatch",
    "require-dbt-version",
    "quoting",
    "query-comment",
    "flags",
    "metrics",
    "semantic-models",
    "saved-queries",
    "exposures",
    "unit_tests",
];

/// A model's SQL file.
#[derive(Debug, Clone)]
pub struct ModelFile {
    pub name: String,
    /// Path relative to the project root, with `/` separators.
    pub path: String,
    /// Path relative to the model path it was found in.
    pub relative: String,
    pub fqn: Vec<String>,
    pub file: SourceFile,
    /// The version it is of a versioned model (`versions:` in YAML), when it is one.
    pub version: Option<ModelVersion>,
}

/// One version of a versioned model: the model's name, this version and the latest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelVersion {
    pub name: String,
    pub version: String,
    pub latest: String,
}

impl ModelVersion {
    /// The name `ref(name, v=...)` finds it by, and its relation's default identifier:
    /// `<name>_v<version>` (dots as underscores), as dbt names it.
    pub fn key(&self) -> String {
        version_key(&self.name, &self.version)
    }
}

impl ModelFile {
    /// `model.<package>.<name>`, or `model.<package>.<name>.v<version>` for a version.
    pub fn unique_id(&self) -> String {
        match &self.version {
            Some(v) => format!("model.{}.{}.v{}", self.fqn[0], v.name, v.version),
            None => format!("model.{}.{}", self.fqn[0], self.name),
        }
    }

    /// The name of its node: the model's, for a version.
    pub fn node_name(&self) -> &str {
        self.version.as_ref().map_or(&self.name, |v| &v.name)
    }

    /// The names `ref()` finds it by: a version's `<name>_v<v>` (and the model's name for the
    /// latest), otherwise its name. The first is its relation's default identifier.
    pub fn ref_names(&self) -> Vec<String> {
        match &self.version {
            Some(v) if v.version == v.latest => vec![v.key(), v.name.clone()],
            Some(v) => vec![v.key()],
            None => vec![self.name.clone()],
        }
    }
}

/// `<name>_v<version>`, dots as underscores.
pub fn version_key(name: &str, version: &str) -> String {
    format!("{name}_v{}", version.replace('.', "_"))
}

/// An exposure, metric, semantic model, saved query or group from property YAML: read and
/// kept for the manifest, never run.
#[derive(Debug, Clone)]
pub struct YamlResource {
    /// `exposure`, `metric`, `semantic_model`, `saved_query` or `group`.
    pub kind: String,
    pub name: String,
    pub package: String,
    /// The YAML file, relative to its project.
    pub path: String,
    pub yaml: Json,
}

/// A `{% docs name %}` block: text that descriptions include with `{{ doc('name') }}`.
#[derive(Debug, Clone)]
pub struct DocBlock {
    pub name: String,
    pub package: String,
    /// The Markdown file, relative to its project.
    pub path: String,
    pub text: String,
}

/// A snapshot: a `{% snapshot %}` block in a file under snapshot-paths, or a YAML
/// `snapshots:` entry (whose query is `select * from {{ <relation> }}`).
#[derive(Debug, Clone)]
pub struct SnapshotDef {
    pub name: String,
    /// The file it is defined in, relative to the project root.
    pub path: String,
    pub relative: String,
    pub fqn: Vec<String>,
    pub file: SourceFile,
    /// The query template and its byte offset in `file`.
    pub body: String,
    pub body_offset: usize,
    /// `config:` and `description` from YAML.
    pub props: NodeProps,
}

impl SnapshotDef {
    pub fn template_name(&self) -> String {
        format!("snapshot:{}", self.name)
    }
}

/// A CSV seed.
#[derive(Debug, Clone)]
pub struct SeedFile {
    pub name: String,
    pub path: String,
    pub relative: String,
    pub absolute: PathBuf,
    pub fqn: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ColumnProps {
    pub name: String,
    pub description: String,
    pub data_type: Option<String>,
    /// `constraints:` as written (`{type: not_null}`, `{type: check, expression: ...}`…).
    pub constraints: Vec<Json>,
}

/// What a property YAML file says about a model or seed.
#[derive(Debug, Clone, Default)]
pub struct NodeProps {
    pub description: String,
    pub columns: Vec<ColumnProps>,
    pub config: NodeConfig,
    /// The YAML file, relative to the project root.
    pub patch_path: String,
    /// Model-level `constraints:` as written (each with its `columns:`).
    pub constraints: Vec<Json>,
}

/// One table of a `sources:` entry.
#[derive(Debug, Clone)]
pub struct SourceTable {
    pub source_name: String,
    pub name: String,
    pub database: Option<String>,
    pub schema: String,
    pub identifier: String,
    pub description: String,
    pub source_description: String,
    pub columns: Vec<ColumnProps>,
    pub loader: String,
    pub path: String,
    pub fqn: Vec<String>,
    /// `config: {event_time: ...}` of the table (or of its source): a microbatch model reading
    /// it sees only the rows of its batch.
    pub event_time: Option<String>,
    /// `freshness:` (the source's and the table's, merged) and `loaded_at_field:`.
    pub freshness: Option<freshness::Freshness>,
    pub loaded_at_field: Option<String>,
    /// dbt-duckdb's `external_location` (the table's, else its source's; in `meta:` or
    /// `config:`): files read in place of a table.
    pub external_location: Option<String>,
}

/// A root project's source entry with `overrides: <package>`: its properties replace those of
/// the package's source of the same name, table by table, as in dbt.
#[derive(Debug, Clone)]
struct SourceOverride {
    package: String,
    source_name: String,
    yaml: Yaml,
    file: SourceFile,
    /// Where the entry's name is in `file`.
    offset: usize,
}

impl SourceOverride {
    /// The override's entry for one table, when it has one.
    fn table(&self, name: &str) -> Option<&Yaml> {
        self.yaml
            .get("tables")
            .and_then(Yaml::as_sequence)
            .into_iter()
            .flatten()
            .find(|t| t.get("name").and_then(Yaml::as_str) == Some(name))
    }

    /// Change one of the package's source tables.
    fn apply(&self, table: &mut SourceTable) {
        let source = &self.yaml;
        let own = self.table(&table.name);
        let text = |y: &Yaml, key: &str| y.get(key).and_then(Yaml::as_str).map(String::from);
        if let Some(d) = text(source, "database") {
            table.database = Some(d);
        }
        if let Some(s) = text(source, "schema") {
            table.schema = s;
        }
        if let Some(l) = text(source, "loader") {
            table.loader = l;
        }
        if let Some(d) = text(source, "description") {
            table.source_description = d;
        }
        let empty = Yaml::Null;
        let own_or_empty = own.unwrap_or(&empty);
        let says = |key: &str| {
            [source, own_or_empty]
                .iter()
                .any(|y| y.get(key).is_some() || y.get("config").and_then(|c| c.get(key)).is_some())
        };
        if says("freshness") {
            table.freshness = freshness::merged(source, own_or_empty);
        }
        if says("loaded_at_field") {
            table.loaded_at_field = freshness::loaded_at_field(source, own_or_empty);
        }
        if let Some(t) = own {
            if let Some(i) = text(t, "identifier") {
                table.identifier = i;
            }
            if let Some(d) = text(t, "description") {
                table.description = d;
            }
            if t.get("columns").is_some() {
                table.columns = yaml::columns_of(t.get("columns"));
            }
        }
        if let Some(e) = [own_or_empty, source]
            .iter()
            .find_map(|y| y.get("config")?.get("event_time")?.as_str())
        {
            table.event_time = Some(e.to_string());
        }
    }
}

/// A loaded project: every file it owns, read once.
#[derive(Debug)]
pub struct Project {
    pub root: PathBuf,
    /// `quoting:`: which parts of relation names to quote, over the warehouse's policy.
    pub quoting: crate::relation::QuotePolicy,
    pub file: SourceFile,
    pub name: String,
    pub profile: Option<String>,
    pub model_paths: Vec<String>,
    pub seed_paths: Vec<String>,
    pub snapshot_paths: Vec<String>,
    pub macro_paths: Vec<String>,
    pub test_paths: Vec<String>,
    pub target_path: String,
    pub clean_targets: Vec<String>,
    pub vars: BTreeMap<String, Json>,
    pub models_tree: ConfigTree,
    pub seeds_tree: ConfigTree,
    pub snapshots_tree: ConfigTree,
    /// The project file's `data_tests:` (or legacy `tests:`) config tree.
    pub tests_tree: ConfigTree,
    pub models: Vec<ModelFile>,
    /// Generic tests applied in property YAML, in file order.
    pub generic_tests: Vec<GenericTestDef>,
    /// `unit_tests:` entries of the property files.
    pub unit_tests: Vec<UnitTestDef>,
    /// Fixture files of unit tests (`<test-path>/fixtures/**`), by file name.
    fixtures: unit_tests::Fixtures,
    /// `.sql` files in test-paths that hold no `{% test %}` block.
    pub singular_tests: Vec<ModelFile>,
    /// `.sql` files of analysis-paths: compiled, never run.
    pub analyses: Vec<ModelFile>,
    /// `{% docs %}` blocks of the Markdown files in docs-paths (the project's and its packages').
    pub docs: Vec<DocBlock>,
    /// Exposures, metrics, semantic models, saved queries and groups, as written.
    pub resources: Vec<YamlResource>,
    pub snapshots: Vec<SnapshotDef>,
    pub seeds: Vec<SeedFile>,
    pub macro_files: Vec<SourceFile>,
    /// Where `xform deps` installs packages (`packages-install-path`, `dbt_packages` by default).
    pub packages_install_path: String,
    /// The installed packages, sorted by folder.
    pub packages: Vec<packages::Package>,
    /// Why the packages cannot be used (not installed, broken): an error for whatever renders.
    pub package_problems: Vec<Problem>,
    /// `on-run-start` / `on-run-end`: SQL run before the first node and after the last.
    pub on_run_start: Vec<String>,
    pub on_run_end: Vec<String>,
    /// `dispatch:`: for a macro namespace, the packages `adapter.dispatch` searches in order.
    pub dispatch: BTreeMap<String, Vec<String>>,
    pub model_props: BTreeMap<String, NodeProps>,
    pub seed_props: BTreeMap<String, NodeProps>,
    pub sources: Vec<SourceTable>,
    /// Source entries with `overrides: <package>`, applied to that package's source when it
    /// is merged.
    source_overrides: Vec<SourceOverride>,
    /// What each installed package that has models, seeds or snapshots configures for them in
    /// its own project file, by package name.
    pub package_configs: BTreeMap<String, PackageConfig>,
    /// The project file's `vars:` as written, and `--vars`: a package's nodes see their own mix
    /// of them (`Project::vars_of`).
    vars_yaml: Yaml,
    cli_vars: BTreeMap<String, Json>,
    /// Versions of versioned models by the name of their file (`versions:` in YAML).
    versions: BTreeMap<String, ModelVersion>,
    pub warnings: Vec<Problem>,
    /// YAML properties of snapshot blocks not seen yet while reading.
    pending_snapshot_props: BTreeMap<String, NodeProps>,
}

/// What a package's own project file says about its nodes: its config trees (the root
/// project's come on top) and the vars its nodes see.
#[derive(Debug, Default)]
pub struct PackageConfig {
    pub models_tree: ConfigTree,
    pub seeds_tree: ConfigTree,
    pub snapshots_tree: ConfigTree,
    pub tests_tree: ConfigTree,
    pub vars: BTreeMap<String, Json>,
}

/// Find the project file in `dir`: `xform.yml` first, then `dbt_project.yml`.
pub fn find_project_file(dir: &Path) -> Option<PathBuf> {
    ["xform.yml", "xform.yaml", "dbt_project.yml"]
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
}

use discover::read_source;
use yaml::string_list;
pub use yaml::{find_key, name_offset, parse_yaml};

impl Project {
    /// Load the project in `dir`. `cli_vars` (YAML text from `--vars`) override the project's vars.
    pub fn load(dir: &Path, cli_vars: Option<&str>) -> Result<Project, Vec<Problem>> {
        Self::load_as(dir, cli_vars, false)
    }

    /// Load a project; `as_package` loads an installed package's nodes (not its packages).
    fn load_as(
        dir: &Path,
        cli_vars: Option<&str>,
        as_package: bool,
    ) -> Result<Project, Vec<Problem>> {
        let Some(project_path) = find_project_file(dir) else {
            return Err(vec![
                Problem::new(
                    Code::ProjectNotFound,
                    format!("no xform.yml or dbt_project.yml in `{}`", dir.display()),
                )
                .help("run xform in a project folder, or pass --project-dir <folder>"),
            ]);
        };
        let root = dir.to_path_buf();
        let mut problems = Vec::new();
        let file_name = project_path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let Some(file) = read_source(&project_path, &file_name, &mut problems) else {
            return Err(problems);
        };
        let doc = parse_yaml(&file).map_err(|p| vec![p])?;
        let Some(map) = doc.as_mapping() else {
            return Err(vec![
                Problem::new(
                    Code::ProjectConfig,
                    format!("`{file_name}` must be a YAML mapping"),
                )
                .at(&file, 0, 0, "expected keys such as `name:` here"),
            ]);
        };
        let mut warnings = Vec::new();
        for key in map.keys() {
            let key = config::yaml_key(key);
            if !PROJECT_KEYS.contains(&key.as_str()) {
                let offset = find_key(&file.text, &key).unwrap_or(0);
                warnings.push(
                    Problem::new(
                        Code::UnknownKey,
                        format!("unknown key `{key}` in `{file_name}` is ignored"),
                    )
                    .at(&file, offset, key.len(), "not a project setting")
                    .warning()
                    .help(
                        match crate::suggest::suggestions(&key, PROJECT_KEYS.iter().copied())
                            .first()
                        {
                            Some(best) => format!("did you mean `{best}`?"),
                            None => "see the project file keys in the README".to_string(),
                        },
                    ),
                );
            }
        }
        let name = match doc.get("name").and_then(Yaml::as_str) {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => {
                return Err(vec![
                    Problem::new(Code::ProjectConfig, format!("`{file_name}` has no `name`"))
                        .at(&file, 0, 0, "the project needs a name")
                        .help("add `name: my_project` at the top of the file"),
                ]);
            }
        };
        let profile = doc.get("profile").and_then(Yaml::as_str).map(String::from);
        let model_paths = string_list(doc.get("model-paths"), "models");
        let seed_paths = string_list(doc.get("seed-paths"), "seeds");
        let snapshot_paths = string_list(doc.get("snapshot-paths"), "snapshots");
        let macro_paths = string_list(doc.get("macro-paths"), "macros");
        let test_paths = string_list(doc.get("test-paths"), "tests");
        let target_path = doc
            .get("target-path")
            .and_then(Yaml::as_str)
            .unwrap_or("target")
            .to_string();
        let clean_targets = match doc.get("clean-targets") {
            Some(v) => string_list(Some(v), "target"),
            None => vec![target_path.clone()],
        };

        let vars_yaml = doc.get("vars").cloned().unwrap_or(Yaml::Null);
        let mut vars = scoped_vars(&vars_yaml, &name);
        let mut cli = BTreeMap::new();
        if let Some(text) = cli_vars {
            let file = SourceFile::new("--vars", text.to_string());
            match parse_yaml(&file) {
                Ok(Yaml::Mapping(m)) => {
                    for (k, v) in m {
                        cli.insert(config::yaml_key(&k), yaml_to_json(&v));
                    }
                }
                Ok(Yaml::Null) => {}
                Ok(_) => problems.push(
                    Problem::new(Code::ProjectConfig, "--vars must be a YAML mapping")
                        .help("write it as --vars '{key: value}'"),
                ),
                Err(p) => problems.push(p),
            }
        }
        vars.extend(cli.iter().map(|(k, v)| (k.clone(), v.clone())));

        let (dispatch, dispatch_problems) = packages::dispatch_rules(&doc, &file);
        problems.extend(dispatch_problems);
        let quoting = {
            let part = |key: &str| {
                doc.get("quoting")
                    .and_then(|q| q.get(key))
                    .and_then(Yaml::as_bool)
            };
            crate::relation::QuotePolicy {
                database: part("database"),
                schema: part("schema"),
                identifier: part("identifier"),
            }
        };
        let mut project = Project {
            quoting,
            root: root.clone(),
            file,
            name: name.clone(),
            profile,
            model_paths,
            seed_paths,
            snapshot_paths,
            macro_paths,
            test_paths,
            target_path,
            clean_targets,
            vars,
            models_tree: ConfigTree(doc.get("models").cloned().unwrap_or(Yaml::Null)),
            seeds_tree: ConfigTree(doc.get("seeds").cloned().unwrap_or(Yaml::Null)),
            snapshots_tree: ConfigTree(doc.get("snapshots").cloned().unwrap_or(Yaml::Null)),
            tests_tree: ConfigTree(
                doc.get("data_tests")
                    .or_else(|| doc.get("tests"))
                    .cloned()
                    .unwrap_or(Yaml::Null),
            ),
            models: Vec::new(),
            generic_tests: Vec::new(),
            unit_tests: Vec::new(),
            fixtures: BTreeMap::new(),
            singular_tests: Vec::new(),
            docs: Vec::new(),
            analyses: Vec::new(),
            resources: Vec::new(),
            source_overrides: Vec::new(),
            snapshots: Vec::new(),
            seeds: Vec::new(),
            macro_files: Vec::new(),
            packages_install_path: install_path_of(&doc),
            packages: Vec::new(),
            package_problems: Vec::new(),
            on_run_start: hook_list(doc.get("on-run-start")),
            on_run_end: hook_list(doc.get("on-run-end")),
            dispatch,
            model_props: BTreeMap::new(),
            seed_props: BTreeMap::new(),
            sources: Vec::new(),
            package_configs: BTreeMap::new(),
            vars_yaml,
            cli_vars: cli,
            versions: BTreeMap::new(),
            warnings,
            pending_snapshot_props: BTreeMap::new(),
        };
        project.discover(&mut problems);
        project.discover_docs(&doc, &mut problems);
        project.discover_analyses(&doc, &mut problems);
        for t in &mut project.generic_tests {
            t.package.clone_from(&project.name);
        }
        if as_package {
            if problems.iter().any(|p| !p.warning) {
                return Err(problems);
            }
            return Ok(project);
        }
        project.load_packages(&mut problems);
        if problems.iter().any(|p| !p.warning) {
            return Err(problems);
        }
        project.warnings.extend(problems);
        Ok(project)
    }
}

/// One `on-run-start` or `on-run-end` hook, and whose it is.
#[derive(Debug, Clone)]
pub struct ProjectHook {
    pub package: String,
    /// Its place in its project's list, from 0.
    pub index: usize,
    pub sql: String,
}

impl ProjectHook {
    /// `operation.<package>.<package>-on-run-start-<index>`, as in dbt's `run_results.json`.
    pub fn unique_id(&self, key: &str) -> String {
        format!("operation.{0}.{0}-{key}-{1}", self.package, self.index)
    }
}

impl Project {
    /// A run's `on-run-start` (or, with `end`, `on-run-end`) hooks in dbt's order: the
    /// packages' by package name, then the project's.
    pub fn run_hooks(&self, end: bool) -> Vec<ProjectHook> {
        let list = |package: &str, hooks: &[String]| {
            hooks
                .iter()
                .enumerate()
                .map(|(index, sql)| ProjectHook {
                    package: package.to_string(),
                    index,
                    sql: sql.clone(),
                })
                .collect::<Vec<_>>()
        };
        let mut out = Vec::new();
        let mut packages: Vec<&packages::Package> = self.packages.iter().collect();
        packages.sort_by(|a, b| a.name.cmp(&b.name));
        for p in packages {
            out.extend(list(
                &p.name,
                if end { &p.on_run_end } else { &p.on_run_start },
            ));
        }
        out.extend(list(
            &self.name,
            if end {
                &self.on_run_end
            } else {
                &self.on_run_start
            },
        ));
        out
    }

    /// The packages' problems, for a command that renders templates.
    pub fn require_packages(&self) -> Result<(), Vec<Problem>> {
        if self.package_problems.is_empty() {
            Ok(())
        } else {
            Err(self.package_problems.clone())
        }
    }

    /// Load the installed packages, checking them against the packages file: their macros and
    /// generic tests, and the models, seeds, snapshots, sources and tests of those that have
    /// some, which become nodes of the run as in dbt. The root project's
    /// `vars: {<package>: {...}}` are the package's vars, not the root project's.
    ///
    /// Errors are kept in `package_problems` rather than stopping the load: `clean` and `debug`
    /// work without installed packages, as in dbt; whatever renders templates checks them
    /// (`Project::require_packages`).
    fn load_packages(&mut self, problems: &mut Vec<Problem>) {
        let mut found = Vec::new();
        match packages::read_specs(&self.root) {
            Ok(specs) => {
                self.packages = packages::load_installed(
                    &self.root,
                    &self.packages_install_path,
                    specs.as_ref(),
                    &mut found,
                );
            }
            Err(p) => found.push(p),
        }
        for package in self.packages.clone() {
            if let Some(Json::Object(_)) = self.vars.get(&package.name) {
                self.vars.remove(&package.name);
            }
            if package.has_nodes {
                self.merge_package(&package, &mut found);
            }
        }
        // An override whose package has no such source changes nothing: say so, as dbt does.
        for o in &self.source_overrides {
            let matched = self
                .sources
                .iter()
                .any(|t| t.source_name == o.source_name && t.fqn.first() == Some(&o.package));
            if !matched {
                found.push(
                    Problem::new(
                        Code::UnknownSource,
                        format!(
                            "source `{}` overrides the source of that name in package `{}`, which has none",
                            o.source_name, o.package
                        ),
                    )
                    .at(&o.file, o.offset, o.source_name.len(), "overrides nothing")
                    .help("name an installed package that declares this source in `overrides:`, or remove `overrides:` to declare a source of the project's own")
                    .warning(),
                );
            }
        }
        let (warnings, errors): (Vec<Problem>, Vec<Problem>) =
            found.into_iter().partition(|p| p.warning);
        problems.extend(warnings);
        self.package_problems = errors;
    }

    /// Load a package's nodes and add them to the project's. Its files keep their names from
    /// the package's own folder for what dbt records (`original_file_path`); their diagnostics
    /// name them from the root project (`dbt_packages/pkg/models/x.sql`).
    fn merge_package(&mut self, package: &packages::Package, problems: &mut Vec<Problem>) {
        let prefix = package.path.as_str();
        let rename = |file: &mut SourceFile| {
            file.name = format!("{prefix}/{}", file.name);
        };
        let sub = match Project::load_as(&self.root.join(prefix), None, true) {
            Ok(sub) => sub,
            Err(found) => {
                for mut p in found {
                    if let Some(label) = &mut p.label {
                        rename(&mut label.file);
                    }
                    problems.push(p.help(format!(
                        "the package in `{prefix}` is broken; reinstall it with `xform deps`, or fix it there"
                    )));
                }
                return;
            }
        };
        // A name the project also uses is checked once config is known (`Graph::build`): the
        // package's node may be disabled for the project's to take its place, as in dbt.
        for mut m in sub.models {
            rename(&mut m.file);
            self.models.push(m);
        }
        for mut s in sub.snapshots {
            rename(&mut s.file);
            self.snapshots.push(s);
        }
        self.seeds.extend(sub.seeds);
        for mut t in sub.singular_tests {
            rename(&mut t.file);
            self.singular_tests.push(t);
        }
        self.docs.extend(sub.docs);
        for mut a in sub.analyses {
            rename(&mut a.file);
            self.analyses.push(a);
        }
        self.resources.extend(sub.resources);
        // Its unit tests run with the project's, as in dbt since 1.8.
        for mut u in sub.unit_tests {
            rename(&mut u.file);
            self.unit_tests.push(u);
        }
        let mut sources = sub.sources;
        for o in self
            .source_overrides
            .iter()
            .filter(|o| o.package == package.name)
        {
            for t in sources
                .iter_mut()
                .filter(|t| t.source_name == o.source_name)
            {
                o.apply(t);
            }
        }
        // An override's table replaces the package table's `columns:` (and their tests) and
        // its `data_tests:`, as dbt updates the table's properties: the package's tests there
        // give way to the project's.
        let replaced = |t: &data_tests::GenericTestDef| {
            let TestTarget::Source(source, table) = &t.target else {
                return false;
            };
            self.source_overrides
                .iter()
                .filter(|o| o.package == package.name && &o.source_name == source)
                .filter_map(|o| o.table(table))
                .any(|own| match &t.column {
                    Some(_) => own.get("columns").is_some(),
                    None => own.get("data_tests").or_else(|| own.get("tests")).is_some(),
                })
        };
        for mut t in sub.generic_tests.into_iter().filter(|t| !replaced(t)) {
            rename(&mut t.file);
            self.generic_tests.push(t);
        }
        // `source('s', 't')` finds the root project's source first, from any package, as in
        // dbt: a package source the project declares too is shadowed by the project's.
        let root = self.name.clone();
        let declared: std::collections::BTreeSet<(String, String)> = self
            .sources
            .iter()
            .filter(|t| t.fqn.first() == Some(&root))
            .map(|t| (t.source_name.clone(), t.name.clone()))
            .collect();
        sources.retain(|t| !declared.contains(&(t.source_name.clone(), t.name.clone())));
        self.sources.extend(sources);
        // Properties are by name: where the project has a node of the same name, its own win.
        for (name, props) in sub.model_props {
            self.model_props.entry(name).or_insert(props);
        }
        for (name, props) in sub.seed_props {
            self.seed_props.entry(name).or_insert(props);
        }
        // The package's own vars, then the root project's (global, then scoped to the
        // package), then `--vars`: later ones win, as in dbt.
        let mut vars = sub.vars;
        let package_names: Vec<&str> = self.packages.iter().map(|p| p.name.as_str()).collect();
        vars.extend(
            scoped_vars(&self.vars_yaml, &package.name)
                .into_iter()
                .filter(|(k, v)| !(v.is_object() && package_names.contains(&k.as_str()))),
        );
        vars.extend(self.cli_vars.iter().map(|(k, v)| (k.clone(), v.clone())));
        self.package_configs.insert(
            package.name.clone(),
            PackageConfig {
                models_tree: sub.models_tree,
                seeds_tree: sub.seeds_tree,
                snapshots_tree: sub.snapshots_tree,
                tests_tree: sub.tests_tree,
                vars,
            },
        );
    }

    /// The `.sql` files of `analysis-paths` (`analyses/` by default).
    fn discover_analyses(&mut self, doc: &Yaml, problems: &mut Vec<Problem>) {
        let dirs = string_list(doc.get("analysis-paths"), "analyses");
        for (abs, rel_root, rel_dir) in discover::files_with(&self.root, &dirs, &["sql"]) {
            let Some(file) = read_source(&abs, &rel_root, problems) else {
                continue;
            };
            let mut fqn = discover::fqn_of(&self.name, &rel_dir);
            // dbt's fqn of an analysis has `analysis` after the project.
            fqn.insert(1, "analysis".to_string());
            self.analyses.push(ModelFile {
                name: fqn.last().cloned().unwrap_or_default(),
                path: rel_root,
                relative: rel_dir,
                fqn,
                file,
                version: None,
            });
        }
    }

    /// The `{% docs %}` blocks of the Markdown files in `docs-paths` (by default every
    /// resource path, as in dbt).
    fn discover_docs(&mut self, doc: &Yaml, problems: &mut Vec<Problem>) {
        let dirs = if let Some(v) = doc.get("docs-paths") {
            string_list(Some(v), "models")
        } else {
            let mut all = self.model_paths.clone();
            all.extend(self.seed_paths.iter().cloned());
            all.extend(self.snapshot_paths.iter().cloned());
            all.extend(self.macro_paths.iter().cloned());
            all.extend(self.test_paths.iter().cloned());
            all.extend(string_list(doc.get("analysis-paths"), "analyses"));
            all.sort();
            all.dedup();
            all
        };
        for (abs, rel_root, _) in discover::files_with(&self.root, &dirs, &["md"]) {
            let Some(file) = read_source(&abs, &rel_root, problems) else {
                continue;
            };
            match blocks::extract(&file) {
                Ok(found) => {
                    for b in found
                        .into_iter()
                        .filter(|b| b.kind == blocks::BlockKind::Docs)
                    {
                        self.docs.push(DocBlock {
                            name: b.name,
                            package: self.name.clone(),
                            path: rel_root.clone(),
                            text: b.body.trim().to_string(),
                        });
                    }
                }
                Err(e) => problems.push(
                    Problem::new(
                        Code::Jinja,
                        format!("cannot read the docs blocks in `{rel_root}`: {}", e.message),
                    )
                    .at(&file, e.offset, 2, "here")
                    .help("every `{% docs name %}` needs a matching `{% enddocs %}`"),
                ),
            }
        }
    }

    /// The config the project files give a node of this kind with this fqn: its package's own
    /// project file, then the root project's on top.
    pub fn tree_config(&self, kind: TreeKind, fqn: &[String]) -> NodeConfig {
        let root_tree = match kind {
            TreeKind::Models => &self.models_tree,
            TreeKind::Seeds => &self.seeds_tree,
            TreeKind::Snapshots => &self.snapshots_tree,
            TreeKind::Tests => &self.tests_tree,
        };
        let package = fqn.first().and_then(|p| self.package_configs.get(p));
        match package {
            None => root_tree.resolve(fqn),
            Some(c) => {
                let own = match kind {
                    TreeKind::Models => &c.models_tree,
                    TreeKind::Seeds => &c.seeds_tree,
                    TreeKind::Snapshots => &c.snapshots_tree,
                    TreeKind::Tests => &c.tests_tree,
                };
                let mut config = own.resolve(fqn);
                config.apply(&root_tree.resolve(fqn));
                config
            }
        }
    }
}

/// Which config tree of a project file: `models:`, `seeds:`, `snapshots:` or `data_tests:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeKind {
    Models,
    Seeds,
    Snapshots,
    Tests,
}

/// The vars a project file's `vars:` gives the nodes of `package`: the global ones (those not
/// scoped to `package`), then those under `package:`.
fn scoped_vars(vars: &Yaml, package: &str) -> BTreeMap<String, Json> {
    let mut out = BTreeMap::new();
    let Some(map) = vars.as_mapping() else {
        return out;
    };
    for (k, v) in map {
        let k = config::yaml_key(k);
        if k == package && v.is_mapping() {
            continue;
        }
        out.insert(k, yaml_to_json(v));
    }
    if let Some(Yaml::Mapping(scoped)) = vars.get(package) {
        for (k, v) in scoped {
            out.insert(config::yaml_key(k), yaml_to_json(v));
        }
    }
    out
}

/// Where the project in `dir` installs its packages (`packages-install-path`), read without
/// loading the project (whose packages may not be installed yet).
pub fn packages_install_path(dir: &Path) -> Result<String, Problem> {
    let Some(path) = find_project_file(dir) else {
        return Err(Problem::new(
            Code::ProjectNotFound,
            format!("no xform.yml or dbt_project.yml in `{}`", dir.display()),
        )
        .help("run xform in a project folder, or pass --project-dir <folder>"));
    };
    let name = path
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .to_string();
    let text = std::fs::read_to_string(&path).map_err(|e| Problem::io(&path, &e))?;
    let doc = parse_yaml(&SourceFile::new(name, text))?;
    Ok(install_path_of(&doc))
}

/// A project hook: a string or a list of strings (empty ones dropped).
pub(crate) fn hook_list(value: Option<&Yaml>) -> Vec<String> {
    let items: Vec<&Yaml> = match value {
        Some(Yaml::Sequence(items)) => items.iter().collect(),
        Some(other) => vec![other],
        None => vec![],
    };
    items
        .into_iter()
        .filter_map(Yaml::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(String::from)
        .collect()
}

fn install_path_of(doc: &Yaml) -> String {
    doc.get("packages-install-path")
        .and_then(Yaml::as_str)
        .unwrap_or("dbt_packages")
        .trim_end_matches('/')
        .to_string()
}

/// The sha256 of a file (a seed's), `None` when it cannot be read (loading it reports that).
pub fn file_sha256(path: &Path) -> Option<String> {
    // Of the text without leading and trailing whitespace, as dbt hashes a seed.
    let bytes = std::fs::read(path).ok()?;
    Some(sha256(String::from_utf8_lossy(&bytes).trim().as_bytes()))
}

/// Lower-case hex sha256 of some bytes.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    use std::fmt::Write;
    sha2::Sha256::digest(bytes)
        .iter()
        .fold(String::with_capacity(64), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
}
