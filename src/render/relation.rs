//! `Relation`: a database object name as templates see it (`{{ ref('x') }}`, `{{ this }}`).
//! It carries its warehouse's dialect, which writes its text (quoting, a CTE's bare name for an
//! ephemeral model, a filtered subquery for a microbatch input).

use std::fmt;
use std::sync::Arc;

use minijinja::value::{Enumerator, Kwargs, Object, ObjectRepr, Value, from_args};
use minijinja::{Error, State};

use crate::dialect::DialectKind;

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
    /// Whose SQL the relation is written in.
    pub dialect: DialectKind,
}

impl Relation {
    pub fn new(database: Option<&str>, schema: &str, identifier: &str) -> Self {
        Relation {
            database: database.map(String::from),
            schema: schema.to_string(),
            identifier: identifier.to_string(),
            cte: false,
            filter: None,
            dialect: DialectKind::default(),
        }
    }

    pub fn cte(name: &str) -> Self {
        Relation {
            database: None,
            schema: String::new(),
            identifier: format!("__dbt__cte__{name}"),
            cte: true,
            filter: None,
            dialect: DialectKind::default(),
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
        f.write_str(&self.dialect.get().relation(self))
    }
}

impl Object for Relation {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "database" => Some(Value::from(self.database.clone())),
            "schema" => Some(Value::from(self.schema.clone())),
            "identifier" | "name" | "table" => Some(Value::from(self.identifier.clone())),
            "is_table" | "is_view" => Some(Value::from(false)),
            "is_cte" => Some(Value::from(self.cte)),
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
