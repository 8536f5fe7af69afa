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
    /// The project's `quoting:`, over the warehouse's quoting of names.
    pub quote_policy: crate::relation::QuotePolicy,
}

/// How to reach the target's warehouse, one variant per adapter (the profile's `type:`).
#[derive(Debug, Clone, PartialEq)]
pub enum Credentials {
    DuckDb(DuckDbFile),
    Snowflake(Snowflake),
    BigQuery(BigQuery),
}

/// A value from the profile that must never be shown: its `Debug` is `*****`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("*****")
    }
}

/// A Snowflake target (dbt-snowflake's profile keys). xform writes its SQL; running it is not
/// there yet.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Snowflake {
    pub account: String,
    pub user: Option<String>,
    pub role: Option<String>,
    pub warehouse: Option<String>,
    pub authenticator: Option<String>,
    /// `password`, `private_key`, `private_key_passphrase`, `token` or `oauth_client_secret`,
    /// whichever the profile gives.
    pub secrets: Vec<(String, Secret)>,
    pub private_key_path: Option<String>,
    pub query_tag: Option<String>,
    /// `host`, `port` and `protocol`: another endpoint than `<account>.snowflakecomputing.com`.
    pub host: Option<String>,
    pub port: Option<u16>,
    pub protocol: Option<String>,
}

/// A BigQuery target (dbt-bigquery's profile keys): `project` is the database, `dataset` the
/// schema.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BigQuery {
    pub method: String,
    pub location: Option<String>,
    pub keyfile: Option<String>,
    /// `keyfile_json` (a mapping, kept as JSON text), `token`, `refresh_token` or
    /// `client_secret`, whichever the profile gives.
    pub secrets: Vec<(String, Secret)>,
    pub client_id: Option<String>,
    pub token_uri: Option<String>,
    /// The REST endpoint (`https://bigquery.googleapis.com` when absent): a local emulator.
    pub api_endpoint: Option<String>,
    /// `job_execution_timeout_seconds` (or the older `timeout_seconds`): how long one job
    /// may run before it is cancelled.
    pub job_timeout_seconds: Option<u64>,
    pub execution_project: Option<String>,
    pub priority: Option<String>,
    pub maximum_bytes_billed: Option<u64>,
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
            Credentials::Snowflake(_) => "snowflake",
            Credentials::BigQuery(_) => "bigquery",
        }
    }

    /// Where the data lives, as messages name it: a file's path.
    pub fn location(&self) -> String {
        match &self.credentials {
            Credentials::DuckDb(file) => file.path.display().to_string(),
            Credentials::Snowflake(sf) => format!("Snowflake account {}", sf.account),
            Credentials::BigQuery(_) => format!("BigQuery project {}", self.database),
        }
    }
}

/// The adapters xform knows, by profile `type:`: it runs on DuckDB and writes the SQL of the
/// others.
const ADAPTERS: &[&str] = &["duckdb", "snowflake", "bigquery"];

/// The keys of a Snowflake target (dbt-snowflake's).
const SNOWFLAKE_KEYS: &[&str] = &[
    "type",
    "account",
    "user",
    "password",
    "authenticator",
    "private_key",
    "private_key_path",
    "private_key_passphrase",
    "token",
    "oauth_client_id",
    "oauth_client_secret",
    "role",
    "database",
    "warehouse",
    "schema",
    "threads",
    "client_session_keep_alive",
    "query_tag",
    "connect_retries",
    "connect_timeout",
    "retry_on_database_errors",
    "retry_all",
    "reuse_connections",
    "insecure_mode",
    "host",
    "port",
    "protocol",
];

/// The keys of a BigQuery target (dbt-bigquery's).
const BIGQUERY_KEYS: &[&str] = &[
    "type",
    "method",
    "project",
    "database",
    "dataset",
    "schema",
    "threads",
    "keyfile",
    "keyfile_json",
    "token",
    "refresh_token",
    "client_id",
    "client_secret",
    "token_uri",
    "location",
    "priority",
    "timeout_seconds",
    "job_execution_timeout_seconds",
    "job_creation_timeout_seconds",
    "job_retry_deadline_seconds",
    "job_retries",
    "retries",
    "maximum_bytes_billed",
    "execution_project",
    "impersonate_service_account",
    "scopes",
    "gcs_bucket",
    "dataproc_region",
    "dataproc_cluster_name",
    "compute_region",
    "api_endpoint",
];

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
                "xform knows the types {} (it runs on duckdb, and writes the SQL of the others with `xform compile`); point --target at an output of one of these types",
                ADAPTERS.join(", ")
            )));
        }
        if adapter != "duckdb" {
            let mut target = warehouse_target(
                &adapter,
                output,
                &rendered,
                key_offset,
                &profile_name,
                &name,
                threads,
                path_of(&dir),
            )?;
            target.quote_policy = project.quoting;
            let keys = if adapter == "snowflake" {
                SNOWFLAKE_KEYS
            } else {
                BIGQUERY_KEYS
            };
            let warnings = unknown_keys(output, &rendered, key_offset, &name, keys, &adapter);
            return Ok(ResolvedTarget { target, warnings });
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
                quote_policy: project.quoting,
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
            quote_policy: project.quoting,
        },
        warnings: Vec::new(),
    })
}

/// A Snowflake or BigQuery output as a target. The keys each needs to name where relations
/// go are required (`account`, `database`, `schema`; `project`, `dataset`); the rest are kept
/// as written, secrets wrapped so that no message shows them.
#[allow(clippy::too_many_arguments)]
fn warehouse_target(
    adapter: &str,
    output: &Yaml,
    file: &SourceFile,
    key_offset: usize,
    profile_name: &str,
    name: &str,
    threads: Option<usize>,
    profiles_file: PathBuf,
) -> Result<Target, Problem> {
    let text = |key: &str| -> Option<String> {
        match output.get(key)? {
            Yaml::String(s) => Some(s.clone()),
            Yaml::Number(n) => Some(n.to_string()),
            Yaml::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    };
    let required = |keys: &[&str], what: &str| -> Result<String, Problem> {
        keys.iter().find_map(|k| text(k)).ok_or_else(|| {
            Problem::new(
                Code::Profile,
                format!("target `{name}` of type `{adapter}` has no `{}`", keys[0]),
            )
            .at(file, key_offset, profile_name.len(), "this profile")
            .help(format!("add `{}: <{what}>` under the target", keys[0]))
        })
    };
    let secrets = |keys: &[&str]| -> Vec<(String, Secret)> {
        keys.iter()
            .filter_map(|k| Some(((*k).to_string(), Secret(text(k)?))))
            .collect()
    };
    let profile_threads = output
        .get("threads")
        .and_then(Yaml::as_u64)
        .map(|t| usize::try_from(t).unwrap_or(1));
    let (database, schema, credentials) = if adapter == "snowflake" {
        let account = required(&["account"], "account identifier")?;
        let database = required(&["database"], "database")?;
        let schema = required(&["schema"], "schema")?;
        let credentials = Credentials::Snowflake(Snowflake {
            account,
            user: text("user"),
            role: text("role"),
            warehouse: text("warehouse"),
            authenticator: text("authenticator"),
            secrets: secrets(&[
                "password",
                "private_key",
                "private_key_passphrase",
                "token",
                "oauth_client_secret",
            ]),
            private_key_path: text("private_key_path"),
            query_tag: text("query_tag"),
            host: text("host"),
            port: output
                .get("port")
                .and_then(Yaml::as_u64)
                .and_then(|p| u16::try_from(p).ok()),
            protocol: text("protocol"),
        });
        (database, schema, credentials)
    } else {
        let project = required(&["project", "database"], "GCP project id")?;
        let dataset = required(&["dataset", "schema"], "dataset")?;
        let credentials = Credentials::BigQuery(BigQuery {
            method: text("method").unwrap_or_else(|| "oauth".to_string()),
            location: text("location"),
            keyfile: text("keyfile"),
            secrets: {
                let mut s = secrets(&["keyfile_json", "token", "refresh_token", "client_secret"]);
                // `keyfile_json` is the key file's mapping, written into the profile.
                if let Some(map @ Yaml::Mapping(_)) = output.get("keyfile_json")
                    && let Ok(json) = serde_json::to_string(map)
                {
                    s.push(("keyfile_json".to_string(), Secret(json)));
                }
                s
            },
            client_id: text("client_id"),
            token_uri: text("token_uri"),
            api_endpoint: text("api_endpoint"),
            job_timeout_seconds: output
                .get("job_execution_timeout_seconds")
                .or_else(|| output.get("timeout_seconds"))
                .and_then(Yaml::as_u64),
            execution_project: text("execution_project"),
            priority: text("priority"),
            maximum_bytes_billed: output.get("maximum_bytes_billed").and_then(Yaml::as_u64),
        });
        (project, dataset, credentials)
    };
    Ok(Target {
        profile_name: profile_name.to_string(),
        name: name.to_string(),
        database,
        schema,
        threads: threads.or(profile_threads).unwrap_or(1).max(1),
        profiles_file: Some(profiles_file),
        credentials,
        quote_policy: crate::relation::QuotePolicy::default(),
    })
}

/// A warning for every key of a Snowflake or BigQuery output that its adapter does not read.
fn unknown_keys(
    output: &Yaml,
    file: &SourceFile,
    from: usize,
    target: &str,
    known: &[&str],
    adapter: &str,
) -> Vec<Problem> {
    let below = |at: usize, key: &str| find_key(&file.text[at..], key).map(|o| at + o);
    let target_at = below(from, target).unwrap_or(from);
    output
        .as_mapping()
        .into_iter()
        .flat_map(|m| m.keys())
        .filter_map(Yaml::as_str)
        .filter(|k| !known.contains(k))
        .map(|key| {
            let at = below(target_at, key).unwrap_or(target_at);
            Problem::new(
                Code::UnknownKey,
                format!("unknown key `{key}` in target `{target}` is ignored"),
            )
            .at(
                file,
                at,
                key.len(),
                format!("not a {adapter} profile setting"),
            )
            .help(
                match crate::suggest::suggestions(key, known.iter().copied()).first() {
                    Some(best) => format!("did you mean `{best}`?"),
                    None => format!("a {adapter} target reads: {}", known.join(", ")),
                },
            )
            .warning()
        })
        .collect()
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
