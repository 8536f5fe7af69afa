//! The floor of a cold compile: the work `xform compile` as specified (SQL check, compiled
//! files and manifest included) must do whatever its code, done with nothing else, to compare
//! xform's cold compile with (as `bench/run.py` compares a build with DuckDB alone running the
//! same statements).
//!
//! ```sh
//! cargo run --release --example compile_floor -- PROJECT REFERENCE_TARGET OUT_DIR [RUNS]
//! ```
//!
//! `REFERENCE_TARGET` is the `target/` of an earlier `xform compile` of `PROJECT`: its compiled
//! files and manifest stand for the output of rendering, which the floor does not redo. Untimed
//! setup reads them, takes the models from the manifest and recovers each one's own SQL
//! (injected ephemeral CTEs cut out, as xform parses each body once). Each timed run then:
//!
//! 1. reads every file of the project that a compile reads (its YAML and the `.sql`, `.yml`,
//!    `.csv` and `.md` files of dbt's default folders),
//! 2. on all cores at once: parses each model's SQL with sqlparser (DuckDB dialect) and writes
//!    every compiled file and the manifest into `OUT_DIR/run-K`, a folder that never existed.
//!
//! It prints `bodies N bytes B unrecovered U failed F` (U: models whose injected CTEs could
//! not be cut out, parsed whole; F: bodies sqlparser rejects), then one line per run,
//! `floor <seconds>`, timed inside the process (no start-up or exit); nothing is deleted.

use rayon::prelude::*;
use sqlparser::dialect::DuckDbDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};
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

    // Untimed: what rendering would have produced. The models are the reference manifest's.
    let manifest_bytes =
        std::fs::read(reference.join("manifest.json")).expect("reference manifest");
    let manifest: serde_json::Value =
        serde_json::from_slice(&manifest_bytes).expect("reference manifest is JSON");
    let model_files: std::collections::HashSet<PathBuf> = manifest["nodes"]
        .as_object()
        .expect("manifest nodes")
        .values()
        .filter(|n| n["resource_type"] == "model")
        .filter_map(|n| n["compiled_path"].as_str())
        .filter_map(|p| project.join(p).canonicalize().ok())
        .collect();
    let mut outputs: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    let mut bodies: Vec<String> = Vec::new();
    let mut unrecovered = 0;
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
        if entry
            .path()
            .canonicalize()
            .is_ok_and(|p| model_files.contains(&p))
        {
            let text = std::str::from_utf8(&bytes).expect("UTF-8 SQL");
            let body = own_sql(text).unwrap_or_else(|| {
                eprintln!(
                    "floor: could not cut the injected CTEs out of {}",
                    rel.display()
                );
                unrecovered += 1;
                text.to_owned()
            });
            if std::env::var_os("FLOOR_SHOW").is_some_and(|s| rel.ends_with(s)) {
                eprintln!("{body}");
            }
            bodies.push(body);
        }
        outputs.push((rel, bytes));
    }
    outputs.push((PathBuf::from("manifest.json"), manifest_bytes));
    drop(manifest);
    let parsed_bytes: usize = bodies.iter().map(String::len).sum();
    let failed = bodies
        .iter()
        .filter(|sql| Parser::parse_sql(&DuckDbDialect {}, sql).is_err())
        .count();
    let mut folders: Vec<&Path> = outputs.iter().filter_map(|(p, _)| p.parent()).collect();
    folders.sort_unstable();
    folders.dedup();
    // For bench/run.py: models found, bytes parsed, bodies whose injected CTEs could not be cut
    // out (parsed whole), bodies sqlparser rejects (a rejected body costs less than a parse).
    println!(
        "bodies {} bytes {parsed_bytes} unrecovered {unrecovered} failed {failed}",
        bodies.len()
    );
    eprintln!(
        "floor: {} files to write ({} bytes) in {} folders; {} model bodies to parse ({parsed_bytes} bytes)",
        outputs.len(),
        outputs.iter().map(|(_, b)| b.len()).sum::<usize>(),
        folders.len(),
        bodies.len(),
    );

    for _ in 0..runs {
        let dir = fresh_dir(out);
        let start = Instant::now();
        let read = read_project(project);
        rayon::join(
            || {
                bodies.par_iter().for_each(|sql| {
                    let _ = Parser::parse_sql(&DuckDbDialect {}, sql);
                });
            },
            || {
                // Each folder once, as xform does, then the files on all cores.
                for folder in &folders {
                    std::fs::create_dir_all(dir.join(folder)).expect("create folder");
                }
                outputs.par_iter().for_each(|(rel, bytes)| {
                    std::fs::write(dir.join(rel), bytes).expect("write file");
                });
            },
        );
        let seconds = start.elapsed().as_secs_f64();
        println!("floor {seconds:.4}");
        eprintln!("floor: read {read} project bytes");
    }
}

/// A compiled model's own SQL: without the `__dbt__cte__` CTEs injected in front of it. The
/// injected list follows the leading comments as `with [recursive] __dbt__cte__a as (...), …`;
/// then comes the model's SQL, after a comma when the model had its own `with` (which the list
/// joined). `None` when the list cannot be walked.
fn own_sql(compiled: &str) -> Option<String> {
    let start = leading_trivia(compiled);
    let rest = &compiled[start..];
    let Some(with) = word_at(rest, 0, "with") else {
        return Some(compiled.to_owned());
    };
    let recursive = word_at(rest, with, "recursive");
    let keyword_end = recursive.unwrap_or(with);
    let list = keyword_end + (rest[keyword_end..].len() - rest[keyword_end..].trim_start().len());
    if !rest[list..].starts_with("__dbt__cte__") {
        return Some(compiled.to_owned());
    }
    let tail = &rest[list..];
    let tokens: Vec<_> = Tokenizer::new(&DuckDbDialect {}, tail)
        .tokenize_with_location()
        .ok()?
        .into_iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .collect();
    let is_cte = |t: Option<&TokenWithSpan>| matches!(t.map(|t| &t.token), Some(Token::Word(w)) if w.value.starts_with("__dbt__cte__"));
    let mut k = 0;
    loop {
        // `__dbt__cte__name as (` … the matching `)`.
        if !is_cte(tokens.get(k)) || tokens.get(k + 2)?.token != Token::LParen {
            return None;
        }
        k += 2;
        let mut depth = 0usize;
        loop {
            match tokens.get(k)?.token {
                Token::LParen => depth += 1,
                Token::RParen => depth = depth.checked_sub(1)?,
                _ => {}
            }
            k += 1;
            if depth == 0 {
                break;
            }
        }
        let comma = tokens.get(k).is_some_and(|t| t.token == Token::Comma);
        if comma && is_cte(tokens.get(k + 1)) {
            k += 1;
            continue;
        }
        let head = &compiled[..start];
        let Some(first) = tokens.get(k + usize::from(comma)) else {
            // Nothing after the list: the model's SQL rendered empty.
            return Some(head.to_owned());
        };
        let own = &tail[byte_offset(tail, first.span.start.line, first.span.start.column)..];
        return Some(if comma {
            format!("{head}{} {own}", &rest[..keyword_end])
        } else {
            format!("{head}{own}")
        });
    }
}

/// Where the keyword `word` (any case) that starts at or after `from` in `text`, after
/// whitespace, ends; `None` when another word is there.
fn word_at(text: &str, from: usize, word: &str) -> Option<usize> {
    let rest = &text[from..];
    let at = from + (rest.len() - rest.trim_start().len());
    let candidate = text.get(at..at + word.len())?;
    let next = text[at + word.len()..].chars().next();
    (candidate.eq_ignore_ascii_case(word) && next.is_some_and(char::is_whitespace))
        .then_some(at + word.len())
}

/// The length of the comments and whitespace a query starts with.
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
