//! Python's `+` and `-` on `modules.datetime` values: `d + timedelta(days=1)`, `a - b`.
//!
//! minijinja has no operators on objects, so a template that may do date arithmetic has each
//! binary `+` and `-` rewritten into a call: `a + b` becomes `__xadd(a , b)` (the `+` replaced
//! by `,` in place, so that the rewrite only inserts text and error positions map back as for
//! `mutable::prepare`). `__xadd` and `__xsub` hand date, datetime and timedelta operands to
//! their `__add__` / `__radd__` / `__sub__` / `__rsub__` methods and everything else to
//! minijinja's own operator, so numbers, strings and lists add as before.
//!
//! Only templates that name `datetime`, `timedelta`, `run_started_at` or `pytz` are parsed for
//! this (a byte search): they are where dates come from, and the others keep the cost of a
//! plain render.

use minijinja::machinery::ast::{CallArg, Expr, Stmt};
use minijinja::value::Value;
use minijinja::{Error, State};

/// One text edit of the original source: insert `text` at `at`, replacing `removed` bytes.
/// `order` sorts edits at one offset: openings (outer first), then closings (inner first),
/// then the replaced operator.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Edit {
    pub at: usize,
    pub order: (u8, usize),
    pub text: &'static str,
    pub removed: usize,
}

/// The words that make a template worth parsing, found in one pass over its text.
static TRIGGERS: std::sync::LazyLock<aho_corasick::AhoCorasick> = std::sync::LazyLock::new(|| {
    aho_corasick::AhoCorasick::new(["datetime", "timedelta", "run_started_at", "pytz"])
        .expect("fixed patterns")
});

/// The edits that turn the binary `+` and `-` of `source` into `__xadd` / `__xsub` calls; none
/// when it names no date source or does not parse (minijinja reports that itself).
pub(super) fn edits(source: &str) -> Vec<Edit> {
    if !TRIGGERS.is_match(source) {
        return Vec::new();
    }
    let Ok(ast) = minijinja::machinery::parse(
        source,
        "<template>",
        minijinja::syntax::SyntaxConfig::default(),
    ) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    walk_stmt(&ast, source, &mut out);
    out
}

fn walk_stmts(stmts: &[Stmt<'_>], source: &str, out: &mut Vec<Edit>) {
    for s in stmts {
        walk_stmt(s, source, out);
    }
}

fn walk_stmt(stmt: &Stmt<'_>, source: &str, out: &mut Vec<Edit>) {
    let mut e = |x: &Expr<'_>| walk_expr(x, source, out);
    match stmt {
        Stmt::Template(t) => walk_stmts(&t.children, source, out),
        Stmt::EmitExpr(x) => e(&x.expr),
        Stmt::ForLoop(f) => {
            e(&f.iter);
            if let Some(x) = &f.filter_expr {
                e(x);
            }
            walk_stmts(&f.body, source, out);
            walk_stmts(&f.else_body, source, out);
        }
        Stmt::IfCond(i) => {
            e(&i.expr);
            walk_stmts(&i.true_body, source, out);
            walk_stmts(&i.false_body, source, out);
        }
        Stmt::WithBlock(w) => {
            for (_, x) in &w.assignments {
                e(x);
            }
            walk_stmts(&w.body, source, out);
        }
        Stmt::Set(s) => e(&s.expr),
        Stmt::SetBlock(s) => {
            if let Some(x) = &s.filter {
                e(x);
            }
            walk_stmts(&s.body, source, out);
        }
        Stmt::AutoEscape(a) => walk_stmts(&a.body, source, out),
        Stmt::FilterBlock(f) => {
            e(&f.filter);
            walk_stmts(&f.body, source, out);
        }
        Stmt::Block(b) => walk_stmts(&b.body, source, out),
        Stmt::EmitRaw(_)
        | Stmt::Continue(_)
        | Stmt::Break(_)
        | Stmt::Import(_)
        | Stmt::FromImport(_)
        | Stmt::Extends(_)
        | Stmt::Include(_) => {}
        Stmt::Macro(m) => {
            for x in &m.defaults {
                e(x);
            }
            walk_stmts(&m.body, source, out);
        }
        Stmt::CallBlock(c) => {
            walk_call_args(&c.call.args, source, out);
            walk_expr(&c.call.expr, source, out);
            for x in &c.macro_decl.defaults {
                walk_expr(x, source, out);
            }
            walk_stmts(&c.macro_decl.body, source, out);
        }
        Stmt::Do(d) => {
            walk_expr(&d.call.expr, source, out);
            walk_call_args(&d.call.args, source, out);
        }
    }
}

fn walk_call_args(args: &[CallArg<'_>], source: &str, out: &mut Vec<Edit>) {
    for a in args {
        match a {
            CallArg::Pos(x)
            | CallArg::Kwarg(_, x)
            | CallArg::PosSplat(x)
            | CallArg::KwargSplat(x) => {
                walk_expr(x, source, out);
            }
        }
    }
}

fn span_of(expr: &Expr<'_>) -> (usize, usize) {
    let s = match expr {
        Expr::Var(x) => x.span(),
        Expr::Const(x) => x.span(),
        Expr::Slice(x) => x.span(),
        Expr::UnaryOp(x) => x.span(),
        Expr::BinOp(x) => x.span(),
        Expr::Compare(x) => x.span(),
        Expr::IfExpr(x) => x.span(),
        Expr::Filter(x) => x.span(),
        Expr::Test(x) => x.span(),
        Expr::GetAttr(x) => x.span(),
        Expr::GetItem(x) => x.span(),
        Expr::Call(x) => x.span(),
        Expr::List(x) => x.span(),
        Expr::Tuple(x) => x.span(),
        Expr::Map(x) => x.span(),
    };
    (s.start_offset as usize, s.end_offset as usize)
}

fn walk_expr(expr: &Expr<'_>, source: &str, out: &mut Vec<Edit>) {
    use minijinja::machinery::ast::BinOpKind;
    match expr {
        Expr::Var(_) | Expr::Const(_) => {}
        Expr::Slice(s) => {
            walk_expr(&s.expr, source, out);
            for x in [&s.start, &s.stop, &s.step].into_iter().flatten() {
                walk_expr(x, source, out);
            }
        }
        Expr::UnaryOp(u) => walk_expr(&u.expr, source, out),
        Expr::BinOp(b) => {
            walk_expr(&b.left, source, out);
            walk_expr(&b.right, source, out);
            let name = match b.op {
                BinOpKind::Add => "__xadd(",
                BinOpKind::Sub => "__xsub(",
                _ => return,
            };
            let sign = if matches!(b.op, BinOpKind::Add) {
                '+'
            } else {
                '-'
            };
            let (start, end) = span_of(expr);
            let left_end = span_of(&b.left).1;
            let right_start = span_of(&b.right).0;
            let Some(op) = source
                .get(left_end..right_start)
                .and_then(|gap| gap.find(sign))
                .map(|i| left_end + i)
            else {
                return;
            };
            let len = end - start;
            out.push(Edit {
                at: start,
                order: (0, usize::MAX - len),
                text: name,
                removed: 0,
            });
            // After any `)` closing the left operand at the operator's place (`a+b-c`).
            out.push(Edit {
                at: op,
                order: (4, 0),
                text: ",",
                removed: 1,
            });
            out.push(Edit {
                at: end,
                order: (3, len),
                text: ")",
                removed: 0,
            });
        }
        Expr::Compare(c) => {
            walk_expr(&c.expr, source, out);
            for op in &c.ops {
                walk_expr(&op.expr, source, out);
            }
        }
        Expr::IfExpr(i) => {
            walk_expr(&i.test_expr, source, out);
            walk_expr(&i.true_expr, source, out);
            if let Some(x) = &i.false_expr {
                walk_expr(x, source, out);
            }
        }
        Expr::Filter(f) => {
            if let Some(x) = &f.expr {
                walk_expr(x, source, out);
            }
            walk_call_args(&f.args, source, out);
        }
        Expr::Test(t) => {
            walk_expr(&t.expr, source, out);
            walk_call_args(&t.args, source, out);
        }
        Expr::GetAttr(g) => walk_expr(&g.expr, source, out),
        Expr::GetItem(g) => {
            walk_expr(&g.expr, source, out);
            walk_expr(&g.subscript_expr, source, out);
        }
        Expr::Call(c) => {
            walk_expr(&c.expr, source, out);
            walk_call_args(&c.args, source, out);
        }
        Expr::List(l) => l.items.iter().for_each(|x| walk_expr(x, source, out)),
        Expr::Tuple(t) => t.items.iter().for_each(|x| walk_expr(x, source, out)),
        Expr::Map(m) => {
            for x in m.keys.iter().chain(&m.values) {
                walk_expr(x, source, out);
            }
        }
    }
}

/// `a + b` in a rewritten template.
pub fn xadd(state: &State<'_, '_>, a: Value, b: Value) -> Result<Value, Error> {
    binary(state, a, b, true)
}

/// `a - b` in a rewritten template.
pub fn xsub(state: &State<'_, '_>, a: Value, b: Value) -> Result<Value, Error> {
    binary(state, a, b, false)
}

fn binary(state: &State<'_, '_>, a: Value, b: Value, plus: bool) -> Result<Value, Error> {
    if let Some(result) = super::modules::datetime_op(plus, &a, &b) {
        return result;
    }
    // Integers, the common case, without an expression round trip.
    if a.is_integer()
        && b.is_integer()
        && let (Some(x), Some(y)) = (a.as_i64(), b.as_i64())
        && let Some(v) = if plus {
            x.checked_add(y)
        } else {
            x.checked_sub(y)
        }
    {
        return Ok(Value::from(v));
    }
    // Two plain strings join, as minijinja's `+` joins them, without an expression round trip.
    if plus
        && let (Some(x), Some(y)) = (a.as_str(), b.as_str())
        && !a.is_safe()
        && !b.is_safe()
    {
        return Ok(Value::from(format!("{x}{y}")));
    }
    // Everything else exactly as minijinja's own operator. Its error loses the expression's
    // own place, so that the template's call site is reported.
    let strip = |e: Error| Error::new(e.kind(), e.detail().unwrap_or_default().to_string());
    let expr = state
        .env()
        .compile_expression(if plus { "a + b" } else { "a - b" })
        .map_err(strip)?;
    expr.eval(minijinja::context! { a => a, b => b })
        .map_err(strip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(source: &str) -> String {
        let mut edits = edits(source);
        edits.sort();
        let mut out = String::new();
        let mut pos = 0;
        for e in edits {
            out.push_str(&source[pos..e.at]);
            out.push_str(e.text);
            pos = e.at + e.removed;
        }
        out.push_str(&source[pos..]);
        out
    }

    #[test]
    fn rewrites_binary_plus_and_minus_only_where_dates_may_be() {
        assert_eq!(rewrite("{{ a + b }}"), "{{ a + b }}");
        // No space before an operator: the inner call closes before the operator is replaced.
        assert_eq!(
            rewrite("{# pytz #}{{ a+b-c }}{% set x = [1]+y %}{{ (a)-(b)+(c) }}"),
            "{# pytz #}{{ __xsub(__xadd(a,b),c) }}{% set x = __xadd([1],y) %}{{ __xadd(__xsub((a),(b)),(c)) }}"
        );
        assert_eq!(
            rewrite("{# datetime #}{{ a + b - c }}{{ -x }}{{ (d - e) ~ 'x' }}"),
            "{# datetime #}{{ __xsub(__xadd(a , b) , c) }}{{ -x }}{{ (__xsub(d , e)) ~ 'x' }}"
        );
        assert_eq!(
            rewrite("{% set t = modules.datetime.timedelta(days=n + 1) %}{{ f(x)[1] - (y + 2) }}"),
            "{% set t = modules.datetime.timedelta(days=__xadd(n , 1)) %}{{ __xsub(f(x)[1] , (__xadd(y , 2))) }}"
        );
    }
}
