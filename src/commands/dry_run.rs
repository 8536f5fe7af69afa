//! `--dry-run` on BigQuery: before anything runs, what each selected node's query would scan,
//! from BigQuery's dry-run jobs (free: nothing is read, built or billed), and the total. Cost
//! is what a BigQuery user weighs before a build; this shows it node by node.
//!
//! A node's compiled query is what scans data (its statements around it move the rows the
//! query returns). A query that reads a relation this build has not made yet cannot be dry-run:
//! it is listed as not known, with the relation it waits for.

use std::fmt::Write as _;

use rayon::prelude::*;

use super::{EXIT_FAILED, EXIT_OK, EXIT_USAGE, report};
use crate::cli::CommonArgs;
use crate::config::{Credentials, Session};
use crate::diagnostics::{Code, Problem};
use crate::graph::ResourceType;

/// What BigQuery said of one node's query.
enum Estimate {
    Bytes(u64),
    /// It reads a relation that does not exist yet (BigQuery's message names it).
    Waits(String),
    Refused(String),
}

/// Bytes as BigQuery's console writes them: `12.3 MB` (powers of 1,024).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

pub fn dry_run(s: &Session, args: &CommonArgs) -> i32 {
    let Credentials::BigQuery(bq) = &s.target.credentials else {
        report(&[Problem::new(
            Code::Profile,
            format!(
                "--dry-run asks BigQuery what each node would scan; target `{}` is {}",
                s.target.name,
                crate::dialect::of(&s.target).name()
            ),
        )
        .help("choose a BigQuery target with --target, or leave out --dry-run")]);
        return EXIT_USAGE;
    };
    let client = match crate::adapter::bigquery::Client::open(&s.target, bq) {
        Ok(c) => c,
        Err(p) => {
            report(&[p]);
            return EXIT_USAGE;
        }
    };
    let done = match super::compile::compile_selected(s, args, false) {
        Ok(done) => done,
        Err(code) => return code,
    };
    let nodes: Vec<(usize, &str)> = done
        .sql
        .iter()
        .filter(|(i, _)| {
            matches!(
                done.graph.nodes[**i].resource_type,
                ResourceType::Model | ResourceType::Snapshot | ResourceType::Test
            ) && !done.graph.nodes[**i].is_ephemeral()
        })
        .map(|(&i, sql)| (i, &**sql))
        .collect();
    let estimates: Vec<Estimate> = nodes
        .par_iter()
        .map(|(_, sql)| match client.dry_run(sql) {
            Ok(answer) => Estimate::Bytes(answer.bytes.unwrap_or(0)),
            Err(e) if e.reason == "notFound" => Estimate::Waits(e.message),
            Err(e) => Estimate::Refused(e.to_string()),
        })
        .collect();
    let width = nodes
        .iter()
        .map(|(i, _)| done.graph.nodes[*i].name.len())
        .max()
        .unwrap_or(0);
    let (mut total, mut unknown) = (0u64, 0usize);
    let mut problems = Vec::new();
    for ((i, _), estimate) in nodes.iter().zip(&estimates) {
        let node = &done.graph.nodes[*i];
        let kind = node.resource_type.as_str();
        let what = match estimate {
            Estimate::Bytes(b) => {
                total += b;
                format!("{:>10}  ({b} bytes)", human_bytes(*b))
            }
            Estimate::Waits(why) => {
                unknown += 1;
                format!(
                    "{:>10}  (not known until this build makes what it reads: {why})",
                    "?"
                )
            }
            Estimate::Refused(why) => {
                let mut p = Problem::new(
                    Code::Database,
                    format!("{kind} `{}`: BigQuery refused its query: {why}", node.name),
                );
                if let Some(file) = &node.file {
                    p = p.at(file, 0, 0, "this node");
                }
                problems.push(p);
                format!("{:>10}  (refused)", "!")
            }
        };
        println!("{kind:<8} {:<width$}  {what}", node.name);
    }
    let mut line = format!(
        "Would scan {} ({total} bytes) in {} queries",
        human_bytes(total),
        nodes.len() - unknown - problems.len()
    );
    if unknown > 0 {
        let _ = write!(
            line,
            ", and {unknown} not known until their inputs are built"
        );
    }
    println!("{line}; nothing was built or billed");
    if problems.is_empty() {
        EXIT_OK
    } else {
        report(&problems);
        EXIT_FAILED
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn bytes_read_as_the_console_writes_them() {
        assert_eq!(super::human_bytes(512), "512 B");
        assert_eq!(super::human_bytes(1536), "1.5 KB");
        assert_eq!(super::human_bytes(5 * 1024 * 1024 * 1024), "5.0 GB");
    }
}
