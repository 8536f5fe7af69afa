//! A node's `pre-hook` and `post-hook` config: SQL the user asks to run before and after the
//! node is built, each inside the node's transaction (the default) or outside it
//! (`transaction: false`), as dbt runs them. Reading the config only; the compile pass renders
//! the hooks and the executor places them around the plan's statements.

use serde_json::Value as Json;

use crate::project::NodeConfig;

/// One hook as configured (its Jinja not rendered yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    pub sql: String,
    /// Run inside the node's transaction (dbt's default), or before it begins (a pre-hook) or
    /// after it commits (a post-hook).
    pub transaction: bool,
}

/// Which hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Pre,
    Post,
}

impl When {
    pub fn key(self) -> &'static str {
        match self {
            When::Pre => "pre-hook",
            When::Post => "post-hook",
        }
    }
}

/// The hooks of a node, in the order they run: a string, a `{sql, transaction}` map, or a list
/// of either (project-file levels before YAML before `config()`, as the config merge appends).
pub fn of(config: &NodeConfig, when: When) -> Vec<Hook> {
    let mut out = Vec::new();
    if let Some(value) = config.get(when.key()) {
        collect(value, &mut out);
    }
    out
}

fn collect(value: &Json, out: &mut Vec<Hook>) {
    match value {
        Json::String(sql) if !sql.trim().is_empty() => out.push(Hook {
            sql: sql.clone(),
            transaction: true,
        }),
        Json::Array(items) => items.iter().for_each(|v| collect(v, out)),
        Json::Object(m) => {
            if let Some(sql) = m.get("sql").and_then(Json::as_str) {
                out.push(Hook {
                    sql: sql.to_string(),
                    transaction: m.get("transaction").and_then(Json::as_bool).unwrap_or(true),
                });
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_are_strings_maps_or_lists() {
        let mut config = NodeConfig::default();
        config.set(
            "post-hook",
            serde_json::json!(["grant select on {{ this }} to r", {"sql": "vacuum", "transaction": false}, ""]),
        );
        config.set("pre-hook", serde_json::json!("set x = 1"));
        assert_eq!(
            of(&config, When::Post),
            [
                Hook {
                    sql: "grant select on {{ this }} to r".into(),
                    transaction: true
                },
                Hook {
                    sql: "vacuum".into(),
                    transaction: false
                },
            ]
        );
        assert_eq!(of(&config, When::Pre).len(), 1);
    }
}
