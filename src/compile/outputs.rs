//! The column names a compiled query returns, read from its SQL without a database, when its
//! outermost select names every one of them: a column, a qualified column or an alias. A `*`,
//! an unnamed expression or SQL that does not parse leaves them unknown (`None`): a check built
//! on this never reports a column missing unless the query says which columns it returns.

use sqlparser::ast::{Expr, SelectItem, SetExpr, Statement};
use sqlparser::dialect::Dialect;
use sqlparser::parser::Parser;

/// The names the query returns, in order, or `None` when they cannot be known from its text.
pub fn output_columns(sql: &str, dialect: &dyn Dialect) -> Option<Vec<String>> {
    let statements = Parser::parse_sql(dialect, sql).ok()?;
    let [Statement::Query(query)] = statements.as_slice() else {
        return None;
    };
    names(&query.body)
}

fn names(body: &SetExpr) -> Option<Vec<String>> {
    match body {
        SetExpr::Select(select) => select
            .projection
            .iter()
            .map(|item| match item {
                SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.clone()),
                SelectItem::UnnamedExpr(Expr::Identifier(ident)) => Some(ident.value.clone()),
                SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => {
                    parts.last().map(|p| p.value.clone())
                }
                _ => None,
            })
            .collect(),
        // A union's columns are named by its first branch.
        SetExpr::SetOperation { left, .. } => names(left),
        SetExpr::Query(query) => names(&query.body),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::dialect::BigQueryDialect;

    #[test]
    fn named_outputs_are_read_and_anything_else_is_unknown() {
        let d = BigQueryDialect {};
        assert_eq!(
            output_columns(
                "with x as (select 1 as a) select x.a, b, count(*) as n from x group by 1, 2",
                &d
            ),
            Some(vec!["a".into(), "b".into(), "n".into()])
        );
        assert_eq!(
            output_columns("select a from t union all select b from u", &d),
            Some(vec!["a".into()])
        );
        assert_eq!(output_columns("select * from t", &d), None);
        assert_eq!(output_columns("select a + 1 from t", &d), None);
        assert_eq!(output_columns("select from where", &d), None);
    }
}
