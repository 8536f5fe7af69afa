//! The blocks of a macro, test or snapshot file: `{% macro name(params) %}…{% endmacro %}`,
//! `{% test %}` and `{% snapshot %}`, cut out of the file's text with their parameters and the
//! offset of their body, so that a Jinja error inside one still points into the file.
//!
//! Only text is read here; `render::macros` turns the blocks into callables.

use crate::diagnostics::SourceFile;

/// One macro parameter.
#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub default: Option<String>,
}

/// What kind of block defined it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    Macro,
    Test,
    Snapshot,
    /// `{% docs name %}…{% enddocs %}` in a Markdown file: text for `doc('name')`.
    Docs,
}

/// A macro found in a file.
#[derive(Debug, Clone)]
pub struct MacroDef {
    pub name: String,
    pub kind: BlockKind,
    pub params: Vec<Param>,
    pub body: String,
    pub file: SourceFile,
    /// Byte offset of the body in the file.
    pub body_offset: usize,
}

impl MacroDef {
    /// The template of the block's body; macros and tests of different packages may share a
    /// name, so the package is part of it.
    pub fn template_name(&self, package: &str) -> String {
        match self.kind {
            BlockKind::Macro => format!("macro:{package}.{}", self.name),
            BlockKind::Test => format!("test:{package}.{}", self.name),
            BlockKind::Snapshot => format!("snapshot:{}", self.name),
            BlockKind::Docs => format!("docs:{package}.{}", self.name),
        }
    }
}

/// A problem with a macro file's block structure.
#[derive(Debug)]
pub struct BlockError {
    pub offset: usize,
    pub message: String,
}

/// Find the `{% macro %}` and `{% test %}` blocks of a file.
pub fn extract(file: &SourceFile) -> Result<Vec<MacroDef>, BlockError> {
    let text = &*file.text;
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(found) = text[pos..].find("{%") {
        let start = pos + found;
        let Some(close) = text[start..].find("%}") else {
            return Err(BlockError {
                offset: start,
                message: "this tag is never closed with `%}`".to_string(),
            });
        };
        let tag_end = start + close + 2;
        let inner = text[start + 2..start + close]
            .trim_start_matches('-')
            .trim_end_matches('-')
            .trim();
        let (keyword, rest) = inner.split_once(char::is_whitespace).unwrap_or((inner, ""));
        let kind = match keyword {
            "macro" => BlockKind::Macro,
            "test" => BlockKind::Test,
            "snapshot" => BlockKind::Snapshot,
            "docs" => BlockKind::Docs,
            _ => {
                pos = tag_end;
                continue;
            }
        };
        let rest = rest.trim();
        let (name, params) = match rest.find('(') {
            Some(open) => {
                let Some(close_paren) = rest.rfind(')') else {
                    return Err(BlockError {
                        offset: start,
                        message: format!(
                            "the parameter list of `{keyword}` is not closed with `)`"
                        ),
                    });
                };
                (
                    rest[..open].trim(),
                    parse_params(&rest[open + 1..close_paren]),
                )
            }
            None => (rest, Vec::new()),
        };
        let end_word = format!("end{keyword}");
        let mut search = tag_end;
        let (end_start, end_tag_end) = loop {
            let Some(f) = text[search..].find("{%") else {
                return Err(BlockError {
                    offset: start,
                    message: format!("`{keyword} {name}` has no `{{% {end_word} %}}`"),
                });
            };
            let s = search + f;
            let Some(c) = text[s..].find("%}") else {
                return Err(BlockError {
                    offset: s,
                    message: "this tag is never closed with `%}`".to_string(),
                });
            };
            let word = text[s + 2..s + c]
                .trim_start_matches('-')
                .trim_end_matches('-')
                .trim();
            if word == end_word {
                break (s, s + c + 2);
            }
            search = s + c + 2;
        };
        let mut body_start = tag_end;
        if text[start..tag_end].ends_with("-%}") {
            body_start +=
                text[body_start..end_start].len() - text[body_start..end_start].trim_start().len();
        }
        let mut body_end = end_start;
        if text[end_start..].starts_with("{%-") {
            body_end = body_start + text[body_start..end_start].trim_end().len();
        }
        out.push(MacroDef {
            name: name.to_string(),
            kind,
            params,
            body: text[body_start..body_end].to_string(),
            file: file.clone(),
            body_offset: body_start,
        });
        pos = end_tag_end;
    }
    Ok(out)
}

/// Split `a, b=1, c=[1, 2]` into parameters, respecting brackets and quotes.
fn parse_params(text: &str) -> Vec<Param> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    let mut current = String::new();
    for ch in text.chars() {
        match (quote, ch) {
            (Some(q), c) if c == q => quote = None,
            (None, '\'' | '"') => quote = Some(ch),
            (None, '(' | '[' | '{') => depth += 1,
            (None, ')' | ']' | '}') => depth -= 1,
            (None, ',') if depth == 0 => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(ch);
    }
    parts.push(current);
    parts
        .into_iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((n, d)) => Param {
                name: n.trim().to_string(),
                default: Some(d.trim().to_string()),
            },
            None => Param {
                name: p,
                default: None,
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_blocks_with_params_and_whitespace_control() {
        let file = SourceFile::new(
            "macros/m.sql",
            "{% macro a(x, y=1, z=[1, 2]) -%}\n  body {{ x }}\n{%- endmacro %}\n\n{% test t(model, column_name) %}select 1{% endtest %}",
        );
        let defs = extract(&file).unwrap();
        assert_eq!(defs.len(), 2);
        assert_eq!(defs[0].name, "a");
        assert_eq!(defs[0].body, "body {{ x }}");
        assert_eq!(
            &file.text[defs[0].body_offset..defs[0].body_offset + 4],
            "body"
        );
        assert_eq!(defs[0].params.len(), 3);
        assert_eq!(defs[0].params[2].default.as_deref(), Some("[1, 2]"));
        assert_eq!(defs[1].kind, BlockKind::Test);
    }

    #[test]
    fn unclosed_macro_is_an_error() {
        let file = SourceFile::new("m.sql", "{% macro a() %} x");
        assert!(extract(&file).is_err());
    }
}
