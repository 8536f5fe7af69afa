//! Validated settings: the target (which database, schema and thread count a run uses), found
//! from `profiles.yml` or, with no profile at all, the zero-configuration embedded DuckDB file.
//!
//! Profiles are searched in `--profiles-dir`, `$DBT_PROFILES_DIR`, the project folder,
//! `~/.xform/` and `~/.dbt/`, in that order; the first file that defines the project's profile
//! wins. This module reads no project file itself.

use std::path::{Path, PathBuf};

use serde_yaml::Value as Yaml;

use crate::diagnostics::{Code, Problem, SourceFile};
use crate::project::{Project, find_key, parse_yaml};

/// A loaded project with its target, ready for a command.
pub struct Session {
    pub project: Project,
    pub target: Target,
    pub run: RunInfo,
    pub target_dir: PathBuf,
}

/// Run-wide facts templates can see.
pub struct RunInfo {
    pub invocation_id: String,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub full_refresh: bool,
    pub command: String,
    /// `--empty`: refs and sources read as zero rows (a schema-only dry run, as dbt 1.8+).
    pub empty: bool,
}

/// Where and how a run builds relations: what every warehouse has (a database, a schema,
/// threads), and how to reach this one.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub profile_name: String,
    pub name: String,
    pub database: String,
    pub schema: String,
    pub threads: usize,
    /// The profiles.yml it came from; `None` for the zero-configuration default.
    pub profiles_file: Option<PathBuf>,
    pub credentials: Credentials,
}

/// How to reach the target's warehouse, one variant per adapter (the profile's `type:`).
#[derive(Debug, Clone, PartialEq)]
pub enum Credentials {
    DuckDb(DuckDbFile),
}

/// A DuckDB target: the database file and what it attaches.
#[derive(Debug, Clone, PartialEq)]
pub struct DuckDbFile {
    /// The DuckDB file (or `:memory:`).
    pub path: PathBuf,
    /// Other DuckDB files to attach (dbt-duckdb's `attach:`), for reading relations in them.
    pub attach: Vec<Attach>,
    /// dbt-duckdb's set-up of a connection: `extensions:` to load (installed when missing),
    /// `settings:` to `set`, `secrets:` to create.
    pub setup: DuckDbSetup,
}

/// What a DuckDB profile sets up when the database opens.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DuckDbSetup {
    /// `extensions:`: a name, or `{name, repo}`.
    pub extensions: Vec<(String, Option<String>)>,
    /// `settings:` in their order.
    pub settings: Vec<(String, serde_json::Value)>,
    /// `secrets:`: each secret's keys (`type`, `name`, `persistent`, and its parameters).
    pub secrets: Vec<Vec<(String, serde_json::Value)>>,
    /// `external_root`: where `external` models write their files (default: the project).
    pub external_root: Option<PathBuf>,
}

impl DuckDbFile {
    pub fn in_memory(&self) -> bool {
        self.path.as_os_str() == ":memory:"
    }
}

impl Target {
    /// The profile's `type:` (dbt's `adapter_type`).
    pub fn adapter_type(&self) -> &'static str {
        match self.credentials {
            Credentials::DuckDb(_) => "duckdb",
        }
    }

    /// Where the data lives, as messages name it: a file's path.
    pub fn location(&self) -> String {
        match &self.credentials {
            Credentials::DuckDb(file) => file.path.display().to_string(),
        }
    }
}

/// The adapters xform runs on, by profile `type:`.
const ADAPTERS: &[&str] = &["duckdb"];

/// The keys of a DuckDB target that xform reads.
const DUCKDB_KEYS: &[&str] = &[
    "type",
    "path",
    "database",
    "schema",
    "threads",
    "attach",
    "extensions",
    "settings",
    "secrets",
    "external_root",
];

/// The keys dbt-duckdb reads that xform does not act on yet: a profile with them is accepted,
/// with a warning that they change nothing.
const DUCKDB_KEYS_NOT_YET: &[&str] = &[
    "config_options",
    "disable_transactions",
    "filesystems",
    "is_ducklake",
    "keep_open",
    "module_paths",
    "plugins",
    "remote",
    "retries",
    "use_credential_provider",
];

/// A target and the warnings its profile gave (keys that are ignored).
pub struct ResolvedTarget {
    pub target: Target,
    pub warnings: Vec<Problem>,
}

/// A warning for every key of a DuckDB target output that xform ignores. `from` is where the
/// profile starts in the file: the key is looked for below its target there.
fn ignored_keys(output: &Yaml, file: &SourceFile, from: usize, target: &str) -> Vec<Problem> {
    let below = |at: usize, key: &str| find_key(&file.text[at..], key).map(|o| at + o);
    let target_at = below(from, target).unwrap_or(from);
    let mut warnings = Vec::new();
    for key in output
        .as_mapping()
        .into_iter()
        .flat_map(|m| m.keys())
        .filter_map(Yaml::as_str)
    {
        if DUCKDB_KEYS.contains(&key) {
            continue;
        }
        let at = below(target_at, key).unwrap_or(target_at);
        let p = if DUCKDB_KEYS_NOT_YET.contains(&key) {
            Problem::new(
                Code::UnknownKey,
                format!("`{key}` of target `{target}` is not supported by xform yet and is ignored"),
            )
            .at(file, at, key.len(), "ignored")
            .help("dbt-duckdb reads this key; xform builds without it, so what it sets up (extensions, settings, secrets, …) is not there")
        } else {
            let mut known: Vec<&str> = DUCKDB_KEYS.to_vec();
            known.extend(DUCKDB_KEYS_NOT_YET);
            Problem::new(
                Code::UnknownKey,
                format!("unknown key `{key}` in target `{target}` is ignored"),
            )
            .at(file, at, key.len(), "not a DuckDB profile setting")
            .help(
                match crate::suggest::suggestions(key, known.iter().copied()).first() {
                    Some(best) => format!("did you mean `{best}`?"),
                    None => format!("a DuckDB target reads: {}", DUCKDB_KEYS.join(", ")),
                },
            )
        };
        warnings.push(p.warning());
    }
    warnings
}

/// A database file attached next to the target's (`attach:` in a profile output).
#[derive(Debug, Clone, PartialEq)]
pub struct Attach {
    pub path: PathBuf,
    /// The catalog name (default: the file's stem).
    pub alias: String,
    pub read_only: bool,
    /// Another database kind DuckDB reads (`sqlite`, `postgres`…): `type:`.
    pub kind: Option<String>,
}

fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(8)
}

fn candidate_dirs(project: &Project, profiles_dir: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = profiles_dir {
        dirs.push(d.to_path_buf());
    }
    if let Some(d) = std::env::var_os("DBT_PROFILES_DIR") {
        dirs.push(PathBuf::from(d));
    }
    dirs.push(project.root.clone());
    if let Some(home) = std::env::var_os("HOME") {
        let home = PathBuf::from(home);
        dirs.push(home.join(".xform"));
        dirs.push(home.join(".dbt"));
    }
    dirs
}

/// Render `{{ env_var('X', 'default') }}` in profiles.yml, as dbt does.
fn render_profiles(file: &SourceFile) -> Result<String, Problem> {
    if !file.text.contains("{{") && !file.text.contains("{%") {
        return Ok(file.text.to_string());
    }
    let mut env = minijinja::Environment::new();
    env.add_function("env_var", crate::env::env_var);
    env.render_str(&file.text, minijinja::context! {})
        .map_err(|e| {
            let line = e.line().unwrap_or(1);
            Problem::new(
                Code::Profile,
                format!(
                    "cannot render `{}`: {}",
                    file.name,
                    e.detail().unwrap_or("template error")
                ),
            )
            .at_line(file, line, "here")
            .help("set the environment variable or give env_var a default")
        })
}

/// Resolve the target for a run.
pub fn resolve_target(
    project: &Project,
    profiles_dir: Option<&Path>,
    target_name: Option<&str>,
    threads: Option<usize>,
) -> Result<ResolvedTarget, Problem> {
    let profile_name = project
        .profile
        .clone()
        .unwrap_or_else(|| project.name.clone());
    for dir in candidate_dirs(project, profiles_dir) {
        let path = dir.join("profiles.yml");
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let file = SourceFile::new(path.display().to_string(), text);
        let rendered = SourceFile::new(file.name.clone(), render_profiles(&file)?);
        let doc = parse_yaml(&rendered)?;
        let Some(profile) = doc.get(profile_name.as_str()) else {
            if profiles_dir.is_some_and(|d| d == dir) {
                return Err(Problem::new(
                    Code::Profile,
                    format!("profile `{profile_name}` is not in `{}`", path.display()),
                )
                .help(format!(
                    "add a `{profile_name}:` entry with `target:` and `outputs:`"
                )));
            }
            continue;
        };
        let default_target = profile
            .get("target")
            .and_then(Yaml::as_str)
            .unwrap_or("dev");
        let name = target_name.unwrap_or(default_target).to_string();
        let key_offset = find_key(&rendered.text, &profile_name).unwrap_or(0);
        let Some(output) = profile.get("outputs").and_then(|o| o.get(name.as_str())) else {
            let known: Vec<String> = profile
                .get("outputs")
                .and_then(Yaml::as_mapping)
                .map(|m| {
                    m.keys()
                        .filter_map(|k| k.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            return Err(Problem::new(
                Code::Profile,
                format!("profile `{profile_name}` has no target `{name}`"),
            )
            .at(&rendered, key_offset, profile_name.len(), "this profile")
            .help(format!("targets defined: {}", known.join(", "))));
        };
        let adapter = output
            .get("type")
            .and_then(Yaml::as_str)
            .unwrap_or("duckdb")
            .to_string();
        if !ADAPTERS.contains(&adapter.as_str()) {
            return Err(Problem::new(
                Code::Profile,
                format!("target `{name}` has type `{adapter}`, which xform cannot connect to yet"),
            )
            .at(&rendered, key_offset, profile_name.len(), "this profile")
            .help(format!(
                "xform runs on: {}; point --target at an output of one of these types",
                ADAPTERS.join(", ")
            )));
        }
        let raw_path = output
            .get("path")
            .and_then(Yaml::as_str)
            .unwrap_or(":memory:");
        let path = if raw_path == ":memory:" {
            PathBuf::from(raw_path)
        } else {
            project.root.join(raw_path)
        };
        let database = output
            .get("database")
            .and_then(Yaml::as_str)
            .map_or_else(|| database_name(&path), String::from);
        let schema = output
            .get("schema")
            .and_then(Yaml::as_str)
            .unwrap_or("main")
            .to_string();
        let mut attach = Vec::new();
        for item in output
            .get("attach")
            .and_then(Yaml::as_sequence)
            .into_iter()
            .flatten()
        {
            let Some(raw) = item.get("path").and_then(Yaml::as_str) else {
                let at = find_key(&rendered.text, "attach").unwrap_or(key_offset);
                return Err(Problem::new(
                    Code::Profile,
                    format!("an `attach:` entry of target `{name}` has no `path:`"),
                )
                .at(&rendered, at, "attach".len(), "here")
                .help("write each entry as {path: other.duckdb, alias: other, read_only: true}"));
            };
            let file = project.root.join(raw);
            attach.push(Attach {
                alias: item
                    .get("alias")
                    .and_then(Yaml::as_str)
                    .map_or_else(|| database_name(&file), String::from),
                read_only: item
                    .get("read_only")
                    .and_then(Yaml::as_bool)
                    .unwrap_or(false),
                kind: item.get("type").and_then(Yaml::as_str).map(String::from),
                path: if item
                    .get("type")
                    .is_some_and(|t| t.as_str() != Some("duckdb"))
                {
                    // Another kind of database names its own location (a connection string).
                    PathBuf::from(raw)
                } else {
                    file
                },
            });
        }
        let setup = duckdb_setup(output, &project.root);
        let profile_threads = output
            .get("threads")
            .and_then(Yaml::as_u64)
            .map(|t| usize::try_from(t).unwrap_or(1));
        let warnings = ignored_keys(output, &rendered, key_offset, &name);
        return Ok(ResolvedTarget {
            target: Target {
                profile_name: profile_name.clone(),
                name,
                database,
                schema,
                threads: threads.or(profile_threads).unwrap_or(1).max(1),
                profiles_file: Some(path_of(&dir)),
                credentials: Credentials::DuckDb(DuckDbFile {
                    path,
                    attach,
                    setup,
                }),
            },
            warnings,
        });
    }
    let path = project.root.join(format!("{}.duckdb", project.name));
    Ok(ResolvedTarget {
        target: Target {
            profile_name,
            name: "dev".to_string(),
            database: database_name(&path),
            schema: "main".to_string(),
            threads: threads.unwrap_or_else(default_threads).max(1),
            profiles_file: None,
            credentials: Credentials::DuckDb(DuckDbFile {
                path,
                attach: Vec::new(),
                setup: DuckDbSetup::default(),
            }),
        },
        warnings: Vec::new(),
    })
}

/// A DuckDB output's `extensions:`, `settings:`, `secrets:` and `external_root:`.
fn duckdb_setup(output: &Yaml, root: &Path) -> DuckDbSetup {
    let pairs = |m: &serde_yaml::Mapping| -> Vec<(String, serde_json::Value)> {
        m.iter()
            .map(|(k, v)| {
                (
                    crate::project::config::yaml_key(k),
                    crate::project::yaml_to_json(v),
                )
            })
            .collect()
    };
    DuckDbSetup {
        extensions: output
            .get("extensions")
            .and_then(Yaml::as_sequence)
            .into_iter()
            .flatten()
            .filter_map(|e| match e {
                Yaml::String(name) => Some((name.clone(), None)),
                other => Some((
                    other.get("name")?.as_str()?.to_string(),
                    other.get("repo").and_then(Yaml::as_str).map(String::from),
                )),
            })
            .collect(),
        settings: output
            .get("settings")
            .and_then(Yaml::as_mapping)
            .map(pairs)
            .unwrap_or_default(),
        secrets: output
            .get("secrets")
            .and_then(Yaml::as_sequence)
            .into_iter()
            .flatten()
            .filter_map(Yaml::as_mapping)
            .map(pairs)
            .collect(),
        external_root: output
            .get("external_root")
            .and_then(Yaml::as_str)
            .map(|r| root.join(r)),
    }
}

fn path_of(dir: &Path) -> PathBuf {
    dir.join("profiles.yml")
}

/// DuckDB names an attached file's catalog after the file's stem.
fn database_name(path: &Path) -> String {
    if path.as_os_str() == ":memory:" {
        return "memory".to_string();
    }
    path.file_stem()
        .map_or_else(|| "memory".to_string(), |s| s.to_string_lossy().to_string())
}
