//! `xform docs generate`: compile (as `xform compile`), read what the database holds for each
//! relation, and write `target/catalog.json` and the site, `target/index.html`.

use super::compile::compile_selected;
use super::{EXIT_OK, EXIT_USAGE, Session, report};
use crate::artifacts::catalog::{Catalog, write_catalog};
use crate::cli::DocsGenerateArgs;

pub fn generate(s: &Session, args: &DocsGenerateArgs) -> i32 {
    let done = match compile_selected(s, &args.common, false) {
        Ok(done) => done,
        Err(code) => return code,
    };
    let catalog = if args.empty_catalog {
        Catalog::default()
    } else {
        read_catalog(s)
    };
    let written = write_catalog(
        &s.target_dir,
        &s.project.name,
        &s.target,
        &s.run,
        &done.graph,
        &catalog,
    )
    .and_then(|()| {
        crate::docs::write_site(
            &s.target_dir,
            &s.project.name,
            &s.target,
            &s.run,
            &done.graph,
            &done.sql,
            &catalog,
        )
    });
    let relations = done
        .graph
        .nodes
        .iter()
        .filter(|n| catalog.table_of(n, &s.target).is_some())
        .count();
    let nodes = done.graph.nodes.len();
    std::mem::forget(done);
    match written {
        Ok(page) => {
            println!(
                "Wrote {} ({nodes} nodes) and catalog.json ({relations} relations)",
                page.display()
            );
            EXIT_OK
        }
        Err(p) => {
            report(&[p]);
            EXIT_USAGE
        }
    }
}

/// The target database's tables and columns, read-only. A project not built yet, or a
/// database that cannot be opened, gives an empty catalog and a warning: the site still shows
/// what the YAML declares.
#[cfg(feature = "duckdb")]
fn read_catalog(s: &Session) -> Catalog {
    let location = s.target.location();
    if !crate::adapter::data_exists(&s.target) {
        eprintln!(
            "warning: no database at {location} yet: catalog.json lists no relation; run `xform build` first for column types"
        );
        return Catalog::default();
    }
    let read = crate::adapter::open(&s.target, true).and_then(|warehouse| {
        let worker = warehouse.connect()?;
        let tables = worker.catalog().map_err(|e| {
            crate::diagnostics::Problem::new(crate::diagnostics::Code::Database, e.message)
        });
        drop(worker);
        drop(warehouse);
        tables
    });
    let read = read.map_err(|p| p.message);
    match read {
        Ok(tables) => Catalog::new(tables),
        Err(message) => {
            eprintln!(
                "warning: could not read the tables of {location}: {message}; catalog.json lists no relation"
            );
            Catalog::default()
        }
    }
}

#[cfg(not(feature = "duckdb"))]
fn read_catalog(_s: &Session) -> Catalog {
    eprintln!("warning: this xform was built without DuckDB: catalog.json lists no relation");
    Catalog::default()
}
