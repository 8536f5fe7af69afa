//! The command layer: turns parsed flags into a `Session`, runs one subcommand, prints
//! diagnostics and returns the exit code (0 success, 1 a node failed, 2 usage or project error,
//! 130 interrupted).

mod clean;
mod compile;
mod debug;
mod deps;
mod docs;
mod dry_run;
#[cfg(feature = "duckdb")]
mod execute;
#[cfg(feature = "duckdb")]
mod freshness;
mod ls;
#[cfg(feature = "duckdb")]
mod retry;
#[cfg(feature = "duckdb")]
mod run_operation;
#[cfg(feature = "duckdb")]
mod show;

use std::io::IsTerminal;
use std::path::PathBuf;

use crate::cli::{Cli, Command, CommonArgs, DocsArgs, DocsCommand, ProjectArgs};
use crate::config::RunInfo;
use crate::config::{Session, resolve_target};
use crate::diagnostics::{Code, Problem, render_plain};
use crate::project::Project;

pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_INTERRUPTED: i32 = 130;

/// Print problems to stderr: with colour on a terminal, plain otherwise.
pub fn report(problems: &[Problem]) {
    let tty = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let width = if tty { 100 } else { 80 };
    for p in problems {
        let text = if tty {
            let handler =
                miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode())
                    .with_width(width)
                    .with_wrap_lines(!p.preformatted);
            let mut out = String::new();
            let _ = handler.render_report(&mut out, p);
            out
        } else {
            render_plain(p, width)
        };
        eprint!("{}", crate::env::mask(&text));
    }
}

/// An open warehouse and a connection to it.
#[cfg(feature = "duckdb")]
type Connected = (
    std::sync::Arc<dyn crate::adapter::Adapter>,
    std::sync::Arc<dyn crate::adapter::Connection>,
);

/// The target's warehouse, open, and a connection to it (for commands that ask it questions
/// outside a run: `show`, `run-operation`, `source freshness`).
#[cfg(feature = "duckdb")]
fn connect(s: &Session) -> Result<Connected, Problem> {
    let warehouse = crate::adapter::open(&s.target, false)?;
    let worker = warehouse.connect()?;
    Ok((warehouse, worker))
}

/// Fixed run time when `SOURCE_DATE_EPOCH` is set, so artifacts can be byte-identical.
fn run_info(command: &str, full_refresh: bool) -> RunInfo {
    let fixed = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0));
    let invocation_id = match fixed {
        Some(t) => uuid::Uuid::from_u128(u128::try_from(t.timestamp()).unwrap_or(0)).to_string(),
        None => uuid::Uuid::new_v4().to_string(),
    };
    RunInfo {
        invocation_id,
        started_at: fixed.unwrap_or_else(chrono::Utc::now),
        full_refresh,
        command: command.to_string(),
        empty: false,
    }
}

impl Session {
    pub fn load(
        args: &ProjectArgs,
        threads: Option<usize>,
        full_refresh: bool,
        command: &str,
    ) -> Result<Session, Vec<Problem>> {
        let dir = args
            .project_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("."));
        let dir = std::fs::canonicalize(&dir).map_err(|e| {
            vec![
                Problem::new(
                    Code::ProjectNotFound,
                    format!("cannot open the project folder `{}`: {e}", dir.display()),
                )
                .help("pass an existing folder to --project-dir"),
            ]
        })?;
        let mut project = Project::load(&dir, args.vars.as_deref())?;
        // --target-path replaces the project's target-path, and so the default clean-targets.
        if let Some(path) = &args.target_path {
            let path = path.to_string_lossy().replace('\\', "/");
            if project.clean_targets == [project.target_path.clone()] {
                project.clean_targets = vec![path.clone()];
            }
            project.target_path = path;
        }
        if threads == Some(0) {
            return Err(vec![Problem::new(
                Code::ProjectConfig,
                "--threads must be at least 1",
            )]);
        }
        let resolved = resolve_target(
            &project,
            args.profiles_dir.as_deref(),
            args.target.as_deref(),
            threads,
        )
        .map_err(|p| vec![p])?;
        let target = resolved.target;
        let target_dir = project.root.join(&project.target_path);
        report(&project.warnings);
        report(&resolved.warnings);
        Ok(Session {
            project,
            target,
            run: run_info(command, full_refresh),
            target_dir,
        })
    }
}

fn with_session(args: &CommonArgs, command: &str, f: impl FnOnce(Session) -> i32) -> i32 {
    match Session::load(&args.project, args.threads, args.full_refresh, command) {
        Ok(mut s) => {
            crate::timings::mark("load project");
            s.run.empty = args.empty;
            f(s)
        }
        Err(problems) => {
            report(&problems);
            EXIT_USAGE
        }
    }
}

#[cfg(feature = "duckdb")]
fn execute_command(args: &CommonArgs, mode: crate::execute::Mode) -> i32 {
    if args.dry_run {
        return with_session(args, mode.name(), |s| dry_run::dry_run(&s, args));
    }
    with_session(args, mode.name(), |s| execute::execute(&s, args, mode))
}

#[cfg(not(feature = "duckdb"))]
fn execute_command(_args: &CommonArgs, _mode: ()) -> i32 {
    report(&[
        Problem::new(Code::Database, "this xform was built without DuckDB")
            .help("rebuild with the default features"),
    ]);
    EXIT_USAGE
}

/// The nodes a command works on: `--selector` or `--select`, less `--exclude`, of these types.
fn choose(
    s: &Session,
    graph: &crate::graph::Graph,
    args: &CommonArgs,
    types: &[crate::graph::ResourceType],
) -> Result<crate::select::Selection, Problem> {
    let state = previous_state(args)?.with_current_sources(&s.target_dir);
    let selector = match &args.selector {
        Some(name) => Some(crate::select::named_selector(
            graph,
            &state,
            &s.project.root,
            name,
        )?),
        None => None,
    };
    let indirect = match args.indirect_selection.as_deref() {
        None => crate::select::Indirect::default(),
        Some(mode) => crate::select::Indirect::parse(mode).ok_or_else(|| {
            Problem::new(
                crate::diagnostics::Code::Selection,
                format!("unknown --indirect-selection `{mode}`"),
            )
            .help("use eager (the default), cautious, buildable or empty")
        })?,
    };
    crate::select::select_with(
        graph,
        &args.select,
        &args.exclude,
        types,
        &state,
        selector,
        indirect,
    )
}

/// The earlier run named by `--state`, or nothing to compare with.
/// `--defer`: read the unselected models, seeds and snapshots from the relations of the
/// `--state` manifest: those the target lacks (all of them with `--favor-state`), when the
/// state's relation exists. `exists` answers whether the database has a relation, `None`
/// when there is no database to ask (`xform compile` before the first build): then the target
/// lacks everything and the state's relations are taken as they are, as dbt's compile does.
/// Prints what is deferred; call before compiling anything.
pub(crate) fn apply_defer(
    compiler: &mut crate::compile::Compiler<'_>,
    graph: &crate::graph::Graph,
    selected: &dyn Fn(usize) -> bool,
    exists: &dyn Fn(&crate::render::Relation) -> Option<bool>,
    args: &CommonArgs,
) -> Result<(), Problem> {
    use crate::graph::ResourceType;
    let state = previous_state(args)?;
    let mut relations = Vec::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        if selected(i)
            || node.is_ephemeral()
            || !matches!(
                node.resource_type,
                ResourceType::Model | ResourceType::Seed | ResourceType::Snapshot
            )
            || (!args.favor_state && exists(&node.relation) == Some(true))
        {
            continue;
        }
        let Some(rel) = state.relation_of(&node.unique_id) else {
            continue;
        };
        if rel.to_string() == node.relation.to_string() {
            continue;
        }
        if exists(rel) == Some(false) {
            if !args.favor_state {
                eprintln!(
                    "warning: --defer: `{}` is not in the target, and {rel} from the state is not in the database either; \
                     if the state was built in another DuckDB file, attach it with `attach:` in the target's profile",
                    node.name
                );
            }
            continue;
        }
        // Every name ref() finds the node by (a version's `m_v2`, and `m` for the latest).
        for name in node.ref_names() {
            relations.push((name.to_string(), rel.clone()));
        }
    }
    if !relations.is_empty() {
        let names: Vec<&str> = relations.iter().map(|(n, _)| n.as_str()).collect();
        println!(
            "Deferring {} unselected node{} to {}: {}",
            names.len(),
            if names.len() == 1 { "" } else { "s" },
            args.state
                .as_deref()
                .unwrap_or_else(|| std::path::Path::new(""))
                .display(),
            names.join(", ")
        );
    }
    compiler.defer(relations);
    Ok(())
}

pub(crate) fn previous_state(args: &CommonArgs) -> Result<crate::select::PreviousState, Problem> {
    match &args.state {
        Some(dir) => crate::select::PreviousState::load(dir),
        None => Ok(crate::select::PreviousState::default()),
    }
}

pub fn dispatch(cli: Cli) -> i32 {
    match cli.command {
        Command::Compile(args) => {
            with_session(&args.common, "compile", |s| compile::compile(&s, &args))
        }
        #[cfg(feature = "duckdb")]
        Command::Run(args) => execute_command(&args, crate::execute::Mode::Run),
        #[cfg(feature = "duckdb")]
        Command::Seed(args) => execute_command(&args, crate::execute::Mode::Seed),
        #[cfg(feature = "duckdb")]
        Command::Snapshot(args) => execute_command(&args, crate::execute::Mode::Snapshot),
        #[cfg(feature = "duckdb")]
        Command::Build(args) => execute_command(&args, crate::execute::Mode::Build),
        #[cfg(feature = "duckdb")]
        Command::Test(args) => execute_command(&args, crate::execute::Mode::Test),
        #[cfg(feature = "duckdb")]
        Command::Retry(args) => with_session(&args, "retry", |mut s| retry::retry(&mut s, &args)),
        #[cfg(not(feature = "duckdb"))]
        Command::Run(args)
        | Command::Seed(args)
        | Command::Snapshot(args)
        | Command::Build(args)
        | Command::Test(args)
        | Command::Retry(args) => execute_command(&args, ()),
        Command::Ls(args) => with_session(&args.common, "ls", |s| ls::ls(&s, &args)),
        Command::Clean(args) => {
            let common = CommonArgs {
                project: args,
                ..CommonArgs::default()
            };
            with_session(&common, "clean", |s| clean::clean(&s))
        }
        Command::Deps(args) => deps::deps(&args),
        #[cfg(feature = "duckdb")]
        Command::RunOperation(args) => with_session(&args.common, "run-operation", |s| {
            run_operation::run_operation(&s, &args)
        }),
        #[cfg(not(feature = "duckdb"))]
        Command::RunOperation(args) => execute_command(&args.common, ()),
        Command::Debug(args) => with_session(&args, "debug", |s| debug::debug(&s)),
        #[cfg(feature = "duckdb")]
        Command::Show(args) => with_session(&args.common, "show", |s| show::show(&s, &args)),
        #[cfg(not(feature = "duckdb"))]
        Command::Show(args) => execute_command(&args.common, ()),
        Command::Parse(args) => with_session(&args, "parse", |s| compile::parse_only(&s)),
        #[cfg(feature = "duckdb")]
        Command::Source(crate::cli::SourceArgs {
            command: crate::cli::SourceCommand::Freshness(args),
        }) => with_session(&args.common, "source freshness", |s| {
            freshness::freshness(&s, &args)
        }),
        #[cfg(not(feature = "duckdb"))]
        Command::Source(crate::cli::SourceArgs {
            command: crate::cli::SourceCommand::Freshness(args),
        }) => execute_command(&args.common, ()),
        Command::Docs(DocsArgs {
            command: DocsCommand::Generate(args),
        }) => with_session(&args.common, "docs generate", |s| docs::generate(&s, &args)),
    }
}
