//! `xform deps`: install the project's packages (`crate::deps`) and say what was installed.

use std::path::PathBuf;

use super::{EXIT_OK, EXIT_USAGE, report};
use crate::cli::DepsArgs;
use crate::deps::{DEFAULT_HUB, Options, run};

pub fn deps(args: &DepsArgs) -> i32 {
    let dir = args
        .project
        .project_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("."));
    let outcome = crate::project::packages_install_path(&dir).and_then(|install_path| {
        let options = Options {
            upgrade: args.upgrade,
            lock_only: args.lock,
            hub_url: std::env::var("DBT_PACKAGE_HUB_URL")
                .unwrap_or_else(|_| DEFAULT_HUB.to_string()),
        };
        run(&dir, &install_path, &options).map(|o| (o, install_path))
    });
    let (outcome, install_path) = match outcome {
        Ok(found) => found,
        Err(problem) => {
            report(&[problem]);
            return EXIT_USAGE;
        }
    };
    report(&outcome.warnings);
    if outcome.installed.is_empty() {
        println!(
            "No packages to install: the project has no packages.yml or dependencies.yml entries"
        );
        return EXIT_OK;
    }
    let verb = if args.lock { "Resolved" } else { "Installed" };
    for package in &outcome.installed {
        println!("{verb} {}", package.describe());
    }
    let source = if outcome.from_lock {
        "from package-lock.yml"
    } else {
        "package-lock.yml updated"
    };
    if args.lock {
        println!(
            "{} package(s) resolved; package-lock.yml updated",
            outcome.installed.len()
        );
    } else {
        println!(
            "{} package(s) installed in {install_path}/ ({source})",
            outcome.installed.len()
        );
    }
    EXIT_OK
}
