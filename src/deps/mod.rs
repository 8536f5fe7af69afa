//! `xform deps`: install the packages of `packages.yml` (or `dependencies.yml`) into
//! `packages-install-path`, as dbt does, and keep `package-lock.yml`.
//!
//! Resolving turns each entry into one exact package (`Pinned`): a local folder, a git commit,
//! a hub version chosen from the hub's index within every range that asks for the package, a
//! tarball. Each package's own packages file is read too (a hub package's from the hub's index).
//! With a lock file made from the same entries (its `sha1_hash` is dbt's hash of them) nothing is
//! resolved: the lock's packages are installed exactly.
//!
//! Installing builds the whole new folder beside the old one (`<install-path>.xform-staging`),
//! and swaps it in only when every package is in place: a failure leaves the previous install
//! as it was. Never reads or writes anything else of the project.

mod git;
mod hub;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

use crate::diagnostics::{Code, Problem, SourceFile};
use crate::project::packages::{self, LOCK_FILE, PackageSpec, PackagesFile};
use crate::project::{parse_yaml, yaml_to_json};

/// The package hub dbt uses, unless `DBT_PACKAGE_HUB_URL` names another.
pub const DEFAULT_HUB: &str = "https://hub.getdbt.com/";

/// The dbt-core version whose packages xform installs: a hub version that requires another
/// dbt (`require_dbt_version`) is passed over, as dbt 1.11 passes it over.
pub const DBT_VERSION: &str = "1.11.0";

/// What `deps` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Resolve again even when the lock file matches (`--upgrade`).
    pub upgrade: bool,
    /// Only resolve and write the lock file (`--lock`).
    pub lock_only: bool,
    /// The hub's base URL, ending in `/`.
    pub hub_url: String,
}

/// One exact package, as the lock file records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pinned {
    /// A folder, relative to the root project (or absolute).
    Local { path: String, name: String },
    /// A git repository at a commit.
    Git {
        url: String,
        revision: String,
        subdirectory: Option<String>,
        name: String,
    },
    /// A version of a hub package.
    Hub {
        package: String,
        version: String,
        name: String,
    },
    /// A tarball's URL.
    Tarball { url: String, name: String },
}

impl Pinned {
    pub fn name(&self) -> &str {
        match self {
            Pinned::Local { name, .. }
            | Pinned::Git { name, .. }
            | Pinned::Hub { name, .. }
            | Pinned::Tarball { name, .. } => name,
        }
    }

    /// How the package reads in the output: `dbt_utils 1.3.0 (hub)`.
    pub fn describe(&self) -> String {
        match self {
            Pinned::Local { path, name } => format!("{name} (local: {path})"),
            Pinned::Git {
                url,
                revision,
                name,
                ..
            } => format!(
                "{name} (git: {url} @ {})",
                revision.chars().take(12).collect::<String>()
            ),
            Pinned::Hub {
                package, version, ..
            } => format!("{} {version} (hub: {package})", self.name()),
            Pinned::Tarball { url, name } => format!("{name} (tarball: {url})"),
        }
    }

    /// The lock file's entry.
    fn lock_entry(&self) -> Yaml {
        let mut m = serde_yaml::Mapping::new();
        let mut put = |k: &str, v: &str| {
            m.insert(Yaml::from(k), Yaml::from(v));
        };
        match self {
            Pinned::Local { path, name } => {
                put("local", path);
                put("name", name);
            }
            Pinned::Git {
                url,
                revision,
                subdirectory,
                name,
            } => {
                put("git", url);
                put("revision", revision);
                if let Some(s) = subdirectory {
                    put("subdirectory", s);
                }
                put("name", name);
            }
            Pinned::Hub {
                package,
                version,
                name,
            } => {
                put("package", package);
                put("version", version);
                put("name", name);
            }
            Pinned::Tarball { url, name } => {
                put("tarball", url);
                put("name", name);
            }
        }
        Yaml::Mapping(m)
    }
}

/// What a `deps` run did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub installed: Vec<Pinned>,
    /// Whether the packages came from the lock file as it was.
    pub from_lock: bool,
    pub lock_written: bool,
    /// Warnings (an unpinned git package…).
    pub warnings: Vec<Problem>,
}

/// Install the packages of the project in `root`.
pub fn run(root: &Path, install_path: &str, options: &Options) -> Result<Outcome, Problem> {
    let root = &root.canonicalize().map_err(|e| Problem::io(root, &e))?;
    let Some(specs) = packages::read_specs(root)? else {
        return Ok(Outcome::default());
    };
    if specs.specs.is_empty() {
        return Ok(Outcome::default());
    }
    let hash = spec_hash(&specs);
    let lock = read_lock(root)?;
    let staging = root.join(format!("{install_path}.xform-staging"));
    remove_dir(&staging)?;
    std::fs::create_dir_all(&staging).map_err(|e| Problem::io(&staging, &e))?;
    let result = install_all(root, &specs, lock, &hash, &staging, options);
    let mut outcome = match result {
        Ok(outcome) => outcome,
        Err(p) => {
            let _ = remove_dir(&staging);
            return Err(p);
        }
    };
    // The new lock is written beside the old one first, so that nothing is swapped in when it
    // cannot be written, and renamed over it once the packages are in place.
    let new_lock = if !outcome.from_lock || options.lock_only {
        match write_lock(root, &outcome.installed, &hash) {
            Ok(tmp) => Some(tmp),
            Err(p) => {
                let _ = remove_dir(&staging);
                return Err(p);
            }
        }
    } else {
        None
    };
    if options.lock_only {
        remove_dir(&staging)?;
    } else {
        remove_dir(&staging.join(DOWNLOADS))?;
        if let Err(p) = swap_in(&staging, &root.join(install_path)) {
            if let Some(tmp) = &new_lock {
                let _ = std::fs::remove_file(tmp);
            }
            return Err(p);
        }
    }
    if let Some(tmp) = new_lock {
        let path = root.join(LOCK_FILE);
        std::fs::rename(&tmp, &path).map_err(|e| Problem::io(&path, &e))?;
        outcome.lock_written = true;
    }
    Ok(outcome)
}

/// Where downloads and clones go while installing, inside the staging folder.
const DOWNLOADS: &str = ".downloads";

fn install_all(
    root: &Path,
    specs: &PackagesFile,
    lock: Option<Lock>,
    hash: &str,
    staging: &Path,
    options: &Options,
) -> Result<Outcome, Problem> {
    let downloads = staging.join(DOWNLOADS);
    let mut fetcher = Fetcher {
        root: root.to_path_buf(),
        downloads,
        hub: hub::Hub::new(&options.hub_url),
        clones: BTreeMap::new(),
        warnings: Vec::new(),
    };
    let (pinned, from_lock) = match lock {
        Some(lock) if !options.upgrade && lock.hash == hash => (lock.packages, true),
        _ => (resolve(&mut fetcher, specs)?, false),
    };
    if !options.lock_only {
        for package in &pinned {
            fetcher.install(package, &staging.join(package.name()))?;
        }
    }
    Ok(Outcome {
        installed: pinned,
        from_lock,
        lock_written: false,
        warnings: fetcher.warnings,
    })
}

/// Fetches packages: local folders, git clones (each URL and revision once), hub and tarball
/// downloads.
struct Fetcher {
    root: PathBuf,
    downloads: PathBuf,
    hub: hub::Hub,
    /// Clones made while resolving, by URL and revision asked for: (folder, commit).
    clones: BTreeMap<(String, String), (PathBuf, String)>,
    warnings: Vec<Problem>,
}

impl Fetcher {
    fn clone_at(
        &mut self,
        url: &str,
        revision: Option<&str>,
    ) -> Result<(PathBuf, String), Problem> {
        let key = (url.to_string(), revision.unwrap_or("HEAD").to_string());
        if let Some(found) = self.clones.get(&key) {
            return Ok(found.clone());
        }
        let dir = self.downloads.join(format!("git-{}", self.clones.len()));
        let commit = git::clone_at(url, revision, &dir)?;
        self.clones.insert(key, (dir.clone(), commit.clone()));
        Ok((dir, commit))
    }

    /// Put one package's files at `dest`.
    fn install(&mut self, package: &Pinned, dest: &Path) -> Result<(), Problem> {
        match package {
            Pinned::Local { path, .. } => {
                let source = self.root.join(path);
                let source = source.canonicalize().map_err(|e| {
                    Problem::new(
                        Code::Packages,
                        format!("the local package `{path}` cannot be read: {e}"),
                    )
                    .help(
                        "fix the `local:` path in the packages file; it is relative to the project",
                    )
                })?;
                link_or_copy(&source, dest)
            }
            Pinned::Git {
                url,
                revision,
                subdirectory,
                ..
            } => {
                let (dir, _) = self.clone_at(url, Some(revision))?;
                let from = match subdirectory {
                    Some(s) => dir.join(s),
                    None => dir,
                };
                copy_tree(&from, dest)
            }
            Pinned::Hub {
                package, version, ..
            } => {
                let url = self.hub.tarball_url(package, version)?;
                let dir = self.download(&url)?;
                move_tree(&dir, dest)
            }
            Pinned::Tarball { url, .. } => {
                let dir = self.download(url)?;
                move_tree(&dir, dest)
            }
        }
    }

    /// Download and unpack a `.tar.gz`; the folder holding the package (the archive's one
    /// top folder, as GitHub's tarballs have).
    fn download(&mut self, url: &str) -> Result<PathBuf, Problem> {
        let dir = self
            .downloads
            .join(format!("tar-{}", crate::project::sha256(url.as_bytes())));
        let _ = remove_dir(&dir);
        let bytes = self.hub.get_bytes(url)?;
        let decoder = flate2::read::GzDecoder::new(std::io::Cursor::new(bytes));
        tar::Archive::new(decoder).unpack(&dir).map_err(|e| {
            Problem::new(
                Code::Packages,
                format!("the package archive `{url}` cannot be unpacked: {e}"),
            )
            .help("the download is not a .tar.gz archive; check the URL")
        })?;
        let entries: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| Problem::io(&dir, &e))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        match entries.as_slice() {
            [only] if only.is_dir() => Ok(only.clone()),
            _ => Ok(dir),
        }
    }

    /// The folder of a resolved package, to read its project file and packages file.
    fn folder_of(&mut self, spec: &PackageSpec, base: &Path) -> Result<(PathBuf, Pinned), Problem> {
        match spec {
            PackageSpec::Local { path } => {
                let dir = base.join(path);
                // The root project's entries are locked as written, as dbt locks them.
                let rel = if base == self.root {
                    path.clone()
                } else {
                    relative_to(&self.root, &dir)
                };
                let name = self.name_in(&dir, &spec.label())?;
                Ok((dir, Pinned::Local { path: rel, name }))
            }
            PackageSpec::Git {
                url,
                revision,
                subdirectory,
            } => {
                if revision.is_none() {
                    self.warnings.push(
                        Problem::new(
                            Code::Packages,
                            format!("the git package `{url}` has no `revision:`: its newest commit is installed"),
                        )
                        .warning()
                        .help("pin a tag or commit with `revision:` so that every install is the same"),
                    );
                }
                let (dir, commit) = self.clone_at(url, revision.as_deref())?;
                let dir = match subdirectory {
                    Some(s) => dir.join(s),
                    None => dir,
                };
                let name = self.name_in(&dir, &spec.label())?;
                Ok((
                    dir,
                    Pinned::Git {
                        url: url.clone(),
                        revision: commit,
                        subdirectory: subdirectory.clone(),
                        name,
                    },
                ))
            }
            PackageSpec::Tarball { url, name } => {
                let dir = self.download(url)?;
                Ok((
                    dir,
                    Pinned::Tarball {
                        url: url.clone(),
                        name: name.clone(),
                    },
                ))
            }
            PackageSpec::Hub { .. } => unreachable!("hub packages are resolved from the index"),
        }
    }

    /// Whether two packages of one name are the same: equal, or local folders that are one
    /// folder reached by two spellings (the project's `../x` and a package's own `../x`).
    fn same(&self, a: &Pinned, b: &Pinned) -> bool {
        match (a, b) {
            (Pinned::Local { path: x, .. }, Pinned::Local { path: y, .. }) => {
                let canonical = |p: &str| self.root.join(p).canonicalize().ok();
                x == y || (canonical(x).is_some() && canonical(x) == canonical(y))
            }
            _ => a == b,
        }
    }

    fn name_in(&self, dir: &Path, label: &str) -> Result<String, Problem> {
        packages::project_name(dir).ok_or_else(|| {
            Problem::new(
                Code::Packages,
                format!(
                    "the package `{label}` has no readable `dbt_project.yml` with a `name:` (looked in `{}`)",
                    relative_to(&self.root, dir)
                ),
            )
            .help("a package is a dbt project: point the entry at the folder that holds its dbt_project.yml (`subdirectory:` for a git package)")
        })
    }
}

/// Resolve every entry, and the entries of each package's own packages file, to exact packages.
fn resolve(fetcher: &mut Fetcher, specs: &PackagesFile) -> Result<Vec<Pinned>, Problem> {
    // (the entry, the folder its paths are relative to, the file and offset it came from)
    let mut queue: std::collections::VecDeque<(PackageSpec, PathBuf, Origin)> = specs
        .specs
        .iter()
        .map(|e| {
            (
                e.spec.clone(),
                fetcher.root.clone(),
                Origin::At(specs.file.clone(), e.at),
            )
        })
        .collect();
    let mut pinned: Vec<Pinned> = Vec::new();
    let mut hub_order: Vec<String> = Vec::new();
    let mut ranges: BTreeMap<String, hub::Ranges> = BTreeMap::new();
    let mut chosen: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut rounds = 0;
    loop {
        while let Some((spec, base, origin)) = queue.pop_front() {
            if let PackageSpec::Hub {
                package,
                versions,
                install_prerelease,
            } = &spec
            {
                if !hub_order.contains(package) {
                    hub_order.push(package.clone());
                }
                let r = ranges.entry(package.clone()).or_default();
                r.add(versions, *install_prerelease, origin)?;
                continue;
            }
            let (dir, package) = fetcher
                .folder_of(&spec, &base)
                .map_err(|p| origin.point(p))?;
            if let Some(existing) = pinned.iter().find(|p| p.name() == package.name()) {
                if !fetcher.same(existing, &package) {
                    return Err(origin.point(Problem::new(
                        Code::Packages,
                        format!(
                            "two packages are named `{}`: {} and {}",
                            package.name(),
                            existing.describe(),
                            package.describe()
                        ),
                    ).help("keep one of them in the packages file; a project can hold only one package of a name")));
                }
                continue;
            }
            pinned.push(package);
            if let Some(own) = packages::read_specs(&dir)? {
                for e in own.specs {
                    queue.push_back((e.spec, dir.clone(), Origin::At(own.file.clone(), e.at)));
                }
            }
        }
        // Choose each hub package's version within every range asked so far; a package whose
        // choice is new or changed brings its own dependencies.
        let mut changed = false;
        for package in &hub_order {
            let r = &ranges[package];
            let (version, name, deps) = fetcher.hub.choose(package, r)?;
            if chosen.get(package).map(|c| &c.0) == Some(&version) {
                continue;
            }
            changed = true;
            chosen.insert(package.clone(), (version, name));
            for (dep, dep_versions) in deps {
                queue.push_back((
                    PackageSpec::Hub {
                        package: dep,
                        versions: dep_versions,
                        install_prerelease: false,
                    },
                    fetcher.root.clone(),
                    Origin::Hub(package.clone()),
                ));
            }
        }
        rounds += 1;
        if !changed || rounds > 50 {
            break;
        }
    }
    for package in hub_order {
        let (version, name) = chosen
            .remove(&package)
            .expect("every hub package is chosen");
        if let Some(existing) = pinned.iter().find(|p| p.name() == name) {
            return Err(Problem::new(
                Code::Packages,
                format!(
                    "two packages are named `{name}`: {} and the hub's `{package}`",
                    existing.describe()
                ),
            )
            .help("keep one of them in the packages file; a project can hold only one package of a name"));
        }
        pinned.push(Pinned::Hub {
            package,
            version,
            name,
        });
    }
    Ok(pinned)
}

/// Where a package entry came from: a packages file, or a hub package's dependencies.
#[derive(Debug, Clone)]
pub(crate) enum Origin {
    At(SourceFile, usize),
    Hub(String),
}

impl Origin {
    /// Label the problem at the entry, when it came from a file without a label yet.
    pub(crate) fn point(&self, problem: Problem) -> Problem {
        match self {
            Origin::At(file, at) if problem.location().is_none() => {
                problem.at(file, *at, 1, "this package")
            }
            Origin::At(..) => problem,
            Origin::Hub(by) => {
                let message = format!("{} (a dependency of `{by}`)", problem.message);
                Problem { message, ..problem }
            }
        }
    }
}

/// `package-lock.yml` as read.
struct Lock {
    packages: Vec<Pinned>,
    hash: String,
}

fn read_lock(root: &Path) -> Result<Option<Lock>, Problem> {
    let path = root.join(LOCK_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let file = SourceFile::new(LOCK_FILE, text);
    let doc = parse_yaml(&file)?;
    let bad = || {
        Problem::new(
            Code::Packages,
            format!("`{LOCK_FILE}` is not a lock file xform can read"),
        )
        .at(&file, 0, 0, "here")
        .help(format!(
            "delete `{LOCK_FILE}` and run `xform deps` to resolve the packages again"
        ))
    };
    let mut packages = Vec::new();
    for entry in doc
        .get("packages")
        .and_then(Yaml::as_sequence)
        .ok_or_else(bad)?
    {
        let s = |k: &str| entry.get(k).and_then(Yaml::as_str).map(String::from);
        let s_or_num = |k: &str| match entry.get(k) {
            Some(Yaml::Number(n)) => Some(n.to_string()),
            _ => s(k),
        };
        // Lock files of older dbt versions name no package: resolve again.
        let Some(name) = s("name") else {
            return Ok(None);
        };
        let package = if let Some(path) = s("local") {
            Pinned::Local { path, name }
        } else if let Some(url) = s("git") {
            Pinned::Git {
                url,
                revision: s_or_num("revision").ok_or_else(bad)?,
                subdirectory: s("subdirectory"),
                name,
            }
        } else if let Some(package) = s("package") {
            Pinned::Hub {
                package,
                version: s_or_num("version").ok_or_else(bad)?,
                name,
            }
        } else if let Some(url) = s("tarball") {
            Pinned::Tarball { url, name }
        } else {
            return Err(bad());
        };
        packages.push(package);
    }
    let hash = doc
        .get("sha1_hash")
        .and_then(Yaml::as_str)
        .unwrap_or_default()
        .to_string();
    Ok(Some(Lock { packages, hash }))
}

/// Write the lock file beside its place (`package-lock.yml.xform-tmp`); returns that path.
fn write_lock(root: &Path, packages: &[Pinned], hash: &str) -> Result<PathBuf, Problem> {
    let mut doc = serde_yaml::Mapping::new();
    doc.insert(
        Yaml::from("packages"),
        Yaml::Sequence(packages.iter().map(Pinned::lock_entry).collect()),
    );
    doc.insert(Yaml::from("sha1_hash"), Yaml::from(hash));
    let text = serde_yaml::to_string(&Yaml::Mapping(doc)).expect("a lock file serializes");
    let tmp = root.join(format!("{LOCK_FILE}.xform-tmp"));
    std::fs::write(&tmp, text).map_err(|e| Problem::io(&tmp, &e))?;
    Ok(tmp)
}

/// dbt's `sha1_hash` of a packages file: each entry as its contract's JSON (keys sorted,
/// Python's separators), sorted, joined by new lines.
pub fn spec_hash(specs: &PackagesFile) -> String {
    use sha1::Digest;
    let mut lines: Vec<String> = specs
        .specs
        .iter()
        .map(|e| {
            let raw = yaml_to_json(&e.raw);
            let mut m = serde_json::Map::new();
            let get = |k: &str| raw.get(k).cloned();
            let mut keep = |k: &str, v: Option<Json>| {
                if let Some(v) = v.filter(|v| !v.is_null()) {
                    m.insert(k.to_string(), v);
                }
            };
            match &e.spec {
                PackageSpec::Local { .. } => {
                    keep("local", get("local"));
                    keep("name", get("name"));
                }
                PackageSpec::Tarball { .. } => {
                    keep("tarball", get("tarball"));
                    keep("name", get("name"));
                }
                PackageSpec::Git { .. } => {
                    keep("git", get("git"));
                    keep("revision", get("revision"));
                    keep("warn-unpinned", get("warn-unpinned"));
                    keep("subdirectory", get("subdirectory"));
                    keep("name", get("name"));
                }
                PackageSpec::Hub {
                    install_prerelease, ..
                } => {
                    keep("package", get("package"));
                    keep("version", get("version"));
                    keep("install_prerelease", Some(Json::Bool(*install_prerelease)));
                    keep("name", get("name"));
                }
            }
            m.insert("unrendered".to_string(), raw);
            python_json(&Json::Object(m))
        })
        .collect();
    lines.sort();
    let digest = sha1::Sha1::digest(lines.join("\n").as_bytes());
    digest.iter().fold(String::new(), |mut hex, b| {
        use std::fmt::Write;
        let _ = write!(hex, "{b:02x}");
        hex
    })
}

/// JSON as Python's `json.dumps(value, sort_keys=True)` writes it.
fn python_json(value: &Json) -> String {
    match value {
        Json::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}: {}", python_str(k), python_json(&m[k])))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        Json::Array(items) => format!(
            "[{}]",
            items.iter().map(python_json).collect::<Vec<_>>().join(", ")
        ),
        Json::String(s) => python_str(s),
        other => other.to_string(),
    }
}

/// A JSON string with every non-ASCII character escaped, as Python's `ensure_ascii` does.
fn python_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    use std::fmt::Write;
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn remove_dir(path: &Path) -> Result<(), Problem> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path).map_err(|e| Problem::io(path, &e)),
        Ok(_) => std::fs::remove_file(path).map_err(|e| Problem::io(path, &e)),
        Err(_) => Ok(()),
    }
}

/// Replace `target` by `staging`: the old folder is moved aside first and deleted last.
fn swap_in(staging: &Path, target: &Path) -> Result<(), Problem> {
    let old = target.with_file_name(format!(
        "{}.xform-old",
        target.file_name().unwrap_or_default().to_string_lossy()
    ));
    remove_dir(&old)?;
    let had_old = target.exists();
    if had_old {
        std::fs::rename(target, &old).map_err(|e| Problem::io(target, &e))?;
    }
    if let Err(e) = std::fs::rename(staging, target) {
        if had_old {
            let _ = std::fs::rename(&old, target);
        }
        return Err(Problem::io(target, &e));
    }
    remove_dir(&old)
}

/// A local package is linked, as dbt links it, so that edits to it are seen at once.
fn link_or_copy(source: &Path, dest: &Path) -> Result<(), Problem> {
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(source, dest).map_err(|e| Problem::io(dest, &e))
    }
    #[cfg(not(unix))]
    {
        copy_tree(source, dest)
    }
}

fn move_tree(from: &Path, dest: &Path) -> Result<(), Problem> {
    if std::fs::rename(from, dest).is_ok() {
        return Ok(());
    }
    copy_tree(from, dest)
}

/// Copy a folder's files (not `.git`) to `dest`.
fn copy_tree(from: &Path, dest: &Path) -> Result<(), Problem> {
    for entry in walkdir::WalkDir::new(from)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.file_name() != ".git")
    {
        let entry = entry.map_err(|e| {
            Problem::new(Code::Io, format!("cannot copy `{}`: {e}", from.display()))
        })?;
        let rel = entry.path().strip_prefix(from).unwrap_or(entry.path());
        let to = dest.join(rel);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&to).map_err(|e| Problem::io(&to, &e))?;
        } else {
            std::fs::copy(entry.path(), &to).map_err(|e| Problem::io(&to, &e))?;
        }
    }
    Ok(())
}

/// `path` relative to `root` when it is inside or beside it (`../x`), else absolute; with `/`.
fn relative_to(root: &Path, path: &Path) -> String {
    let norm = |p: &Path| -> PathBuf {
        let mut out = PathBuf::new();
        for c in p.components() {
            match c {
                std::path::Component::ParentDir if out.file_name().is_some() => {
                    out.pop();
                }
                std::path::Component::CurDir => {}
                c => out.push(c),
            }
        }
        out
    };
    let (root, path) = (norm(root), norm(path));
    let mut up = 0;
    let mut base = root.as_path();
    loop {
        if let Ok(rest) = path.strip_prefix(base) {
            let mut parts: Vec<String> = vec!["..".to_string(); up];
            parts.extend(
                rest.components()
                    .map(|c| c.as_os_str().to_string_lossy().to_string()),
            );
            return if parts.is_empty() {
                ".".to_string()
            } else {
                parts.join("/")
            };
        }
        match base.parent() {
            Some(p) => {
                base = p;
                up += 1;
            }
            None => return path.to_string_lossy().replace('\\', "/"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> PackagesFile {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("packages.yml"), text).unwrap();
        packages::read_specs(dir.path()).unwrap().unwrap()
    }

    #[test]
    fn python_json_matches_json_dumps() {
        let v: Json = serde_json::json!({"b": [1, "x"], "a": {"d": true, "c": null}, "é": "ü"});
        assert_eq!(
            python_json(&v),
            r#"{"a": {"c": null, "d": true}, "b": [1, "x"], "\u00e9": "\u00fc"}"#
        );
    }

    #[test]
    fn paths_are_relative_to_the_project() {
        let root = Path::new("/p/proj");
        assert_eq!(relative_to(root, Path::new("/p/proj/../pkg")), "../pkg");
        assert_eq!(relative_to(root, Path::new("/p/proj/sub/x")), "sub/x");
        assert_eq!(relative_to(root, Path::new("/p/proj/./")), ".");
    }

    #[test]
    fn the_hash_ignores_entry_order() {
        let a = file("packages:\n  - local: ../a\n  - package: x/y\n    version: 1.0.0\n");
        let b = file("packages:\n  - package: x/y\n    version: 1.0.0\n  - local: ../a\n");
        assert_eq!(spec_hash(&a), spec_hash(&b));
        let c = file("packages:\n  - package: x/y\n    version: 1.0.1\n  - local: ../a\n");
        assert_ne!(spec_hash(&a), spec_hash(&c));
    }
}
