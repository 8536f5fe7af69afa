//! Helpers shared by the integration tests: copy a fixture project to a temporary folder and
//! run the real `xform` binary on it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

/// Copy a folder recursively (the fixture stays clean: xform writes target/ and the database).
pub fn copy_dir(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from).sort_by_file_name() {
        let entry = entry.unwrap();
        let rel = entry.path().strip_prefix(from).unwrap();
        if rel.starts_with("target") || rel.extension().is_some_and(|e| e == "duckdb" || e == "wal")
        {
            continue;
        }
        let dest = to.join(rel);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// A project in a temporary folder.
pub struct TempProject {
    pub dir: tempfile::TempDir,
}

impl TempProject {
    pub fn from_fixture(path: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(path, dir.path());
        TempProject { dir }
    }

    pub fn empty(name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("xform.yml"), format!("name: {name}\n")).unwrap();
        TempProject { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    pub fn remove(&self, rel: &str) {
        std::fs::remove_file(self.dir.path().join(rel)).unwrap();
    }

    /// Run xform with `args` in the project folder.
    pub fn xform(&self, args: &[&str]) -> Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_xform"))
            .args(args)
            .current_dir(self.dir.path())
            .env("NO_COLOR", "1")
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .env("HOME", self.dir.path())
            .env_remove("DBT_PROFILES_DIR")
            .env_remove("DBT_TARGET_PATH")
            .output()
            .unwrap()
    }

    pub fn db_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.duckdb"))
    }
}

/// Exit code, stdout and stderr as one text, with the temporary folder replaced by `<project>`.
pub fn transcript(project: &Path, out: &Output) -> String {
    let root = project.to_string_lossy().to_string();
    let canonical = std::fs::canonicalize(project)
        .unwrap()
        .to_string_lossy()
        .to_string();
    let clean = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .replace(&canonical, "<project>")
            .replace(&root, "<project>")
    };
    let mut text = format!("exit: {}\n", out.status.code().unwrap_or(-1));
    let stdout = clean(&out.stdout);
    let stdout = stdout
        .lines()
        .map(|l| match l.find(" s:") {
            Some(_) if l.starts_with("Done in ") => {
                format!("Done in <time>{}", &l[l.find(" s:").unwrap() + 2..])
            }
            _ => time_free(l),
        })
        .collect::<Vec<_>>()
        .join("\n");
    text.push_str("--- stdout\n");
    text.push_str(&stdout);
    text.push_str("\n--- stderr\n");
    text.push_str(&clean(&out.stderr));
    text
}

/// Remove `(0.01 s)` timings from a progress line.
fn time_free(line: &str) -> String {
    match (line.rfind(" ("), line.ends_with(" s)")) {
        (Some(at), true) => format!("{} (<time>)", &line[..at]),
        _ => line.to_string(),
    }
}

#[cfg(feature = "duckdb")]
/// Run SQL on the project's database (the connection is closed before xform runs again).
pub fn sql(p: &TempProject, name: &str, statements: &str) {
    let conn = duckdb::Connection::open(p.db_path(name)).unwrap();
    conn.execute_batch(statements).unwrap();
}

#[cfg(feature = "duckdb")]
/// Every row of a query, columns joined with `|`, NULL as `null`.
pub fn rows(p: &TempProject, name: &str, query: &str) -> Vec<String> {
    let conn = duckdb::Connection::open(p.db_path(name)).unwrap();
    let wrapped = format!("select coalesce(cast(columns(*) as varchar), 'null') from ({query})");
    let mut stmt = conn.prepare(&wrapped).unwrap();
    let mut out = Vec::new();
    let mut result = stmt.query([]).unwrap();
    while let Some(row) = result.next().unwrap() {
        let n = row.as_ref().column_count();
        let cells: Vec<String> = (0..n).map(|i| row.get::<_, String>(i).unwrap()).collect();
        out.push(cells.join("|"));
    }
    out
}

#[cfg(feature = "duckdb")]
pub fn relations(p: &TempProject, name: &str) -> Vec<String> {
    rows(
        p,
        name,
        "select table_schema || '.' || table_name from information_schema.tables order by 1",
    )
}

#[cfg(feature = "duckdb")]
pub fn run(p: &TempProject, args: &[&str]) -> String {
    let out = p.xform(args);
    let text = transcript(p.path(), &out);
    assert!(out.status.success(), "{text}");
    text
}

#[cfg(feature = "duckdb")]
pub fn run_fails(p: &TempProject, args: &[&str]) -> String {
    let out = p.xform(args);
    let text = transcript(p.path(), &out);
    assert!(!out.status.success(), "{text}");
    text
}
