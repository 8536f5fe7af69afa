//! Pointing at names: the closest known names for a misspelt one ("did you mean"), and where
//! a template calls a function with a given name, for a diagnostic's label.
//!
//! Shared by every stage that reports a name (project, render, graph, materialize), so it
//! sits below all of them and imports none.

/// Where `func('name')` (or `func("name")`) is called in a template, as (offset, length).
pub fn find_call(text: &str, func: &str, arg: &str) -> Option<(usize, usize)> {
    for quote in ['\'', '"'] {
        let needle = format!("{quote}{arg}{quote}");
        let mut search = 0;
        while let Some(found) = text[search..].find(&needle) {
            let at = search + found;
            let before = &text[..at];
            if let Some(call) = before.rfind(&format!("{func}("))
                && at - call < 120
                && !before[call..].contains(')')
            {
                let end = text[at..]
                    .find(')')
                    .map_or(at + needle.len(), |e| at + e + 1);
                return Some((call, end - call));
            }
            search = at + needle.len();
        }
    }
    None
}

/// The closest names to `wanted`, best first.
pub fn suggestions<'a>(wanted: &str, names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let limit = (wanted.len() / 3).max(2);
    let mut scored: Vec<(usize, &str)> = names
        .map(|n| (strsim::levenshtein(wanted, n), n))
        .filter(|(d, n)| *d <= limit || n.contains(wanted) || wanted.contains(n))
        .collect();
    scored.sort_unstable();
    scored
        .into_iter()
        .take(3)
        .map(|(_, n)| n.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_call_spans_the_call() {
        let text = "select * from {{ ref('raw_order') }}";
        let (at, len) = find_call(text, "ref", "raw_order").unwrap();
        assert_eq!(&text[at..at + len], "ref('raw_order')");
    }

    #[test]
    fn suggestions_rank_by_distance() {
        let names = ["raw_orders", "raw_customers", "orders"];
        assert_eq!(
            suggestions("raw_order", names.iter().copied())[0],
            "raw_orders"
        );
        assert!(suggestions("zzzzzz", names.iter().copied()).is_empty());
    }
}
