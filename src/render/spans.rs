//! Mapping rendered SQL back to the template it came from.
//!
//! Jinja keeps the literal text of a template; only tags and expressions change. Walking the
//! template's literal fragments in order and finding each in the rendered output gives anchors
//! (output offset → template offset). A place in the output maps to the template through the
//! last anchor before it. The map is built only when a diagnostic needs it, so a successful run
//! pays nothing.

use crate::diagnostics::line_of;

/// Literal fragments of a template (text outside `{{ }}`, `{% %}` and `{# #}`), split at line
/// breaks, with their byte offsets.
fn literal_fragments(template: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut pos = 0;
    let bytes = template.as_bytes();
    while pos < template.len() {
        let Some(next_open) = (|| {
            let mut search = pos;
            loop {
                let i = template[search..].find('{')? + search;
                if matches!(bytes.get(i + 1), Some(b'{' | b'%' | b'#')) {
                    return Some(i);
                }
                search = i + 1;
            }
        })() else {
            push_lines(&mut out, pos, &template[pos..]);
            break;
        };
        push_lines(&mut out, pos, &template[pos..next_open]);
        let close = match bytes[next_open + 1] {
            b'{' => "}}",
            b'%' => "%}",
            _ => "#}",
        };
        pos = template[next_open + 2..]
            .find(close)
            .map_or(template.len(), |i| next_open + 2 + i + 2);
    }
    out
}

fn push_lines<'a>(out: &mut Vec<(usize, &'a str)>, base: usize, text: &'a str) {
    let mut offset = base;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        if trimmed.len() >= 2 {
            let lead = line.len() - line.trim_start().len();
            out.push((offset + lead, trimmed));
        }
        offset += line.len();
    }
}

/// The 1-based template line that produced 1-based line `out_line` of `rendered`.
pub fn template_line(template: &str, rendered: &str, out_line: usize) -> usize {
    let target = rendered
        .split_inclusive('\n')
        .take(out_line.saturating_sub(1))
        .map(str::len)
        .sum::<usize>();
    let mut cursor = 0;
    let mut best: Option<(usize, usize)> = None;
    for (tpl_offset, fragment) in literal_fragments(template) {
        let Some(found) = rendered[cursor..].find(fragment) else {
            continue;
        };
        let out_offset = cursor + found;
        if out_offset
            > target
                + rendered[target..]
                    .find('\n')
                    .unwrap_or(rendered.len() - target)
        {
            break;
        }
        best = Some((out_offset, tpl_offset));
        cursor = out_offset + fragment.len();
    }
    match best {
        Some((out_offset, tpl_offset)) => {
            let lines_after = line_of(rendered, target) - line_of(rendered, out_offset);
            (line_of(template, tpl_offset) + lines_after).min(line_of(template, template.len()))
        }
        None => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_through_expressions_and_loops() {
        let template = "{{ config(materialized='table') }}\nselect\n  {% for c in cols %}\n  {{ c }},\n  {% endfor %}\n  id\nfrom {{ ref('x') }}\nwhere bad_column = 1";
        let rendered = "\nselect\n  \n  a,\n  \n  b,\n  \n  id\nfrom \"db\".\"main\".\"x\"\nwhere bad_column = 1";
        assert_eq!(template_line(template, rendered, 10), 8);
        assert_eq!(template_line(template, rendered, 9), 7);
        assert_eq!(template_line(template, rendered, 2), 2);
    }
}
