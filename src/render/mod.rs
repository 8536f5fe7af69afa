//! Rendering with minijinja: one environment per run holding every model template and every
//! project macro, used twice: a parse pass (`execute` false) that records `ref()`, `source()`
//! and `config()` calls, and a compile pass (`execute` true) that produces the final SQL. A
//! render also reports whether its text could stand in for the compile pass's (`Rendered::
//! reusable`): whether it used anything whose value differs between the passes.
//!
//! The environment is built once and shared by all threads; per-model state travels in the
//! render context. This module turns minijinja errors into diagnostics that point into the
//! user's file (models and macro files alike) and knows nothing of the graph or the database.

mod arith;
mod boundary;
pub mod context;
mod database;
pub mod macros;
mod modules;
pub mod mutable;
pub mod spans;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock};

use minijinja::value::Value;
use minijinja::{Environment, UndefinedBehavior};
use rayon::prelude::*;
use serde_json::Value as Json;

use crate::project::blocks;
pub use crate::relation::Relation;
pub use boundary::{Introspect, QueryError, QueryTable, RefCall, Resolve, Resolved};
use context::ConfigObject;
pub use context::RenderCtx;
use database::AdapterObject;
use macros::{MacroObject, MacroSet};
use modules::{ExceptionsObject, ModulesObject};

use crate::config::{RunInfo, Target};
use crate::diagnostics::{Code, Problem, SourceFile};
use crate::project::unit_tests::Overrides;
use crate::project::{NodeConfig, Project};
use crate::relation::Quoting;

/// The built-in generic tests, as `{% test %}` blocks.
const BUILTIN_TESTS: &str = include_str!("builtin_tests.sql");
const BUILTIN_TESTS_FILE: &str = "<built-in tests>";
/// xform's versions of dbt's built-in macros (`dbt.dateadd`, `type_string`…), as `{% macro %}`
/// blocks of the package `dbt`.
const DBT_MACROS: &str = include_str!("dbt_macros.sql");
const DBT_MACROS_FILE: &str = "<dbt macros>";
const WAREHOUSE_MACROS: &str = include_str!("warehouse_macros.sql");
const WAREHOUSE_MACROS_FILE: &str = "<dbt macros for Snowflake and BigQuery>";

/// Where a template's text comes from: the file and the offset of the template in it.
#[derive(Debug, Clone)]
struct Origin {
    file: SourceFile,
    offset: usize,
    shifts: mutable::Shifts,
}

/// What one render needs to know about the model.
pub struct RenderRequest<'a> {
    pub template: &'a str,
    pub name: &'a str,
    pub unique_id: &'a str,
    pub execute: bool,
    pub is_incremental: bool,
    pub config: NodeConfig,
    pub this: Relation,
    pub resolver: Arc<dyn Resolve>,
    pub introspector: Option<Arc<dyn Introspect>>,
    /// Extra values in the model's context (`model`).
    pub model: Value,
}

/// What a render found out besides the SQL.
#[derive(Debug)]
pub struct Rendered {
    pub sql: String,
    pub config: NodeConfig,
    pub refs: Vec<RefCall>,
    pub sources: Vec<(String, String)>,
    /// The macros the template called itself (`depends_on.macros`).
    pub macros: Vec<String>,
    pub logs: Vec<String>,
    /// Every `ref()` and `source()` call with the relation it rendered as.
    pub resolved: Vec<Resolved>,
    /// A parse-pass render whose text is what the compile pass would render too, given the
    /// same relations (see `reads_run_state` and `RenderCtx::run_dependent`).
    pub reusable: bool,
}

/// A parse-pass render kept for the compile pass: valid while `this` and every relation in
/// `resolved` are still what the graph assigns.
#[derive(Debug, Clone)]
pub struct Prerendered {
    pub sql: Arc<str>,
    pub this: Relation,
    pub resolved: Vec<Resolved>,
}

impl Prerendered {
    /// Whether the compile pass, with `this` and `resolver`, would render the same text.
    pub fn still_valid(&self, this: &Relation, resolver: &dyn Resolve) -> bool {
        self.this == *this && self.resolved.iter().all(|r| r.agrees_with(resolver))
    }
}

/// Names a template may read whose value differs between the parse and the compile pass
/// (`execute`, `model`, `graph`), or that bring in other templates or dump the whole context. A
/// template or macro that mentions one anywhere, even in a comment, is rendered again with
/// `execute` true: a false alarm costs a render, a miss would cost correctness.
const RUN_STATE_NAMES: &[&str] = &[
    "execute", "model", "graph", "debug", "include", "import", "extends",
];

/// Whether a template's Jinja (`{{ }}`, `{% %}` and `{# #}`, an unclosed one to the end) mentions
/// any of `RUN_STATE_NAMES` as a whole word. The SQL around it cannot read them, so it is not
/// scanned: most of a model is SQL. As in minijinja's lexer, a closing delimiter inside a
/// string literal or an open bracket (`{{ "}}" ~ model.name }}`, `{{ {'a': {'b': 1}}['a'] }}`)
/// does not end an expression, and the text of a `{% raw %}` block is not Jinja.
pub fn reads_run_state(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut at = 0;
    while let Some(found) = text[at..].find('{') {
        let open = at + found;
        let (close, code) = match bytes.get(open + 1) {
            Some(b'{') => (*b"}}", true),
            Some(b'%') => (*b"%}", true),
            Some(b'#') => (*b"#}", false),
            _ => {
                at = open + 1;
                continue;
            }
        };
        let start = open + 2;
        let end = region_end(bytes, start, close, code);
        let region = &text[start..end];
        if mentions_run_state(region) {
            return true;
        }
        at = (end + 2).min(bytes.len());
        if close == *b"%}"
            && region.trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace()) == "raw"
        {
            // Up to the `endraw` tag: what is between is text.
            match text[at..].find("endraw") {
                Some(k) => at += k + "endraw".len(),
                None => return false,
            }
        }
    }
    false
}

/// Where the Jinja region starting at `start` closes (the end of the text if it does not).
/// In code (`code`: an expression or a statement, not a comment) string literals and open
/// brackets are skipped.
fn region_end(bytes: &[u8], start: usize, close: [u8; 2], code: bool) -> usize {
    let mut quote: Option<u8> = None;
    let mut depth = 0usize;
    let mut j = start;
    while j < bytes.len() {
        let c = bytes[j];
        match quote {
            Some(_) if c == b'\\' => j += 1,
            Some(q) if c == q => quote = None,
            None if code && (c == b'"' || c == b'\'') => quote = Some(c),
            None if code && matches!(c, b'(' | b'[' | b'{') => depth += 1,
            None if code && depth > 0 && matches!(c, b')' | b']' | b'}') => depth -= 1,
            None if depth == 0 && bytes[j..].starts_with(&close) => return j,
            _ => {}
        }
        j += 1;
    }
    bytes.len()
}

/// Whether a Jinja expression or statement names one of `RUN_STATE_NAMES`.
pub fn mentions_run_state(jinja: &str) -> bool {
    jinja
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .any(|word| RUN_STATE_NAMES.contains(&word))
}

pub struct Renderer {
    env: Environment<'static>,
    /// Model and singular test templates by path, after `mutable::prepare`.
    model_sources: &'static HashMap<String, Arc<str>>,
    origins: HashMap<String, Origin>,
    /// Model, singular test and snapshot templates that do not `reads_run_state`: their
    /// parse-pass text may stand in for the compile pass's.
    pass_independent: HashSet<String>,
    vars: Arc<BTreeMap<String, Json>>,
    /// The vars of the nodes of each package that has nodes (the root project's are `vars`).
    package_vars: HashMap<String, Arc<BTreeMap<String, Json>>>,
    /// The macros found without a namespace (dbt's, with the project's over them).
    macros: Arc<BTreeMap<String, Arc<MacroObject>>>,
    set: Arc<MacroSet>,
    /// The `graph` global's contents, once the graph is known (`provide_graph`).
    graph: Arc<OnceLock<Value>>,
    /// Whether any template or macro mentions `graph` (else it is never built).
    uses_graph: bool,
}

impl Renderer {
    /// Build the environment: macros from the project's macro files, then every model template.
    /// A broken macro stops here; broken model templates are returned beside the renderer so
    /// that the rest of the project can still be checked in the same run.
    pub fn new(
        project: &Project,
        target: &Target,
        run: &RunInfo,
        quoting: Quoting,
    ) -> Result<(Renderer, Vec<Problem>), Vec<Problem>> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Lenient);
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(mutable::unknown_method);
        let mut problems = Vec::new();
        let mut origins = HashMap::new();
        let mut set = MacroSet {
            root: project.name.clone(),
            dispatch: project.dispatch.clone(),
            ..MacroSet::default()
        };
        // xform's versions of dbt's built-in macros and generic tests, then the installed
        // packages', then the project's (which override dbt's when called without a namespace).
        let internal: Arc<str> = Arc::from(macros::INTERNAL);
        for (name, text) in [
            (BUILTIN_TESTS_FILE, BUILTIN_TESTS),
            (DBT_MACROS_FILE, DBT_MACROS),
            (WAREHOUSE_MACROS_FILE, WAREHOUSE_MACROS),
        ] {
            let file = SourceFile::new(name, text);
            let defs = add_macros(
                &mut env,
                &file,
                &internal,
                &mut set,
                &mut origins,
                &mut problems,
            );
            debug_assert!(defs, "the built-in macros parse");
        }
        for package in &project.packages {
            let name: Arc<str> = Arc::from(package.name.as_str());
            set.packages.entry(package.name.clone()).or_default();
            for file in &package.macro_files {
                add_macros(&mut env, file, &name, &mut set, &mut origins, &mut problems);
            }
        }
        let root: Arc<str> = Arc::from(project.name.as_str());
        set.packages.entry(project.name.clone()).or_default();
        for file in &project.macro_files {
            add_macros(&mut env, file, &root, &mut set, &mut origins, &mut problems);
        }
        let set = Arc::new(set);
        let macros = Arc::new(set.globals());
        for (name, object) in macros.iter() {
            env.add_global(name.clone(), Value::from_dyn_object(object.clone()));
        }
        let functions: BTreeMap<&'static str, Value> = [
            ("run_query", Value::from_function(database::run_query)),
            ("statement", Value::from_function(database::statement_fn)),
        ]
        .into_iter()
        .collect();
        for package in set.packages.keys() {
            // A project-level name that is also a package (rare) keeps its first meaning.
            if package != &project.name && macros.contains_key(package) {
                continue;
            }
            env.add_global(
                package.clone(),
                Value::from_object(macros::Namespace {
                    set: set.clone(),
                    package: package.clone(),
                    functions: if package == macros::INTERNAL {
                        functions.clone()
                    } else {
                        BTreeMap::new()
                    },
                }),
            );
        }
        env.add_global(macros::SET_VAR, Value::from_dyn_object(set.clone()));

        env.add_function("__list", mutable::new_list);
        env.add_function("__xadd", arith::xadd);
        env.add_function("__xsub", arith::xsub);
        env.add_function("__dict", mutable::new_dict);
        env.add_function("ref", context::ref_fn);
        env.add_function("source", context::source_fn);
        env.add_global("config", Value::from_object(ConfigObject));
        env.add_function("var", context::var_fn);
        env.add_function("env_var", context::env_var_fn);
        env.add_function("is_incremental", context::is_incremental);
        env.add_function("log", context::log_fn);
        env.add_function("print", context::print_fn);
        env.add_function("return", context::return_fn);
        env.add_function("run_query", database::run_query);
        env.add_function("statement", database::statement_fn);
        env.add_function("load_result", database::load_result);
        env.add_function("load_relation", database::load_relation);
        env.add_function("should_store_failures", context::should_store_failures);
        env.add_function("set", modules::set_fn);
        env.add_function("zip", modules::zip_fn);
        // dbt's strict forms raise where the others would give `default`: the same here, where
        // both raise on a value that is not a list.
        env.add_function("set_strict", modules::set_fn);
        env.add_filter("round", modules::round_filter);
        env.add_function("zip_strict", modules::zip_fn);
        env.add_function("tojson", modules::tojson);
        env.add_function("fromjson", modules::fromjson);
        env.add_function("toyaml", modules::toyaml);
        env.add_function("fromyaml", modules::fromyaml);
        env.add_global(
            "adapter",
            Value::from_object(AdapterObject {
                macros: set.clone(),
                adapter_type: target.adapter_type().to_string(),
                quoting,
                dialect: crate::dialect::of(target),
            }),
        );
        env.add_global("api", Value::from_object(database::ApiObject { quoting }));
        env.add_global("exceptions", Value::from_object(ExceptionsObject));
        env.add_global("modules", Value::from_object(ModulesObject));
        env.add_global(
            "run_started_at",
            modules::run_started_at(run.started_at.naive_utc()),
        );
        env.add_global("invocation_id", Value::from(run.invocation_id.clone()));
        env.add_global(
            "target",
            crate::render::context::to_value(serde_json::json!({
                "name": target.name,
                "type": target.adapter_type(),
                "schema": target.schema,
                "database": target.database,
                "threads": target.threads,
                "profile_name": target.profile_name,
                "path": target.location(),
            })),
        );
        env.add_global(
            "flags",
            crate::render::context::to_value(serde_json::json!({
                "FULL_REFRESH": run.full_refresh,
                "EMPTY": run.empty,
                "WHICH": run.command,
            })),
        );
        env.add_global("project_name", Value::from(project.name.clone()));
        let graph_cell: Arc<OnceLock<Value>> = Arc::default();
        env.add_global(
            "graph",
            Value::from_object(context::GraphObject(graph_cell.clone())),
        );
        let mentions_graph = |text: &str| {
            text.match_indices("graph")
                .any(|(at, _)| text[at + 5..].starts_with(['.', '[']))
        };
        let uses_graph = project
            .models
            .iter()
            .chain(&project.singular_tests)
            .chain(&project.analyses)
            .map(|m| &m.file)
            .chain(&project.macro_files)
            .chain(project.packages.iter().flat_map(|p| &p.macro_files))
            .any(|f| mentions_graph(&f.text))
            || project.snapshots.iter().any(|s| mentions_graph(&s.body));
        // `doc('name')` / `doc('package', 'name')`: a docs block's text (the root project's
        // first when a name is in several packages).
        let mut docs: BTreeMap<String, String> = BTreeMap::new();
        for d in project.docs.iter().rev() {
            docs.insert(format!("{}.{}", d.package, d.name), d.text.clone());
            if d.package == project.name || !docs.contains_key(&d.name) {
                docs.insert(d.name.clone(), d.text.clone());
            }
        }
        let docs = Arc::new(docs);
        env.add_function(
            "doc",
            move |a: String, b: Option<String>| -> Result<Value, minijinja::Error> {
                let key = match &b {
                    Some(name) => format!("{a}.{name}"),
                    None => a.clone(),
                };
                docs.get(&key).map(|t| Value::from(t.clone())).ok_or_else(|| {
                    minijinja::Error::new(
                        minijinja::ErrorKind::InvalidOperation,
                        format!(
                            "no docs block is named `{key}`: write `{{% docs {} %}}…{{% enddocs %}}` in a .md file of the project",
                            b.as_deref().unwrap_or(&a)
                        ),
                    )
                })
            },
        );

        if !problems.is_empty() {
            return Err(problems);
        }
        // Model templates are compiled lazily by the loader, which minijinja calls without
        // holding its lock: the parse pass then compiles them in parallel on first use.
        let prepared: Vec<(String, Arc<str>, Origin, bool)> = project
            .models
            .par_iter()
            .chain(project.singular_tests.par_iter())
            .chain(project.analyses.par_iter())
            .map(|model| {
                let (text, shifts) = mutable::prepare(&model.file.text);
                // Unchanged text is the file's own, shared rather than copied.
                let text: Arc<str> = match text {
                    std::borrow::Cow::Borrowed(_) => model.file.text.clone(),
                    std::borrow::Cow::Owned(t) => Arc::from(t),
                };
                let origin = Origin {
                    file: model.file.clone(),
                    offset: 0,
                    shifts,
                };
                let run_state = reads_run_state(&model.file.text);
                (model.file.name.clone(), text, origin, run_state)
            })
            .collect();
        let mut sources = HashMap::with_capacity(prepared.len());
        let mut pass_independent = HashSet::new();
        for (path, text, origin, run_state) in prepared {
            if !run_state {
                pass_independent.insert(path.clone());
            }
            origins.insert(path.clone(), origin);
            sources.insert(path, text);
        }
        for snapshot in &project.snapshots {
            let (text, shifts) = mutable::prepare(&snapshot.body);
            let origin = Origin {
                file: snapshot.file.clone(),
                offset: snapshot.body_offset,
                shifts,
            };
            let template = snapshot.template_name();
            if !reads_run_state(&snapshot.body) {
                pass_independent.insert(template.clone());
            }
            if let Err(e) = env.add_template_owned(template.clone(), text.into_owned()) {
                problems.push(jinja_problem(
                    &e,
                    &origin,
                    &format!("snapshot `{}`", snapshot.name),
                ));
                continue;
            }
            origins.insert(template, origin);
        }
        // Model templates are compiled for each render and dropped after it rather than kept in
        // the environment: a compiled template is about ten times its text, and most models
        // are rendered once. That needs the text for as long as the environment (`'static`),
        // so it is leaked: it lives as long as the process does anyway.
        let model_sources: &'static HashMap<String, Arc<str>> = Box::leak(Box::new(sources));
        env.set_loader(move |name| Ok(model_sources.get(name).map(ToString::to_string)));
        let renderer = Renderer {
            env,
            model_sources,
            origins,
            pass_independent,
            vars: Arc::new(project.vars.clone()),
            package_vars: project
                .package_configs
                .iter()
                .map(|(name, c)| (name.clone(), Arc::new(c.vars.clone())))
                .collect(),
            macros,
            set,
            graph: graph_cell,
            uses_graph,
        };
        let mut renderer = renderer;
        renderer.render_vars();
        Ok((renderer, problems))
    }

    /// Render the Jinja in the project files' `vars:` (`"{{ 9 if target.type == 'bigquery'
    /// else -1 }}"`), as dbt renders its project file with the target known: each package's
    /// as that package's, a lone expression keeping its value's type. A value that does not
    /// render (it needs what only a node has) stays as written.
    fn render_vars(&mut self) {
        fn jinja(v: &Json) -> bool {
            match v {
                Json::String(s) => has_jinja(s),
                Json::Array(items) => items.iter().any(jinja),
                Json::Object(m) => m.values().any(jinja),
                _ => false,
            }
        }
        let resolver: Arc<dyn Resolve> = Arc::new(Unresolved);
        let render = |this: &Renderer, package: &str, vars: &Arc<BTreeMap<String, Json>>| {
            if !vars.values().any(jinja) {
                return None;
            }
            let owner = format!("var.{package}.vars");
            let mut out = (**vars).clone();
            for (name, value) in &mut out {
                if !jinja(value) {
                    continue;
                }
                let mut rendered = value.clone();
                let what = format!("the var `{name}`");
                if this
                    .render_json(&owner, &mut rendered, &what, &resolver)
                    .is_ok()
                {
                    *value = rendered;
                }
            }
            Some(Arc::new(out))
        };
        let root = self.set.root.clone();
        if let Some(v) = render(self, &root, &self.vars) {
            self.vars = v;
        }
        let packages: Vec<String> = self.package_vars.keys().cloned().collect();
        for name in packages {
            if let Some(v) = render(self, &name, &self.package_vars[&name]) {
                self.package_vars.insert(name, v);
            }
        }
    }

    /// The per-render state a template's functions reach through `__xform`.
    fn context(
        &self,
        unique_id: &str,
        execute: bool,
        is_incremental: bool,
        config: NodeConfig,
        resolver: Arc<dyn Resolve>,
        introspector: Option<Arc<dyn Introspect>>,
    ) -> Arc<RenderCtx> {
        Arc::new(RenderCtx {
            unique_id: unique_id.to_string(),
            execute,
            is_incremental,
            config: Mutex::new(config),
            refs: Mutex::new(Vec::new()),
            sources: Mutex::new(Vec::new()),
            macros: Mutex::new(Vec::new()),
            macro_depth: std::sync::atomic::AtomicUsize::new(0),
            resolver,
            vars: self.vars_of(unique_id).clone(),
            introspector,
            statements: Mutex::new(BTreeMap::new()),
            logs: Mutex::new(Vec::new()),
            env_overrides: BTreeMap::new(),
            macro_overrides: BTreeMap::new(),
            resolved: Mutex::new(Vec::new()),
            run_dependent: AtomicBool::new(false),
            records_config: false,
        })
    }

    /// The vars of a node: its package's when it belongs to an installed package.
    fn vars_of(&self, unique_id: &str) -> &Arc<BTreeMap<String, Json>> {
        package_of(unique_id)
            .and_then(|p| self.package_vars.get(p))
            .unwrap_or(&self.vars)
    }

    /// Whether some template or macro reads `graph` (so that it must be provided).
    pub fn uses_graph(&self) -> bool {
        self.uses_graph
    }

    /// Give templates the `graph` global's contents (`graph.nodes`, `graph.sources`…); until
    /// then it is empty, as in dbt's parse pass.
    pub fn provide_graph(&self, value: Value) {
        let _ = self.graph.set(value);
    }

    /// The macros a text calls inside `{{ }}` / `{% %}` (`name(` or `package.name(` naming a
    /// macro), as unique ids in order: what a hook's text depends on.
    pub fn macro_calls(&self, text: &str) -> Vec<String> {
        static CALL: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
            regex::Regex::new(r"\b([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)?)\s*\(").expect("fixed pattern")
        });
        let mut out = Vec::new();
        if !has_jinja(text) {
            return out;
        }
        for c in CALL.captures_iter(text) {
            let name = &c[1];
            if let Some(package) = self.macro_package(name) {
                let bare = name.rsplit('.').next().unwrap_or(name);
                let id = format!("macro.{package}.{bare}");
                if !out.contains(&id) {
                    out.push(id);
                }
            }
        }
        out
    }

    /// The package whose macro a call by this name (`name` or `package.name`) runs: the root
    /// project's, then dbt's, then an installed package's, for `macro.<package>.<name>`.
    pub fn macro_package(&self, name: &str) -> Option<String> {
        if let Some((package, bare)) = name.split_once('.') {
            return self.set.get(package, bare).map(|_| package.to_string());
        }
        [self.set.root.as_str(), macros::INTERNAL]
            .into_iter()
            .chain(self.set.packages.keys().map(String::as_str))
            .find(|p| self.set.get(p, name).is_some())
            .map(String::from)
    }

    /// Whether the root project defines a macro of this name (`generate_schema_name`…).
    pub fn has_macro(&self, name: &str) -> bool {
        self.set.get(&self.set.root, name).is_some()
    }

    /// Render one model template.
    pub fn render(&self, req: RenderRequest<'_>) -> Result<Rendered, Problem> {
        self.render_with(req, None)
    }

    /// Render one model template with a unit test's overrides: vars on top of the project's,
    /// env vars, and macros replaced by values (`is_incremental` among them). A dotted name
    /// such as `dbt_utils.now` overrides a namespaced call.
    pub fn render_with(
        &self,
        req: RenderRequest<'_>,
        overrides: Option<&Overrides>,
    ) -> Result<Rendered, Problem> {
        let mut ctx = self.context(
            req.unique_id,
            req.execute,
            req.is_incremental,
            req.config,
            req.resolver,
            req.introspector,
        );
        let mut extra: BTreeMap<String, Value> = BTreeMap::new();
        if let Some(o) = overrides {
            let c = Arc::get_mut(&mut ctx).expect("a new render context");
            if !o.vars.is_empty() {
                let mut vars = (**self.vars_of(req.unique_id)).clone();
                vars.extend(o.vars.iter().map(|(k, v)| (k.clone(), v.clone())));
                c.vars = Arc::new(vars);
            }
            c.env_overrides.clone_from(&o.env_vars);
            let mut spaces: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
            for (name, value) in &o.macros {
                if name == "is_incremental" {
                    c.is_incremental = value.as_bool().unwrap_or(false);
                    continue;
                }
                let value = context::to_value(value);
                c.macro_overrides.insert(name.clone(), value.clone());
                let constant = Value::from_function(
                    move |_args: &[Value]| -> Result<Value, minijinja::Error> { Ok(value.clone()) },
                );
                match name.split_once('.') {
                    Some((space, member)) => {
                        spaces
                            .entry(space.to_string())
                            .or_default()
                            .insert(member.to_string(), constant);
                    }
                    None if !self.macros.contains_key(name) => {
                        extra.insert(name.clone(), constant);
                    }
                    None => {}
                }
            }
            // A namespace that is already an object (`adapter`, `modules`…) is not replaced by
            // a map of the overrides: that would hide its other members.
            for (space, members) in spaces {
                if self.env.globals().any(|(name, _)| name == space) {
                    continue;
                }
                extra.insert(space, Value::from(members));
            }
        }
        // A package's node finds its own package's macros first by their bare names, as in dbt.
        if let Some(package) = package_of(req.unique_id).filter(|p| self.set.is_package(p))
            && let Some(own) = self.set.packages.get(package)
        {
            for (name, m) in own {
                extra
                    .entry(name.clone())
                    .or_insert_with(|| Value::from_dyn_object(m.clone()));
            }
            extra.insert(macros::PACKAGE_VAR.to_string(), Value::from(package));
        }
        let template = match self.model_sources.get_key_value(req.template) {
            Some((name, source)) => self.env.template_from_named_str(name, source),
            None => self.env.get_template(req.template),
        }
        .map_err(|e| self.problem(&e, &format!("model `{}`", req.name)))?;
        let values = minijinja::context! {
            __xform => Value::from_dyn_object(ctx.clone()),
            this => Value::from_object(req.this),
            model => req.model,
            execute => req.execute,
            ..Value::from(extra)
        };
        let sql = template
            .render(values)
            .map_err(|e| self.problem(&e, &format!("model `{}`", req.name)))?;
        let take = |m: &Mutex<NodeConfig>| std::mem::take(&mut *m.lock().expect("config lock"));
        let reusable =
            !req.execute && !ctx.is_run_dependent() && self.pass_independent.contains(req.template);
        Ok(Rendered {
            reusable,
            resolved: std::mem::take(&mut *ctx.resolved.lock().expect("resolved lock")),
            sql,
            config: take(&ctx.config),
            refs: std::mem::take(&mut *ctx.refs.lock().expect("refs lock")),
            sources: std::mem::take(&mut *ctx.sources.lock().expect("sources lock")),
            macros: std::mem::take(&mut *ctx.macros.lock().expect("macros lock")),
            logs: std::mem::take(&mut *ctx.logs.lock().expect("logs lock")),
        })
    }

    /// Render Jinja that is not a file of its own: a node's pre- or post-hook (`node`: its
    /// `this`, config and `model`, as its SQL is rendered), a project's `on-run-start` /
    /// `on-run-end` hook (`node` is `None`; `extra` holds `results`, `schemas`…), a macro call
    /// of `run-operation`, `show --inline` SQL, a config value or a description. Always with
    /// `execute` true. `what` names the text in a diagnostic.
    pub fn render_text(
        &self,
        text: &str,
        what: &str,
        node: Option<RenderRequest<'_>>,
        resolver: Arc<dyn Resolve>,
        introspector: Option<Arc<dyn Introspect>>,
        extra: BTreeMap<String, Value>,
    ) -> Result<String, Problem> {
        self.render_text_as("", text, what, node, resolver, introspector, extra)
    }

    /// `render_text` for a text that belongs to a node (`owner`, a unique id) without being
    /// rendered as that node (its config, a test argument, its description): the node's
    /// package decides the vars and the macros found first, as for the node itself.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn render_text_as(
        &self,
        owner: &str,
        text: &str,
        what: &str,
        node: Option<RenderRequest<'_>>,
        resolver: Arc<dyn Resolve>,
        introspector: Option<Arc<dyn Introspect>>,
        extra: BTreeMap<String, Value>,
    ) -> Result<String, Problem> {
        let (text, _) = mutable::prepare(text);
        let mut values = extra;
        let owner = node.as_ref().map_or(owner, |n| n.unique_id);
        if let Some(package) = package_of(owner).filter(|p| self.set.is_package(p))
            && let Some(own) = self.set.packages.get(package)
        {
            for (name, m) in own {
                values
                    .entry(name.clone())
                    .or_insert_with(|| Value::from_dyn_object(m.clone()));
            }
            values.insert(macros::PACKAGE_VAR.to_string(), Value::from(package));
        }
        let ctx = match node {
            Some(req) => {
                values.insert("this".to_string(), Value::from_object(req.this));
                values.insert("model".to_string(), req.model);
                self.context(
                    req.unique_id,
                    true,
                    req.is_incremental,
                    req.config,
                    req.resolver,
                    req.introspector,
                )
            }
            None => self.context(
                owner,
                true,
                false,
                NodeConfig::default(),
                resolver,
                introspector,
            ),
        };
        values.insert("__xform".to_string(), Value::from_dyn_object(ctx.clone()));
        values.insert("execute".to_string(), Value::from(true));
        let sql = self
            .env
            .render_str(&text, Value::from(values))
            .map_err(|e| self.problem(&e, what))?;
        for line in ctx.logs.lock().expect("logs lock").iter() {
            eprintln!("{}", crate::env::mask(&format!("{what}: {line}")));
        }
        Ok(sql)
    }

    /// Jinja in config values (`+materialized: "{{ 'table' if target.name == 'prod' else
    /// 'view' }}"`, YAML `tags:`), rendered as dbt renders its YAML: with `target`, `var`,
    /// `env_var` and the macros, before any relation is known. A result of `True` or `False`
    /// becomes a boolean, as dbt's native rendering makes it. Hooks, which hold SQL rendered
    /// when they run, stay as written.
    pub fn render_config(
        &self,
        owner: &str,
        config: &mut NodeConfig,
        what: &str,
    ) -> Result<(), Problem> {
        for (key, value) in &mut config.0 {
            // Most values hold no Jinja: nothing is allocated for them (this runs per node).
            if matches!(key.as_str(), "pre-hook" | "post-hook" | "sql_header")
                || !json_has_jinja(value)
            {
                continue;
            }
            self.render_json(
                owner,
                value,
                &format!("the `{key}` config of {what}"),
                &(Arc::new(Unresolved) as Arc<dyn Resolve>),
            )?;
        }
        Ok(())
    }

    /// The value of one Jinja expression, for `render_json`: a list, map, number, boolean or
    /// none as JSON; `None` for what is better as its text (a string, a relation).
    fn eval_native(
        &self,
        owner: &str,
        expr: &str,
        what: &str,
        resolver: &Arc<dyn Resolve>,
    ) -> Result<Option<Json>, Problem> {
        let ctx = self.context(
            owner,
            true,
            false,
            NodeConfig::default(),
            resolver.clone(),
            None,
        );
        let mut values: BTreeMap<String, Value> = BTreeMap::new();
        if let Some(package) = package_of(owner).filter(|p| self.set.is_package(p))
            && let Some(own) = self.set.packages.get(package)
        {
            for (name, m) in own {
                values.insert(name.clone(), Value::from_dyn_object(m.clone()));
            }
            values.insert(macros::PACKAGE_VAR.to_string(), Value::from(package));
        }
        values.insert("__xform".to_string(), Value::from_dyn_object(ctx));
        values.insert("execute".to_string(), Value::from(true));
        let value = self
            .env
            .compile_expression(expr)
            .and_then(|e| e.eval(Value::from(values)))
            .map_err(|e| self.problem(&e, what))?;
        let plain = value.as_object().is_none_or(|o| {
            matches!(o.repr(), minijinja::value::ObjectRepr::Seq)
                || (matches!(o.repr(), minijinja::value::ObjectRepr::Map)
                    && value.downcast_object_ref::<Relation>().is_none())
        });
        if value.is_undefined() || value.as_str().is_some() || value.is_safe() || !plain {
            return Ok(None);
        }
        Ok(serde_json::to_value(&value).ok())
    }

    /// Render the Jinja of a text property of `owner` (a source's `schema:`…), as its package's;
    /// `None` when it has none. `what` names the property in a diagnostic.
    pub fn render_property(
        &self,
        owner: &str,
        text: &str,
        what: &str,
    ) -> Result<Option<String>, Problem> {
        if !has_jinja(text) {
            return Ok(None);
        }
        self.render_text_as(
            owner,
            text,
            what,
            None,
            Arc::new(Unresolved),
            None,
            BTreeMap::new(),
        )
        .map(Some)
    }

    /// Render the Jinja in every string of a JSON value (a test argument, a config value),
    /// in place, with `ref()` and `source()` as `resolver` answers; strings without Jinja are
    /// left alone.
    pub fn render_json(
        &self,
        owner: &str,
        value: &mut Json,
        what: &str,
        resolver: &Arc<dyn Resolve>,
    ) -> Result<(), Problem> {
        match value {
            Json::String(text) if has_jinja(text) => {
                // One expression alone (`"{{ var('statuses') }}"`) keeps its value, a list or
                // a number, as dbt's native rendering does.
                if let Some(expr) = single_expression(text)
                    && let Some(native) = self.eval_native(owner, expr, what, resolver)?
                {
                    *value = native;
                    return Ok(());
                }
                let rendered = self.render_text_as(
                    owner,
                    text,
                    what,
                    None,
                    resolver.clone(),
                    None,
                    BTreeMap::new(),
                )?;
                *value = match rendered.trim() {
                    "True" => Json::Bool(true),
                    "False" => Json::Bool(false),
                    _ => Json::String(rendered),
                };
            }
            Json::Array(items) => {
                for item in items {
                    self.render_json(owner, item, what, resolver)?;
                }
            }
            Json::Object(map) => {
                for item in map.values_mut() {
                    self.render_json(owner, item, what, resolver)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The names of every generic test (built in or in the project).
    pub fn test_names(&self) -> Vec<String> {
        self.macros
            .keys()
            .filter_map(|k| k.strip_prefix("test_"))
            .map(String::from)
            .collect()
    }

    /// Whether `name` is an installed package (or the root project, or `dbt`).
    pub fn has_package(&self, name: &str) -> bool {
        self.set.packages.contains_key(name)
    }

    /// Whether a generic test of this name exists (built in or in the project, or in the
    /// package `namespace`).
    pub fn has_test(&self, namespace: Option<&str>, name: &str) -> bool {
        let macro_name = format!("test_{name}");
        match namespace {
            Some(ns) => self.set.get(ns, &macro_name).is_some(),
            None => self.macros.contains_key(&macro_name),
        }
    }

    /// Render a generic test's query: call its `{% test %}` block with `args` (which hold
    /// `model`, `column_name` and the YAML arguments, relations already resolved), starting
    /// from the test's `config`; also returns the config after the block's own `config()`
    /// calls (dbt_utils' tests set `fail_calc` so).
    pub fn render_test(
        &self,
        (namespace, test): (Option<&str>, &str),
        test_name: &str,
        args: &BTreeMap<String, Value>,
        config: NodeConfig,
        resolver: Arc<dyn Resolve>,
        introspector: Option<Arc<dyn Introspect>>,
    ) -> Result<(String, NodeConfig), Problem> {
        let call: Vec<String> = args
            .keys()
            .filter(|k| {
                k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !k.starts_with(|c: char| c.is_ascii_digit())
            })
            .map(|k| format!("{k}=__args[{k:?}]"))
            .collect();
        let space = namespace.map(|ns| format!("{ns}.")).unwrap_or_default();
        let source = format!("{{{{ {space}test_{test}({}) }}}}", call.join(", "));
        let mut ctx = self.context("", true, false, config, resolver, introspector);
        Arc::get_mut(&mut ctx)
            .expect("a new render context")
            .records_config = true;
        let args: BTreeMap<String, Value> = args
            .iter()
            .map(|(k, v)| (k.clone(), mutable::mutable(v.clone())))
            .collect();
        let sql = self
            .env
            .render_str(
                &source,
                minijinja::context! { __args => args, __xform => Value::from_dyn_object(ctx.clone()), execute => true },
            )
            .map_err(|e| self.problem(&e, &format!("test `{test_name}`")))?;
        let config = std::mem::take(&mut *ctx.config.lock().expect("config lock"));
        Ok((sql, config))
    }

    /// Call a project macro by name outside any model (for `generate_schema_name`).
    pub fn call_macro(
        &self,
        name: &str,
        args: &[Value],
        resolver: Arc<dyn Resolve>,
    ) -> Result<String, Problem> {
        let source = format!("{{{{ {name}(*__args) }}}}");
        let ctx = self.context("", false, false, NodeConfig::default(), resolver, None);
        self.env
            .render_str(
                &source,
                minijinja::context! { __args => args.to_vec(), __xform => Value::from_dyn_object(ctx) },
            )
            .map_err(|e| self.problem(&e, &format!("macro `{name}`")))
    }

    /// A diagnostic for a minijinja error, pointing into the file the failing template came from.
    fn problem(&self, err: &minijinja::Error, what: &str) -> Problem {
        let mut innermost = err;
        let mut chain = Some(err as &dyn std::error::Error);
        while let Some(e) = chain {
            if let Some(mj) = e.downcast_ref::<minijinja::Error>()
                && mj.name().is_some_and(|n| self.origins.contains_key(n))
            {
                innermost = mj;
            }
            chain = e.source();
        }
        let mut problem = match innermost.name().and_then(|n| self.origins.get(n)) {
            Some(origin) => jinja_problem(innermost, origin, what),
            None => Problem::new(
                Code::Jinja,
                format!("cannot render {what}: {}", describe(err)),
            ),
        };
        if innermost.kind() == minijinja::ErrorKind::UnknownFunction
            && let Some(name) = innermost
                .detail()
                .and_then(|d| d.strip_suffix(" is unknown"))
        {
            let near = crate::suggest::suggestions(name, self.macros.keys().map(String::as_str));
            if let Some(best) = near.first() {
                problem = problem.help(format!("did you mean the macro `{best}`?"));
            }
        }
        problem
    }
}

/// Cut a macro file into its blocks and add each macro and test to `set` under `package`, its
/// body as a template. Whether the file's blocks could be read.
/// The expression of a text that is one `{{ expr }}` and nothing else.
fn single_expression(text: &str) -> Option<&str> {
    let inner = text.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    let inner = inner.trim_start_matches('-').trim_end_matches('-');
    (!inner.contains("{{") && !inner.contains("}}") && !inner.contains("{%")).then_some(inner)
}

/// Whether any string of a JSON value holds Jinja.
fn json_has_jinja(value: &Json) -> bool {
    match value {
        Json::String(s) => has_jinja(s),
        Json::Array(items) => items.iter().any(json_has_jinja),
        Json::Object(map) => map.values().any(json_has_jinja),
        _ => false,
    }
}

/// Whether a text holds Jinja.
pub fn has_jinja(text: &str) -> bool {
    text.contains("{{") || text.contains("{%")
}

/// Resolves nothing: config values are rendered before any relation is known.
struct Unresolved;

impl Resolve for Unresolved {
    fn resolve_ref(&self, _package: Option<&str>, _name: &str) -> Option<Relation> {
        None
    }

    fn resolve_source(&self, _source: &str, _table: &str) -> Option<Relation> {
        None
    }
}

/// The package of a node from its unique id (`model.<package>.<name>`).
fn package_of(unique_id: &str) -> Option<&str> {
    unique_id.split('.').nth(1)
}

fn add_macros(
    env: &mut Environment<'static>,
    file: &SourceFile,
    package: &Arc<str>,
    set: &mut MacroSet,
    origins: &mut HashMap<String, Origin>,
    problems: &mut Vec<Problem>,
) -> bool {
    let defs = match blocks::extract(file) {
        Ok(defs) => defs,
        Err(e) => {
            problems.push(
                Problem::new(
                    Code::Jinja,
                    format!("cannot read the macros in `{}`: {}", file.name, e.message),
                )
                .at(file, e.offset, 2, "here")
                .help("every `{% macro name(...) %}` needs a matching `{% endmacro %}`"),
            );
            return false;
        }
    };
    for def in defs {
        if matches!(
            def.kind,
            blocks::BlockKind::Snapshot | blocks::BlockKind::Docs
        ) {
            continue;
        }
        let template = def.template_name(package);
        let (body, shifts) = mutable::prepare(&def.body);
        let origin = Origin {
            file: def.file.clone(),
            offset: def.body_offset,
            shifts,
        };
        if let Err(e) = env.add_template_owned(template.clone(), body.into_owned()) {
            problems.push(jinja_problem(&e, &origin, &format!("macro `{}`", def.name)));
            continue;
        }
        origins.insert(template, origin);
        let object = Arc::new(MacroObject::new(&def, package));
        set.packages
            .entry(package.to_string())
            .or_default()
            .insert(object.name.clone(), object);
    }
    true
}

fn describe(err: &minijinja::Error) -> String {
    let mut text = err
        .detail()
        .map_or_else(|| err.kind().to_string(), ToString::to_string);
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        if let Some(mj) = s.downcast_ref::<minijinja::Error>() {
            if let Some(d) = mj.detail() {
                text = format!("{text}: {d}");
            }
        } else {
            text = format!("{text}: {s}");
        }
        source = s.source();
    }
    text
}

/// A Jinja diagnostic at the error's place in `file` (the template starts at `offset`).
fn jinja_problem(err: &minijinja::Error, origin: &Origin, what: &str) -> Problem {
    let (file, offset) = (&origin.file, origin.offset);
    let detail = describe(err);
    let problem = Problem::new(Code::Jinja, format!("cannot render {what}: {detail}"));
    let (label, help) = match err.kind() {
        minijinja::ErrorKind::SyntaxError => (
            "syntax error",
            "check the Jinja tags around the marked place: every `{{`, `{%` and `{#` needs its closing pair",
        ),
        minijinja::ErrorKind::UnknownFunction => (
            "not defined",
            "no macro or function has this name; project macros must be in a macro path (`macros/` by default)",
        ),
        minijinja::ErrorKind::UndefinedError => (
            "undefined",
            "a value used here is undefined; check the variable or attribute name",
        ),
        _ if detail.contains("secret environment variable") => (
            "a secret",
            "DBT_ENV_SECRET_* variables are for credentials in profiles.yml; give the model a variable without that prefix, or a var()",
        ),
        _ if detail.contains("environment variable") => (
            "not set",
            "set the variable in the environment, or give a default: env_var('NAME', 'default')",
        ),
        _ if detail.contains("required var") => (
            "not set",
            "add it under `vars:` in the project file, pass --vars, or give a default: var('name', default)",
        ),
        _ => (
            "failed here",
            "the call at the marked place failed; the message above is its reason",
        ),
    };
    let problem = problem.help(help);
    if let Some(range) = err.range() {
        let start = mutable::original_offset(&origin.shifts, range.start);
        let end = mutable::original_offset(&origin.shifts, range.end).max(start);
        return problem.at(file, offset + start, end - start, label);
    }
    match err.line() {
        Some(line) => {
            let base_line = crate::diagnostics::line_of(&file.text, offset);
            problem.at_line(file, base_line + line - 1, label)
        }
        None => problem.at(file, offset, 0, "in this template"),
    }
}

#[cfg(test)]
mod tests {
    use super::reads_run_state;

    #[test]
    fn run_state_names_are_found_as_whole_words_only() {
        assert!(reads_run_state("{% if execute %}x{% endif %}"));
        assert!(reads_run_state("{{ model.config.materialized }}"));
        assert!(reads_run_state("{% include 'other.sql' %}"));
        assert!(!reads_run_state(
            "-- model_05000\nselect executed_at from t"
        ));
        assert!(!reads_run_state("select * from {{ ref('a') }}"));
        // Only Jinja is read: SQL may name a column `model`.
        assert!(!reads_run_state("select model from {{ ref('cars') }}"));
        assert!(reads_run_state("{# a comment on execute #}select 1"));
        assert!(reads_run_state("select {{ model.name"));
        assert!(reads_run_state("{%- if execute -%}{%- endif %}"));
        // A delimiter inside a string does not close the expression.
        assert!(reads_run_state(r#"{{ "}}" ~ model.name }}"#));
        assert!(reads_run_state(
            r"{% set x = '%}\' %}' %}{{ x }}{% if execute %}{% endif %}"
        ));
        assert!(reads_run_state(
            r#"{{ "a" }} select {{ 'b\'}}' ~ execute }}"#
        ));
        // Nor does one that closes a bracket.
        assert!(reads_run_state(
            "{{ {'a': {'b': 1}}['a'] if execute else '' }}"
        ));
        assert!(reads_run_state(
            "select {{ my_macro({'a': {'x': 1}}, model.name) }}"
        ));
        // A raw block's quotes are text.
        assert!(reads_run_state(
            "{% raw %}{{ it's {% endraw %}{{ 'a' ~ '}}' ~ model.name }}"
        ));
        assert!(!reads_run_state(
            "{% raw %}{{ execute }}{% endraw %} select 1"
        ));
    }
}
