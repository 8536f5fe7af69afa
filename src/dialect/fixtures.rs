//! Data-driven tests of the two layers below the scheduler, with no database:
//!
//! - `tests/fixtures/plan/<case>/case.yml` holds a node and what the warehouse holds; the plan
//!   `node_plan` makes for it is the snapshot `plan.snap` beside it (`err_*` cases fail, and
//!   their snapshot is the problem's message);
//! - `tests/fixtures/emit/<dialect>/<case>/case.yml` names a plan case; the statements the
//!   dialect writes for that plan are the snapshot `sql.snap` beside it, and every statement is
//!   parsed back with sqlparser in the dialect's own grammar (a statement sqlparser cannot
//!   read is listed under `unparsed:` in the case with the reason, and must still fail).
//!
//! A new dialect adds a folder under `emit/`, not code.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Dialect, duckdb, script};
use crate::diagnostics::Problem;
use crate::graph::{Definition, Node, ResourceType};
use crate::materialize::{
    Column, Columns, Existing, Kind, Plan, incremental, microbatch, node_plan,
};
use crate::project::NodeConfig;
use crate::render::Relation;

/// A plan case: `node`, its compiled `sql`, and what `exists`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanCase {
    /// What the case pins, for the reader.
    #[allow(dead_code)]
    about: String,
    node: CaseNode,
    #[serde(default)]
    sql: String,
    #[serde(default)]
    exists: Exists,
    /// Plan a later run of an incremental model (the table exists, no full refresh).
    #[serde(default)]
    incremental: bool,
    /// A microbatch batch: `[start, end)`.
    #[serde(default)]
    window: Option<[String; 2]>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseNode {
    resource_type: String,
    name: String,
    #[serde(default)]
    config: BTreeMap<String, serde_json::Value>,
    /// A seed's CSV file.
    #[serde(default)]
    seed_path: Option<PathBuf>,
    /// YAML columns (`name`, `data_type`, `constraints`) and model-level constraints.
    #[serde(default)]
    columns: Vec<CaseColumn>,
    #[serde(default)]
    constraints: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseColumn {
    name: String,
    #[serde(default)]
    data_type: Option<String>,
    #[serde(default)]
    constraints: Vec<serde_json::Value>,
}

/// The warehouse: schemas, relations of schema `main` in database `shop` by name with their
/// kind, the columns of relations, and the columns the compiled query returns.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Exists {
    #[serde(default)]
    schemas: Vec<String>,
    #[serde(default)]
    relations: BTreeMap<String, String>,
    #[serde(default)]
    columns: BTreeMap<String, Vec<[String; 2]>>,
    #[serde(default)]
    query_columns: Vec<[String; 2]>,
}

fn relation(name: &str) -> Relation {
    Relation::new(Some("shop"), "main", name)
}

fn columns(list: &[[String; 2]]) -> Vec<Column> {
    list.iter()
        .map(|[name, data_type]| Column {
            name: name.clone(),
            data_type: data_type.clone(),
        })
        .collect()
}

impl Existing for Exists {
    fn kind_of(&self, rel: &Relation) -> Option<Kind> {
        if rel.schema != "main" {
            return None;
        }
        match self.relations.get(&rel.identifier)?.as_str() {
            "view" => Some(Kind::View),
            _ => Some(Kind::Table),
        }
    }

    fn schema_exists(&self, _database: Option<&str>, schema: &str) -> bool {
        self.schemas.iter().any(|s| s == schema)
    }
}

impl Columns for Exists {
    fn of_relation(&self, rel: &Relation) -> Result<Vec<Column>, Problem> {
        Ok(columns(
            self.columns
                .get(&rel.identifier)
                .map_or(&[][..], Vec::as_slice),
        ))
    }

    fn of_query(&self, _sql: &str) -> Result<Vec<Column>, Problem> {
        Ok(columns(&self.query_columns))
    }

    fn declared_types(&self, types: &[String]) -> Result<Vec<String>, Problem> {
        Ok(types.iter().map(|t| t.to_ascii_uppercase()).collect())
    }
}

fn fixtures(under: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(under)
}

/// The case folders below `dir`, sorted.
fn cases(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a readable folder entry").path())
        .filter(|p| p.join("case.yml").is_file())
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no cases in {}", dir.display());
    out
}

fn read<T: for<'de> Deserialize<'de>>(path: &Path) -> T {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The plan of a case, or the problem that stops it.
/// The plan of a case, with relations quoted as `quoting` says (the emitting dialect's).
fn plan_of(case: &PlanCase, quoting: crate::relation::Quoting) -> Result<Plan, Problem> {
    let resource_type = match case.node.resource_type.as_str() {
        "model" => ResourceType::Model,
        "seed" => ResourceType::Seed,
        "snapshot" => ResourceType::Snapshot,
        other => panic!("unknown resource_type `{other}`"),
    };
    let mut config = NodeConfig::default();
    for (key, value) in &case.node.config {
        config.set(key, value.clone());
    }
    let node = Node {
        config,
        columns: case
            .node
            .columns
            .iter()
            .map(|c| crate::project::ColumnProps {
                name: c.name.clone(),
                data_type: c.data_type.clone(),
                constraints: c.constraints.clone(),
                ..Default::default()
            })
            .collect(),
        constraints: case.node.constraints.clone(),
        definition: match &case.node.seed_path {
            Some(path) => Definition::Seed { path: path.clone() },
            None => Definition::Template,
        },
        ..Node::new(
            resource_type,
            format!("{}.shop.{}", case.node.resource_type, case.node.name),
            &case.node.name,
            Relation {
                quoting,
                ..relation(&case.node.name)
            },
        )
    };
    match &case.window {
        Some([start, end]) => {
            let window = microbatch::Window {
                start: microbatch::parse_time(start).expect("a window start"),
                end: microbatch::parse_time(end).expect("a window end"),
            };
            let table = case.exists.of_relation(&node.relation)?;
            let new = case.exists.of_query(&case.sql)?;
            incremental::plan(&node, &case.sql, &case.exists, &table, &new, Some(&window))
        }
        None => node_plan(
            &node,
            &case.sql,
            &case.exists,
            &case.exists,
            case.incremental,
        ),
    }
}

/// Compare `text` with the snapshot `name.snap` in `dir`.
fn check(dir: &Path, name: &str, text: &str) {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(dir);
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.bind(|| insta::assert_snapshot!(name, text));
}

#[test]
fn plans() {
    for dir in cases(&fixtures("plan")) {
        let case: PlanCase = read(&dir.join("case.yml"));
        let failing = dir
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("err_"));
        let text = match plan_of(&case, crate::relation::Quoting::default()) {
            Ok(plan) => {
                assert!(!failing, "{}: expected a problem", dir.display());
                format!("{plan:#?}")
            }
            Err(p) => {
                assert!(failing, "{}: {}", dir.display(), p.message);
                format!("{}\nhelp: {}", p.message, p.help.unwrap_or_default())
            }
        };
        check(&dir, "plan", &text);
    }
}

/// An emit case: the plan case it lowers, and the statements sqlparser cannot read, by index,
/// with the reason.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmitCase {
    plan: String,
    #[serde(default)]
    unparsed: BTreeMap<usize, String>,
}

#[test]
fn emitted_sql() {
    let dialects: [(&str, &dyn Dialect); 3] = [
        ("duckdb", &duckdb::DuckDb),
        ("snowflake", &super::warehouse::Snowflake),
        ("bigquery", &super::warehouse::BigQuery),
    ];
    for (name, dialect) in dialects {
        for dir in cases(&fixtures("emit").join(name)) {
            let case: EmitCase = read(&dir.join("case.yml"));
            let plan_case: PlanCase = read(&fixtures("plan").join(&case.plan).join("case.yml"));
            let plan = plan_of(&plan_case, dialect.quoting())
                .unwrap_or_else(|p| panic!("{}: {}", dir.display(), p.message));
            let statements = super::lower(dialect, &plan.steps).statements;
            for (i, s) in statements.iter().enumerate() {
                let parsed = sqlparser::parser::Parser::parse_sql(&*dialect.parser(), &s.sql);
                match (case.unparsed.get(&i), parsed) {
                    (None, Err(e)) => panic!(
                        "{}: statement {i} does not parse in sqlparser's {} dialect: {e}\n{}",
                        dir.display(),
                        dialect.name(),
                        s.sql
                    ),
                    (Some(why), Ok(_)) => panic!(
                        "{}: statement {i} is listed as unparsed ({why}) but parses",
                        dir.display()
                    ),
                    _ => {}
                }
            }
            let kinds: Vec<String> = statements.iter().map(|s| format!("{:?}", s.kind)).collect();
            let text = format!("-- kinds: {}\n{}", kinds.join(", "), script(&statements));
            check(&dir, "sql", &text);
        }
    }
}
