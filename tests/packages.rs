//! Packages end to end: `xform deps` against a local folder, a git repository the test makes,
//! and a package hub served on 127.0.0.1 from an index and tarballs the test writes (never the
//! internet); then builds on DuckDB that call the packages' macros and tests.
#![cfg(feature = "duckdb")]

mod common;

use std::io::Write as _;
use std::path::Path;
use std::process::Command;

use common::{TempProject, rows, run, run_fails};

/// A package written here: macros (one dispatched), a generic test, and vars.
fn write_package(dir: &Path, name: &str, greeting: &str) {
    let w = |rel: &str, text: &str| {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    w(
        "dbt_project.yml",
        &format!("name: {name}\nversion: 1.0.0\nconfig-version: 2\n"),
    );
    w(
        "macros/greet.sql",
        &format!(
            "{{% macro greet(who) %}}{{{{ return(adapter.dispatch('greet', '{name}')(who)) }}}}{{% endmacro %}}\n\
             {{% macro default__greet(who) %}}'{greeting} ' || {{{{ who }}}}{{% endmacro %}}\n\
             {{% macro double(x) %}}({{{{ times(x, 2) }}}}){{% endmacro %}}\n\
             {{% macro times(x, n) %}}{{{{ x }}}} * {{{{ n }}}}{{% endmacro %}}\n"
        ),
    );
    w(
        "macros/tests.sql",
        "{% test below(model, column_name, maximum) %}\nselect * from {{ model }} where {{ column_name }} >= {{ maximum }}\n{% endtest %}\n",
    );
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=xform",
            "-c",
            "user.email=xform@example.com",
        ])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn project_using(packages_yml: &str) -> TempProject {
    let p = TempProject::empty("shop");
    p.write("packages.yml", packages_yml);
    p.write(
        "models/greetings.sql",
        "select {{ tools.greet(\"'ann'\") }} as greeting, {{ tools.double(21) }} as answer,\n\
         {{ dbt.dateadd('day', 1, \"date '2024-02-28'\") }} as next_day,\n\
         cast(7 as {{ type_string() }}) as seven",
    );
    p.write(
        "models/schema.yml",
        "models:\n  - name: greetings\n    columns:\n      - name: answer\n        data_tests:\n          - tools.below:\n              arguments: {maximum: 100}\n",
    );
    p
}

#[test]
fn a_local_package_is_linked_locked_and_its_macros_and_tests_run() {
    let shared = tempfile::tempdir().unwrap();
    write_package(shared.path(), "tools", "hello");
    let p = project_using(&format!(
        "packages:\n  - local: {}\n",
        shared.path().display()
    ));

    // Before `deps`, a build names the missing package and the command that installs it.
    let text = run_fails(&p, &["build"]);
    assert!(text.contains("xform::packages"), "{text}");
    assert!(text.contains("run `xform deps`"), "{text}");
    assert!(!p.path().join("dbt_packages").exists());

    let text = run(&p, &["deps"]);
    assert!(text.contains("Installed tools (local:"), "{text}");
    let link = p.path().join("dbt_packages/tools");
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let lock = std::fs::read_to_string(p.path().join("package-lock.yml")).unwrap();
    assert!(lock.contains("name: tools"), "{lock}");
    assert!(lock.contains("sha1_hash:"), "{lock}");

    let text = run(&p, &["build"]);
    assert!(text.contains("2 passed"), "{text}");
    assert_eq!(
        rows(&p, "shop", "select * from main.greetings"),
        ["hello ann|42|2024-02-29 00:00:00|7"]
    );

    // The project's own `default__greet` wins when the dispatch search order puts it first.
    p.write(
        "xform.yml",
        "name: shop\ndispatch:\n  - macro_namespace: tools\n    search_order: [shop, tools]\n",
    );
    p.write(
        "macros/greet.sql",
        "{% macro default__greet(who) %}'welcome ' || {{ who }}{% endmacro %}",
    );
    run(&p, &["run"]);
    assert_eq!(
        rows(&p, "shop", "select greeting from main.greetings"),
        ["welcome ann"]
    );

    // A failing package test fails the build like any test.
    p.write(
        "models/schema.yml",
        "models:\n  - name: greetings\n    columns:\n      - name: answer\n        data_tests:\n          - tools.below:\n              arguments: {maximum: 10}\n",
    );
    let text = run_fails(&p, &["build"]);
    assert!(text.contains("tools_below_greetings_answer__10"), "{text}");

    // A second `deps` installs from the lock file as it is.
    let text = run(&p, &["deps"]);
    assert!(text.contains("from package-lock.yml"), "{text}");
}

#[test]
fn a_git_package_is_installed_at_its_revision_and_a_bad_revision_changes_nothing() {
    let repo = tempfile::tempdir().unwrap();
    write_package(&repo.path().join("pkg"), "tools", "hi");
    git(repo.path(), &["init", "--quiet"]);
    git(repo.path(), &["add", "."]);
    git(repo.path(), &["commit", "--quiet", "-m", "first"]);
    git(repo.path(), &["tag", "v1"]);
    let v1 = git(repo.path(), &["rev-parse", "HEAD"]);
    write_package(&repo.path().join("pkg"), "tools", "hey");
    git(repo.path(), &["commit", "--quiet", "-am", "second"]);

    let url = format!("file://{}", repo.path().display());
    let p = project_using(&format!(
        "packages:\n  - git: {url}\n    revision: v1\n    subdirectory: pkg\n"
    ));
    let text = run(&p, &["deps"]);
    assert!(text.contains("Installed tools (git:"), "{text}");
    let lock = std::fs::read_to_string(p.path().join("package-lock.yml")).unwrap();
    assert!(lock.contains(&format!("revision: {v1}")), "{lock}");
    assert!(lock.contains("subdirectory: pkg"), "{lock}");
    assert!(!p.path().join("dbt_packages/tools/.git").exists());
    run(&p, &["run"]);
    assert_eq!(
        rows(&p, "shop", "select greeting from main.greetings"),
        ["hi ann"]
    );

    // A revision that does not exist: a diagnostic at the entry, and the install is untouched.
    p.write(
        "packages.yml",
        &format!("packages:\n  - git: {url}\n    revision: v9\n    subdirectory: pkg\n"),
    );
    let text = run_fails(&p, &["deps"]);
    assert!(text.contains("the revision `v9` does not exist"), "{text}");
    assert!(text.contains("packages.yml:2"), "{text}");
    assert!(
        p.path()
            .join("dbt_packages/tools/macros/greet.sql")
            .is_file()
    );
    assert!(!p.path().join("dbt_packages.xform-staging").exists());
    let after = std::fs::read_to_string(p.path().join("package-lock.yml")).unwrap();
    assert_eq!(lock, after);
}

/// A package hub on 127.0.0.1: `api/v1/<owner>/<name>.json` and tarballs, all written here.
struct Hub {
    url: String,
    server: std::sync::Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Hub {
    /// Listen on a free port; serve nothing until `serve`.
    fn bind() -> Hub {
        let server = std::sync::Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        Hub {
            url: format!("http://127.0.0.1:{port}/"),
            server,
            thread: None,
        }
    }

    /// Answer each path with its bytes, anything else with 404.
    fn serve(&mut self, files: Vec<(String, Vec<u8>)>) {
        let s = self.server.clone();
        self.thread = Some(std::thread::spawn(move || {
            for request in s.incoming_requests() {
                let path = request.url().trim_start_matches('/').to_string();
                let response = match files.iter().find(|(p, _)| *p == path) {
                    Some((_, body)) => tiny_http::Response::from_data(body.clone()),
                    None => {
                        tiny_http::Response::from_data(b"not found".to_vec()).with_status_code(404)
                    }
                };
                let _ = request.respond(response);
            }
        }));
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A `.tar.gz` of a package folder under one top folder, as the hub's tarballs are.
fn tarball(name: &str, greeting: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    write_package(dir.path(), name, greeting);
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    tar.append_dir_all("acme-tools-abc123", dir.path()).unwrap();
    let mut gz = tar.into_inner().unwrap();
    gz.flush().unwrap();
    gz.finish().unwrap()
}

#[test]
fn a_hub_package_takes_the_newest_version_in_range_for_this_dbt() {
    let mut hub = Hub::bind();
    let mut files = Vec::new();
    let mut versions = serde_json::Map::new();
    for (version, requires) in [
        ("0.9.0", ">=1.0.0"),
        ("1.0.0", ">=1.0.0"),
        ("1.2.0", ">=1.3.0"),
        ("1.3.0", ">=2.0.0"),
        ("2.0.0", ">=1.0.0"),
    ] {
        let file = format!("tarballs/tools-{version}.tar.gz");
        files.push((file.clone(), tarball("tools", &format!("v{version}"))));
        versions.insert(
            version.to_string(),
            serde_json::json!({
                "name": "tools",
                "version": version,
                "packages": [],
                "require_dbt_version": [requires, "<3.0.0"],
                "downloads": {"tarball": format!("{}{file}", hub.url)},
            }),
        );
    }
    let index = serde_json::json!({"name": "tools", "namespace": "acme", "versions": versions});
    files.push((
        "api/v1/acme/tools.json".to_string(),
        index.to_string().into_bytes(),
    ));
    hub.serve(files);

    let p = project_using(
        "packages:\n  - package: acme/tools\n    version: [\">=1.0.0\", \"<2.0.0\"]\n",
    );
    let deps = |p: &TempProject, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_xform"))
            .args(args)
            .current_dir(p.path())
            .env("NO_COLOR", "1")
            .env("DBT_PACKAGE_HUB_URL", &hub.url)
            .output()
            .unwrap()
    };
    let out = deps(&p, &["deps"]);
    let text = common::transcript(p.path(), &out);
    assert!(out.status.success(), "{text}");
    // 1.3.0 needs dbt 2, and 2.0.0 is out of range: 1.2.0.
    assert!(
        text.contains("Installed tools 1.2.0 (hub: acme/tools)"),
        "{text}"
    );
    let lock = std::fs::read_to_string(p.path().join("package-lock.yml")).unwrap();
    assert!(
        lock.contains("package: acme/tools") && lock.contains("version: 1.2.0"),
        "{lock}"
    );
    run(&p, &["run"]);
    assert_eq!(
        rows(&p, "shop", "select greeting from main.greetings"),
        ["v1.2.0 ann"]
    );

    // A range nothing satisfies: the versions the hub has, and the install is untouched.
    p.write(
        "packages.yml",
        "packages:\n  - package: acme/tools\n    version: \">=5.0.0\"\n",
    );
    let out = deps(&p, &["deps"]);
    let text = common::transcript(p.path(), &out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("no version of `acme/tools` satisfies >=5.0.0"),
        "{text}"
    );
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains("the hub has 0.9.0, 1.0.0, 1.2.0, 1.3.0, 2.0.0"),
        "{text}"
    );
    assert_eq!(
        std::fs::read_to_string(p.path().join("package-lock.yml")).unwrap(),
        lock
    );
    assert!(
        p.path()
            .join("dbt_packages/tools/dbt_project.yml")
            .is_file()
    );

    // An unknown package.
    p.write(
        "packages.yml",
        "packages:\n  - package: acme/nothing\n    version: 1.0.0\n",
    );
    let out = deps(&p, &["deps"]);
    let text = common::transcript(p.path(), &out);
    assert!(
        text.contains("the package hub has no package `acme/nothing`"),
        "{text}"
    );
}

#[test]
fn a_refused_connection_to_the_hub_is_a_diagnostic() {
    let p = project_using("packages:\n  - package: acme/tools\n    version: 1.0.0\n");
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new(env!("CARGO_BIN_EXE_xform"))
        .arg("deps")
        .current_dir(p.path())
        .env("NO_COLOR", "1")
        .env("DBT_PACKAGE_HUB_URL", format!("http://127.0.0.1:{port}/"))
        .output()
        .unwrap();
    let text = common::transcript(p.path(), &out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("cannot download"), "{text}");
    assert!(!p.path().join("dbt_packages").exists());
    assert!(!p.path().join("package-lock.yml").exists());
}

/// dbt's built-in macros (`dbt.dateadd`, `type_string`, `listagg`…), each called in one model,
/// give the values dbt-duckdb 1.11 gives (`expected.csv` was recorded from a `dbt build` of the
/// same model: each value cast to varchar).
#[test]
fn dbt_builtin_macros_give_dbt_duckdbs_values() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/builtin_macros");
    let p = TempProject::from_fixture(&fixture);
    run(&p, &["build"]);
    let expected = std::fs::read_to_string(fixture.join("expected.csv")).unwrap();
    let mut reader = csv::Reader::from_reader(expected.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    let values: Vec<String> = reader
        .records()
        .next()
        .unwrap()
        .unwrap()
        .iter()
        .map(String::from)
        .collect();
    let conn = duckdb::Connection::open(p.db_path("builtin_macros")).unwrap();
    let query = format!(
        "select {} from main.macro_values",
        header
            .iter()
            .map(|c| format!("coalesce(cast({c} as varchar), 'null')"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let actual: Vec<String> = conn
        .query_row(&query, [], |row| {
            (0..header.len()).map(|i| row.get::<_, String>(i)).collect()
        })
        .unwrap();
    let differences: Vec<String> = header
        .iter()
        .zip(values.iter().zip(actual))
        .filter(|(_, (want, got))| **want != *got)
        .map(|(column, (want, got))| format!("{column}: dbt-duckdb {want:?}, xform {got:?}"))
        .collect();
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

#[test]
fn broken_packages_files_are_diagnostics_at_their_line() {
    // A packages.yml that is not YAML.
    let p = TempProject::empty("shop");
    p.write("packages.yml", "packages:\n  - local: [unclosed\n");
    let text = run_fails(&p, &["deps"]);
    assert!(
        text.contains("xform::yaml") && text.contains("packages.yml:3"),
        "{text}"
    );

    // An entry that names no package, and a hub entry without a version.
    p.write("packages.yml", "packages:\n  - revision: main\n");
    let text = run_fails(&p, &["deps"]);
    assert!(text.contains("names no package"), "{text}");
    p.write("packages.yml", "packages:\n  - package: acme/tools\n");
    let text = run_fails(&p, &["deps"]);
    assert!(text.contains("has no `version:`"), "{text}");

    // An installed package whose project file is broken stops a build, naming the file.
    p.write("packages.yml", "packages: []\n");
    p.write("dbt_packages/tools/dbt_project.yml", "name: [tools\n");
    p.write("models/a.sql", "select 1 as id");
    let text = run_fails(&p, &["build"]);
    assert!(
        text.contains("dbt_packages/tools/dbt_project.yml"),
        "{text}"
    );
    assert!(text.contains("reinstall it with `xform deps`"), "{text}");

    // Two local entries installing projects of one name.
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    write_package(a.path(), "tools", "a");
    write_package(b.path(), "tools", "b");
    std::fs::remove_dir_all(p.path().join("dbt_packages")).unwrap();
    p.write(
        "packages.yml",
        &format!(
            "packages:\n  - local: {}\n  - local: {}\n",
            a.path().display(),
            b.path().display()
        ),
    );
    let text = run_fails(&p, &["deps"]);
    assert!(text.contains("two packages are named `tools`"), "{text}");
    assert!(!p.path().join("dbt_packages").exists());
}

/// `clean` and `debug` need no installed packages, as in dbt; whatever renders does.
#[test]
fn clean_and_debug_work_before_deps() {
    let p = TempProject::empty("shop");
    p.write(
        "packages.yml",
        "packages:\n  - package: acme/tools\n    version: 1.0.0\n",
    );
    p.write("models/a.sql", "select 1 as id");
    run(&p, &["clean"]);
    run(&p, &["debug"]);
    let text = run_fails(&p, &["compile"]);
    assert!(text.contains("run `xform deps`"), "{text}");
}

#[test]
fn a_package_s_models_seeds_and_tests_are_built_with_its_config_and_vars() {
    let shared = tempfile::tempdir().unwrap();
    let pkg = shared.path();
    let w = |rel: &str, text: &str| {
        let path = pkg.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    w(
        "dbt_project.yml",
        "name: rates\nversion: 1.0.0\nconfig-version: 2\nvars:\n  currency: usd\n  factor: 1\n\
         on-run-end: \"create or replace table main.rates_hook as select '{{ var('currency') }}' as c, {{ to_units('250') }} as u\"\n\
         models:\n  rates:\n    +schema: rates\n    +materialized: table\n\
         \x20   rate_optional:\n      +enabled: \"{{ var('rates_optional', true) }}\"\n",
    );
    w("seeds/rate_codes.csv", "code,cents\nA,100\nB,250\n");
    w(
        "macros/money.sql",
        "{% macro to_units(column) %}({{ column }} * {{ var('factor') }} / 100.0){% endmacro %}",
    );
    w(
        "models/rate_amounts.sql",
        "select code, {{ to_units('cents') }} as amount, '{{ var('currency') }}' as currency\n\
         from {{ ref('rate_codes') }}",
    );
    w("models/rate_extra.sql", "select 1 as x");
    // Turned off by a var the root project scopes to the package, in the package's own config.
    w("models/rate_optional.sql", "select 1 as x");
    w(
        "models/schema.yml",
        "models:\n  - name: rate_amounts\n    columns:\n      - name: code\n        data_tests: [unique, not_null]\n\
         unit_tests:\n  - name: units_scale\n    model: rate_amounts\n    given:\n      \
         - input: ref('rate_codes')\n        rows: [{code: X, cents: 200}]\n    \
         expect:\n      rows: [{code: X, amount: 20.0}]\n",
    );
    let p = TempProject::empty("shop");
    p.write(
        "packages.yml",
        &format!("packages:\n  - local: {}\n", pkg.display()),
    );
    // The root project's vars scoped to the package, and its config over the package's own.
    p.write(
        "xform.yml",
        "name: shop\nvars:\n  rates:\n    factor: 10\n    rates_optional: false\nmodels:\n  rates:\n    rate_extra:\n      +enabled: false\n",
    );
    p.write(
        "models/priced.sql",
        "select code, amount, currency from {{ ref('rates', 'rate_amounts') }} where code = 'B'",
    );
    run(&p, &["deps"]);
    let text = run(&p, &["build"]);
    // The package's unit test runs too, with the vars its package sees.
    assert!(text.contains("7 passed, 0 failed"), "{text}");
    // The package's on-run-end hook ran, with its own macros and vars.
    assert_eq!(
        rows(&p, "shop", "select * from main.rates_hook"),
        ["usd|25.0"]
    );
    let results = std::fs::read_to_string(p.path().join("target/run_results.json")).unwrap();
    assert!(
        results.contains("\"unit_test.rates.rate_amounts.units_scale\"")
            && results.contains("\"operation.rates.rates-on-run-end-0\""),
        "{results}"
    );
    assert_eq!(
        rows(
            &p,
            "shop",
            "select * from main_rates.rate_amounts order by code"
        ),
        ["A|10.0|usd", "B|25.0|usd"]
    );
    assert_eq!(
        rows(&p, "shop", "select * from main.priced"),
        ["B|25.0|usd"]
    );
    assert_eq!(
        rows(
            &p,
            "shop",
            "select count(*) from information_schema.tables where table_name in ('rate_extra', 'rate_optional')"
        ),
        ["0"]
    );
    assert!(
        p.path()
            .join("target/compiled/rates/models/rate_amounts.sql")
            .is_file()
    );
    let manifest = std::fs::read_to_string(p.path().join("target/manifest.json")).unwrap();
    assert!(
        manifest.contains("\"model.rates.rate_amounts\""),
        "{manifest}"
    );
    assert!(manifest.contains("\"seed.rates.rate_codes\""), "{manifest}");

    // Selecting by package builds only its nodes.
    let text = run(&p, &["ls", "-s", "package:rates"]);
    assert!(text.contains("rates.rate_amounts"), "{text}");
    assert!(!text.contains("shop.priced"), "{text}");

    // A project node of the same name as a package's is a diagnostic naming both…
    p.write(
        "models/rate_amounts.sql",
        "select 'B' as code, 1.0 as amount, 'eur' as currency",
    );
    let text = run_fails(&p, &["build"]);
    assert!(
        text.contains("two nodes are named `rate_amounts`"),
        "{text}"
    );
    assert!(text.contains("+enabled: false"), "{text}");
    // …unless the package's is turned off: then the project's takes its place, as in dbt.
    p.write(
        "xform.yml",
        "name: shop\nvars:\n  rates:\n    factor: 10\n    rates_optional: false\nmodels:\n  rates:\n    rate_extra:\n      +enabled: false\n    rate_amounts:\n      +enabled: false\n",
    );
    p.write(
        "models/priced.sql",
        "select code, amount, currency from {{ ref('rate_amounts') }} where code = 'B'",
    );
    run(&p, &["build"]);
    assert_eq!(rows(&p, "shop", "select * from main.priced"), ["B|1.0|eur"]);
}

#[test]
fn a_root_source_with_overrides_changes_the_package_s_source() {
    let shared = tempfile::tempdir().unwrap();
    let pkg = shared.path();
    let w = |rel: &str, text: &str| {
        let path = pkg.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    w("dbt_project.yml", "name: events_pkg\nversion: 1.0.0\n");
    w(
        "models/src.yml",
        "sources:\n  - name: raw\n    schema: raw\n    tables:\n      - name: events\n        \
         columns:\n          - name: id\n            data_tests: [not_null]\n",
    );
    w(
        "models/event_count.sql",
        "select count(*) as n from {{ source('raw', 'events') }}",
    );
    let p = TempProject::empty("shop");
    p.write(
        "packages.yml",
        &format!("packages:\n  - local: {}\n", pkg.display()),
    );
    p.write("seeds/landed_events.csv", "id\n1\n2\n3\n");
    // The package's `raw.events` is read from the project's seed, and tested here.
    p.write(
        "models/src.yml",
        "sources:\n  - name: raw\n    overrides: events_pkg\n    schema: main\n    tables:\n      \
         - name: events\n        identifier: landed_events\n        columns:\n          \
         - name: id\n            data_tests: [unique]\n",
    );
    run(&p, &["deps"]);
    run(&p, &["seed"]);
    let text = run(&p, &["build"]);
    // The override's `columns:` replace the package's: its `unique` runs, the package's
    // `not_null` does not.
    assert!(text.contains("3 passed, 0 failed"), "{text}");
    assert!(text.contains("source_unique_raw_events_id"), "{text}");
    assert!(!text.contains("not_null"), "{text}");
    assert_eq!(rows(&p, "shop", "select n from main.event_count"), ["3"]);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.path().join("target/manifest.json")).unwrap())
            .unwrap();
    assert!(manifest["sources"]["source.shop.raw.events"].is_null());
    assert_eq!(
        manifest["sources"]["source.events_pkg.raw.events"]["identifier"],
        "landed_events"
    );
    // Without `overrides:`, a source the project declares too is read from the project's,
    // also by the package's models, as dbt resolves sources root project first.
    p.write(
        "models/src.yml",
        "sources:\n  - name: raw\n    schema: main\n    tables:\n      \
         - name: events\n        identifier: landed_events\n",
    );
    p.write("seeds/landed_events.csv", "id\n1\n2\n");
    run(&p, &["seed"]);
    run(&p, &["run"]);
    assert_eq!(rows(&p, "shop", "select n from main.event_count"), ["2"]);
    // Overriding a source the package does not have is a warning at the entry, as in dbt.
    p.write(
        "models/src.yml",
        "sources:\n  - name: raw\n    schema: main\n    tables:\n      \
         - name: events\n        identifier: landed_events\n\
         \x20 - name: landing\n    overrides: events_pkg\n    tables:\n      - name: events\n",
    );
    let text = run(&p, &["compile"]);
    assert!(
        text.contains("source `landing` overrides the source of that name in package"),
        "{text}"
    );
    assert!(text.contains("models/src.yml"), "{text}");
}
