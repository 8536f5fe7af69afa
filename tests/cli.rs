//! The command line without a database: vars, selection, ls, clean, usage errors.

mod common;

use common::{TempProject, transcript};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn project() -> TempProject {
    let p = TempProject::empty("cli");
    p.write("xform.yml", "name: cli\nvars:\n  limit: 10\nmodels:\n  cli:\n    marts:\n      +materialized: table\n      +tags: [nightly]\n");
    p.write("seeds/raw.csv", "id\n1\n");
    p.write(
        "models/staging/stg.sql",
        "select * from {{ ref('raw') }} limit {{ var('limit') }}\n",
    );
    p.write("models/marts/wide.sql", "select * from {{ ref('stg') }}\n");
    p.write(
        "models/marts/narrow.sql",
        "{{ config(tags=['hourly']) }}\nselect * from {{ ref('wide') }}\n",
    );
    p.write("models/other.sql", "select 1 as x\n");
    p
}

#[test]
fn vars_on_the_command_line_override_the_project() {
    let p = project();
    let out = p.xform(&["compile", "--vars", "{limit: 3}", "-s", "stg"]);
    assert!(out.status.success(), "{}", transcript(p.path(), &out));
    let sql = std::fs::read_to_string(p.path().join("target/compiled/cli/models/staging/stg.sql"))
        .unwrap();
    assert!(sql.ends_with("limit 3"), "{sql}");
    assert!(
        !p.path()
            .join("target/compiled/cli/models/marts/wide.sql")
            .exists(),
        "only the selected model is compiled"
    );
}

#[test]
fn ls_understands_dbt_selectors() {
    let p = project();
    let ls = |args: &[&str]| {
        let mut all = vec!["ls", "--output", "name"];
        all.extend_from_slice(args);
        let out = p.xform(&all);
        assert!(out.status.success(), "{}", transcript(p.path(), &out));
        stdout(&out).lines().map(String::from).collect::<Vec<_>>()
    };
    assert_eq!(ls(&["-s", "+wide"]), vec!["raw", "stg", "wide"]);
    assert_eq!(ls(&["-s", "stg+"]), vec!["narrow", "stg", "wide"]);
    assert_eq!(ls(&["-s", "stg+1"]), vec!["stg", "wide"]);
    assert_eq!(ls(&["-s", "tag:nightly"]), vec!["narrow", "wide"]);
    assert_eq!(ls(&["-s", "tag:nightly,tag:hourly"]), vec!["narrow"]);
    assert_eq!(
        ls(&["-s", "path:models/marts", "--exclude", "narrow"]),
        vec!["wide"]
    );
    assert_eq!(ls(&["-s", "stg", "other"]), vec!["other", "stg"]);
    assert_eq!(ls(&["-s", "resource_type:seed"]), vec!["raw"]);
    assert_eq!(ls(&["-s", "*r*"]), vec!["narrow", "other", "raw"]);
    assert_eq!(ls(&["--resource-type", "seed"]), vec!["raw"]);
    let paths = p.xform(&["ls", "-s", "@stg", "--output", "path"]);
    assert_eq!(
        stdout(&paths),
        "models/marts/narrow.sql\nmodels/marts/wide.sql\nmodels/staging/stg.sql\nseeds/raw.csv\n"
    );
}

#[test]
fn a_selector_that_matches_nothing_says_so() {
    let p = project();
    let out = p.xform(&["ls", "-s", "nothing_here"]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("the selector `nothing_here` matches no node")
    );
    let bad = p.xform(&["ls", "-s", "colour:red"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown selector method `colour`"));
}

#[test]
fn clean_removes_the_target_folder_only() {
    let p = project();
    assert!(p.xform(&["compile"]).status.success());
    assert!(p.path().join("target/manifest.json").is_file());
    let out = p.xform(&["clean"]);
    assert!(out.status.success());
    assert!(!p.path().join("target").exists());
    assert!(p.path().join("models/other.sql").is_file());
}

#[test]
fn usage_and_project_errors_exit_with_2() {
    let empty = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xform"))
        .args(["compile", "--project-dir"])
        .arg(empty.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("xform::project_not_found"));

    let p = project();
    let out = p.xform(&["compile", "--threads", "0"]);
    assert_eq!(out.status.code(), Some(2));
    let out = p.xform(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    let out = p.xform(&["--version"]);
    assert!(out.status.success());
    assert!(stdout(&out).starts_with("xform "));
}

#[test]
fn unknown_keys_warn_but_do_not_fail() {
    let p = project();
    p.write(
        "xform.yml",
        "name: cli\nmodle-paths: [models]\nvars:\n  limit: 1\n",
    );
    p.write(
        "models/schema.yml",
        "version: 2\nmodel:\n  - name: stg\nmodels:\n  - name: stgg\n    columns:\n      - name: id\n        data_tests: [unique]\n",
    );
    let out = p.xform(&["compile"]);
    assert!(out.status.success(), "{}", transcript(p.path(), &out));
    insta::assert_snapshot!(String::from_utf8_lossy(&out.stderr));
}

#[test]
fn dbt_project_files_are_read_as_they_are() {
    let p = TempProject::empty("unused");
    p.remove("xform.yml");
    p.write(
        "dbt_project.yml",
        "name: legacy\nconfig-version: 2\nmodel-paths: [transformations]\n",
    );
    p.write("transformations/a.sql", "select 1 as x\n");
    let out = p.xform(&["ls", "--output", "selector"]);
    assert!(out.status.success(), "{}", transcript(p.path(), &out));
    assert_eq!(stdout(&out), "legacy.a\n");
}

#[test]
fn state_selectors_compare_with_an_earlier_manifest() {
    let p = project();
    p.write("seeds/codes.csv", "code\n1\n");
    p.write("seeds/fixed.csv", "code\n1\n");
    assert!(p.xform(&["compile"]).status.success());
    let previous = tempfile::tempdir().unwrap();
    std::fs::copy(
        p.path().join("target/manifest.json"),
        previous.path().join("manifest.json"),
    )
    .unwrap();
    // One body edit, one config edit, one new model.
    p.write("models/other.sql", "select 2 as x\n");
    p.write(
        "models/marts/wide.sql",
        "{{ config(tags=['extra']) }}\nselect * from {{ ref('stg') }}\n",
    );
    p.write("models/brand_new.sql", "select 3 as y\n");
    let state = previous.path().to_str().unwrap();
    let ls = |selector: &str| {
        let out = p.xform(&[
            "ls",
            "--output",
            "name",
            "--resource-type",
            "model",
            "--state",
            state,
            "-s",
            selector,
        ]);
        assert!(out.status.success(), "{}", transcript(p.path(), &out));
        stdout(&out).lines().map(String::from).collect::<Vec<_>>()
    };
    assert_eq!(ls("state:new"), ["brand_new"]);
    assert_eq!(ls("state:modified.body"), ["other", "wide"]);
    assert_eq!(ls("state:modified.configs"), ["wide"]);
    assert_eq!(ls("state:modified"), ["brand_new", "other", "wide"]);
    assert_eq!(
        ls("state:modified+"),
        ["brand_new", "narrow", "other", "wide"]
    );
    assert_eq!(ls("state:unmodified"), ["narrow", "stg"]);
    // A seed is modified when its file's rows change.
    p.write("seeds/codes.csv", "code\n1\n2\n");
    let out = p.xform(&[
        "ls",
        "--output",
        "name",
        "--resource-type",
        "seed",
        "--state",
        state,
        "-s",
        "state:modified",
    ]);
    assert_eq!(stdout(&out), "codes\n", "{}", transcript(p.path(), &out));
    // Without --state the selector is a usage error.
    let out = p.xform(&["ls", "-s", "state:modified"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no --state was given"));
}

#[test]
fn config_and_package_selectors() {
    let p = project();
    p.write(
        "models/other.sql",
        "{{ config(materialized='table', enabled=true, meta={'owner': 'ops'}) }}\nselect 1 as x\n",
    );
    let ls = |selector: &str| {
        let out = p.xform(&[
            "ls",
            "--output",
            "name",
            "--resource-type",
            "model",
            "-s",
            selector,
        ]);
        assert!(out.status.success(), "{}", transcript(p.path(), &out));
        stdout(&out).lines().map(String::from).collect::<Vec<_>>()
    };
    assert_eq!(ls("config.materialized:table"), ["narrow", "other", "wide"]);
    assert_eq!(ls("config.tags:nightly"), ["narrow", "wide"]);
    assert_eq!(ls("config.enabled:true"), ["other"]);
    assert_eq!(ls("package:cli"), ["narrow", "other", "stg", "wide"]);
    assert!(ls("package:elsewhere").is_empty());
}

#[test]
fn selectors_yml_definitions() {
    let p = project();
    p.write(
        "selectors.yml",
        "selectors:\n  - name: marts_but_narrow\n    definition:\n      union:\n        - method: path\n          value: models/marts\n        - exclude:\n            - narrow\n  - name: upstream_of_wide\n    definition:\n      method: fqn\n      value: wide\n      parents: true\n  - name: nightly_and_hourly\n    definition:\n      intersection:\n        - tag:nightly\n        - tag:hourly\n",
    );
    let ls = |name: &str| {
        let out = p.xform(&["ls", "--output", "name", "--selector", name]);
        assert!(out.status.success(), "{}", transcript(p.path(), &out));
        stdout(&out).lines().map(String::from).collect::<Vec<_>>()
    };
    assert_eq!(ls("marts_but_narrow"), ["wide"]);
    assert_eq!(ls("upstream_of_wide"), ["raw", "stg", "wide"]);
    assert_eq!(ls("nightly_and_hourly"), ["narrow"]);
    let out = p.xform(&["ls", "--selector", "marts_but_narow"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean `marts_but_narrow`?"));
}

#[test]
fn target_path_moves_compiled_sql_and_artifacts() {
    let p = project();
    let out = p.xform(&["compile", "--target-path", "elsewhere/t1", "-s", "stg"]);
    assert!(out.status.success(), "{}", transcript(p.path(), &out));
    assert!(
        p.path()
            .join("elsewhere/t1/compiled/cli/models/staging/stg.sql")
            .exists()
    );
    let manifest = std::fs::read_to_string(p.path().join("elsewhere/t1/manifest.json")).unwrap();
    assert!(
        manifest.contains(r#""compiled_path":"elsewhere/t1/compiled/cli/models/staging/stg.sql""#),
        "{manifest}"
    );
    assert!(!p.path().join("target").exists(), "target/ is not touched");
    // The default clean-targets follow it.
    let out = p.xform(&["clean", "--target-path", "elsewhere/t1"]);
    assert!(out.status.success(), "{}", transcript(p.path(), &out));
    assert!(!p.path().join("elsewhere/t1").exists());
}

#[test]
fn docs_generate_needs_no_database() {
    let p = project();
    let out = p.xform(&["docs", "generate", "--empty-catalog"]);
    assert!(out.status.success(), "{}", transcript(p.path(), &out));
    let html = std::fs::read_to_string(p.path().join("target/index.html")).unwrap();
    assert!(
        html.contains(r#""id":"model.cli.narrow""#),
        "every node is in the page"
    );
    assert!(p.path().join("target/catalog.json").exists());
    assert!(
        p.path()
            .join("target/compiled/cli/models/marts/wide.sql")
            .exists()
    );
}

#[test]
fn unparsable_sql_warns_on_every_compile_despite_the_parse_cache() {
    let p = project();
    p.write("models/odd.sql", "select from from where\n");
    for run in ["first", "second"] {
        let out = p.xform(&["compile"]);
        assert!(out.status.success(), "{}", transcript(p.path(), &out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("the compiled SQL of `odd` does not parse"),
            "{run} compile: {err}"
        );
        assert!(
            !err.contains("`other` does not parse"),
            "{run} compile: {err}"
        );
    }
    // The cache holds what parsed: a model that stops parsing is parsed again and warned of.
    p.write("models/other.sql", "select 1 as x from\n");
    let out = p.xform(&["compile"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`other` does not parse"), "{err}");
}

#[test]
fn an_unparsable_line_is_numbered_as_in_the_compiled_file() {
    let p = project();
    p.write(
        "models/eph.sql",
        "{{ config(materialized='ephemeral') }}\nselect 1 as id\n",
    );
    // The error is on the query's third line; two ephemeral lines and the CTE's own lines go
    // in front of it in the compiled file.
    p.write(
        "models/uses_eph.sql",
        "select id\nfrom {{ ref('eph') }}\nwhere id = (1 +)\n",
    );
    let out = p.xform(&["compile", "-s", "uses_eph"]);
    assert!(out.status.success(), "{}", transcript(p.path(), &out));
    let err = String::from_utf8_lossy(&out.stderr).replace('\n', " ");
    let compiled =
        std::fs::read_to_string(p.path().join("target/compiled/cli/models/uses_eph.sql")).unwrap();
    let line = 1 + compiled
        .lines()
        .position(|l| l.contains("where id = (1 +)"))
        .expect("the query's line is in the compiled file");
    assert!(line > 3, "CTEs were injected in front: {compiled}");
    assert!(
        err.contains(&format!("Line: {line},")),
        "line {line} of the compiled file expected in: {err}"
    );
}

#[test]
fn a_target_type_without_an_adapter_is_refused_with_the_types_that_run() {
    let p = TempProject::empty("wh");
    p.write(
        "profiles.yml",
        "wh:\n  target: prod\n  outputs:\n    prod:\n      type: redshift\n      host: h\n      dbname: analytics\n      schema: marts\n",
    );
    p.write("models/m.sql", "select 1 as id\n");
    let out = p.xform(&["compile"]);
    let text = transcript(p.path(), &out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("xform::profile"), "{text}");
    assert!(
        text.contains("target `prod` has type `redshift`, which xform cannot connect to yet"),
        "{text}"
    );
    assert!(text.contains("duckdb, snowflake, bigquery"), "{text}");
    assert!(!p.path().join("target").exists(), "nothing is written");
}

#[test]
fn profile_keys_xform_ignores_are_warned_about() {
    let p = TempProject::empty("keys");
    p.write(
        "profiles.yml",
        "keys:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: keys.duckdb\n      plugins: [{module: excel}]\n      threds: 4\n",
    );
    p.write("models/m.sql", "select 1 as id\n");
    let out = p.xform(&["compile"]);
    let text = transcript(p.path(), &out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("`plugins` of target `dev` is not supported by xform yet and is ignored"),
        "{text}"
    );
    assert!(
        text.contains("unknown key `threds` in target `dev` is ignored"),
        "{text}"
    );
    assert!(text.contains("did you mean `threads`?"), "{text}");
}

#[test]
fn tests_come_along_as_indirect_selection_says_and_leave_with_an_excluded_parent() {
    let p = project();
    // A test of wide alone, and a relationships test reading wide and stg.
    p.write(
        "models/marts/schema.yml",
        "models:\n  - name: wide\n    columns:\n      - name: id\n        data_tests:\n          - not_null\n          - relationships:\n              arguments: {to: ref('stg'), field: id}\n",
    );
    let ls = |args: &[&str]| {
        let mut all = vec!["ls", "--output", "name", "--resource-type", "test"];
        all.extend_from_slice(args);
        let out = p.xform(&all);
        assert!(out.status.success(), "{}", transcript(p.path(), &out));
        stdout(&out).lines().map(String::from).collect::<Vec<_>>()
    };
    let both = vec![
        "not_null_wide_id".to_string(),
        "relationships_wide_id__id__ref_stg_".to_string(),
    ];
    assert_eq!(ls(&["-s", "wide"]), both);
    assert_eq!(ls(&["-s", "wide", "--indirect-selection", "eager"]), both);
    assert_eq!(
        ls(&["-s", "wide", "--indirect-selection", "cautious"]),
        ["not_null_wide_id"]
    );
    assert_eq!(
        ls(&["-s", "wide", "stg", "--indirect-selection", "cautious"]),
        both
    );
    // buildable: stg is upstream of wide, so the relationships test can run.
    assert_eq!(
        ls(&["-s", "wide", "--indirect-selection", "buildable"]),
        both
    );
    assert!(ls(&["-s", "wide", "--indirect-selection", "empty"]).is_empty());
    // Excluding stg drops every test that reads it, even one of a selected node.
    assert_eq!(ls(&["--exclude", "stg"]), ["not_null_wide_id"]);
    assert_eq!(
        ls(&["-s", "wide", "--exclude", "stg"]),
        ["not_null_wide_id"]
    );

    let out = p.xform(&["ls", "--indirect-selection", "sometimes"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("use eager (the default), cautious, buildable or empty"),
        "{}",
        transcript(p.path(), &out)
    );
}

#[test]
fn jinja_in_yaml_configs_and_test_arguments_is_rendered() {
    let p = TempProject::empty("jy");
    p.write(
        "xform.yml",
        "name: jy\nvars:\n  nightly: true\n  statuses: [open, shut]\nmodels:\n  jy:\n    +materialized: \"{{ 'table' if target.name == 'dev' else 'view' }}\"\n",
    );
    p.write("models/m.sql", "select 1 as id\n");
    p.write(
        "macros/twice.sql",
        "{% macro twice(c) %}({{ c }} * 2){% endmacro %}\n\
         {% test is_true(model, expression) %}select * from {{ model }} where not ({{ expression }}){% endtest %}\n",
    );
    p.write(
        "models/schema.yml",
        "models:\n  - name: m\n    config:\n      tags: \"{{ 'nightly' if var('nightly') else 'daily' }}\"\n\
         \x20   data_tests:\n      - is_true:\n          arguments:\n            expression: \"{{ twice('id') }} > 0\"\n\
         \x20   columns:\n      - name: id\n        data_tests:\n          - accepted_values:\n              arguments:\n                values: \"{{ var('statuses') }}\"\n",
    );
    let out = p.xform(&[
        "ls",
        "-s",
        "m",
        "--resource-type",
        "model",
        "--output",
        "json",
        "--output-keys",
        "config",
    ]);
    let text = transcript(p.path(), &out);
    assert!(out.status.success(), "{text}");
    let line: serde_json::Value =
        serde_json::from_str(stdout(&out).lines().next().unwrap()).unwrap();
    assert_eq!(line["config"]["materialized"], "table", "{text}");
    assert_eq!(
        line["config"]["tags"],
        serde_json::json!(["nightly"]),
        "{text}"
    );

    let out = p.xform(&["compile"]);
    assert!(out.status.success(), "{}", transcript(p.path(), &out));
    // Each test's compiled file, whatever its (shortened) name.
    let dir = p.path().join("target/compiled/jy/models/schema.yml");
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let read = |prefix: &str| {
        let file = files
            .iter()
            .find(|f| f.file_name().unwrap().to_string_lossy().starts_with(prefix))
            .unwrap();
        std::fs::read_to_string(file).unwrap()
    };
    // A list from a var stays a list: the test sees two values, not a string.
    let accepted = read("accepted_values");
    assert!(accepted.contains("not in ('open', 'shut')"), "{accepted}");
    let test = read("is_true");
    assert!(test.contains("where not ((id * 2) > 0)"), "{test}");
}

#[test]
fn docs_blocks_fill_descriptions_and_yaml_resources_reach_the_manifest() {
    let p = TempProject::empty("dm");
    p.write("models/m.sql", "select 1 as id\n");
    p.write(
        "models/docs.md",
        "# Notes\n{% docs orders %}\nOne row per **order**.\n{% enddocs %}\n{% docs order_id %}The order's key.{% enddocs %}\n",
    );
    p.write(
        "models/schema.yml",
        "models:\n  - name: m\n    description: \"{{ doc('orders') }}\"\n    columns:\n      - name: id\n        description: \"{{ doc('order_id') }} Never null.\"\n\
         exposures:\n  - name: dashboard\n    type: dashboard\n    owner: {name: Ann}\n    depends_on: [\"ref('m')\"]\n\
         metrics:\n  - name: order_count\n    label: Orders\n    type: simple\n\
         groups:\n  - name: finance\n    owner: {name: Bo}\n",
    );
    let out = p.xform(&["parse"]);
    assert!(out.status.success(), "{}", transcript(p.path(), &out));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.path().join("target/manifest.json")).unwrap())
            .unwrap();
    let m = &manifest["nodes"]["model.dm.m"];
    assert_eq!(m["description"], "One row per **order**.");
    assert_eq!(
        m["columns"]["id"]["description"],
        "The order's key. Never null."
    );
    assert_eq!(
        manifest["docs"]["doc.dm.orders"]["block_contents"],
        "One row per **order**."
    );
    let exposure = &manifest["exposures"]["exposure.dm.dashboard"];
    assert_eq!(
        exposure["depends_on"]["nodes"],
        serde_json::json!(["model.dm.m"])
    );
    assert_eq!(exposure["owner"]["name"], "Ann");
    assert_eq!(
        manifest["metrics"]["metric.dm.order_count"]["label"],
        "Orders"
    );
    assert_eq!(manifest["groups"]["group.dm.finance"]["name"], "finance");

    // A doc() of no block is a diagnostic naming it.
    p.write(
        "models/schema.yml",
        "models:\n  - name: m\n    description: \"{{ doc('nope') }}\"\n",
    );
    let out = p.xform(&["parse"]);
    let text = transcript(p.path(), &out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("no docs block is named `nope`"), "{text}");
}

#[test]
fn analyses_are_compiled_with_their_refs_and_never_run() {
    let p = project();
    p.write(
        "analyses/by_id.sql",
        "select count(*) as n from {{ ref('wide') }} where {{ var('limit') }} > 0\n",
    );
    let out = p.xform(&["compile"]);
    let text = transcript(p.path(), &out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(", 1 analysis to"), "{text}");
    let sql =
        std::fs::read_to_string(p.path().join("target/compiled/cli/analyses/by_id.sql")).unwrap();
    assert_eq!(
        sql,
        "select count(*) as n from \"cli\".\"main\".\"wide\" where 10 > 0"
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.path().join("target/manifest.json")).unwrap())
            .unwrap();
    let node = &manifest["nodes"]["analysis.cli.by_id"];
    assert_eq!(node["resource_type"], "analysis");
    assert_eq!(
        node["depends_on"]["nodes"],
        serde_json::json!(["model.cli.wide"])
    );
    assert_eq!(node["fqn"], serde_json::json!(["cli", "analysis", "by_id"]));
    let out = p.xform(&["ls", "--resource-type", "analysis", "--output", "name"]);
    assert_eq!(stdout(&out), "by_id\n");
}

#[test]
fn templates_read_the_project_s_graph() {
    let p = project();
    p.write(
        "models/lister.sql",
        "{% set names = [] %}\
         {% for node in graph.nodes.values() | selectattr('resource_type', 'equalto', 'model') %}\
         {% do names.append(node.name) %}{% endfor %}\
         select '{{ names | sort | join(',') }}' as models,\n\
         {% if execute %}'{{ graph.nodes['model.cli.wide'].config.materialized }}' as wide,\n\
         '{{ graph.nodes['model.cli.stg'].depends_on.nodes | join(',') }}' as stg_parents{% endif %}\n",
    );
    let out = p.xform(&["compile", "-s", "lister"]);
    assert!(out.status.success(), "{}", transcript(p.path(), &out));
    let sql =
        std::fs::read_to_string(p.path().join("target/compiled/cli/models/lister.sql")).unwrap();
    assert!(
        sql.contains("select 'lister,narrow,other,stg,wide' as models"),
        "{sql}"
    );
    assert!(sql.contains("'table' as wide"), "{sql}");
    assert!(sql.contains("'seed.cli.raw' as stg_parents"), "{sql}");
}

#[test]
fn the_graph_global_holds_exposures_and_metrics_as_the_manifest_does() {
    let p = TempProject::empty("gx");
    p.write("models/m.sql", "select 1 as id");
    p.write(
        "models/schema.yml",
        "sources:\n  - name: raw\n    tables:\n      - name: events\n\
         exposures:\n  - name: board\n    type: dashboard\n    owner: {name: Ann}\n    \
         depends_on: [\"ref('m')\", \"source('raw', 'events')\"]\n\
         metrics:\n  - name: n\n    label: N\n    type: simple\n",
    );
    p.write(
        "models/census.sql",
        "{% if execute %}{% set e = graph.exposures['exposure.gx.board'] %}\
         select {{ graph.exposures | length }} as exposures, {{ graph.metrics | length }} as metrics,\n\
         '{{ e.depends_on.nodes | join(',') }}' as parents, '{{ e.meta | tojson }}' as meta\
         {% else %}select 1 as id{% endif %}",
    );
    let out = p.xform(&["compile", "-s", "census"]);
    assert!(out.status.success(), "{}", transcript(p.path(), &out));
    let sql =
        std::fs::read_to_string(p.path().join("target/compiled/gx/models/census.sql")).unwrap();
    assert!(sql.contains("select 1 as exposures, 1 as metrics"), "{sql}");
    assert!(
        sql.contains("'source.gx.raw.events,model.gx.m' as parents"),
        "{sql}"
    );
    assert!(sql.contains("'{}' as meta"), "{sql}");
}
