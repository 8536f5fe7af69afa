//! Node configuration: the `+key: value` trees of the project file, `config:` in property YAML
//! and `config(...)` calls in a model, merged with dbt's precedence and merge rules.
//!
//! Values are kept as JSON so that any key a later materialization needs passes through
//! unchanged. This module knows the merge rules, not what any key means.

use std::collections::BTreeMap;

use serde_json::Value as Json;

/// A node's configuration, ordered by key so that artifacts are deterministic.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeConfig(pub BTreeMap<String, Json>);

/// Keys whose values add up instead of replacing (lists).
const APPENDED: &[&str] = &["tags", "pre-hook", "post-hook"];
/// Keys whose values merge as maps.
pub const MERGED: &[&str] = &[
    "meta",
    "column_types",
    "docs",
    "persist_docs",
    "contract",
    "grants",
];

/// Config names that may appear in a project config tree without the leading `+`.
pub const KNOWN_KEYS: &[&str] = &[
    "materialized",
    "schema",
    "database",
    "alias",
    "tags",
    "enabled",
    "column_types",
    "delimiter",
    "quote_columns",
    "meta",
    "docs",
    "persist_docs",
    "pre-hook",
    "post-hook",
    "full_refresh",
    "unique_key",
    "incremental_strategy",
    "on_schema_change",
    "event_time",
    "batch_size",
    "begin",
    "lookback",
    "concurrent_batches",
    "contract",
    "grants",
    "group",
    "access",
    "sql_header",
];

impl NodeConfig {
    pub fn get(&self, key: &str) -> Option<&Json> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Json::as_str)
    }

    pub fn set(&mut self, key: &str, value: Json) {
        let key = normalize_key(key);
        if APPENDED.contains(&key.as_str()) {
            let entry = self.0.entry(key).or_insert_with(|| Json::Array(Vec::new()));
            if !entry.is_array() {
                *entry = Json::Array(vec![entry.clone()]);
            }
            if let Json::Array(items) = entry {
                match value {
                    Json::Array(more) => {
                        for v in more {
                            if !items.contains(&v) {
                                items.push(v);
                            }
                        }
                    }
                    Json::Null => {}
                    other => {
                        if !items.contains(&other) {
                            items.push(other);
                        }
                    }
                }
            }
        } else if MERGED.contains(&key.as_str()) {
            match (self.0.get_mut(&key), value) {
                (Some(Json::Object(have)), Json::Object(more)) => {
                    for (k, v) in more {
                        have.insert(k, v);
                    }
                }
                (_, value) => {
                    self.0.insert(key, value);
                }
            }
        } else {
            self.0.insert(key, value);
        }
    }

    /// Apply every key of `other` on top of this config.
    pub fn apply(&mut self, other: &NodeConfig) {
        for (k, v) in &other.0 {
            self.set(k, v.clone());
        }
    }

    pub fn materialized(&self) -> &str {
        self.str("materialized").unwrap_or("view")
    }

    pub fn enabled(&self) -> bool {
        self.get("enabled").and_then(Json::as_bool).unwrap_or(true)
    }

    pub fn tags(&self) -> Vec<String> {
        match self.get("tags") {
            Some(Json::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
            Some(Json::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        }
    }

    pub fn to_json(&self) -> Json {
        Json::Object(self.0.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }
}

/// `pre_hook` and `pre-hook` are the same key.
fn normalize_key(key: &str) -> String {
    match key {
        "pre_hook" => "pre-hook".to_string(),
        "post_hook" => "post-hook".to_string(),
        other => other.to_string(),
    }
}

/// Convert YAML to JSON (YAML keys that are not strings are written as their YAML text).
pub fn yaml_to_json(value: &serde_yaml::Value) -> Json {
    match value {
        serde_yaml::Value::Null => Json::Null,
        serde_yaml::Value::Bool(b) => Json::Bool(*b),
        serde_yaml::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Json::from(i)
            } else if let Some(u) = n.as_u64() {
                Json::from(u)
            } else {
                n.as_f64().map_or(Json::Null, Json::from)
            }
        }
        serde_yaml::Value::String(s) => Json::String(s.clone()),
        serde_yaml::Value::Sequence(items) => Json::Array(items.iter().map(yaml_to_json).collect()),
        serde_yaml::Value::Mapping(map) => Json::Object(
            map.iter()
                .map(|(k, v)| (yaml_key(k), yaml_to_json(v)))
                .collect(),
        ),
        serde_yaml::Value::Tagged(t) => yaml_to_json(&t.value),
    }
}

pub fn yaml_key(key: &serde_yaml::Value) -> String {
    match key {
        serde_yaml::Value::String(s) => s.clone(),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

/// A `models:` / `seeds:` tree from the project file.
#[derive(Debug, Clone, Default)]
pub struct ConfigTree(pub serde_yaml::Value);

impl ConfigTree {
    /// The config that the tree gives a node with this fqn (`[project, folders..., name]`):
    /// keys at each level apply to everything below it, the most specific level last.
    pub fn resolve(&self, fqn: &[String]) -> NodeConfig {
        let mut config = NodeConfig::default();
        let mut level = &self.0;
        apply_level(&mut config, level);
        for part in fqn {
            match level.get(part.as_str()) {
                Some(next) if next.is_mapping() => {
                    level = next;
                    apply_level(&mut config, level);
                }
                _ => break,
            }
        }
        config
    }
}

fn apply_level(config: &mut NodeConfig, level: &serde_yaml::Value) {
    let Some(map) = level.as_mapping() else {
        return;
    };
    for (k, v) in map {
        let key = yaml_key(k);
        if let Some(stripped) = key.strip_prefix('+') {
            config.set(stripped, yaml_to_json(v));
        } else if KNOWN_KEYS.contains(&key.as_str())
            && (!v.is_mapping() || MERGED.contains(&key.as_str()))
        {
            config.set(&key, yaml_to_json(v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(text: &str) -> ConfigTree {
        ConfigTree(serde_yaml::from_str(text).unwrap())
    }

    #[test]
    fn most_specific_folder_wins_and_tags_append() {
        let t = tree(
            "+tags: [all]\nshop:\n  +materialized: view\n  marts:\n    +materialized: table\n    +tags: mart\n    orders:\n      +alias: fct_orders\n",
        );
        let fqn: Vec<String> = ["shop", "marts", "orders"]
            .iter()
            .map(ToString::to_string)
            .collect();
        let c = t.resolve(&fqn);
        assert_eq!(c.materialized(), "table");
        assert_eq!(c.tags(), vec!["all".to_string(), "mart".to_string()]);
        assert_eq!(c.str("alias"), Some("fct_orders"));
        let other: Vec<String> = ["shop", "staging", "stg"]
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(t.resolve(&other).materialized(), "view");
    }

    #[test]
    fn maps_merge_and_scalars_replace() {
        let mut c = NodeConfig::default();
        c.set("column_types", serde_json::json!({"a": "INTEGER"}));
        c.set("column_types", serde_json::json!({"b": "VARCHAR"}));
        c.set("schema", serde_json::json!("x"));
        c.set("schema", serde_json::json!("y"));
        assert_eq!(
            c.get("column_types").unwrap(),
            &serde_json::json!({"a": "INTEGER", "b": "VARCHAR"})
        );
        assert_eq!(c.str("schema"), Some("y"));
    }
}
