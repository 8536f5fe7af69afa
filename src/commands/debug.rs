//! `xform debug`: what project, profile, target and database a run would use.

use super::{EXIT_OK, EXIT_USAGE, Session, report};

pub fn debug(s: &Session) -> i32 {
    let t = &s.target;
    println!("xform {}", env!("CARGO_PKG_VERSION"));
    println!(
        "project:      {} ({})",
        s.project.name,
        s.project.root.join(&s.project.file.name).display()
    );
    println!("models:       {}", s.project.models.len());
    println!("seeds:        {}", s.project.seeds.len());
    println!("macro files:  {}", s.project.macro_files.len());
    match &t.profiles_file {
        Some(p) => println!("profile:      {} ({})", t.profile_name, p.display()),
        None => println!("profile:      none found; using the embedded default"),
    }
    println!(
        "{}",
        crate::env::mask(&format!(
            "target:       {} (type {}, schema {}, threads {})",
            t.name,
            t.adapter_type(),
            t.schema,
            t.threads
        ))
    );
    // The schema, database and file may come from secret variables: masked.
    println!(
        "{}",
        crate::env::mask(&format!("database:     {} ({})", t.database, t.location()))
    );
    // A warehouse: log in (or get a token) and run one statement, as `dbt debug` tests a
    // connection.
    let probe: Option<(&str, String, Result<(), String>, &str)> = match &t.credentials {
        crate::config::Credentials::Snowflake(sf) => {
            let client = match crate::adapter::snowflake::Client::login(t, sf) {
                Ok(c) => c,
                Err(p) => {
                    report(&[p]);
                    return EXIT_USAGE;
                }
            };
            Some((
                "Snowflake",
                crate::adapter::snowflake::endpoint(sf),
                client
                    .query("select 1")
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                "check the profile's `warehouse` and `role`: the session needs both to run queries",
            ))
        }
        crate::config::Credentials::BigQuery(bq) => {
            let client = match crate::adapter::bigquery::Client::open(t, bq) {
                Ok(c) => c,
                Err(p) => {
                    report(&[p]);
                    return EXIT_USAGE;
                }
            };
            Some((
                "BigQuery",
                crate::adapter::bigquery::endpoint(bq),
                client
                    .query("select 1")
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                "check `project`, `location` and `api_endpoint` in the profile, and that the credentials may run jobs in the project",
            ))
        }
        crate::config::Credentials::DuckDb(_) => None,
    };
    if let Some((warehouse, endpoint, ran, help)) = probe {
        return match ran {
            Ok(()) => {
                println!("connection:   OK ({warehouse} at {endpoint})");
                EXIT_OK
            }
            Err(e) => {
                report(&[crate::diagnostics::Problem::new(
                    crate::diagnostics::Code::Database,
                    format!(
                        "target `{}` of profile `{}`: {warehouse} ran no statement: {e}",
                        t.name, t.profile_name
                    ),
                )
                .help(help)]);
                EXIT_USAGE
            }
        };
    }
    #[cfg(feature = "duckdb")]
    {
        match crate::adapter::open(t, false) {
            Ok(w) => println!(
                "{}",
                crate::env::mask(&format!("connection:   OK (catalog `{}`)", w.database()))
            ),
            Err(p) => {
                report(&[p]);
                return EXIT_USAGE;
            }
        }
    }
    let _ = EXIT_USAGE;
    EXIT_OK
}
