//! Property YAML: `models:`, `seeds:`, `sources:`, `snapshots:` and the tests and unit tests
//! declared in them, applied to what discovery found. An entry for a node that does not exist
//! is a warning with the closest names.

use serde_yaml::Value as Yaml;

use super::yaml::{columns_of, config_of, find_key, name_offset, str_of};
use super::{
    NodeProps, Project, SnapshotDef, SourceTable, TestTarget, config, data_tests, unit_tests,
};
use crate::diagnostics::{Code, Problem, SourceFile};

/// A property file as read and parsed (a problem when it could not be read).
pub(super) type ReadProperties = Result<(SourceFile, Result<Yaml, Problem>), Problem>;

/// The names of the project's models and seeds, for checking property entries against.
pub(super) struct KnownNames {
    pub(super) models: std::collections::HashSet<String>,
    pub(super) seeds: std::collections::HashSet<String>,
}

impl Project {
    pub(super) fn read_properties(
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
                        if key == "models"
                            && let Some(versions) = item.get("versions")
                        {
                            self.read_versions(file, item, versions, names, problems);
                            continue;
                        }
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
                        // `overrides: <package>`: this entry changes the package's source
                        // of the same name (`Project::apply_source_overrides`), and is not a
                        // source of its own; its tables' tests test the package's tables.
                        if let Some(package) = source.get("overrides").and_then(Yaml::as_str) {
                            for table in source
                                .get("tables")
                                .and_then(Yaml::as_sequence)
                                .into_iter()
                                .flatten()
                            {
                                if let Some(name) = table.get("name").and_then(Yaml::as_str) {
                                    self.generic_tests.extend(data_tests::tests_of(
                                        table,
                                        &TestTarget::Source(
                                            source_name.to_string(),
                                            name.to_string(),
                                        ),
                                        file,
                                    ));
                                }
                            }
                            self.source_overrides.push(super::SourceOverride {
                                package: package.to_string(),
                                source_name: source_name.to_string(),
                                yaml: source.clone(),
                                file: file.clone(),
                                offset: name_offset(&file.text, source_name),
                            });
                            continue;
                        }
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
                                freshness: super::freshness::merged(source, table),
                                loaded_at_field: super::freshness::loaded_at_field(source, table),
                                external_location: [table, source]
                                    .iter()
                                    .find_map(|y| {
                                        ["config", "meta"].iter().find_map(|k| {
                                            y.get(k)?.get("external_location")?.as_str()
                                        })
                                    })
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
                    let package = &self.name;
                    self.unit_tests
                        .extend(defs.into_iter().map(|d| unit_tests::UnitTestDef {
                            package: package.clone(),
                            ..d
                        }));
                }
                "exposures" | "metrics" | "semantic_models" | "saved_queries" | "groups" => {
                    // Kept as written, for the manifest: xform runs none of them.
                    for item in value.as_sequence().into_iter().flatten() {
                        if let Some(name) = item.get("name").and_then(Yaml::as_str) {
                            self.resources.push(super::YamlResource {
                                kind: match key.as_str() {
                                    "exposures" => "exposure",
                                    "metrics" => "metric",
                                    "semantic_models" => "semantic_model",
                                    "saved_queries" => "saved_query",
                                    _ => "group",
                                }
                                .to_string(),
                                name: name.to_string(),
                                package: self.name.clone(),
                                path: file.name.clone(),
                                yaml: super::yaml_to_json(item),
                            });
                        }
                    }
                }
                "version" | "macros" | "analyses" => {}
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

    /// A versioned model's entry (`versions:`): each version is the model file named
    /// `<name>_v<v>` (or `defined_in:`), with the entry's properties, the version's own on top.
    /// A version's `columns:` start from the entry's (`include:` all or a list, `exclude:`),
    /// then its own named columns replace or add; its `data_tests:` replace the entry's.
    fn read_versions(
        &mut self,
        file: &SourceFile,
        item: &Yaml,
        versions: &Yaml,
        names: &KnownNames,
        problems: &mut Vec<Problem>,
    ) {
        let Some(name) = item.get("name").and_then(Yaml::as_str) else {
            problems.push(Self::shape_problem(
                file,
                "models",
                "every entry to have a `name:`",
            ));
            return;
        };
        let at = name_offset(&file.text, name);
        let Some(list) = versions.as_sequence().filter(|l| !l.is_empty()) else {
            problems.push(
                Problem::new(
                    Code::ProjectConfig,
                    format!("`versions:` of model `{name}` must be a list of `- v: <version>`"),
                )
                .at(file, at, name.len(), "this model")
                .help("write `versions: [{v: 1}, {v: 2}]`"),
            );
            return;
        };
        let mut declared = Vec::new();
        for v in list {
            match v.get("v").and_then(scalar_text) {
                Some(text) => declared.push((text, v)),
                None => problems.push(
                    Problem::new(
                        Code::ProjectConfig,
                        format!("a version of model `{name}` has no `v:`"),
                    )
                    .at(file, at, name.len(), "this model")
                    .help("give each version its number: `- v: 2`"),
                ),
            }
        }
        let latest = item
            .get("latest_version")
            .and_then(scalar_text)
            .or_else(|| {
                declared
                    .iter()
                    .map(|(v, _)| v.clone())
                    .max_by(|a, b| compare_versions(a, b))
            })
            .unwrap_or_default();
        if !declared.iter().any(|(v, _)| *v == latest) {
            problems.push(
                Problem::new(
                    Code::ProjectConfig,
                    format!(
                        "`latest_version: {latest}` of model `{name}` is not one of its versions"
                    ),
                )
                .at(file, at, name.len(), "this model")
                .help("set `latest_version:` to a declared `v:`, or declare that version"),
            );
        }
        let base_columns: Vec<&Yaml> = item
            .get("columns")
            .and_then(Yaml::as_sequence)
            .map(|c| c.iter().collect())
            .unwrap_or_default();
        for (v, entry) in &declared {
            let version = super::ModelVersion {
                name: name.to_string(),
                version: v.clone(),
                latest: latest.clone(),
            };
            // `defined_in:`, else `<name>_v<v>`; the latest version may also be the model's
            // own file, `<name>.sql`, as in dbt.
            let stem = match entry.get("defined_in").and_then(Yaml::as_str) {
                Some(file) => file.to_string(),
                None if !names.models.contains(&version.key())
                    && *v == latest
                    && names.models.contains(name) =>
                {
                    name.to_string()
                }
                None => version.key(),
            };
            if !names.models.contains(&stem) {
                problems.push(
                    Problem::new(
                        Code::ProjectConfig,
                        format!("version {v} of model `{name}` has no file `{stem}.sql`"),
                    )
                    .at(file, at, name.len(), "this versioned model")
                    .help(format!(
                        "name the model file `{stem}.sql`, or point `defined_in:` at the file's name"
                    )),
                );
                continue;
            }
            if let Some(other) = self.versions.get(&stem) {
                problems.push(
                    Problem::new(
                        Code::ProjectConfig,
                        format!(
                            "`{stem}.sql` is version {} of `{}` and version {v} of `{name}`",
                            other.version, other.name
                        ),
                    )
                    .at(file, at, name.len(), "here")
                    .help("give each version its own file"),
                );
                continue;
            }
            // The version as a model entry of its own: the entry's keys, the version's over them.
            let mut merged = item.as_mapping().cloned().unwrap_or_default();
            merged.remove("versions");
            merged.remove("latest_version");
            merged.insert(
                Yaml::from("columns"),
                Yaml::Sequence(version_columns(&base_columns, entry)),
            );
            if let Some(Yaml::Mapping(own)) = Some(entry) {
                for (k, val) in own {
                    let key = config::yaml_key(k);
                    match key.as_str() {
                        "v" | "defined_in" | "columns" => {}
                        "config" => {
                            let mut config = merged
                                .get("config")
                                .and_then(Yaml::as_mapping)
                                .cloned()
                                .unwrap_or_default();
                            if let Some(m) = val.as_mapping() {
                                for (ck, cv) in m {
                                    config.insert(ck.clone(), cv.clone());
                                }
                            }
                            merged.insert(Yaml::from("config"), Yaml::Mapping(config));
                        }
                        "tests" | "data_tests" => {
                            merged.remove("tests");
                            merged.insert(Yaml::from("data_tests"), val.clone());
                        }
                        _ => {
                            merged.insert(k.clone(), val.clone());
                        }
                    }
                }
            }
            let merged = Yaml::Mapping(merged);
            let props = NodeProps {
                description: str_of(merged.get("description")),
                columns: columns_of(merged.get("columns")),
                config: config_of(merged.get("config")),
                patch_path: file.name.clone(),
                constraints: super::yaml::constraints_of(merged.get("constraints")),
            };
            self.generic_tests.extend(data_tests::tests_of(
                &merged,
                &TestTarget::Ref(version.key()),
                file,
            ));
            self.model_props.insert(stem.clone(), props);
            self.versions.insert(stem, version);
        }
    }

    /// A named `models:`, `seeds:` or `snapshots:` entry: its properties, with its data tests
    /// registered. `None` (and a problem) when it has no `name:`.
    pub(super) fn named_entry(
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
            constraints: super::yaml::constraints_of(item.get("constraints")),
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
    pub(super) fn read_snapshot_entry(
        &mut self,
        file: &SourceFile,
        item: &Yaml,
        problems: &mut Vec<Problem>,
    ) {
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
    pub(super) fn no_such_node(
        file: &SourceFile,
        key: &str,
        name: &str,
        known: &[&str],
    ) -> Problem {
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

    pub(super) fn shape_problem(file: &SourceFile, key: &str, expected: &str) -> Problem {
        let offset = find_key(&file.text, key).unwrap_or(0);
        Problem::new(
            Code::ProjectConfig,
            format!("`{key}` in `{}` has the wrong shape", file.name),
        )
        .at(file, offset, key.len(), format!("expected {expected}"))
    }
}

/// A YAML scalar as text (`2`, `1.5`, `"beta"`).
fn scalar_text(value: &Yaml) -> Option<String> {
    match value {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Versions compare as numbers when both are, else as text (dbt's order for the latest).
fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.total_cmp(&y),
        _ => a.cmp(b),
    }
}

/// A version's columns: the model's, narrowed by the version's `include:` (`all`, `*` or a
/// list; all by default) and `exclude:`, with the version's own named columns replacing those
/// of the same name and added after them.
fn version_columns(base: &[&Yaml], version: &Yaml) -> Vec<Yaml> {
    let Some(own) = version.get("columns").and_then(Yaml::as_sequence) else {
        return base.iter().map(|c| (*c).clone()).collect();
    };
    let spec = own
        .iter()
        .find(|c| c.get("include").is_some() || c.get("exclude").is_some());
    let listed = |key: &str| -> Option<Vec<String>> {
        let value = spec?.get(key)?;
        match value {
            Yaml::String(s) if s == "all" || s == "*" => None,
            Yaml::Sequence(items) => Some(
                items
                    .iter()
                    .filter_map(Yaml::as_str)
                    .map(String::from)
                    .collect(),
            ),
            _ => None,
        }
    };
    let include = listed("include");
    let exclude = listed("exclude").unwrap_or_default();
    let named: Vec<&Yaml> = own.iter().filter(|c| c.get("name").is_some()).collect();
    let name_of = |c: &Yaml| c.get("name").and_then(Yaml::as_str).map(String::from);
    let mut out: Vec<Yaml> = Vec::new();
    for c in base {
        let Some(n) = name_of(c) else { continue };
        if include.as_ref().is_some_and(|i| !i.contains(&n)) || exclude.contains(&n) {
            continue;
        }
        match named
            .iter()
            .find(|o| name_of(o).as_deref() == Some(n.as_str()))
        {
            Some(o) => out.push((*o).clone()),
            None => out.push((*c).clone()),
        }
    }
    for o in named {
        let n = name_of(o);
        if !out.iter().any(|c| name_of(c) == n) {
            out.push(o.clone());
        }
    }
    out
}
