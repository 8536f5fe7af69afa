//! Ephemeral models as CTEs: a query's ephemeral ancestors put in front of it, into its
//! leading `with` or as a new one, and where that moved the query's lines.

use std::sync::Arc;

/// Length of leading whitespace and SQL comments.
fn leading_trivia(sql: &str) -> usize {
    let mut pos = 0;
    loop {
        let rest = &sql[pos..];
        let trimmed = rest.trim_start();
        pos += rest.len() - trimmed.len();
        if trimmed.starts_with("--") {
            pos += trimmed.find('\n').map_or(trimmed.len(), |i| i + 1);
        } else if trimmed.starts_with("/*") {
            pos += trimmed.find("*/").map_or(trimmed.len(), |i| i + 2);
        } else {
            return pos;
        }
    }
}

/// Where `inject_ctes` moved a query's lines: lines from the first returned (1-based, the line
/// its CTEs went into) on are that many lines further down in `compiled`. `compiled` is
/// `inject_ctes(sql, …)`, or `sql` itself when nothing was injected (a shift of 0).
pub fn injected_line_shift(sql: &str, compiled: &str) -> (usize, usize) {
    let lines = |t: &str| t.bytes().filter(|&b| b == b'\n').count();
    let from = 1 + lines(&sql[..leading_trivia(sql)]);
    (from, lines(compiled).saturating_sub(lines(sql)))
}

/// Put ephemeral CTEs in front of a query: into its leading `with`, or as a new one.
pub fn inject_ctes(sql: &str, ctes: &[(String, Arc<str>)]) -> String {
    let defs: Vec<String> = ctes
        .iter()
        .map(|(name, body)| format!("__dbt__cte__{name} as (\n{body}\n)"))
        .collect();
    let defs = defs.join(", ");
    let start = leading_trivia(sql);
    let rest = &sql[start..];
    let lower: String = rest
        .chars()
        .take(16)
        .collect::<String>()
        .to_ascii_lowercase();
    if lower.starts_with("with") && rest[4..].starts_with(char::is_whitespace) {
        let mut head = 4;
        let after = rest[4..].trim_start();
        if after.to_ascii_lowercase().starts_with("recursive")
            && after[9..].starts_with(char::is_whitespace)
        {
            head = rest.len() - after.len() + 9;
        }
        format!(
            "{}{} {defs}, {}",
            &sql[..start],
            &rest[..head],
            rest[head..].trim_start()
        )
    } else {
        format!("{}with {defs}\n{rest}", &sql[..start])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_of_the_query_is_found_below_the_injected_ctes() {
        let ctes = vec![("e".to_string(), Arc::from("select 1\nfrom x"))];
        for sql in [
            "-- m\nselect *\nfrom __dbt__cte__e\nwhere )",
            "-- m\nwith\n  a as (select 1)\nselect * from a, __dbt__cte__e\nwhere )",
        ] {
            let compiled = inject_ctes(sql, &ctes);
            let (from, shift) = injected_line_shift(sql, &compiled);
            assert_eq!(from, 2, "{sql}");
            let last = sql.lines().count();
            assert_eq!(
                compiled.lines().nth(last - 1 + shift),
                sql.lines().nth(last - 1),
                "{compiled}"
            );
        }
        assert_eq!(injected_line_shift("select 1", "select 1"), (1, 0));
    }

    #[test]
    fn ctes_join_a_leading_with_or_start_one() {
        let ctes = vec![("a".to_string(), Arc::from("select 1"))];
        assert_eq!(
            inject_ctes("select * from __dbt__cte__a", &ctes),
            "with __dbt__cte__a as (\nselect 1\n)\nselect * from __dbt__cte__a"
        );
        assert_eq!(
            inject_ctes("-- c\nWITH x as (select 2) select 1", &ctes),
            "-- c\nWITH __dbt__cte__a as (\nselect 1\n), x as (select 2) select 1"
        );
    }
}
