//! Unit tests as the project declares them: `unit_tests:` entries in property YAML, each with a
//! model, its mocked inputs (`given`), the rows it must return (`expect`), and overrides of
//! vars, env vars and macros. xform adds `expect_table:`: the table the model (an incremental
//! model or a snapshot) must leave behind after one run on top of the given `this` rows.
//!
//! This module only reads and checks the declarations, and reads fixture files from
//! `<test-path>/fixtures/`. Turning them into graph nodes is `compile/unit_tests.rs`'s job;
//! running them is `execute/unit_test.rs`'s.

use std::collections::BTreeMap;

use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

use super::config::{NodeConfig, yaml_key, yaml_to_json};
use super::data_tests::TestTarget;
use super::find_key;
use crate::diagnostics::{Code, Problem, SourceFile};

/// What a `given` entry mocks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Input {
    Node(TestTarget),
    /// The model's own relation before the run (incremental models, snapshots).
    This,
}

impl Input {
    pub fn label(&self) -> String {
        match self {
            Input::Node(TestTarget::Ref(name)) => format!("ref('{name}')"),
            Input::Node(TestTarget::Source(s, t)) => format!("source('{s}', '{t}')"),
            Input::This => "this".to_string(),
        }
    }
}

/// Rows in one of dbt's three fixture formats.
#[derive(Debug, Clone, PartialEq)]
pub enum Rows {
    /// `format: dict`: one mapping per row, keys in the order written.
    Dict(Vec<Vec<(String, Json)>>),
    /// `format: csv`: a header line and rows; an empty field is null.
    Csv(Vec<Vec<(String, Option<String>)>>),
    /// `format: sql`: a query returning the rows.
    Sql(String),
    /// Neither `rows:` nor `fixture:`: for a seed, its file's rows (as dbt reads them).
    Missing,
}

impl Rows {
    /// Column names in the order they first appear (none for SQL rows).
    pub fn columns(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut add = |name: &str| {
            if !out.iter().any(|c| c.eq_ignore_ascii_case(name)) {
                out.push(name.to_string());
            }
        };
        match self {
            Rows::Dict(rows) => rows.iter().flatten().for_each(|(k, _)| add(k)),
            Rows::Csv(rows) => rows.iter().flatten().for_each(|(k, _)| add(k)),
            Rows::Sql(_) | Rows::Missing => {}
        }
        out
    }
}

#[derive(Debug, Clone)]
pub struct Given {
    pub input: Input,
    pub rows: Rows,
}

/// `overrides:` of a unit test.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub vars: BTreeMap<String, Json>,
    pub env_vars: BTreeMap<String, String>,
    pub macros: BTreeMap<String, Json>,
}

#[derive(Debug, Clone)]
pub struct UnitTestDef {
    pub name: String,
    /// The project or package whose YAML defines it (set by the reader's caller).
    pub package: String,
    pub model: String,
    pub description: String,
    pub given: Vec<Given>,
    /// `expect:` rows the model's query must return.
    pub expect: Option<Rows>,
    /// `expect_table:` (xform): rows the model's relation must hold after one run.
    pub expect_table: Option<Rows>,
    pub overrides: Overrides,
    pub config: NodeConfig,
    /// `versions: {include: [...], exclude: [...]}`: which versions of a versioned model it
    /// tests (all when absent).
    pub versions: Option<(Vec<String>, Vec<String>)>,
    /// sha256 of the entry as YAML, for `state:modified`.
    pub checksum: String,
    /// The YAML file, relative to the project root, and where the test's name is in it.
    pub path: String,
    pub file: SourceFile,
    pub offset: usize,
}

/// Where the fixtures named by `fixture:` live, as `(project-relative path, text)`.
pub type Fixtures = BTreeMap<String, (String, String)>;

fn problem(file: &SourceFile, offset: usize, len: usize, message: String, help: &str) -> Problem {
    Problem::new(Code::UnitTest, message)
        .at(file, offset, len, "in this unit test")
        .help(help.to_string())
}

/// Where `name: <name>` is in the text, after the `unit_tests:` key.
fn name_offset(text: &str, name: &str) -> usize {
    let start = find_key(text, "unit_tests").unwrap_or(0);
    start + super::name_offset(&text[start..], name)
}

/// Read the `unit_tests:` section of a property file.
pub fn read(
    file: &SourceFile,
    value: &Yaml,
    fixtures: &Fixtures,
    problems: &mut Vec<Problem>,
) -> Vec<UnitTestDef> {
    let Some(items) = value.as_sequence() else {
        let offset = find_key(&file.text, "unit_tests").unwrap_or(0);
        problems.push(
            Problem::new(
                Code::ProjectConfig,
                format!("`unit_tests` in `{}` has the wrong shape", file.name),
            )
            .at(
                file,
                offset,
                "unit_tests".len(),
                "expected a list of unit tests",
            ),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        match one(file, item, fixtures, problems) {
            Ok(def) => out.push(def),
            Err(p) => problems.push(p),
        }
    }
    out
}

/// Warn about keys a unit-test section does not know: a misspelt `rows` would otherwise read
/// as an empty input.
fn unknown_keys(
    file: &SourceFile,
    value: Option<&Yaml>,
    known: &[&str],
    what: &str,
    offset: usize,
    problems: &mut Vec<Problem>,
) {
    for key in value
        .and_then(Yaml::as_mapping)
        .into_iter()
        .flatten()
        .map(|(k, _)| yaml_key(k))
        .filter(|k| !known.contains(&k.as_str()))
    {
        let at = file.text[offset..]
            .find(&format!("{key}:"))
            .map_or(offset, |x| x + offset);
        let near = crate::suggest::suggestions(&key, known.iter().copied());
        problems.push(
            Problem::new(
                Code::UnknownKey,
                format!("unknown key `{key}` in {what} is ignored"),
            )
            .at(file, at, key.len(), "not a unit-test key")
            .help(match near.first() {
                Some(best) => format!("did you mean `{best}`?"),
                None => format!("the keys here are {}", known.join(", ")),
            })
            .warning(),
        );
    }
}

const TEST_KEYS: &[&str] = &[
    "name",
    "model",
    "description",
    "given",
    "expect",
    "expect_table",
    "overrides",
    "config",
    "versions",
];
const ROWS_KEYS: &[&str] = &["input", "rows", "format", "fixture"];
const OVERRIDE_KEYS: &[&str] = &["vars", "macros", "env_vars"];

fn one(
    file: &SourceFile,
    item: &Yaml,
    fixtures: &Fixtures,
    problems: &mut Vec<Problem>,
) -> Result<UnitTestDef, Problem> {
    let at_section = find_key(&file.text, "unit_tests").unwrap_or(0);
    let Some(name) = item.get("name").and_then(Yaml::as_str) else {
        return Err(problem(
            file,
            at_section,
            "unit_tests".len(),
            format!("a unit test in `{}` has no `name:`", file.name),
            "give every unit test a unique `name:`",
        ));
    };
    let offset = name_offset(&file.text, name);
    let fail = |message: String, help: &str| problem(file, offset, name.len(), message, help);
    let what = format!("unit test `{name}`");
    unknown_keys(file, Some(item), TEST_KEYS, &what, offset, problems);
    for g in item
        .get("given")
        .and_then(Yaml::as_sequence)
        .into_iter()
        .flatten()
    {
        unknown_keys(file, Some(g), ROWS_KEYS, &what, offset, problems);
    }
    for key in ["expect", "expect_table"] {
        unknown_keys(file, item.get(key), ROWS_KEYS, &what, offset, problems);
    }
    unknown_keys(
        file,
        item.get("overrides"),
        OVERRIDE_KEYS,
        &what,
        offset,
        problems,
    );
    let Some(model) = item.get("model").and_then(Yaml::as_str) else {
        return Err(fail(
            format!("unit test `{name}` does not say which `model:` it tests"),
            "add `model: <model name>`",
        ));
    };
    let mut given = Vec::new();
    for g in item
        .get("given")
        .and_then(Yaml::as_sequence)
        .into_iter()
        .flatten()
    {
        let Some(text) = g.get("input").and_then(Yaml::as_str) else {
            return Err(fail(
                format!("a `given` entry of unit test `{name}` has no `input:`"),
                "write the input as input: ref('model'), input: source('source', 'table') or input: this",
            ));
        };
        let input = if text.trim() == "this" {
            Input::This
        } else {
            match TestTarget::parse(text) {
                Some(t) => Input::Node(t),
                None => {
                    return Err(fail(
                        format!(
                            "unit test `{name}` has the input `{text}`, which is not a ref(), source() or this"
                        ),
                        "write the input as input: ref('model'), input: source('source', 'table') or input: this",
                    ));
                }
            }
        };
        let rows = rows_of(g, fixtures).map_err(|m| {
            fail(
                format!("unit test `{name}`, input `{}`: {m}", input.label()),
                ROWS_HELP,
            )
        })?;
        given.push(Given { input, rows });
    }
    let expect = match item.get("expect") {
        Some(e) => Some(
            rows_of(e, fixtures)
                .map_err(|m| fail(format!("unit test `{name}`, `expect`: {m}"), ROWS_HELP))?,
        ),
        None => None,
    };
    let expect_table = match item.get("expect_table") {
        Some(e) => Some(rows_of(e, fixtures).map_err(|m| {
            fail(
                format!("unit test `{name}`, `expect_table`: {m}"),
                ROWS_HELP,
            )
        })?),
        None => None,
    };
    if matches!(expect, Some(Rows::Missing)) || matches!(expect_table, Some(Rows::Missing)) {
        return Err(fail(
            format!("unit test `{name}` expects no `rows:`"),
            "give the expected rows under `rows:` (`rows: []` when the model must return none) or name a `fixture:`",
        ));
    }
    if expect.is_none() && expect_table.is_none() {
        return Err(fail(
            format!("unit test `{name}` has no `expect:`"),
            "add `expect: {rows: [...]}` with the rows the model must return (or `expect_table:` for the table after a run)",
        ));
    }
    let mut overrides = Overrides::default();
    if let Some(o) = item.get("overrides") {
        let map = |key: &str| -> Vec<(String, Json)> {
            o.get(key)
                .and_then(Yaml::as_mapping)
                .into_iter()
                .flatten()
                .map(|(k, v)| (yaml_key(k), yaml_to_json(v)))
                .collect()
        };
        overrides.vars = map("vars").into_iter().collect();
        overrides.macros = map("macros").into_iter().collect();
        overrides.env_vars = map("env_vars")
            .into_iter()
            .map(|(k, v)| {
                let text = match v {
                    Json::String(s) => s,
                    other => other.to_string(),
                };
                (k, text)
            })
            .collect();
    }
    let mut config = NodeConfig::default();
    if let Some(Yaml::Mapping(m)) = item.get("config") {
        for (k, v) in m {
            config.set(&yaml_key(k), yaml_to_json(v));
        }
    }
    let version_list = |key: &str| -> Vec<String> {
        let value = item.get("versions").and_then(|v| v.get(key));
        let items: Vec<&Yaml> = match value {
            Some(Yaml::Sequence(items)) => items.iter().collect(),
            Some(one) => vec![one],
            None => Vec::new(),
        };
        items
            .into_iter()
            .map(|v| match yaml_to_json(v) {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            })
            .collect()
    };
    let versions = item
        .get("versions")
        .map(|_| (version_list("include"), version_list("exclude")));
    Ok(UnitTestDef {
        name: name.to_string(),
        package: String::new(),
        model: model.to_string(),
        description: item
            .get("description")
            .and_then(Yaml::as_str)
            .unwrap_or_default()
            .to_string(),
        given,
        expect,
        expect_table,
        overrides,
        config,
        versions,
        checksum: super::sha256(serde_yaml::to_string(item).unwrap_or_default().as_bytes()),
        path: file.name.clone(),
        file: file.clone(),
        offset,
    })
}

const ROWS_HELP: &str = "give `rows:` as a list of mappings (format: dict, the default), a CSV text with a header line (format: csv) or a query (format: sql), or name a file in tests/fixtures with `fixture:`";

/// Why the rows of a `given` or `expect` entry cannot be read.
#[derive(Debug, thiserror::Error)]
enum RowsError {
    #[error("the format `{0}` is not one of dict, csv, sql")]
    Format(String),
    #[error("no fixture file `{0}` in a `fixtures` folder of the test paths")]
    NoFixture(String),
    #[error("fixture files hold csv or sql rows; add `format: csv` or `format: sql` for `{0}`")]
    FixtureFormat(String),
    #[error("give either `rows:` or `fixture:`, not both")]
    RowsAndFixture,
    #[error("csv rows must be one text: a header line, then one line per row")]
    CsvNotText,
    #[error("sql rows must be one query as text")]
    SqlNotText,
    #[error("dict rows must be a list of mappings such as {{id: 1, name: x}}")]
    DictNotList,
    #[error("each row must be a mapping such as {{id: 1, name: x}}, found `{0}`")]
    RowNotMapping(String),
    #[error("cannot read the csv header: {0}")]
    CsvHeader(csv::Error),
    #[error("cannot read the csv rows: {0}")]
    CsvRows(csv::Error),
}

/// The rows of a `given` or `expect` entry, from `rows:` or a `fixture:` file.
fn rows_of(entry: &Yaml, fixtures: &Fixtures) -> Result<Rows, RowsError> {
    let format = entry.get("format").and_then(Yaml::as_str).unwrap_or("dict");
    if !matches!(format, "dict" | "csv" | "sql") {
        return Err(RowsError::Format(format.to_string()));
    }
    let fixture = entry.get("fixture").and_then(Yaml::as_str);
    let rows = entry.get("rows");
    match (fixture, rows) {
        (Some(name), None) => {
            let ext = if format == "sql" { "sql" } else { "csv" };
            let key = format!("{name}.{ext}");
            let Some((_, text)) = fixtures.get(&key) else {
                return Err(RowsError::NoFixture(key));
            };
            match format {
                "sql" => Ok(Rows::Sql(text.clone())),
                "csv" => csv_rows(text),
                _ => Err(RowsError::FixtureFormat(name.to_string())),
            }
        }
        (Some(_), Some(_)) => Err(RowsError::RowsAndFixture),
        (None, None) => Ok(Rows::Missing),
        (None, Some(rows)) => match format {
            "dict" => dict_rows(rows),
            "csv" => match rows.as_str() {
                Some(text) => csv_rows(text),
                None => Err(RowsError::CsvNotText),
            },
            _ => match rows.as_str() {
                Some(text) => Ok(Rows::Sql(text.to_string())),
                None => Err(RowsError::SqlNotText),
            },
        },
    }
}

fn dict_rows(rows: &Yaml) -> Result<Rows, RowsError> {
    if rows.is_null() {
        return Ok(Rows::Dict(Vec::new()));
    }
    let Some(items) = rows.as_sequence() else {
        return Err(RowsError::DictNotList);
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Some(map) = item.as_mapping() else {
            return Err(RowsError::RowNotMapping(
                serde_yaml::to_string(item)
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
            ));
        };
        out.push(
            map.iter()
                .map(|(k, v)| (yaml_key(k), yaml_to_json(v)))
                .collect(),
        );
    }
    Ok(Rows::Dict(out))
}

fn csv_rows(text: &str) -> Result<Rows, RowsError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(text.trim().as_bytes());
    let header: Vec<String> = reader
        .headers()
        .map_err(RowsError::CsvHeader)?
        .iter()
        .map(String::from)
        .collect();
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.map_err(RowsError::CsvRows)?;
        out.push(
            header
                .iter()
                .zip(record.iter())
                .map(|(h, v)| (h.clone(), (!v.is_empty()).then(|| v.to_string())))
                .collect(),
        );
    }
    Ok(Rows::Csv(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Vec<UnitTestDef>, Vec<Problem>) {
        let file = SourceFile::new("models/schema.yml", text);
        let doc: Yaml = serde_yaml::from_str(text).unwrap();
        let mut fixtures = Fixtures::new();
        fixtures.insert(
            "orders_in.csv".to_string(),
            (
                "tests/fixtures/orders_in.csv".to_string(),
                "id,amount\n1,10\n2,\n".to_string(),
            ),
        );
        let mut problems = Vec::new();
        let defs = read(
            &file,
            doc.get("unit_tests").unwrap(),
            &fixtures,
            &mut problems,
        );
        (defs, problems)
    }

    #[test]
    fn formats_and_overrides_are_read() {
        let (defs, problems) = parse(
            "unit_tests:\n  - name: t\n    model: orders\n    given:\n      - input: ref('stg')\n        rows:\n          - {b: 1, a: x}\n          - {a: y}\n      - input: source('shop', 'raw')\n        format: csv\n        fixture: orders_in\n      - input: this\n        format: sql\n        rows: select 1 as id\n    expect:\n      rows: []\n    overrides:\n      macros: {is_incremental: true}\n      vars: {v: 3}\n      env_vars: {E: 5}\n",
        );
        assert!(problems.is_empty(), "{problems:?}");
        let t = &defs[0];
        assert_eq!(t.given[0].rows.columns(), vec!["b", "a"]);
        assert_eq!(
            t.given[1].input,
            Input::Node(TestTarget::Source("shop".into(), "raw".into()))
        );
        assert_eq!(
            t.given[1].rows,
            Rows::Csv(vec![
                vec![
                    ("id".into(), Some("1".into())),
                    ("amount".into(), Some("10".into()))
                ],
                vec![("id".into(), Some("2".into())), ("amount".into(), None)],
            ])
        );
        assert_eq!(t.given[2].input, Input::This);
        assert_eq!(t.given[2].rows, Rows::Sql("select 1 as id".into()));
        assert_eq!(t.expect, Some(Rows::Dict(Vec::new())));
        assert_eq!(t.overrides.macros["is_incremental"], Json::Bool(true));
        assert_eq!(t.overrides.env_vars["E"], "5");
    }

    #[test]
    fn bad_entries_point_at_the_test() {
        let (defs, problems) = parse(
            "unit_tests:\n  - name: no_model\n    given: []\n    expect: {rows: []}\n  - name: bad_input\n    model: m\n    given:\n      - input: orders\n    expect: {rows: []}\n  - name: no_expect\n    model: m\n",
        );
        assert!(defs.is_empty());
        let messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(
            messages,
            vec![
                "unit test `no_model` does not say which `model:` it tests",
                "unit test `bad_input` has the input `orders`, which is not a ref(), source() or this",
                "unit test `no_expect` has no `expect:`",
            ]
        );
    }
}
