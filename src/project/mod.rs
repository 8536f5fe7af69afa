//! Project loading: finds `xform.yml` (or `dbt_project.yml`), reads it, discovers models, seeds
//! and macros with walkdir, and reads the property YAML files (models, seeds, sources).
//!
//! This is the only stage that reads the user's files. It collects every problem it finds
//! instead of stopping at the first, and it never renders Jinja: templates are kept as text
//! for `render`.

pub mod blocks;
pub mod config;
pub mod data_tests;
pub mod unit_tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
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
}

/// What a property YAML file says about a model or seed.
#[derive(Debug, Clone, Default)]
pub struct NodeProps {
    pub description: String,
    pub columns: Vec<ColumnProps>,
    pub config: NodeConfig,
    /// The YAML file, relative to the project root.
    pub patch_path: String,
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
}

/// A loaded project: every file it owns, read once.
#[derive(Debug)]
pub struct Project {
    pub root: PathBuf,
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
    pub snapshots: Vec<SnapshotDef>,
    pub seeds: Vec<SeedFile>,
    pub macro_files: Vec<SourceFile>,
    pub model_props: BTreeMap<String, NodeProps>,
    pub seed_props: BTreeMap<String, NodeProps>,
    pub sources: Vec<SourceTable>,
    pub warnings: Vec<Problem>,
    /// YAML properties of snapshot blocks not seen yet while reading.
    pending_snapshot_props: BTreeMap<String, NodeProps>,
}

/// Find the project file in `dir`: `xform.yml` first, then `dbt_project.yml`.
pub fn find_project_file(dir: &Path) -> Option<PathBuf> {
    ["xform.yml", "xform.yaml", "dbt_project.yml"]
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
}

/// Parse YAML text, turning a syntax error into a diagnostic at its line and column.
pub fn parse_yaml(file: &SourceFile) -> Result<Yaml, Problem> {
    if file.text.trim().is_empty() {
        return Ok(Yaml::Null);
    }
    serde_yaml::from_str::<Yaml>(&file.text).map_err(|e| yaml_problem(file, &e))
}

fn yaml_problem(file: &SourceFile, e: &serde_yaml::Error) -> Problem {
    let message = e.to_string();
    let message = message
        .split(" at line ")
        .next()
        .unwrap_or(&message)
        .to_string();
    let p = Problem::new(
        Code::Yaml,
        format!("invalid YAML in `{}`: {message}", file.name),
    )
    .help(
        "fix the YAML syntax at the marked place (indentation, a missing `:` or an unclosed quote)",
    );
    match e.location() {
        Some(loc) => {
            let offset = file.offset_of(loc.line(), loc.column());
            p.at(file, offset, 1, message)
        }
        None => p,
    }
}

/// The byte offset of `key:` in YAML text, for pointing at a key in a diagnostic.
pub fn find_key(text: &str, key: &str) -> Option<usize> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start().trim_start_matches("- ");
        let indent = line.len() - trimmed.len();
        for quoted in [key.to_string(), format!("\"{key}\""), format!("'{key}'")] {
            if let Some(rest) = trimmed.strip_prefix(&quoted)
                && rest.trim_start().starts_with(':')
            {
                return Some(offset + indent);
            }
        }
        offset += line.len();
    }
    None
}

fn string_list(value: Option<&Yaml>, default: &str) -> Vec<String> {
    match value {
        Some(Yaml::Sequence(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        Some(Yaml::String(s)) => vec![s.clone()],
        _ => vec![default.to_string()],
    }
}

fn str_of(value: Option<&Yaml>) -> String {
    value.and_then(Yaml::as_str).unwrap_or_default().to_string()
}

/// Relative path with `/` separators.
fn slash_path(path: &Path) -> String {
    path.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Files below `root/dir` with one of the extensions, sorted by path.
fn files_with(root: &Path, dirs: &[String], exts: &[&str]) -> Vec<(PathBuf, String, String)> {
    let mut out = Vec::new();
    for dir in dirs {
        let base = root.join(dir);
        if !base.is_dir() {
            continue;
        }
        for entry in walkdir::WalkDir::new(&base)
            .sort_by_file_name()
            .into_iter()
            .filter_map(Result::ok)
        {
            if !entry.file_type().is_file() {
                continue;
            }
            let path = entry.path();
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            if !exts.contains(&ext) {
                continue;
            }
            let rel_root = slash_path(path.strip_prefix(root).unwrap_or(path));
            let rel_dir = slash_path(path.strip_prefix(&base).unwrap_or(path));
            out.push((path.to_path_buf(), rel_root, rel_dir));
        }
    }
    out
}

/// A model file as read: its path from the project root, from its model path, and its text.
type ReadModel = (String, String, Result<SourceFile, Problem>);

/// A property file as read and parsed (a problem when it could not be read).
type ReadProperties = Result<(SourceFile, Result<Yaml, Problem>), Problem>;

fn fqn_of(project: &str, relative: &str) -> Vec<String> {
    let mut fqn = vec![project.to_string()];
    let parts: Vec<&str> = relative.split('/').collect();
    for p in &parts[..parts.len() - 1] {
        fqn.push((*p).to_string());
    }
    let last = parts[parts.len() - 1];
    fqn.push(
        last.rsplit_once('.')
            .map_or(last, |(stem, _)| stem)
            .to_string(),
    );
    fqn
}

fn read_source(path: &Path, name: &str, problems: &mut Vec<Problem>) -> Option<SourceFile> {
    match std::fs::read_to_string(path) {
        Ok(text) => Some(SourceFile::new(name, text)),
        Err(e) => {
            problems.push(Problem::io(path, &e));
            None
        }
    }
}

impl Project {
    /// Load the project in `dir`. `cli_vars` (YAML text from `--vars`) override the project's vars.
    pub fn load(dir: &Path, cli_vars: Option<&str>) -> Result<Project, Vec<Problem>> {
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

        let mut vars = BTreeMap::new();
        if let Some(Yaml::Mapping(m)) = doc.get("vars") {
            for (k, v) in m {
                let k = config::yaml_key(k);
                if k == name && v.is_mapping() {
                    continue;
                }
                vars.insert(k, yaml_to_json(v));
            }
            if let Some(Yaml::Mapping(scoped)) = doc.get("vars").and_then(|v| v.get(name.as_str()))
            {
                for (k, v) in scoped {
                    vars.insert(config::yaml_key(k), yaml_to_json(v));
                }
            }
        }
        if let Some(text) = cli_vars {
            let cli = SourceFile::new("--vars", text.to_string());
            match parse_yaml(&cli) {
                Ok(Yaml::Mapping(m)) => {
                    for (k, v) in m {
                        vars.insert(config::yaml_key(&k), yaml_to_json(&v));
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

        let mut project = Project {
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
            snapshots: Vec::new(),
            seeds: Vec::new(),
            macro_files: Vec::new(),
            model_props: BTreeMap::new(),
            seed_props: BTreeMap::new(),
            sources: Vec::new(),
            warnings,
            pending_snapshot_props: BTreeMap::new(),
        };
        project.discover(&mut problems);
        if problems.iter().any(|p| !p.warning) {
            return Err(problems);
        }
        project.warnings.extend(problems);
        Ok(project)
    }

    fn discover(&mut self, problems: &mut Vec<Problem>) {
        let root = self.root.clone();
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        let mut yaml_dirs = self.model_paths.clone();
        yaml_dirs.extend(self.seed_paths.iter().cloned());
        yaml_dirs.extend(self.snapshot_paths.iter().cloned());
        yaml_dirs.sort();
        yaml_dirs.dedup();
        // Reading thousands of small files is bound by system calls: read them in parallel,
        // and parse the property files meanwhile (their entries are checked against the model
        // names below, once every model is known).
        let (read, properties): (Vec<ReadModel>, Vec<ReadProperties>) = rayon::join(
            || {
                files_with(&root, &self.model_paths, &["sql"])
                    .into_par_iter()
                    .map(|(abs, rel_root, rel_dir)| {
                        let file = std::fs::read_to_string(&abs)
                            .map(|text| SourceFile::new(rel_root.clone(), text))
                            .map_err(|e| Problem::io(&abs, &e));
                        (rel_root, rel_dir, file)
                    })
                    .collect()
            },
            || {
                files_with(&root, &yaml_dirs, &["yml", "yaml"])
                    .into_par_iter()
                    .map(|(abs, rel_root, _)| {
                        let file = std::fs::read_to_string(&abs)
                            .map(|text| SourceFile::new(rel_root, text))
                            .map_err(|e| Problem::io(&abs, &e))?;
                        let doc = parse_yaml(&file);
                        Ok((file, doc))
                    })
                    .collect()
            },
        );
        for (rel_root, rel_dir, file) in read {
            let file = match file {
                Ok(f) => f,
                Err(p) => {
                    problems.push(p);
                    continue;
                }
            };
            let fqn = fqn_of(&self.name, &rel_dir);
            let name = fqn.last().cloned().unwrap_or_default();
            if let Some(other) = seen.insert(name.clone(), rel_root.clone()) {
                problems.push(
                    Problem::new(
                        Code::DuplicateNode,
                        format!("two models are named `{name}`: `{other}` and `{rel_root}`"),
                    )
                    .at(&file, 0, 0, "second definition")
                    .help("rename one of the files; model names must be unique in a project"),
                );
            }
            self.models.push(ModelFile {
                name,
                path: rel_root,
                relative: rel_dir,
                fqn,
                file,
            });
        }
        for (abs, rel_root, rel_dir) in files_with(&root, &self.seed_paths, &["csv"]) {
            let fqn = fqn_of(&self.name, &rel_dir);
            let name = fqn.last().cloned().unwrap_or_default();
            if let Some(other) = seen.insert(name.clone(), rel_root.clone()) {
                problems.push(
                    Problem::new(
                        Code::DuplicateNode,
                        format!(
                            "a seed and a model share the name `{name}`: `{other}` and `{rel_root}`"
                        ),
                    )
                    .help("rename one of them; `ref()` must know which one you mean"),
                );
            }
            self.seeds.push(SeedFile {
                name,
                path: rel_root,
                relative: rel_dir,
                absolute: abs,
                fqn,
            });
        }
        for (abs, rel_root, _) in files_with(&root, &self.macro_paths, &["sql"]) {
            if let Some(file) = read_source(&abs, &rel_root, problems) {
                self.macro_files.push(file);
            }
        }
        self.discover_tests(problems);
        for (abs, rel_root, rel_dir) in files_with(&root, &self.snapshot_paths, &["sql"]) {
            let Some(file) = read_source(&abs, &rel_root, problems) else {
                continue;
            };
            let blocks = match blocks::extract(&file) {
                Ok(blocks) => blocks,
                Err(e) => {
                    problems.push(
                        Problem::new(
                            Code::Jinja,
                            format!("cannot read the snapshots in `{rel_root}`: {}", e.message),
                        )
                        .at(&file, e.offset, 2, "here")
                        .help("every `{% snapshot name %}` needs a matching `{% endsnapshot %}`"),
                    );
                    continue;
                }
            };
            let mut fqn = fqn_of(&self.name, &rel_dir);
            fqn.pop();
            for block in blocks {
                if block.kind != blocks::BlockKind::Snapshot {
                    continue;
                }
                if let Some(other) = seen.insert(block.name.clone(), rel_root.clone()) {
                    problems.push(
                        Problem::new(
                            Code::DuplicateNode,
                            format!(
                                "two nodes are named `{}`: `{other}` and `{rel_root}`",
                                block.name
                            ),
                        )
                        .at(&file, block.body_offset, 0, "second definition")
                        .help("rename one of them; `ref()` must know which one you mean"),
                    );
                }
                let mut node_fqn = fqn.clone();
                node_fqn.push(block.name.clone());
                self.snapshots.push(SnapshotDef {
                    name: block.name.clone(),
                    path: rel_root.clone(),
                    relative: rel_dir.clone(),
                    fqn: node_fqn,
                    file: file.clone(),
                    body: block.body,
                    body_offset: block.body_offset,
                    props: NodeProps::default(),
                });
            }
        }
        // Model and seed files are discovered before property files.
        let names = KnownNames {
            models: self.models.iter().map(|m| m.name.clone()).collect(),
            seeds: self.seeds.iter().map(|s| s.name.clone()).collect(),
        };
        for entry in properties {
            match entry {
                Ok((file, doc)) => self.read_properties(&file, doc, &names, problems),
                Err(p) => problems.push(p),
            }
        }
        for s in &mut self.snapshots {
            if let Some(props) = self.pending_snapshot_props.remove(&s.name) {
                s.props = props;
            }
        }
    }

    /// Files in test-paths: those holding `{% test %}` blocks are macro files (custom generic
    /// tests); the others are singular tests.
    fn discover_tests(&mut self, problems: &mut Vec<Problem>) {
        let root = self.root.clone();
        for (abs, rel_root, rel_dir) in files_with(&root, &self.test_paths, &["sql", "csv"]) {
            // `<test-path>/fixtures/` holds unit-test fixtures, not tests.
            if rel_dir.starts_with("fixtures/") {
                if let Some(file) = read_source(&abs, &rel_root, problems) {
                    let name = rel_dir.rsplit('/').next().unwrap_or(&rel_dir).to_string();
                    self.fixtures
                        .entry(name)
                        .or_insert((rel_root, file.text.to_string()));
                }
                continue;
            }
            if abs.extension().is_none_or(|e| e != "sql") {
                continue;
            }
            let Some(file) = read_source(&abs, &rel_root, problems) else {
                continue;
            };
            let is_generic = blocks::extract(&file)
                .is_ok_and(|blocks| blocks.iter().any(|b| b.kind != blocks::BlockKind::Snapshot));
            if is_generic {
                self.macro_files.push(file);
                continue;
            }
            let fqn = fqn_of(&self.name, &rel_dir);
            self.singular_tests.push(ModelFile {
                name: fqn.last().cloned().unwrap_or_default(),
                path: rel_root,
                relative: rel_dir,
                fqn,
                file,
            });
        }
    }

    fn read_properties(
        &mut self,
        file: &SourceFile,
        doc: Result<Yaml, Problem>,
        names: &KnownNames,
        problems: &mut Vec<Problem>,
    ) {
        let doc = match doc {
            Ok(doc) => doc,
            Err(p) => {
                problems.push(p);
                return;
            }
        };
        let Some(map) = doc.as_mapping() else { return };
        for (key, value) in map {
            let key = config::yaml_key(key);
            match key.as_str() {
                "models" | "seeds" => {
                    let Some(items) = value.as_sequence() else {
                        problems.push(Self::shape_problem(
                            file,
                            &key,
                            "a list of entries with `name:`",
                        ));
                        continue;
                    };
                    for item in items {
                        let Some((name, props)) = self.named_entry(file, &key, item, problems)
                        else {
                            continue;
                        };
                        let known = if key == "models" {
                            &names.models
                        } else {
                            &names.seeds
                        };
                        if !known.contains(&name) {
                            let mut all: Vec<&str> = known.iter().map(String::as_str).collect();
                            all.sort_unstable();
                            problems.push(Self::no_such_node(file, &key, &name, &all));
                        }
                        let target = if key == "models" {
                            &mut self.model_props
                        } else {
                            &mut self.seed_props
                        };
                        target.insert(name, props);
                    }
                }
                "sources" => {
                    let Some(items) = value.as_sequence() else {
                        problems.push(Self::shape_problem(
                            file,
                            &key,
                            "a list of sources with `name:`",
                        ));
                        continue;
                    };
                    for source in items {
                        let Some(source_name) = source.get("name").and_then(Yaml::as_str) else {
                            problems.push(Self::shape_problem(
                                file,
                                &key,
                                "every source to have a `name:`",
                            ));
                            continue;
                        };
                        let database = source
                            .get("database")
                            .and_then(Yaml::as_str)
                            .map(String::from);
                        let schema = source
                            .get("schema")
                            .and_then(Yaml::as_str)
                            .unwrap_or(source_name)
                            .to_string();
                        for table in source
                            .get("tables")
                            .and_then(Yaml::as_sequence)
                            .into_iter()
                            .flatten()
                        {
                            let Some(name) = table.get("name").and_then(Yaml::as_str) else {
                                problems.push(Self::shape_problem(
                                    file,
                                    "tables",
                                    "every table to have a `name:`",
                                ));
                                continue;
                            };
                            let identifier = table
                                .get("identifier")
                                .and_then(Yaml::as_str)
                                .unwrap_or(name)
                                .to_string();
                            let mut fqn = vec![self.name.clone()];
                            let dir = file.name.rsplit_once('/').map_or("", |(d, _)| d);
                            fqn.extend(
                                dir.split('/')
                                    .skip(1)
                                    .filter(|s| !s.is_empty())
                                    .map(String::from),
                            );
                            fqn.push(source_name.to_string());
                            fqn.push(name.to_string());
                            self.generic_tests.extend(data_tests::tests_of(
                                table,
                                &TestTarget::Source(source_name.to_string(), name.to_string()),
                                file,
                            ));
                            self.sources.push(SourceTable {
                                source_name: source_name.to_string(),
                                name: name.to_string(),
                                database: database.clone(),
                                schema: schema.clone(),
                                identifier,
                                description: str_of(table.get("description")),
                                source_description: str_of(source.get("description")),
                                columns: columns_of(table.get("columns")),
                                loader: str_of(source.get("loader")),
                                path: file.name.clone(),
                                fqn,
                                event_time: [table, source]
                                    .iter()
                                    .find_map(|y| y.get("config")?.get("event_time")?.as_str())
                                    .map(String::from),
                            });
                        }
                    }
                }
                "snapshots" => {
                    let Some(items) = value.as_sequence() else {
                        problems.push(Self::shape_problem(
                            file,
                            &key,
                            "a list of entries with `name:`",
                        ));
                        continue;
                    };
                    for item in items {
                        self.read_snapshot_entry(file, item, problems);
                    }
                }
                "unit_tests" => {
                    let defs = unit_tests::read(file, value, &self.fixtures, problems);
                    self.unit_tests.extend(defs);
                }
                "version" | "macros" | "exposures" | "metrics" | "semantic_models"
                | "saved_queries" | "analyses" | "groups" => {}
                other => {
                    let offset = find_key(&file.text, other).unwrap_or(0);
                    problems.push(
                        Problem::new(
                            Code::UnknownKey,
                            format!("unknown key `{other}` in `{}` is ignored", file.name),
                        )
                        .at(file, offset, other.len(), "not a property section")
                        .help(
                            match crate::suggest::suggestions(
                                other,
                                ["models", "seeds", "sources"].into_iter(),
                            )
                            .first()
                            {
                                Some(best) => format!("did you mean `{best}`?"),
                                None => "property files hold `models:`, `seeds:` and `sources:`"
                                    .to_string(),
                            },
                        )
                        .warning(),
                    );
                }
            }
        }
    }

    /// A named `models:`, `seeds:` or `snapshots:` entry: its properties, with its data tests
    /// registered. `None` (and a problem) when it has no `name:`.
    fn named_entry(
        &mut self,
        file: &SourceFile,
        key: &str,
        item: &Yaml,
        problems: &mut Vec<Problem>,
    ) -> Option<(String, NodeProps)> {
        let Some(name) = item.get("name").and_then(Yaml::as_str) else {
            problems.push(Self::shape_problem(
                file,
                key,
                "every entry to have a `name:`",
            ));
            return None;
        };
        let props = NodeProps {
            description: str_of(item.get("description")),
            columns: columns_of(item.get("columns")),
            config: config_of(item.get("config")),
            patch_path: file.name.clone(),
        };
        self.generic_tests.extend(data_tests::tests_of(
            item,
            &TestTarget::Ref(name.to_string()),
            file,
        ));
        Some((name.to_string(), props))
    }

    /// A `snapshots:` entry: properties of a `{% snapshot %}` block, or (with `relation:`) a
    /// snapshot defined in YAML.
    fn read_snapshot_entry(&mut self, file: &SourceFile, item: &Yaml, problems: &mut Vec<Problem>) {
        let Some((name, props)) = self.named_entry(file, "snapshots", item, problems) else {
            return;
        };
        let name = name.as_str();
        let Some(relation) = item.get("relation").and_then(Yaml::as_str) else {
            // Properties of a snapshot block, found in any order.
            if let Some(s) = self.snapshots.iter_mut().find(|s| s.name == name) {
                s.props = props;
            } else {
                self.pending_snapshot_props.insert(name.to_string(), props);
            }
            return;
        };
        let relation = relation.trim();
        let relation = relation
            .strip_prefix("{{")
            .and_then(|r| r.strip_suffix("}}"))
            .unwrap_or(relation)
            .trim();
        if !(relation.starts_with("ref(") || relation.starts_with("source(")) {
            let offset = find_key(&file.text, "relation").unwrap_or(0);
            problems.push(
                Problem::new(
                    Code::SnapshotConfig,
                    format!("the relation of snapshot `{name}` must be a ref() or source() call, found `{relation}`"),
                )
                .at(file, offset, "relation".len(), "here")
                .help("write it as relation: ref('orders') or relation: source('shop', 'orders')"),
            );
            return;
        }
        let offset = file
            .text
            .find(relation)
            .unwrap_or_else(|| find_key(&file.text, "relation").unwrap_or(0));
        let mut fqn = vec![self.name.clone()];
        let dir = file.name.rsplit_once('/').map_or("", |(d, _)| d);
        fqn.extend(
            dir.split('/')
                .skip(1)
                .filter(|s| !s.is_empty())
                .map(String::from),
        );
        fqn.push(name.to_string());
        self.snapshots.push(SnapshotDef {
            name: name.to_string(),
            path: file.name.clone(),
            relative: file
                .name
                .split_once('/')
                .map_or(file.name.as_str(), |(_, r)| r)
                .to_string(),
            fqn,
            file: file.clone(),
            body: format!("select * from {{{{ {relation} }}}}"),
            body_offset: offset,
            props,
        });
    }

    /// A warning for properties (and so data tests) of a model or seed that does not exist:
    /// its tests would otherwise vanish without a word.
    fn no_such_node(file: &SourceFile, key: &str, name: &str, known: &[&str]) -> Problem {
        let kind = if key == "models" { "model" } else { "seed" };
        let offset = name_offset(&file.text, name);
        let near = crate::suggest::suggestions(name, known.iter().copied());
        Problem::new(
            Code::UnknownKey,
            format!(
                "`{}` describes the {kind} `{name}`, which does not exist: its properties and tests are ignored",
                file.name
            ),
        )
        .at(file, offset, name.len(), format!("no {kind} has this name"))
        .help(match near.first() {
            Some(best) => format!("did you mean `{best}`?"),
            None => format!("create the {kind}, or remove its entry from `{key}:`"),
        })
        .warning()
    }

    fn shape_problem(file: &SourceFile, key: &str, expected: &str) -> Problem {
        let offset = find_key(&file.text, key).unwrap_or(0);
        Problem::new(
            Code::ProjectConfig,
            format!("`{key}` in `{}` has the wrong shape", file.name),
        )
        .at(file, offset, key.len(), format!("expected {expected}"))
    }
}

/// The names of the project's models and seeds, for checking property entries against.
struct KnownNames {
    models: std::collections::HashSet<String>,
    seeds: std::collections::HashSet<String>,
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

/// Where `name: <name>` is in YAML text (the start of the text when not found).
pub fn name_offset(text: &str, name: &str) -> usize {
    let mut from = 0;
    while let Some(found) = text[from..].find(name) {
        let at = from + found;
        let before = text[..at].trim_end_matches([' ', '\t', '"', '\'']);
        let after = text[at + name.len()..].chars().next();
        if before.ends_with("name:") && after.is_none_or(|c| !(c.is_alphanumeric() || c == '_')) {
            return at;
        }
        from = at + name.len();
    }
    0
}

fn columns_of(value: Option<&Yaml>) -> Vec<ColumnProps> {
    value
        .and_then(Yaml::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(|c| {
            Some(ColumnProps {
                name: c.get("name")?.as_str()?.to_string(),
                description: str_of(c.get("description")),
                data_type: c.get("data_type").and_then(Yaml::as_str).map(String::from),
            })
        })
        .collect()
}

fn config_of(value: Option<&Yaml>) -> NodeConfig {
    let mut config = NodeConfig::default();
    if let Some(Yaml::Mapping(m)) = value {
        for (k, v) in m {
            config.set(&config::yaml_key(k), yaml_to_json(v));
        }
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_key_points_at_the_key() {
        let text = "name: x\nmodels:\n  - name: a\n    colums: []\n";
        assert_eq!(find_key(text, "colums"), Some(text.find("colums").unwrap()));
        assert_eq!(find_key(text, "nope"), None);
    }

    #[test]
    fn fqn_follows_folders() {
        assert_eq!(
            fqn_of("shop", "marts/core/orders.sql"),
            vec!["shop", "marts", "core", "orders"]
        );
        assert_eq!(fqn_of("shop", "orders.sql"), vec!["shop", "orders"]);
    }
}
