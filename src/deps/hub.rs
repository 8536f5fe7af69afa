//! The package hub: its index of a package's versions (`<hub>api/v1/<owner>/<name>.json`),
//! choosing a version within the ranges asked for, and downloads over HTTPS (ureq).

use std::collections::BTreeMap;
use std::time::Duration;

use semver::{Version, VersionReq};
use serde_json::Value as Json;

use super::{DBT_VERSION, Origin};
use crate::diagnostics::{Code, Problem};

/// The largest download accepted (a package tarball is well under a megabyte).
const MAX_DOWNLOAD: u64 = 256 * 1024 * 1024;

/// Every range asked of one hub package, and whether prereleases may be chosen.
#[derive(Debug, Default)]
pub struct Ranges {
    /// (as written, parsed, where it was asked)
    reqs: Vec<(String, VersionReq, Origin)>,
    prerelease: bool,
}

impl Ranges {
    pub fn add(
        &mut self,
        versions: &[String],
        prerelease: bool,
        origin: Origin,
    ) -> Result<(), Problem> {
        self.prerelease |= prerelease;
        for v in versions {
            let req = parse_range(v).ok_or_else(|| {
                origin.point(
                    Problem::new(Code::Packages, format!("`{v}` is not a version or a range"))
                        .help("write a version (`1.3.0`) or ranges (`[\">=1.0.0\", \"<2.0.0\"]`)"),
                )
            })?;
            self.prerelease |= !req.comparators.iter().all(|c| c.pre.is_empty());
            self.reqs.push((v.clone(), req, origin.clone()));
        }
        Ok(())
    }

    fn matches(&self, version: &Version) -> bool {
        if !version.pre.is_empty() && !self.prerelease {
            return false;
        }
        // A prerelease is judged by its release number, so that `>=1.0.0` admits `1.1.0-b1`
        // when prereleases are asked for.
        let release = Version::new(version.major, version.minor, version.patch);
        self.reqs
            .iter()
            .all(|(_, req, _)| req.matches(version) || req.matches(&release))
    }

    fn describe(&self) -> String {
        self.reqs
            .iter()
            .map(|(v, _, _)| v.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One of dbt's version specifiers (`1.2.3`, `>=1.0.0`, `<2.0.0`, `=1.0.0`) as a semver range.
fn parse_range(text: &str) -> Option<VersionReq> {
    let t = text.trim();
    let op_len = t.find(|c: char| c.is_ascii_digit()).filter(|&i| i <= 2)?;
    let (op, version) = t.split_at(op_len);
    let op = match op.trim() {
        "" | "=" | "==" => "=",
        o @ (">=" | "<=" | ">" | "<") => o,
        _ => return None,
    };
    // dbt's versions have three parts; semver reads `=1.0` as any 1.0.x.
    let (release, pre) = match version.split_once('-') {
        Some((r, p)) => (r, Some(p)),
        None => (version, None),
    };
    let mut parts: Vec<&str> = release.split('.').collect();
    while parts.len() < 3 {
        parts.push("0");
    }
    let mut full = parts.join(".");
    if let Some(p) = pre {
        full = format!("{full}-{p}");
    }
    Version::parse(&full).ok()?;
    VersionReq::parse(&format!("{op}{full}")).ok()
}

/// `require_dbt_version` of a hub version (a range or a list): whether dbt 1.11 may install it.
fn supports_this_dbt(entry: &Json) -> bool {
    let ranges: Vec<&str> = match entry.get("require_dbt_version") {
        Some(Json::String(s)) => vec![s.as_str()],
        Some(Json::Array(items)) => items.iter().filter_map(Json::as_str).collect(),
        _ => return true,
    };
    let ours = Version::parse(DBT_VERSION).expect("a version");
    ranges
        .iter()
        .filter_map(|r| parse_range(r))
        .all(|req| req.matches(&ours))
}

pub struct Hub {
    base: String,
    agent: ureq::Agent,
    /// Each package's index, fetched once.
    index: BTreeMap<String, Json>,
}

impl Hub {
    pub fn new(base: &str) -> Hub {
        let base = if base.ends_with('/') {
            base.to_string()
        } else {
            format!("{base}/")
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        Hub {
            base,
            agent,
            index: BTreeMap::new(),
        }
    }

    fn fetch(&self, url: &str) -> Result<Vec<u8>, ureq::Error> {
        let mut response = self.agent.get(url).call()?;
        response
            .body_mut()
            .with_config()
            .limit(MAX_DOWNLOAD)
            .read_to_vec()
    }

    /// The bytes at a URL.
    pub fn get_bytes(&self, url: &str) -> Result<Vec<u8>, Problem> {
        self.fetch(url).map_err(|e| self.fetch_problem(url, &e))
    }

    fn fetch_problem(&self, url: &str, e: &ureq::Error) -> Problem {
        let help = if url.starts_with(&self.base) {
            "check the network, or point DBT_PACKAGE_HUB_URL at a reachable hub; a project whose package-lock.yml is up to date still needs the hub to download"
        } else {
            "check the network and the URL"
        };
        Problem::new(Code::Packages, format!("cannot download `{url}`: {e}")).help(help)
    }

    /// A package's index: every version with its dependencies and download.
    fn versions(&mut self, package: &str) -> Result<&Json, Problem> {
        if !self.index.contains_key(package) {
            let url = format!("{}api/v1/{package}.json", self.base);
            let bytes = match self.fetch(&url) {
                Err(ureq::Error::StatusCode(404)) => {
                    return Err(Problem::new(
                        Code::Packages,
                        format!("the package hub has no package `{package}`"),
                    )
                    .help("check the name (`owner/name`, as on the hub), or install it with `git:` or `local:`"));
                }
                Err(e) => return Err(self.fetch_problem(&url, &e)),
                Ok(bytes) => bytes,
            };
            let doc: Json = serde_json::from_slice(&bytes).map_err(|e| {
                Problem::new(
                    Code::Packages,
                    format!("the package hub's answer for `{package}` is not JSON: {e}"),
                )
            })?;
            self.index.insert(package.to_string(), doc);
        }
        Ok(&self.index[package])
    }

    /// The newest version that every range admits (and that supports dbt 1.11): the version,
    /// the package's project name, and its own hub dependencies.
    #[allow(clippy::type_complexity)]
    pub fn choose(
        &mut self,
        package: &str,
        ranges: &Ranges,
    ) -> Result<(String, String, Vec<(String, Vec<String>)>), Problem> {
        let index = self.versions(package)?;
        let versions = index.get("versions").and_then(Json::as_object);
        let mut candidates: Vec<(Version, &String, &Json)> = versions
            .into_iter()
            .flatten()
            .filter_map(|(v, entry)| Some((Version::parse(v).ok()?, v, entry)))
            .filter(|(v, _, entry)| ranges.matches(v) && supports_this_dbt(entry))
            .collect();
        candidates.sort_by(|a, b| a.0.cmp(&b.0));
        let Some((_, version, entry)) = candidates.pop() else {
            let available: Vec<&str> = versions
                .into_iter()
                .flatten()
                .map(|(v, _)| v.as_str())
                .collect();
            let first = ranges.reqs.first().map(|(_, _, o)| o.clone());
            let problem = Problem::new(
                Code::Packages,
                format!(
                    "no version of `{package}` satisfies {} (for dbt {DBT_VERSION})",
                    ranges.describe()
                ),
            )
            .help(format!(
                "widen the range in the packages file; the hub has {}",
                match available.len() {
                    0 => "no versions".to_string(),
                    n if n > 8 => format!(
                        "{} … {}",
                        available[..4].join(", "),
                        available[n - 4..].join(", ")
                    ),
                    _ => available.join(", "),
                }
            ));
            return Err(match first {
                Some(o) => o.point(problem),
                None => problem,
            });
        };
        let name = entry.get("name").and_then(Json::as_str).map_or_else(
            || package.rsplit('/').next().unwrap_or(package).to_string(),
            String::from,
        );
        let deps = entry
            .get("packages")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .filter_map(|d| {
                let p = d.get("package")?.as_str()?.to_string();
                let v = match d.get("version")? {
                    Json::Array(items) => items
                        .iter()
                        .filter_map(|i| i.as_str().map(String::from))
                        .collect(),
                    Json::String(s) => vec![s.clone()],
                    other => vec![other.to_string()],
                };
                Some((p, v))
            })
            .collect();
        Ok((version.clone(), name, deps))
    }

    /// Where a version's tarball is.
    pub fn tarball_url(&mut self, package: &str, version: &str) -> Result<String, Problem> {
        let index = self.versions(package)?;
        index
            .get("versions")
            .and_then(|v| v.get(version))
            .and_then(|e| e.get("downloads"))
            .and_then(|d| d.get("tarball"))
            .and_then(Json::as_str)
            .map(String::from)
            .ok_or_else(|| {
                Problem::new(
                    Code::Packages,
                    format!("the package hub has no version {version} of `{package}`"),
                )
                .help("run `xform deps --upgrade` to resolve the packages again")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dbt_specifiers_become_semver_ranges() {
        let ok = |r: &str, v: &str| parse_range(r).unwrap().matches(&Version::parse(v).unwrap());
        assert!(ok("1.2.3", "1.2.3"));
        assert!(!ok("1.2.3", "1.2.4"));
        assert!(ok(">=1.0.0", "1.3.0"));
        assert!(!ok("<1.0.0", "1.0.0"));
        assert!(ok("=0.9", "0.9.0"));
        assert!(!ok("0.9", "0.9.1"));
        assert!(parse_range("~1.0").is_none());
        assert!(parse_range("latest").is_none());
    }

    #[test]
    fn a_version_must_support_this_dbt() {
        assert!(supports_this_dbt(&serde_json::json!({})));
        assert!(supports_this_dbt(
            &serde_json::json!({"require_dbt_version": [">=1.3.0", "<2.0.0"]})
        ));
        assert!(!supports_this_dbt(
            &serde_json::json!({"require_dbt_version": ">=2.0.0"})
        ));
    }
}
