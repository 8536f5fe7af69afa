//! Data-driven compile tests: every folder under `tests/fixtures/compile/` is a project; the
//! test runs `xform compile` on a copy and snapshots the exit code, the output (diagnostics for
//! the `err_*` projects) and every compiled SQL file.

mod common;

use std::fmt::Write as _;

use common::{TempProject, transcript};

#[test]
fn compile_fixtures() {
    insta::glob!("fixtures/compile/*/*.yml", |path| {
        let name = path.file_name().unwrap().to_string_lossy();
        if name != "xform.yml" && name != "dbt_project.yml" {
            return;
        }
        let project = TempProject::from_fixture(path.parent().unwrap());
        let out = project.xform(&["compile"]);
        let mut text = transcript(project.path(), &out);
        let compiled = project.path().join("target/compiled");
        if compiled.is_dir() {
            let mut files: Vec<_> = walkdir::WalkDir::new(&compiled)
                .sort_by_file_name()
                .into_iter()
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_file())
                .collect();
            files.sort_by(|a, b| a.path().cmp(b.path()));
            for f in files {
                let rel = f
                    .path()
                    .strip_prefix(&compiled)
                    .unwrap()
                    .to_string_lossy()
                    .to_string();
                let _ = write!(
                    text,
                    "\n=== {rel}\n{}\n",
                    std::fs::read_to_string(f.path()).unwrap()
                );
            }
        }
        insta::assert_snapshot!(text);
    });
}

#[test]
fn compile_is_deterministic() {
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compile/basic");
    let a = TempProject::from_fixture(&fixture);
    let b = TempProject::from_fixture(&fixture);
    for p in [&a, &b] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_xform"))
            .arg("compile")
            .current_dir(p.path())
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    for rel in [
        "target/manifest.json",
        "target/compiled/basic/models/marts/user_activity.sql",
    ] {
        let x = std::fs::read(a.path().join(rel)).unwrap();
        let y = std::fs::read(b.path().join(rel)).unwrap();
        if std::path::Path::new(rel)
            .extension()
            .is_some_and(|e| e == "json")
        {
            // The manifest names no temporary folder, so two copies give the same bytes.
            assert_eq!(
                String::from_utf8_lossy(&x),
                String::from_utf8_lossy(&y),
                "{rel} differs"
            );
        } else {
            assert_eq!(x, y, "{rel} differs");
        }
    }
}
