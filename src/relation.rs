//! `Relation`: a database object name as every stage and every template sees it
//! (`{{ ref('x') }}`, `{{ this }}`). It carries its warehouse's quoting rule (dbt's quote
//! character and policy), so that it writes itself as that warehouse spells names: quoted
//! parts, a CTE's bare name for an ephemeral model, a filtered subquery for a microbatch input.
//!
//! It sits below every stage and imports none: the dialect that chooses the quoting is far
//! above it.

use std::fmt;
use std::sync::Arc;

use minijinja::value::{Enumerator, Kwargs, Object, ObjectRepr, Value, from_args};
use minijinja::{Error, State};

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Relation {
    pub database: Option<String>,
    pub schema: String,
    pub identifier: String,
    /// An ephemeral model: rendered as `__dbt__cte__<name>`.
    pub cte: bool,
    /// A row filter (a microbatch's window on an input's `event_time`): the relation renders
    /// as `(select * from <relation> where <filter>)`.
    pub filter: Option<String>,
    /// Files read in place of a table (a source's `external_location`, dbt-duckdb's): rendered
    /// as this text, a quoted path or a `read_…()` call.
    pub external: Option<String>,
    /// How its warehouse quotes names.
    pub quoting: Quoting,
}

/// The kind of an existing relation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Table,
    View,
}

impl Kind {
    /// The word SQL uses for it (`table`, `view`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Table => "table",
            Kind::View => "view",
        }
    }
}

/// A column of a relation or of a query's result. Its type is the warehouse's own name for it,
/// as the adapter read it: plans copy it, never write one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub data_type: String,
}

impl Column {
    #[cfg(test)]
    pub fn new(name: &str, data_type: &str) -> Self {
        Column {
            name: name.to_string(),
            data_type: data_type.to_string(),
        }
    }
}

/// How a warehouse quotes the parts of a name: the quote character and which parts are quoted
/// (dbt's `quote_character` and `quote_policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Quoting {
    pub character: char,
    pub database: bool,
    pub schema: bool,
    pub identifier: bool,
}

impl Quoting {
    /// Every part in double quotes (DuckDB, Postgres; Snowflake's default policy).
    pub const DOUBLE_QUOTES: Quoting = Quoting {
        character: '"',
        database: true,
        schema: true,
        identifier: true,
    };

    /// An identifier in quotes, a quote inside it doubled.
    pub fn quote(self, ident: &str) -> String {
        let q = self.character;
        let mut out = String::with_capacity(ident.len() + 2);
        out.push(q);
        for c in ident.chars() {
            if c == q {
                out.push(q);
            }
            out.push(c);
        }
        out.push(q);
        out
    }
}

/// The project's `quoting:` config: which parts of a name are quoted, where it says so, over
/// the warehouse's own policy (dbt-snowflake quotes nothing; `quoting: {identifier: true}`
/// keeps a model's name in the case it is written).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotePolicy {
    pub database: Option<bool>,
    pub schema: Option<bool>,
    pub identifier: Option<bool>,
}

impl QuotePolicy {
    /// The warehouse's quoting with this policy over it.
    pub fn over(self, q: Quoting) -> Quoting {
        Quoting {
            character: q.character,
            database: self.database.unwrap_or(q.database),
            schema: self.schema.unwrap_or(q.schema),
            identifier: self.identifier.unwrap_or(q.identifier),
        }
    }
}

impl Default for Quoting {
    fn default() -> Self {
        Quoting::DOUBLE_QUOTES
    }
}

impl Relation {
    pub fn new(database: Option<&str>, schema: &str, identifier: &str) -> Self {
        Relation {
            database: database.map(String::from),
            schema: schema.to_string(),
            identifier: identifier.to_string(),
            cte: false,
            filter: None,
            external: None,
            quoting: Quoting::default(),
        }
    }

    pub fn cte(name: &str) -> Self {
        Relation {
            database: None,
            schema: String::new(),
            identifier: format!("__dbt__cte__{name}"),
            cte: true,
            filter: None,
            external: None,
            quoting: Quoting::default(),
        }
    }

    /// The same relation with another identifier (for `__dbt_tmp` and `__dbt_backup`).
    #[must_use]
    pub fn with_suffix(&self, suffix: &str) -> Self {
        Relation {
            identifier: format!("{}{suffix}", self.identifier),
            ..self.clone()
        }
    }
}

/// As its text, so that plans print as they read (`Relation("shop"."main"."orders")`).
impl fmt::Debug for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Relation({self})")
    }
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(filter) = &self.filter {
            let plain = Relation {
                filter: None,
                ..self.clone()
            };
            return write!(f, "(select * from {plain} where {filter})");
        }
        if self.cte {
            return f.write_str(&self.identifier);
        }
        if let Some(location) = &self.external {
            return f.write_str(location);
        }
        // The parts it has, as dbt renders a relation: one made with no identifier
        // (`api.Relation.create(database=…, schema=…)`) is its schema's name.
        let q = self.quoting;
        let parts = [
            (q.database, self.database.as_deref().unwrap_or("")),
            (q.schema, self.schema.as_str()),
            (q.identifier, self.identifier.as_str()),
        ];
        let mut first = true;
        for (quoted, part) in parts {
            if part.is_empty() {
                continue;
            }
            if !first {
                f.write_str(".")?;
            }
            first = false;
            if quoted {
                f.write_str(&q.quote(part))?;
            } else {
                f.write_str(part)?;
            }
        }
        Ok(())
    }
}

/// A relation is a mapping to templates, as dbt's is: packages test `obj is mapping` and read
/// `obj.get('metadata').type` to tell a relation from a string (dbt_utils' `_is_relation`).
impl Object for Relation {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "database" => Some(Value::from(self.database.clone())),
            "schema" => Some(Value::from(self.schema.clone())),
            "identifier" | "name" | "table" => Some(Value::from(self.identifier.clone())),
            "is_table" | "is_view" => Some(Value::from(false)),
            "is_cte" => Some(Value::from(self.cte)),
            "metadata" => Some(Value::from(std::collections::BTreeMap::from([(
                "type",
                "BaseRelation",
            )]))),
            "path" => Some(Value::from(std::collections::BTreeMap::from([
                ("database", Value::from(self.database.clone())),
                ("schema", Value::from(self.schema.clone())),
                ("identifier", Value::from(self.identifier.clone())),
            ]))),
            _ => None,
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(&["database", "schema", "identifier"])
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "render" => Ok(Value::from(self.to_string())),
            "get" => {
                let (key, default): (Value, Option<Value>) = from_args(args)?;
                Ok(self
                    .get_value(&key)
                    .unwrap_or_else(|| default.unwrap_or(Value::from(()))))
            }
            "include" | "incorporate" | "quote" => {
                let (_, kwargs): (&[Value], Kwargs) = from_args(args)?;
                let mut rel = (**self).clone();
                for key in ["database", "schema", "identifier"] {
                    if let Ok(Some(v)) = kwargs.get::<Option<Value>>(key) {
                        // include(database=False) leaves the part out; a string replaces it
                        if let Some(s) = v.as_str() {
                            match key {
                                "database" => rel.database = Some(s.to_string()),
                                "schema" => rel.schema = s.to_string(),
                                _ => rel.identifier = s.to_string(),
                            }
                        } else if !v.is_true() && key == "database" {
                            rel.database = None;
                        }
                    }
                }
                if let Ok(Some(path)) = kwargs.get::<Option<Value>>("path") {
                    for key in ["database", "schema", "identifier"] {
                        if let Ok(v) = path.get_attr(key)
                            && let Some(s) = v.as_str()
                        {
                            match key {
                                "database" => rel.database = Some(s.to_string()),
                                "schema" => rel.schema = s.to_string(),
                                _ => rel.identifier = s.to_string(),
                            }
                        }
                    }
                }
                Ok(Value::from_object(rel))
            }
            _ => Err(Error::new(
                minijinja::ErrorKind::UnknownMethod,
                format!("relation has no method `{method}`"),
            )),
        }
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_quoted_and_cte() {
        assert_eq!(
            Relation::new(Some("shop"), "main", "orders").to_string(),
            r#""shop"."main"."orders""#
        );
        assert_eq!(
            Relation::new(None, "main", "a\"b").to_string(),
            r#""main"."a""b""#
        );
        assert_eq!(Relation::cte("x").to_string(), "__dbt__cte__x");
    }
}
