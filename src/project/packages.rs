//! Packages: what `packages.yml` (or `dependencies.yml`) asks for, and the packages installed in
//! `packages-install-path` (`dbt_packages/` by default) that a run loads.
//!
//! A package is a dbt project of its own. xform loads what dbt loads from it that other projects
//! call: its macros (under its name, `dbt_utils.star(...)`) and its generic tests
//! (`dbt_utils.unique_combination_of_columns` in YAML). Installing is `crate::deps`'s work;
//! this module only reads.

use std::collections::BTreeMap;
use std::path::Path;

use serde_yaml::Value as Yaml;

use super::blocks;
use super::config;
use super::discover::{files_with, read_source};
use super::yaml::{find_key, parse_yaml, string_list};
use crate::diagnostics::{Code, Problem, SourceFile};

/// The files that may list a project's packages, in the order dbt reads them.
pub const SPEC_FILES: &[&str] = &["packages.yml", "dependencies.yml"];
/// The lock file `xform deps` writes beside them.
pub const LOCK_FILE: &str = "package-lock.yml";

/// One entry of `packages:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PackageSpec {
    /// `local: ../path`: a folder, relative to the project.
    Local { path: String },
    /// `git: url` with an optional `revision:` (branch, tag or commit) and `subdirectory:`.
    Git {
        url: String,
        revision: Option<String>,
        subdirectory: Option<String>,
    },
    /// `package: owner/name` from the package hub, with `version:` ranges.
    Hub {
        package: String,
        versions: Vec<String>,
        install_prerelease: bool,
    },
    /// `tarball: url` with `name:`.
    Tarball { url: String, name: String },
}

impl PackageSpec {
    /// How the entry reads in messages.
    pub fn label(&self) -> String {
        match self {
            PackageSpec::Local { path } => format!("local: {path}"),
            PackageSpec::Git { url, revision, .. } => match revision {
                Some(r) => format!("git: {url} @ {r}"),
                None => format!("git: {url}"),
            },
            PackageSpec::Hub {
                package, versions, ..
            } => format!("package: {package} {}", versions.join(", ")),
            PackageSpec::Tarball { url, .. } => format!("tarball: {url}"),
        }
    }
}

/// One entry of a packages file: what it asks for, where it stands, and its YAML as written.
#[derive(Debug, Clone)]
pub struct Entry {
    pub spec: PackageSpec,
    pub at: usize,
    pub raw: Yaml,
}

/// A packages file as read.
#[derive(Debug, Clone)]
pub struct PackagesFile {
    pub file: SourceFile,
    pub specs: Vec<Entry>,
}

/// Read `packages.yml` or `dependencies.yml` in `root`; `None` when there is neither.
pub fn read_specs(root: &Path) -> Result<Option<PackagesFile>, Problem> {
    let Some(name) = SPEC_FILES.iter().find(|n| root.join(n).is_file()) else {
        return Ok(None);
    };
    let path = root.join(name);
    let text = std::fs::read_to_string(&path).map_err(|e| Problem::io(&path, &e))?;
    // Kept as written: values are rendered (`env_var`) only when they are used to fetch, so a
    // secret in a git URL never reaches a diagnostic, the lock file or a log.
    let file = SourceFile::new(*name, text);
    let doc = parse_yaml(&file)?;
    let entries = match doc.get("packages") {
        None | Some(Yaml::Null) => {
            return Ok(Some(PackagesFile {
                file,
                specs: vec![],
            }));
        }
        Some(Yaml::Sequence(s)) => s.clone(),
        Some(_) => {
            let at = find_key(&file.text, "packages").unwrap_or(0);
            return Err(Problem::new(
                Code::Packages,
                format!("`packages:` in `{name}` must be a list"),
            )
            .at(&file, at, "packages".len(), "not a list")
            .help("write each package as a list item: `- package: dbt-labs/dbt_utils`"));
        }
    };
    let mut specs = Vec::new();
    let mut search_from = 0;
    for entry in &entries {
        let key = entry
            .as_mapping()
            .and_then(|m| m.keys().next())
            .map(config::yaml_key)
            .unwrap_or_default();
        let at = item_offset(&file.text, &key, search_from);
        search_from = at + 1;
        specs.push(Entry {
            spec: spec_of(entry, &file, at)?,
            at,
            raw: entry.clone(),
        });
    }
    Ok(Some(PackagesFile { file, specs }))
}

/// A value of a packages file with its `{{ env_var('NAME') }}` calls replaced (git tokens live
/// there). Secret variables may be read here, as dbt allows; the result is only used to fetch,
/// never written out.
pub fn render_env_vars(text: &str, name: &str) -> Result<String, Problem> {
    if !text.contains("{{") {
        return Ok(text.to_string());
    }
    let mut env = minijinja::Environment::new();
    env.add_function("env_var", crate::env::env_var);
    env.render_str(text, ()).map_err(|e| {
        Problem::new(Code::Packages, format!("cannot render `{name}`: {e}"))
            .help("only `env_var('NAME')` can be used in a packages file; set the variable or give a default")
    })
}

/// The offset of the list item that starts with `key:`, at or after `from`.
fn item_offset(text: &str, key: &str, from: usize) -> usize {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        if start < from {
            continue;
        }
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix('-')
            && rest.trim_start().starts_with(key)
        {
            return start + (line.len() - trimmed.len());
        }
    }
    from.min(text.len())
}

fn spec_of(entry: &Yaml, file: &SourceFile, at: usize) -> Result<PackageSpec, Problem> {
    let text = |k: &str| -> Option<String> {
        entry.get(k).and_then(|v| match v {
            Yaml::String(s) => Some(s.clone()),
            Yaml::Number(n) => Some(n.to_string()),
            Yaml::Bool(b) => Some(b.to_string()),
            _ => None,
        })
    };
    let bad = |message: String, help: &str| {
        Problem::new(Code::Packages, message)
            .at(file, at, 1, "this package")
            .help(help.to_string())
    };
    if let Some(path) = text("local") {
        return Ok(PackageSpec::Local { path });
    }
    if let Some(url) = text("git") {
        return Ok(PackageSpec::Git {
            url,
            revision: text("revision"),
            subdirectory: text("subdirectory"),
        });
    }
    if let Some(package) = text("package") {
        let versions = match entry.get("version") {
            Some(Yaml::Sequence(items)) => items
                .iter()
                .filter_map(|v| match v {
                    Yaml::String(s) => Some(s.clone()),
                    Yaml::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .collect(),
            Some(_) => text("version").into_iter().collect(),
            None => Vec::new(),
        };
        if versions.is_empty() {
            return Err(bad(
                format!(
                    "the package `{package}` in `{}` has no `version:`",
                    file.name
                ),
                "give a version or a range: `version: [\">=1.0.0\", \"<2.0.0\"]`",
            ));
        }
        if !package.contains('/') {
            return Err(bad(
                format!(
                    "`package: {package}` in `{}` is not a hub name `owner/name`",
                    file.name
                ),
                "hub packages are named by owner and name, for example `dbt-labs/dbt_utils`",
            ));
        }
        let install_prerelease = entry
            .get("install-prerelease")
            .and_then(Yaml::as_bool)
            .unwrap_or(false);
        return Ok(PackageSpec::Hub {
            package,
            versions,
            install_prerelease,
        });
    }
    if let Some(url) = text("tarball") {
        let Some(name) = text("name") else {
            return Err(bad(
                format!(
                    "the tarball package `{url}` in `{}` has no `name:`",
                    file.name
                ),
                "a tarball package needs the name it is installed under: `name: my_package`",
            ));
        };
        return Ok(PackageSpec::Tarball { url, name });
    }
    Err(bad(
        format!("an entry of `{}` names no package", file.name),
        "each entry needs one of `package:` (hub), `git:`, `local:` or `tarball:`",
    ))
}

/// An installed package, as a run loads it.
#[derive(Debug, Clone)]
pub struct Package {
    /// The `name:` of its project file: its macros' namespace.
    pub name: String,
    /// Its folder, relative to the project root (`dbt_packages/dbt_utils`).
    pub path: String,
    /// Files of its macro paths, and test-path files holding `{% test %}` blocks.
    pub macro_files: Vec<SourceFile>,
    /// Whether it has model, seed or snapshot files: nodes of the run, loaded as a project.
    pub has_nodes: bool,
    /// Its project file's `on-run-start` and `on-run-end`, which run with the project's.
    pub on_run_start: Vec<String>,
    pub on_run_end: Vec<String>,
}

/// The packages installed in `install_path`, each folder holding a project file, sorted by folder
/// name. Checks that every entry of the packages file is installed.
pub fn load_installed(
    root: &Path,
    install_path: &str,
    specs: Option<&PackagesFile>,
    problems: &mut Vec<Problem>,
) -> Vec<Package> {
    let base = root.join(install_path);
    let mut dirs: Vec<String> = match std::fs::read_dir(&base) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .filter(|e| e.path().join("dbt_project.yml").is_file())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect(),
        Err(_) => Vec::new(),
    };
    dirs.sort();
    let mut packages: Vec<Package> = Vec::new();
    for dir in dirs {
        let rel = format!("{install_path}/{dir}");
        if let Some(p) = load_one(root, &rel, problems) {
            if let Some(other) = packages.iter().find(|o| o.name == p.name) {
                problems.push(
                    Problem::new(
                        Code::Packages,
                        format!(
                            "two installed packages are named `{}`: `{}` and `{}`",
                            p.name, other.path, p.path
                        ),
                    )
                    .help(format!(
                        "remove one of them from `{}` and run `xform deps` again",
                        specs.map_or("packages.yml", |s| &s.file.name)
                    )),
                );
                continue;
            }
            packages.push(p);
        }
    }
    if let Some(specs) = specs
        && packages.len() < specs.specs.len()
    {
        let missing = missing_names(root, specs, &packages);
        let (first_at, what) = match missing.first() {
            Some((at, label)) => (*at, label.clone()),
            None => (specs.specs[0].at, specs.specs[0].spec.label()),
        };
        problems.push(
            Problem::new(
                Code::Packages,
                format!(
                    "`{}` names {} package(s) but {} are installed in `{install_path}/`",
                    specs.file.name,
                    specs.specs.len(),
                    packages.len()
                ),
            )
            .at(&specs.file, first_at, 1, format!("not installed: {what}"))
            .help("run `xform deps` to install the project's packages"),
        );
    }
    packages
}

/// The entries of the packages file that no installed package answers, as far as can be told
/// without the network: local packages by their project name, the others by the last part of
/// their name or URL.
fn missing_names(root: &Path, specs: &PackagesFile, installed: &[Package]) -> Vec<(usize, String)> {
    let is_installed = |name: &str| installed.iter().any(|p| p.name == name);
    specs
        .specs
        .iter()
        .filter(|entry| {
            let guess = match &entry.spec {
                PackageSpec::Local { path } => project_name(&root.join(path)),
                PackageSpec::Hub { package, .. } => package.rsplit('/').next().map(String::from),
                PackageSpec::Git { url, .. } => url
                    .trim_end_matches('/')
                    .trim_end_matches(".git")
                    .rsplit('/')
                    .next()
                    .map(String::from),
                PackageSpec::Tarball { name, .. } => Some(name.clone()),
            };
            !guess.is_some_and(|g| is_installed(&g) || is_installed(&g.replace('-', "_")))
        })
        .map(|entry| (entry.at, entry.spec.label()))
        .collect()
}

/// The `name:` of the project file in `dir`, if it can be read.
pub fn project_name(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("dbt_project.yml")).ok()?;
    let doc: Yaml = serde_yaml::from_str(&text).ok()?;
    doc.get("name")?.as_str().map(String::from)
}

fn load_one(root: &Path, rel: &str, problems: &mut Vec<Problem>) -> Option<Package> {
    let dir = root.join(rel);
    let file_name = format!("{rel}/dbt_project.yml");
    let file = read_source(&dir.join("dbt_project.yml"), &file_name, problems)?;
    let doc = match parse_yaml(&file) {
        Ok(doc) => doc,
        Err(p) => {
            problems.push(p.help(format!(
                "the package in `{rel}` has a broken project file; reinstall it with `xform deps`"
            )));
            return None;
        }
    };
    let Some(name) = doc.get("name").and_then(Yaml::as_str).map(String::from) else {
        problems.push(
            Problem::new(
                Code::Packages,
                format!("the package in `{rel}` has no `name` in its project file"),
            )
            .at(&file, 0, 0, "no `name:`")
            .help("reinstall it with `xform deps`, or fix the package's `dbt_project.yml`"),
        );
        return None;
    };
    let macro_paths = prefixed(rel, &string_list(doc.get("macro-paths"), "macros"));
    let test_paths = prefixed(rel, &string_list(doc.get("test-paths"), "tests"));
    let model_paths = prefixed(rel, &string_list(doc.get("model-paths"), "models"));
    let mut macro_files = Vec::new();
    for (abs, rel_root, _) in files_with(root, &macro_paths, &["sql"]) {
        if let Some(f) = read_source(&abs, &rel_root, problems) {
            macro_files.push(f);
        }
    }
    for (abs, rel_root, _) in files_with(root, &test_paths, &["sql"]) {
        if let Some(f) = read_source(&abs, &rel_root, problems)
            && blocks::extract(&f)
                .is_ok_and(|b| b.iter().any(|b| b.kind == blocks::BlockKind::Test))
        {
            macro_files.push(f);
        }
    }
    let seed_paths = prefixed(rel, &string_list(doc.get("seed-paths"), "seeds"));
    let snapshot_paths = prefixed(rel, &string_list(doc.get("snapshot-paths"), "snapshots"));
    let has_nodes = !files_with(root, &model_paths, &["sql"]).is_empty()
        || !files_with(root, &seed_paths, &["csv"]).is_empty()
        || !files_with(root, &snapshot_paths, &["sql"]).is_empty();
    Some(Package {
        name,
        path: rel.to_string(),
        macro_files,
        has_nodes,
        on_run_start: super::hook_list(doc.get("on-run-start")),
        on_run_end: super::hook_list(doc.get("on-run-end")),
    })
}

fn prefixed(rel: &str, paths: &[String]) -> Vec<String> {
    paths.iter().map(|p| format!("{rel}/{p}")).collect()
}

/// The root project's `dispatch:`: for a macro namespace, the packages searched in order.
pub fn dispatch_rules(
    doc: &Yaml,
    file: &SourceFile,
) -> (BTreeMap<String, Vec<String>>, Vec<Problem>) {
    let mut rules = BTreeMap::new();
    let mut problems = Vec::new();
    let Some(list) = doc.get("dispatch") else {
        return (rules, problems);
    };
    let at = find_key(&file.text, "dispatch").unwrap_or(0);
    let bad = |message: &str| {
        Problem::new(Code::ProjectConfig, message.to_string())
            .at(file, at, "dispatch".len(), "here")
            .help("write `dispatch: [{macro_namespace: dbt_utils, search_order: [my_project, dbt_utils]}]`")
    };
    let Some(items) = list.as_sequence() else {
        problems.push(bad("`dispatch:` must be a list"));
        return (rules, problems);
    };
    for item in items {
        let namespace = item.get("macro_namespace").and_then(Yaml::as_str);
        let order = item.get("search_order").and_then(Yaml::as_sequence);
        match (namespace, order) {
            (Some(ns), Some(order)) => {
                let order: Vec<String> = order
                    .iter()
                    .filter_map(Yaml::as_str)
                    .map(String::from)
                    .collect();
                rules.insert(ns.to_string(), order);
            }
            _ => problems.push(bad(
                "each `dispatch:` entry needs `macro_namespace:` and a `search_order:` list",
            )),
        }
    }
    (rules, problems)
}
