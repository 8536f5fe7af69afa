//! Data tests as the project declares them: generic tests under `tests:` / `data_tests:` in
//! property YAML (on a model, seed, snapshot or source table, or on one of its columns), and
//! singular tests (`.sql` files in test-paths).
//!
//! This module only reads declarations. It does not render test SQL and does not know which
//! nodes exist: `compile.rs` turns declarations into graph nodes and `render/` renders them.

use std::collections::BTreeMap;

use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

use super::config::{NodeConfig, yaml_key, yaml_to_json};
use crate::diagnostics::SourceFile;

/// What a test reads: a model, seed or snapshot by name, or a source table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TestTarget {
    Ref(String),
    Source(String, String),
}

impl TestTarget {
    /// The name dbt puts in a test's name: `orders`, or `source_shop_orders`.
    pub fn label(&self) -> String {
        match self {
            TestTarget::Ref(name) => name.clone(),
            TestTarget::Source(s, t) => format!("source_{s}_{t}"),
        }
    }

    /// `ref('x')`, `ref("x")`, `ref('package', 'x')`, `source('a', 'b')`, with or without
    /// `{{ }}`.
    pub fn parse(text: &str) -> Option<TestTarget> {
        let t = text.trim();
        let t = t
            .strip_prefix("{{")
            .and_then(|r| r.strip_suffix("}}"))
            .unwrap_or(t)
            .trim();
        let (func, rest) = t.split_once('(')?;
        let inner = rest.trim_end().strip_suffix(')')?;
        let args: Vec<String> = inner
            .split(',')
            .map(|a| a.trim().trim_matches(['\'', '"']).to_string())
            .filter(|a| !a.is_empty())
            .collect();
        match (func.trim(), args.as_slice()) {
            ("ref", [name] | [_, name]) => Some(TestTarget::Ref(name.clone())),
            ("source", [s, t]) => Some(TestTarget::Source(s.clone(), t.clone())),
            _ => None,
        }
    }
}

/// One generic test applied in YAML.
#[derive(Debug, Clone)]
pub struct GenericTestDef {
    /// The test's name without a package prefix: `unique`, `accepted_values`, a custom one.
    pub test_name: String,
    /// The package prefix of a test named `package.test`.
    pub namespace: Option<String>,
    pub target: TestTarget,
    pub column: Option<String>,
    /// Arguments other than `model` and `column_name`.
    pub args: BTreeMap<String, Json>,
    pub config: NodeConfig,
    /// The YAML file, relative to the project root (of its package's project, for a package's).
    pub path: String,
    /// The project or package that declares it.
    pub package: String,
    /// The YAML file and where the test's name is in it, for diagnostics.
    pub file: SourceFile,
    pub offset: usize,
    /// `short_name`, worked out once (files, aliases and the manifest all ask): the fields
    /// above must not change once it has been asked.
    short: std::sync::OnceLock<String>,
}

/// Keys that configure a test rather than pass it an argument.
const CONFIG_KEYS: &[&str] = &[
    "severity",
    "where",
    "limit",
    "warn_if",
    "error_if",
    "fail_calc",
    "tags",
    "enabled",
    "store_failures",
    "store_failures_as",
    "meta",
    "alias",
    "schema",
    "database",
];

/// The tests under `tests:` and `data_tests:` of a YAML entry and of its columns.
pub fn tests_of(item: &Yaml, target: &TestTarget, file: &SourceFile) -> Vec<GenericTestDef> {
    let mut out = Vec::new();
    for key in ["data_tests", "tests"] {
        for t in item
            .get(key)
            .and_then(Yaml::as_sequence)
            .into_iter()
            .flatten()
        {
            out.extend(one_test(t, target, None, file));
        }
    }
    for column in item
        .get("columns")
        .and_then(Yaml::as_sequence)
        .into_iter()
        .flatten()
    {
        let Some(name) = column.get("name").and_then(Yaml::as_str) else {
            continue;
        };
        for key in ["data_tests", "tests"] {
            for t in column
                .get(key)
                .and_then(Yaml::as_sequence)
                .into_iter()
                .flatten()
            {
                out.extend(one_test(t, target, Some(name), file));
            }
        }
    }
    out
}

fn one_test(
    entry: &Yaml,
    target: &TestTarget,
    column: Option<&str>,
    file: &SourceFile,
) -> Option<GenericTestDef> {
    let (name, body) = match entry {
        Yaml::String(name) => (name.clone(), None),
        Yaml::Mapping(m) if m.contains_key("test_name") => {
            (entry.get("test_name")?.as_str()?.to_string(), Some(entry))
        }
        Yaml::Mapping(m) if m.len() == 1 => {
            let (k, v) = m.iter().next()?;
            (yaml_key(k), Some(v))
        }
        _ => return None,
    };
    let (namespace, test_name) = match name.rsplit_once('.') {
        Some((ns, test)) => (Some(ns.to_string()), test.to_string()),
        None => (None, name.clone()),
    };
    let mut args = BTreeMap::new();
    let mut config = NodeConfig::default();
    if let Some(Yaml::Mapping(m)) = body {
        for (k, v) in m {
            let k = yaml_key(k);
            match k.as_str() {
                "test_name" | "description" | "column_name" => {}
                "name" => config.set("name", yaml_to_json(v)),
                "config" => {
                    if let Yaml::Mapping(c) = v {
                        for (ck, cv) in c {
                            config.set(&yaml_key(ck), yaml_to_json(cv));
                        }
                    }
                }
                "arguments" => {
                    if let Yaml::Mapping(a) = v {
                        for (ak, av) in a {
                            args.insert(yaml_key(ak), yaml_to_json(av));
                        }
                    }
                }
                _ if CONFIG_KEYS.contains(&k.as_str()) => config.set(&k, yaml_to_json(v)),
                _ => {
                    args.insert(k, yaml_to_json(v));
                }
            }
        }
    }
    let column = body
        .and_then(|b| b.get("column_name"))
        .and_then(Yaml::as_str)
        .or(column)
        .map(String::from);
    Some(GenericTestDef {
        short: std::sync::OnceLock::new(),
        test_name,
        namespace,
        target: target.clone(),
        column,
        args,
        config,
        path: file.name.clone(),
        package: String::new(),
        offset: list_item(&file.text, &name).unwrap_or(0),
        file: file.clone(),
    })
}

/// Where `name` first appears as a YAML list item (`- name`, `[name`, `, name`), or `name:`.
fn list_item(text: &str, name: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(found) = text[from..].find(name) {
        let at = from + found;
        let before = text[..at].trim_end_matches([' ', '\t']);
        let after = &text[at + name.len()..];
        let ends = after
            .chars()
            .next()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        let list = before.ends_with(['-', '[', ',']) || after.trim_start().starts_with(':');
        if ends && list {
            return Some(at);
        }
        from = at + name.len();
    }
    None
}

impl GenericTestDef {
    /// The arguments that name a relation (`to: ref('customers')`, `compare_model:
    /// ref('x')`): dbt renders such a string as a call, so the test reads that relation too.
    pub fn relation_args(&self) -> impl Iterator<Item = (&str, TestTarget)> {
        self.args
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), TestTarget::parse(v.as_str()?)?)))
    }

    /// The first part of the test's name, as dbt makes it: the test, `source_` before it for a
    /// source's test, the package and `_` before that for `package.test`.
    fn test_type(&self) -> String {
        let test = match &self.target {
            TestTarget::Ref(_) => self.test_name.clone(),
            TestTarget::Source(..) => format!("source_{}", self.test_name),
        };
        match &self.namespace {
            Some(ns) => format!("{ns}_{test}"),
            None => test,
        }
    }

    /// What the test is on, in its name: the model or seed, or `<source>_<table>`.
    fn target_name(&self) -> String {
        match &self.target {
            TestTarget::Ref(name) => name.clone(),
            TestTarget::Source(s, t) => format!("{s}_{t}"),
        }
    }

    /// dbt's test name: `<type>_<target>_<column>__<argument values>` (see `test_type` and
    /// `target_name`), arguments in name order,
    /// every run of other characters than letters, digits and `_` turned into `_`. The name is
    /// never shortened (see `short_name`).
    pub fn node_name(&self) -> String {
        if let Some(name) = self.config.str("name") {
            return name.to_string();
        }
        let mut all: BTreeMap<&str, Json> = self
            .args
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        if let Some(c) = &self.column {
            all.insert("column_name", Json::String(c.clone()));
        }
        let mut parts = Vec::new();
        for value in all.values() {
            match value {
                Json::Array(items) => parts.extend(items.iter().map(flat)),
                Json::Object(map) => parts.extend(map.values().map(flat)),
                other => parts.push(flat(other)),
            }
        }
        let clean: Vec<String> = parts.iter().map(|p| clean_part(p)).collect();
        let unique = clean.join("__");
        format!("{}_{}_{unique}", self.test_type(), self.target_name())
    }
}

impl GenericTestDef {
    /// The name a test's compiled file and audit table get, as dbt gives it: a `name:` from the
    /// config as it is; otherwise the full name, or when that is 64 characters or more (too long
    /// for some warehouses' identifiers) the first 30 characters of `<test>_<target>`, `_`, and
    /// the md5 of the full name.
    pub fn short_name(&self) -> &str {
        self.short.get_or_init(|| {
            if let Some(name) = self.config.str("name") {
                return name.to_string();
            }
            let full = self.node_name();
            if full.chars().count() < 64 {
                return full;
            }
            let identifier = format!("{}_{}", self.test_type(), self.target_name());
            let prefix: String = identifier.chars().take(30).collect();
            format!("{prefix}_{}", md5_hex(&full))
        })
    }
}

impl GenericTestDef {
    /// The `model` argument dbt hands the test: the target wrapped in `get_where_subquery`.
    pub fn model_arg(&self) -> String {
        let target = match &self.target {
            TestTarget::Ref(name) => format!("ref('{name}')"),
            TestTarget::Source(s, t) => format!("source('{s}', '{t}')"),
        };
        format!("{{{{ get_where_subquery({target}) }}}}")
    }

    /// dbt's `test_metadata.kwargs`: the arguments, `column_name` and `model`.
    pub fn kwargs(&self) -> serde_json::Map<String, Json> {
        let mut kwargs: serde_json::Map<String, Json> = self
            .args
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some(c) = &self.column {
            kwargs.insert("column_name".to_string(), Json::String(c.clone()));
        }
        kwargs.insert("model".to_string(), Json::String(self.model_arg()));
        kwargs
    }

    /// The last part of the test's unique id, as dbt computes it: the last 10 hex digits of
    /// the md5 of its name followed by the Python `repr` of its metadata (keys sorted, every
    /// scalar turned into a string first).
    pub fn id_hash(&self, name: &str) -> String {
        let metadata = serde_json::json!({
            "kwargs": self.kwargs(),
            "name": self.test_name,
            "namespace": self.namespace,
        });
        let mut text = name.to_string();
        python_repr(&metadata, &mut text);
        let hex = md5_hex(&text);
        hex[hex.len() - 10..].to_string()
    }
}

/// Python's `repr` of what dbt hashes: dicts with sorted keys, lists, and every other value as
/// the `repr` of its `str` (`None`, `True`, `1`, `0.5`).
fn python_repr(value: &Json, out: &mut String) {
    match value {
        Json::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                python_str_repr(k, out);
                out.push_str(": ");
                python_repr(&map[k], out);
            }
            out.push('}');
        }
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                python_repr(item, out);
            }
            out.push(']');
        }
        Json::String(s) => python_str_repr(s, out),
        other => python_str_repr(&flat(other), out),
    }
}

/// Python's `repr` of a string: single quotes unless the text holds a single quote and no
/// double quote; backslashes, the quote and control characters escaped.
fn python_str_repr(s: &str, out: &mut String) {
    use std::fmt::Write;
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

fn md5_hex(text: &str) -> String {
    use md5::Digest;
    use std::fmt::Write;
    md5::Md5::digest(text.as_bytes())
        .iter()
        .fold(String::with_capacity(32), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

fn flat(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Bool(true) => "True".to_string(),
        Json::Bool(false) => "False".to_string(),
        Json::Null => "None".to_string(),
        other => other.to_string(),
    }
}

fn clean_part(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_run = false;
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c);
            in_run = false;
        } else if !in_run {
            out.push('_');
            in_run = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<GenericTestDef> {
        let doc: Yaml = serde_yaml::from_str(text).unwrap();
        let file = SourceFile::new("models/schema.yml", text);
        tests_of(&doc, &TestTarget::Ref("orders".into()), &file)
    }

    #[test]
    fn names_follow_dbt() {
        let tests = parse(
            "columns:\n  - name: order_id\n    data_tests: [unique, not_null]\n  - name: status\n    tests:\n      - accepted_values:\n          arguments:\n            values: [placed, shipped]\n          config: {severity: warn}\n  - name: customer_id\n    tests:\n      - relationships:\n          to: ref('customers')\n          field: customer_id\n",
        );
        let names: Vec<String> = tests.iter().map(GenericTestDef::node_name).collect();
        assert_eq!(
            names,
            [
                "unique_orders_order_id",
                "not_null_orders_order_id",
                "accepted_values_orders_status__placed__shipped",
                "relationships_orders_customer_id__customer_id__ref_customers_",
            ]
        );
        assert_eq!(tests[2].config.str("severity"), Some("warn"));
        let text = &*tests[3].file.text;
        assert!(text[tests[3].offset..].starts_with("relationships:"));
    }

    #[test]
    fn long_names_are_hashed() {
        let tests = parse(
            "data_tests:\n  - accepted_values:\n      column_name: status\n      values: [aaaaaaaaaa, bbbbbbbbbb, cccccccccc, dddddddddd, eeeeeeeee]\n",
        );
        let name = tests[0].node_name();
        assert_eq!(
            name,
            "accepted_values_orders_status__aaaaaaaaaa__bbbbbbbbbb__cccccccccc__dddddddddd__eeeeeeeee"
        );
        // The prefix is `<test>_<target>` (22 characters here), not 30 of the full name.
        assert_eq!(
            tests[0].short_name(),
            "accepted_values_orders_3cfebc52590c0f30b8bcbb7411c849a8"
        );
        let plain = parse("data_tests:\n  - not_null:\n      column_name: id\n");
        assert_eq!(plain[0].short_name(), "not_null_orders_id");
    }

    #[test]
    fn source_and_package_tests_are_named_as_dbt_names_them() {
        // Expected names from dbt-core 1.10's `synthesize_generic_test_names`.
        let doc: Yaml = serde_yaml::from_str(
            "data_tests:\n  - not_null:\n      column_name: order_identifier\n",
        )
        .unwrap();
        let file = SourceFile::new("models/sources.yml", "");
        let long = TestTarget::Source("shop".into(), "raw_orders_from_the_legacy_system".into());
        let t = &tests_of(&doc, &long, &file)[0];
        assert_eq!(
            t.node_name(),
            "source_not_null_shop_raw_orders_from_the_legacy_system_order_identifier"
        );
        assert_eq!(
            t.short_name(),
            "source_not_null_shop_raw_order_ad00a9c401f23485fccb9de2a5291d2b"
        );
        let tests = parse(
            "data_tests:\n  - dbt_utils.not_null_proportion:\n      column_name: id\n      at_least: 0.95\n",
        );
        assert_eq!(tests[0].test_name, "not_null_proportion");
        assert_eq!(tests[0].namespace.as_deref(), Some("dbt_utils"));
        assert_eq!(
            tests[0].node_name(),
            "dbt_utils_not_null_proportion_orders_0_95__id"
        );
    }

    #[test]
    fn unique_ids_hash_as_dbt_hashes() {
        // dbt-core 1.10 gave this test the id `test.longt.<name>.0bbc693f68`.
        let doc: Yaml = serde_yaml::from_str(
            "data_tests:\n  - accepted_values:\n      values: ['placed', 'shipped', 'completed', 'returned']\n",
        )
        .unwrap();
        let file = SourceFile::new("models/s.yml", "");
        let target = TestTarget::Ref("orders_with_a_long_name".into());
        let mut t = tests_of(&doc, &target, &file).remove(0);
        t.column = Some("status_of_the_order_column".into());
        assert_eq!(t.id_hash(&t.node_name()), "0bbc693f68");
        let mut repr = String::new();
        python_repr(
            &serde_json::json!({"b": [1, true, null], "a": "it's"}),
            &mut repr,
        );
        assert_eq!(repr, r#"{'a': "it's", 'b': ['1', 'True', 'None']}"#);
    }

    #[test]
    fn targets_parse() {
        assert_eq!(
            TestTarget::parse("ref('customers')"),
            Some(TestTarget::Ref("customers".into()))
        );
        assert_eq!(
            TestTarget::parse("{{ source(\"shop\", 'orders') }}"),
            Some(TestTarget::Source("shop".into(), "orders".into()))
        );
        assert_eq!(TestTarget::parse("customers"), None);
    }
}
