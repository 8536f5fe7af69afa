//! Command-line types (clap). Raw flags only: `config.rs` validates them into `Settings`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "xform",
    version,
    about = "A fast SQL transformation compiler in the family of dbt"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Render every selected model to SQL under target/compiled (no database needed)
    Compile(CompileArgs),
    /// Build the selected models in graph order
    Run(CommonArgs),
    /// Load CSV seeds into tables
    Seed(CommonArgs),
    /// Run the selected snapshots (slowly changing dimension tables)
    Snapshot(CommonArgs),
    /// Seeds, snapshots, models and their tests, in graph order
    Build(CommonArgs),
    /// Run the data tests of the selected nodes on relations already built
    Test(CommonArgs),
    /// Run again what errored, failed or was skipped in the last run
    Retry(CommonArgs),
    /// List the selected nodes
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Delete the folders listed in clean-targets
    Clean(ProjectArgs),
    /// Call a macro for what it does on the database: `xform run-operation grant_all --args '{role: x}'`
    RunOperation(RunOperationArgs),
    /// Install the packages of packages.yml into dbt_packages/ and write package-lock.yml
    Deps(DepsArgs),
    /// Show the project, profile, target and database in use
    Debug(CommonArgs),
    /// Preview the rows of a model's query (or of `--inline` SQL) without building anything
    Show(ShowArgs),
    /// Read the project and write target/manifest.json, without compiling or running anything
    Parse(CommonArgs),
    /// Sources: `xform source freshness`
    Source(SourceArgs),
    /// The documentation site: `xform docs generate`
    Docs(DocsArgs),
}

#[derive(Debug, Args, Clone, Default)]
pub struct RunOperationArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The macro: `name`, or `package.name`
    pub macro_name: String,
    /// Its keyword arguments, as a YAML mapping
    #[arg(long)]
    pub args: Option<String>,
}

#[derive(Debug, Args)]
pub struct SourceArgs {
    #[command(subcommand)]
    pub command: SourceCommand,
}

#[derive(Debug, Subcommand)]
pub enum SourceCommand {
    /// How long ago each source table was loaded, against its `freshness:` (target/sources.json)
    Freshness(FreshnessArgs),
}

#[derive(Debug, Args, Clone, Default)]
pub struct FreshnessArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Where to write the results instead of target/sources.json
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
}

#[derive(Debug, Args, Clone, Default)]
pub struct ShowArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// SQL to preview instead of a selected node (`ref()` and `source()` work)
    #[arg(long, conflicts_with = "selector")]
    pub inline: Option<String>,
    /// How many rows to show (-1: all)
    #[arg(long, default_value_t = 5, allow_negative_numbers = true)]
    pub limit: i64,
    /// text (a table) or json
    #[arg(long, short = 'o', default_value = "text")]
    pub output: String,
}

#[derive(Debug, Args, Clone, Default)]
pub struct DepsArgs {
    #[command(flatten)]
    pub project: ProjectArgs,
    /// Resolve the packages again even when package-lock.yml matches packages.yml
    #[arg(long)]
    pub upgrade: bool,
    /// Only resolve the packages and write package-lock.yml; install nothing
    #[arg(long)]
    pub lock: bool,
}

#[derive(Debug, Args, Clone, Default)]
pub struct CompileArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Warehouse targets: write the plan of a run on a warehouse where the project's relations
    /// exist (incremental models run incrementally) instead of a first run's
    #[arg(long)]
    pub assume_exists: bool,
    /// With --assume-exists: the catalog.json (`xform docs generate`) giving the columns of the
    /// existing relations, by node (default: catalog.json of --state, else target/catalog.json)
    #[arg(long, value_name = "FILE", requires = "assume_exists")]
    pub catalog: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DocsArgs {
    #[command(subcommand)]
    pub command: DocsCommand,
}

#[derive(Debug, Subcommand)]
pub enum DocsCommand {
    /// Compile, read the database's tables and columns, and write target/catalog.json and the
    /// site, target/index.html (one self-contained file)
    Generate(DocsGenerateArgs),
}

#[derive(Debug, Args, Clone, Default)]
pub struct DocsGenerateArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Do not read the database: catalog.json lists no relation, the site shows YAML columns only
    #[arg(long)]
    pub empty_catalog: bool,
}

#[derive(Debug, Args, Clone, Default)]
pub struct ProjectArgs {
    /// Folder holding xform.yml or dbt_project.yml (default: the current folder)
    #[arg(long, global = true)]
    pub project_dir: Option<PathBuf>,
    /// Folder holding profiles.yml
    #[arg(long, global = true)]
    pub profiles_dir: Option<PathBuf>,
    /// Target of the profile to use
    #[arg(long, short = 't', global = true)]
    pub target: Option<String>,
    /// Variables as a YAML mapping, overriding the project's vars
    #[arg(long, global = true)]
    pub vars: Option<String>,
    /// Folder for compiled SQL and artifacts, relative to the project (default: the project's
    /// target-path, `target`)
    #[arg(long, global = true, value_name = "DIR", env = "DBT_TARGET_PATH")]
    pub target_path: Option<PathBuf>,
}

#[derive(Debug, Args, Clone, Default)]
#[allow(clippy::struct_excessive_bools, reason = "each is a command-line flag")]
pub struct CommonArgs {
    #[command(flatten)]
    pub project: ProjectArgs,
    /// Nodes to select (by name; globs allowed)
    #[arg(long, short = 's', num_args = 1.., alias = "models", short_alias = 'm')]
    pub select: Vec<String>,
    /// Nodes to leave out
    #[arg(long, num_args = 1..)]
    pub exclude: Vec<String>,
    /// Number of nodes to build at once
    #[arg(long)]
    pub threads: Option<usize>,
    /// Drop and rebuild seeds and incremental models
    #[arg(long)]
    pub full_refresh: bool,
    /// Read every ref() and source() as zero rows: build the relations with their columns and
    /// no data (a schema-only check, as dbt's --empty)
    #[arg(long)]
    pub empty: bool,
    /// Which tests come along with the selected nodes: eager (any parent selected, the
    /// default), cautious (every parent selected), buildable (every parent selected or
    /// upstream of the selection) or empty (none)
    #[arg(long, value_name = "MODE", env = "DBT_INDIRECT_SELECTION")]
    pub indirect_selection: Option<String>,
    /// A selector defined in selectors.yml, instead of --select
    #[arg(long, value_name = "NAME")]
    pub selector: Option<String>,
    /// Folder with the manifest.json (and run_results.json) of an earlier run, for `state:` and
    /// `result:` selectors
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// Read unselected upstream models, seeds and snapshots that the target does not have from
    /// the relations named in the --state manifest
    #[arg(long, requires = "state")]
    pub defer: bool,
    /// With --defer: read every unselected upstream node from the state's relations, even when
    /// the target has it
    #[arg(long, requires = "defer")]
    pub favor_state: bool,
    /// Stop at the first failure: nodes not yet started are skipped
    #[arg(long, short = 'x')]
    pub fail_fast: bool,
    /// Microbatch models: build the batches from this time on (ISO date or timestamp)
    #[arg(long, value_name = "TIME")]
    pub event_time_start: Option<String>,
    /// Microbatch models: build the batches up to this time (default: now)
    #[arg(long, value_name = "TIME")]
    pub event_time_end: Option<String>,
    /// BigQuery: print the bytes each selected node's query would scan, and the total, from
    /// BigQuery's dry runs; nothing is built or billed
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args, Clone, Default)]
pub struct LsArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// name, path, selector or json
    #[arg(long, short = 'o', default_value = "selector")]
    pub output: String,
    /// With `--output json`: the keys of each node's manifest entry to print (space- or
    /// comma-separated, or repeated), instead of dbt's default set
    #[arg(long, value_name = "KEYS", num_args = 1..)]
    pub output_keys: Vec<String>,
    /// Restrict to a resource type (model, seed, snapshot, source, test)
    #[arg(long)]
    pub resource_type: Vec<String>,
}
