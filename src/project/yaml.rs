//! YAML as the project reads it: parsing with a diagnostic that points at the broken line,
//! finding a key's offset for a label, and the small readers of property values (a string or a
//! list, columns, a config block).

use serde_yaml::Value as Yaml;

use super::{ColumnProps, NodeConfig, config, yaml_to_json};
use crate::diagnostics::{Code, Problem, SourceFile};

/// Parse YAML text, turning a syntax error into a diagnostic at its line and column.
pub fn parse_yaml(file: &SourceFile) -> Result<Yaml, Problem> {
    if file.text.trim().is_empty() {
        return Ok(Yaml::Null);
    }
    serde_yaml::from_str::<Yaml>(&file.text).map_err(|e| yaml_problem(file, &e))
}

pub(super) fn yaml_problem(file: &SourceFile, e: &serde_yaml::Error) -> Problem {
    let message = e.to_string();
    let message = message
        .split(" at line ")
        .next()
        .unwrap_or(&message)
        .to_string();
    let p = Problem::new(
        Code::Yaml,
        format!("invalid YAML in `{}`: {message}", file.name),
    )
    .help(
        "fix the YAML syntax at the marked place (indentation, a missing `:` or an unclosed quote)",
    );
    match e.location() {
        Some(loc) => {
            let offset = file.offset_of(loc.line(), loc.column());
            p.at(file, offset, 1, message)
        }
        None => p,
    }
}

/// The byte offset of `key:` in YAML text, for pointing at a key in a diagnostic.
pub fn find_key(text: &str, key: &str) -> Option<usize> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start().trim_start_matches("- ");
        let indent = line.len() - trimmed.len();
        for quoted in [key.to_string(), format!("\"{key}\""), format!("'{key}'")] {
            if let Some(rest) = trimmed.strip_prefix(&quoted)
                && rest.trim_start().starts_with(':')
            {
                return Some(offset + indent);
            }
        }
        offset += line.len();
    }
    None
}

pub(super) fn string_list(value: Option<&Yaml>, default: &str) -> Vec<String> {
    match value {
        Some(Yaml::Sequence(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        Some(Yaml::String(s)) => vec![s.clone()],
        _ => vec![default.to_string()],
    }
}

pub(super) fn str_of(value: Option<&Yaml>) -> String {
    value.and_then(Yaml::as_str).unwrap_or_default().to_string()
}

/// Where `name: <name>` is in YAML text (the start of the text when not found).
pub fn name_offset(text: &str, name: &str) -> usize {
    let mut from = 0;
    while let Some(found) = text[from..].find(name) {
        let at = from + found;
        let before = text[..at].trim_end_matches([' ', '\t', '"', '\'']);
        let after = text[at + name.len()..].chars().next();
        if before.ends_with("name:") && after.is_none_or(|c| !(c.is_alphanumeric() || c == '_')) {
            return at;
        }
        from = at + name.len();
    }
    0
}

pub(super) fn columns_of(value: Option<&Yaml>) -> Vec<ColumnProps> {
    value
        .and_then(Yaml::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(|c| {
            Some(ColumnProps {
                name: c.get("name")?.as_str()?.to_string(),
                description: str_of(c.get("description")),
                data_type: c.get("data_type").and_then(Yaml::as_str).map(String::from),
                constraints: constraints_of(c.get("constraints")),
            })
        })
        .collect()
}

/// A `constraints:` list as JSON.
pub(super) fn constraints_of(value: Option<&Yaml>) -> Vec<serde_json::Value> {
    value
        .and_then(Yaml::as_sequence)
        .into_iter()
        .flatten()
        .map(yaml_to_json)
        .collect()
}

pub(super) fn config_of(value: Option<&Yaml>) -> NodeConfig {
    let mut config = NodeConfig::default();
    if let Some(Yaml::Mapping(m)) = value {
        for (k, v) in m {
            config.set(&config::yaml_key(k), yaml_to_json(v));
        }
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_key_points_at_the_key() {
        let text = "name: x\nmodels:\n  - name: a\n    colums: []\n";
        assert_eq!(find_key(text, "colums"), Some(text.find("colums").unwrap()));
        assert_eq!(find_key(text, "nope"), None);
    }
}
