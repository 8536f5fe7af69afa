//! The floor of a cold compile: the work every `xform compile` must do whatever its code, done
//! with nothing else, to compare xform's cold compile with (as `bench/run.py` compares a build
//! with DuckDB alone running the same statements).
//!
//! ```sh
//! cargo run --release --example compile_floor -- PROJECT REFERENCE_TARGET OUT_DIR [RUNS]
//! ```
//!
//! `REFERENCE_TARGET` is the `target/` of an earlier `xform compile` of `PROJECT`: its compiled
//! files and manifest stand for the output of rendering, which the floor does not redo. Untimed
//! setup reads them and recovers each model's own SQL (injected ephemeral CTEs cut out, as
//! xform parses each body once). Each timed run then:
//!
//! 1. reads every file of the project that a compile reads (its YAML and the `.sql`, `.yml`,
//!    `.csv` and `.md` files of dbt's default folders),
//! 2. on all cores at once: parses each model's SQL with sqlparser (DuckDB dialect) and writes
//!    every compiled file and the manifest into `OUT_DIR/run-K`, a folder that never existed.
//!
//! It prints one line per run, `floor <seconds>`; nothing is deleted.

use rayon::prelude::*;
use sqlparser::dialect::DuckDbDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};
use std::path::{Path, PathBuf};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [project, reference, out, rest @ ..] = args.as_slice() else {
        eprintln!("usage: compile_floor PROJECT REFERENCE_TARGET OUT_DIR [RUNS]");
        std::process::exit(2);
    };
    let runs: usize = rest
        .first()
        .map_or(1, |r| r.parse().expect("RUNS is a number"));
    let (project, reference, out) = (Path::new(project), Path::new(reference), Path::new(out));

    // Untimed: what rendering would have produced.
    let mut outputs: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    let mut bodies: Vec<String> = Vec::new();
    for entry in walkdir::WalkDir::new(reference.join("compiled")).sort_by_file_name() {
        let entry = entry.expect("reference target readable");
        if !entry.file_type().is_file() {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(reference)
            .expect("under the reference")
            .to_path_buf();
        let bytes = std::fs::read(entry.path()).expect("compiled file readable");
        if is_model(&rel) {
            let body = own_sql(std::str::from_utf8(&bytes).expect("UTF-8 SQL"));
            if std::env::var_os("FLOOR_SHOW").is_some_and(|s| rel.ends_with(s)) {
                eprintln!("{body}");
            }
            bodies.push(body);
        }
        outputs.push((rel, bytes));
    }
    outputs.push((
        PathBuf::from("manifest.json"),
        std::fs::read(reference.join("manifest.json")).expect("reference manifest"),
    ));
    let parsed_bytes: usize = bodies.iter().map(String::len).sum();
    eprintln!(
        "floor: {} files to write ({} bytes), {} model bodies to parse ({parsed_bytes} bytes)",
        outputs.len(),
        outputs.iter().map(|(_, b)| b.len()).sum::<usize>(),
        bodies.len(),
    );

    for _ in 0..runs {
        let dir = fresh_dir(out);
        let start = Instant::now();
        let read = read_project(project);
        let (failed, ()) = rayon::join(
            || {
                bodies
                    .par_iter()
                    .filter(|sql| Parser::parse_sql(&DuckDbDialect {}, sql).is_err())
                    .count()
            },
            || {
                outputs.par_iter().for_each(|(rel, bytes)| {
                    let path = dir.join(rel);
                    if let Some(parent) = path.parent() {
                        std::fs::create_dir_all(parent).expect("create folder");
                    }
                    std::fs::write(&path, bytes).expect("write file");
                });
            },
        );
        let seconds = start.elapsed().as_secs_f64();
        println!("floor {seconds:.4}");
        eprintln!("floor: read {read} project bytes; {failed} bodies did not parse");
    }
}

/// A compiled model, not a test: under `compiled/<project>/models/`, outside a YAML file's
/// folder of generic tests.
fn is_model(rel: &Path) -> bool {
    let parts: Vec<&str> = rel.iter().filter_map(|p| p.to_str()).collect();
    parts.get(2) == Some(&"models")
        && rel.extension().is_some_and(|e| e == "sql")
        && !parts
            .iter()
            .any(|p| has_extension(Path::new(p), &["yml", "yaml"]))
}

/// A compiled model's own SQL: without the `__dbt__cte__` CTEs injected in front of it
/// (`with __dbt__cte__a as (...), __dbt__cte__b as (...)` followed by the model's SQL, whose own
/// `with` became a comma).
fn own_sql(compiled: &str) -> String {
    // The first mention is the injected list's first name, right after its `with`.
    let Some(name) = compiled.find("__dbt__cte__") else {
        return compiled.to_owned();
    };
    let start = compiled[..name].trim_end().len() - "with".len();
    let tail = &compiled[start..];
    let tokens: Vec<_> = Tokenizer::new(&DuckDbDialect {}, tail)
        .tokenize_with_location()
        .expect("compiled SQL tokenizes")
        .into_iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .collect();
    // tokens[0] is `with`; then `name as ( ... )` repeated, separated by commas.
    let mut k = 1;
    loop {
        k += 2; // the name and `as`
        let mut depth = 0usize;
        loop {
            match tokens[k].token {
                Token::LParen => depth += 1,
                Token::RParen => depth -= 1,
                _ => {}
            }
            k += 1;
            if depth == 0 {
                break;
            }
        }
        let next_is_cte =
            |t: &Token| matches!(t, Token::Word(w) if w.value.starts_with("__dbt__cte__"));
        if tokens[k].token == Token::Comma && next_is_cte(&tokens[k + 1].token) {
            k += 1;
            continue;
        }
        let merged = tokens[k].token == Token::Comma;
        let first = if merged { &tokens[k + 1] } else { &tokens[k] };
        let own = &tail[byte_offset(tail, first.span.start.line, first.span.start.column)..];
        let head = &compiled[..start];
        return if merged {
            format!("{head}with {own}")
        } else {
            format!("{head}{own}")
        };
    }
}

/// The byte offset of a 1-based line and column (in characters) of `text`.
fn byte_offset(text: &str, line: u64, column: u64) -> usize {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(usize::try_from(line).expect("line fits") - 1)
        .map(str::len)
        .sum();
    let col = usize::try_from(column).expect("column fits") - 1;
    line_start
        + text[line_start..]
            .char_indices()
            .nth(col)
            .map_or(text.len() - line_start, |(i, _)| i)
}

/// Reads every file a compile reads (the project's YAML at its root and the files of dbt's
/// default folders) and returns how many bytes that was.
fn read_project(project: &Path) -> usize {
    const FOLDERS: [&str; 6] = [
        "models",
        "seeds",
        "macros",
        "tests",
        "snapshots",
        "analyses",
    ];
    let root = std::fs::read_dir(project)
        .expect("project readable")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && has_extension(p, &["yml", "yaml"]));
    let files: Vec<PathBuf> = FOLDERS
        .iter()
        .flat_map(|f| walkdir::WalkDir::new(project.join(f)))
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_type().is_file() && has_extension(e.path(), &["sql", "yml", "yaml", "csv", "md"])
        })
        .map(walkdir::DirEntry::into_path)
        .chain(root)
        .collect();
    files
        .par_iter()
        .map(|p| std::fs::read(p).map_or(0, |b| b.len()))
        .sum()
}

fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    path.extension()
        .and_then(|x| x.to_str())
        .is_some_and(|x| extensions.contains(&x))
}

/// `OUT/run-K` for the first K that does not exist yet.
fn fresh_dir(out: &Path) -> PathBuf {
    (0..u32::MAX)
        .map(|k| out.join(format!("run-{k}")))
        .find(|d| !d.exists())
        .expect("a free name")
}
