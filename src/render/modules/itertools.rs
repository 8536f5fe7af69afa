//! `modules.itertools`: the functions dbt exports of Python's `itertools` (`chain`,
//! `product`, `permutations`, `combinations`, `combinations_with_replacement`,
//! `zip_longest`, `islice`, `compress`, `accumulate`, `starmap`, `tee`, `repeat`, `count`,
//! `cycle`).
//!
//! Python returns lazy iterators; here the finite ones return lists (tuples inside, as
//! Python yields them), which templates iterate, index and measure alike. `count()`, `cycle()`
//! and `repeat()` without `times` are endless and stay lazy: loop over them with a `break`,
//! or cut them with `islice`. dbt leaves out `groupby`, `takewhile`, `dropwhile` and
//! `filterfalse`, and so does this module.

use std::fmt;
use std::sync::Arc;

use minijinja::value::{Enumerator, Object, ObjectRepr, Tuple, Value};
use minijinja::{Error, State};

use super::{Function, bind, function, int_arg, int_or, invalid};

fn items(value: &Value) -> Result<Vec<Value>, Error> {
    Ok(value.try_iter()?.collect())
}

fn tuple(values: Vec<Value>) -> Value {
    Value::from(Tuple::from(values))
}

/// The positional arguments of a `*iterables` function and its keyword arguments.
fn rest_and<'a>(
    func: &str,
    args: &'a [Value],
    keywords: &[&str],
) -> Result<(&'a [Value], Vec<Option<Value>>), Error> {
    let (positional, kwargs): (&[Value], minijinja::value::Kwargs) =
        minijinja::value::from_args(args)?;
    let mut found = Vec::with_capacity(keywords.len());
    for name in keywords {
        found.push(if kwargs.has(name) {
            Some(kwargs.get::<Value>(name)?)
        } else {
            None
        });
    }
    kwargs
        .assert_all_used()
        .map_err(|e| invalid(format!("{func}(): {e}")))?;
    Ok((positional, found))
}

fn non_negative(func: &str, name: &str, n: i64) -> Result<usize, Error> {
    usize::try_from(n).map_err(|_| invalid(format!("{func}(): {name} must be non-negative")))
}

fn chain(_: &mut State<'_, '_>, args: &[Value]) -> Result<Value, Error> {
    let (iterables, _) = rest_and("chain", args, &[])?;
    let mut out = Vec::new();
    for it in iterables {
        out.extend(it.try_iter()?);
    }
    Ok(Value::from(out))
}

fn chain_from_iterable(_: &mut State<'_, '_>, args: &[Value]) -> Result<Value, Error> {
    let a = bind("from_iterable", args, &["iterable"], 1)?;
    let mut out = Vec::new();
    for it in a[0].as_ref().expect("required").try_iter()? {
        out.extend(it.try_iter()?);
    }
    Ok(Value::from(out))
}

fn product(_: &mut State<'_, '_>, args: &[Value]) -> Result<Value, Error> {
    let (iterables, kw) = rest_and("product", args, &["repeat"])?;
    let repeat = non_negative(
        "product",
        "repeat",
        int_or("product", "repeat", kw[0].as_ref(), 1)?,
    )?;
    let pools: Vec<Vec<Value>> = iterables.iter().map(items).collect::<Result<_, _>>()?;
    let mut rows: Vec<Vec<Value>> = vec![Vec::new()];
    for _ in 0..repeat {
        for pool in &pools {
            rows = rows
                .iter()
                .flat_map(|row| {
                    pool.iter().map(move |item| {
                        let mut next = row.clone();
                        next.push(item.clone());
                        next
                    })
                })
                .collect();
        }
    }
    Ok(Value::from(rows.into_iter().map(tuple).collect::<Vec<_>>()))
}

/// Every choice of `r` positions out of `n`, in Python's order. `ordered`: permutations
/// (each position once, any order); otherwise combinations (increasing positions, or
/// non-decreasing with `repeat`).
fn choices(
    n: usize,
    r: usize,
    ordered: bool,
    repeat: bool,
    out: &mut Vec<Vec<usize>>,
    row: &mut Vec<usize>,
) {
    if row.len() == r {
        out.push(row.clone());
        return;
    }
    let start = match row.last() {
        Some(&last) if !ordered => last + usize::from(!repeat),
        _ => 0,
    };
    for i in start..n {
        if ordered && row.contains(&i) {
            continue;
        }
        row.push(i);
        choices(n, r, ordered, repeat, out, row);
        row.pop();
    }
}

fn pick(func: &str, args: &[Value], ordered: bool, repeat: bool) -> Result<Value, Error> {
    let required = usize::from(!ordered) + 1;
    let a = bind(func, args, &["iterable", "r"], required)?;
    let pool = items(a[0].as_ref().expect("required"))?;
    let r = match a[1].as_ref().filter(|v| !v.is_none()) {
        Some(v) => non_negative(func, "r", int_arg(func, "r", v)?)?,
        None => pool.len(),
    };
    let mut rows = Vec::new();
    choices(
        pool.len(),
        r,
        ordered,
        repeat,
        &mut rows,
        &mut Vec::with_capacity(r),
    );
    Ok(Value::from(
        rows.into_iter()
            .map(|row| tuple(row.into_iter().map(|i| pool[i].clone()).collect()))
            .collect::<Vec<_>>(),
    ))
}

fn zip_longest(_: &mut State<'_, '_>, args: &[Value]) -> Result<Value, Error> {
    let (iterables, kw) = rest_and("zip_longest", args, &["fillvalue"])?;
    let fill = kw[0].clone().unwrap_or(Value::from(()));
    let columns: Vec<Vec<Value>> = iterables.iter().map(items).collect::<Result<_, _>>()?;
    let n = columns.iter().map(Vec::len).max().unwrap_or(0);
    Ok(Value::from(
        (0..n)
            .map(|i| {
                tuple(
                    columns
                        .iter()
                        .map(|c| c.get(i).cloned().unwrap_or_else(|| fill.clone()))
                        .collect(),
                )
            })
            .collect::<Vec<_>>(),
    ))
}

fn islice(_: &mut State<'_, '_>, args: &[Value]) -> Result<Value, Error> {
    let (positional, _) = rest_and("islice", args, &[])?;
    let index =
        |v: Option<&Value>, name: &str, default: Option<usize>| -> Result<Option<usize>, Error> {
            match v {
                None => Ok(default),
                Some(v) if v.is_none() => Ok(default),
                Some(v) => Ok(Some(non_negative(
                    "islice",
                    name,
                    int_arg("islice", name, v)?,
                )?)),
            }
        };
    let (it, start, stop, step) = match positional {
        [it, stop] => (it, Some(0), index(Some(stop), "stop", None)?, Some(1)),
        [it, start, stop, rest @ ..] if rest.len() <= 1 => (
            it,
            index(Some(start), "start", Some(0))?,
            index(Some(stop), "stop", None)?,
            index(rest.first(), "step", Some(1))?,
        ),
        _ => {
            return Err(invalid(
                "islice() takes (iterable, stop) or (iterable, start, stop[, step])",
            ));
        }
    };
    let (start, step) = (start.unwrap_or(0), step.unwrap_or(1));
    if step == 0 {
        return Err(invalid("islice(): step must be a positive integer"));
    }
    let iter = it.try_iter()?.skip(start);
    let picked: Vec<Value> = match stop {
        Some(stop) => iter
            .take(stop.saturating_sub(start))
            .step_by(step)
            .collect(),
        None => iter.step_by(step).collect(),
    };
    Ok(Value::from(picked))
}

fn compress(_: &mut State<'_, '_>, args: &[Value]) -> Result<Value, Error> {
    let a = bind("compress", args, &["data", "selectors"], 2)?;
    let data = a[0].as_ref().expect("required").try_iter()?;
    let selectors = a[1].as_ref().expect("required").try_iter()?;
    Ok(Value::from(
        data.zip(selectors)
            .filter(|(_, keep)| keep.is_true())
            .map(|(item, _)| item)
            .collect::<Vec<_>>(),
    ))
}

fn accumulate(state: &mut State<'_, '_>, args: &[Value]) -> Result<Value, Error> {
    let a = bind("accumulate", args, &["iterable", "func", "initial"], 1)?;
    let func = a[1].clone().filter(|f| !f.is_none());
    let plus = state.env().compile_expression("a + b")?;
    let mut out = Vec::new();
    let mut total = a[2].clone().filter(|v| !v.is_none());
    if let Some(first) = &total {
        out.push(first.clone());
    }
    for item in a[0].as_ref().expect("required").try_iter()? {
        let next = match total {
            None => item,
            Some(acc) => match &func {
                Some(f) => f.call(state, &[acc, item])?,
                None => plus.eval(minijinja::context! { a => acc, b => item })?,
            },
        };
        out.push(next.clone());
        total = Some(next);
    }
    Ok(Value::from(out))
}

fn starmap(state: &mut State<'_, '_>, args: &[Value]) -> Result<Value, Error> {
    let a = bind("starmap", args, &["function", "iterable"], 2)?;
    let func = a[0].as_ref().expect("required");
    let mut out = Vec::new();
    for item in a[1].as_ref().expect("required").try_iter()? {
        out.push(func.call(state, &items(&item)?)?);
    }
    Ok(Value::from(out))
}

fn tee(_: &mut State<'_, '_>, args: &[Value]) -> Result<Value, Error> {
    let a = bind("tee", args, &["iterable", "n"], 1)?;
    let n = non_negative("tee", "n", int_or("tee", "n", a[1].as_ref(), 2)?)?;
    let all = Value::from(items(a[0].as_ref().expect("required"))?);
    Ok(tuple(vec![all; n]))
}

fn repeat(_: &mut State<'_, '_>, args: &[Value]) -> Result<Value, Error> {
    let a = bind("repeat", args, &["object", "times"], 1)?;
    let object = a[0].clone().expect("required");
    match a[1].as_ref().filter(|v| !v.is_none()) {
        Some(times) => {
            let times = int_arg("repeat", "times", times)?;
            Ok(Value::from(vec![
                object;
                usize::try_from(times).unwrap_or(0)
            ]))
        }
        None => Ok(Value::from_object(Endless::Repeat(object))),
    }
}

fn count(_: &mut State<'_, '_>, args: &[Value]) -> Result<Value, Error> {
    let a = bind("count", args, &["start", "step"], 0)?;
    let number = |v: Option<&Value>, default: i64| -> Result<Value, Error> {
        match v.filter(|v| !v.is_none()) {
            None => Ok(Value::from(default)),
            Some(v) if v.is_number() => Ok(v.clone()),
            Some(v) => Err(invalid(format!(
                "count(): a number is required, not {}",
                v.kind()
            ))),
        }
    };
    Ok(Value::from_object(Endless::Count(
        number(a[0].as_ref(), 0)?,
        number(a[1].as_ref(), 1)?,
    )))
}

fn cycle(_: &mut State<'_, '_>, args: &[Value]) -> Result<Value, Error> {
    let a = bind("cycle", args, &["iterable"], 1)?;
    Ok(Value::from_object(Endless::Cycle(items(
        a[0].as_ref().expect("required"),
    )?)))
}

/// The endless iterators: lazy, iterated on demand.
enum Endless {
    Count(Value, Value),
    Cycle(Vec<Value>),
    Repeat(Value),
}

impl fmt::Debug for Endless {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endless::Count(start, step) if step.as_i64() == Some(1) => write!(f, "count({start})"),
            Endless::Count(start, step) => write!(f, "count({start}, {step})"),
            Endless::Cycle(_) => f.write_str("<itertools.cycle object>"),
            Endless::Repeat(v) => write!(f, "repeat({v:?})"),
        }
    }
}

/// `a + b` for `count()`: integers exactly (widening past i64), floats as Python adds them.
fn add_numbers(a: &Value, b: &Value) -> Option<Value> {
    if a.is_integer()
        && b.is_integer()
        && let (Ok(x), Ok(y)) = (i128::try_from(a.clone()), i128::try_from(b.clone()))
    {
        return x.checked_add(y).map(Value::from);
    }
    let x = f64::try_from(a.clone()).ok()?;
    let y = f64::try_from(b.clone()).ok()?;
    Some(Value::from(x + y))
}

impl Object for Endless {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Iterable
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        match &**self {
            Endless::Count(start, step) => {
                let step = step.clone();
                Enumerator::Iter(Box::new(std::iter::successors(
                    Some(start.clone()),
                    move |n| add_numbers(n, &step),
                )))
            }
            Endless::Cycle(items) => Enumerator::Iter(Box::new(items.clone().into_iter().cycle())),
            Endless::Repeat(v) => Enumerator::Iter(Box::new(std::iter::repeat(v.clone()))),
        }
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        match &**self {
            Endless::Cycle(items) if items.is_empty() => Some(0),
            _ => None,
        }
    }
}

/// `modules.itertools`.
#[derive(Debug)]
pub(crate) struct ItertoolsModule;

impl Object for ItertoolsModule {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        Some(match key.as_str()? {
            "chain" => Value::from_object(Function {
                name: "chain",
                run: chain,
                methods: &[("from_iterable", chain_from_iterable)],
            }),
            "product" => function("product", product),
            "permutations" => function("permutations", |_, a| pick("permutations", a, true, false)),
            "combinations" => {
                function("combinations", |_, a| pick("combinations", a, false, false))
            }
            "combinations_with_replacement" => function("combinations_with_replacement", |_, a| {
                pick("combinations_with_replacement", a, false, true)
            }),
            "zip_longest" => function("zip_longest", zip_longest),
            "islice" => function("islice", islice),
            "compress" => function("compress", compress),
            "accumulate" => function("accumulate", accumulate),
            "starmap" => function("starmap", starmap),
            "tee" => function("tee", tee),
            "repeat" => function("repeat", repeat),
            "count" => function("count", count),
            "cycle" => function("cycle", cycle),
            _ => return None,
        })
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<module 'itertools'>")
    }
}

#[cfg(test)]
mod tests {
    use super::super::render_for_test;

    fn render(template: &str) -> String {
        let prelude = "{% set it = modules.itertools %}";
        render_for_test(&format!("{prelude}{template}"))
            .unwrap_or_else(|e| panic!("{template}: {e:#}"))
    }

    #[test]
    fn combinatorics_in_python_order() {
        assert_eq!(
            render("{{ it.chain([1, 2], [3], 'ab') }}"),
            "[1, 2, 3, 'a', 'b']"
        );
        assert_eq!(
            render("{{ it.chain.from_iterable([[1], [2, 3]]) }}"),
            "[1, 2, 3]"
        );
        assert_eq!(
            render("{{ it.product('ab', [1, 2]) }}"),
            "[('a', 1), ('a', 2), ('b', 1), ('b', 2)]"
        );
        assert_eq!(
            render("{{ it.product([0, 1], repeat=2) }}"),
            "[(0, 0), (0, 1), (1, 0), (1, 1)]"
        );
        assert_eq!(
            render("{{ it.permutations([1, 2, 3], 2) }}"),
            "[(1, 2), (1, 3), (2, 1), (2, 3), (3, 1), (3, 2)]"
        );
        assert_eq!(render("{{ it.permutations('ab') | length }}"), "2");
        assert_eq!(
            render("{{ it.combinations([1, 2, 3, 4], 2) }}"),
            "[(1, 2), (1, 3), (1, 4), (2, 3), (2, 4), (3, 4)]"
        );
        assert_eq!(render("{{ it.combinations([1, 2], 3) }}"), "[]");
        assert_eq!(render("{{ it.combinations([1, 2], 0) }}"), "[()]");
        assert_eq!(
            render("{{ it.combinations_with_replacement('ab', 2) }}"),
            "[('a', 'a'), ('a', 'b'), ('b', 'b')]"
        );
        // Tuples unpack in a loop as Python's do.
        assert_eq!(
            render("{% for a, b in it.combinations('xyz', 2) %}{{ a }}{{ b }} {% endfor %}"),
            "xy xz yz "
        );
    }

    #[test]
    fn slicing_filtering_and_accumulating() {
        assert_eq!(
            render("{{ it.zip_longest([1, 2, 3], [4], fillvalue=0) }}"),
            "[(1, 4), (2, 0), (3, 0)]"
        );
        assert_eq!(render("{{ it.islice('ABCDEFG', 2) }}"), "['A', 'B']");
        assert_eq!(
            render("{{ it.islice('ABCDEFG', 2, none) }}"),
            "['C', 'D', 'E', 'F', 'G']"
        );
        assert_eq!(
            render("{{ it.islice('ABCDEFG', 0, none, 2) }}"),
            "['A', 'C', 'E', 'G']"
        );
        assert_eq!(
            render("{{ it.compress('ABCDEF', [1, 0, 1, 0, 1, 1]) }}"),
            "['A', 'C', 'E', 'F']"
        );
        assert_eq!(render("{{ it.accumulate([1, 2, 3, 4]) }}"), "[1, 3, 6, 10]");
        assert_eq!(
            render("{{ it.accumulate([1, 2, 3, 4], initial=100) }}"),
            "[100, 101, 103, 106, 110]"
        );
        assert_eq!(
            render("{{ it.accumulate(['a', 'b', 'c']) }}"),
            "['a', 'ab', 'abc']"
        );
        assert_eq!(
            render(
                "{% macro dash(a, b) %}{{ a }}-{{ b }}{% endmacro %}\
                 {{ it.accumulate(['a', 'b', 'c'], dash) | join(',') }}"
            ),
            "a,a-b,a-b-c"
        );
        assert_eq!(
            render(
                "{% macro add(a, b) %}{{ a + b }}{% endmacro %}\
                 {{ it.starmap(add, [(1, 2), (3, 4)]) | join(',') }}"
            ),
            "3,7"
        );
        assert_eq!(render("{{ it.tee([1, 2]) }}"), "([1, 2], [1, 2])");
        assert_eq!(render("{{ it.repeat('x', 3) }}"), "['x', 'x', 'x']");
    }

    #[test]
    fn endless_iterators_are_lazy() {
        assert_eq!(render("{{ it.islice(it.count(), 5) }}"), "[0, 1, 2, 3, 4]");
        assert_eq!(
            render("{{ it.islice(it.count(2.5, 0.5), 3) }}"),
            "[2.5, 3.0, 3.5]"
        );
        assert_eq!(render("{{ it.islice(it.cycle('ab'), 5) | join }}"), "ababa");
        assert_eq!(render("{{ it.islice(it.repeat(7), 2) }}"), "[7, 7]");
        assert_eq!(
            render(
                "{% for n in it.count(10, 5) %}{% if n > 20 %}{% break %}{% endif %}{{ n }} {% endfor %}"
            ),
            "10 15 20 "
        );
        assert_eq!(render("{{ it.count(3) }}"), "count(3)");
        // dbt leaves `groupby` out (Jinja has a groupby filter).
        assert_eq!(render("{{ it.groupby is defined }}"), "False");
    }
}
