//! Discovery: walking the model, seed, macro, snapshot and test paths (sorted), reading each
//! file once, and telling models, seeds, snapshots, macro files, singular tests and unit-test
//! fixtures apart. The property YAML files are read on the thread pool meanwhile and applied
//! in file order once every model name is known (`properties.rs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::properties::{KnownNames, ReadProperties};
use super::yaml::parse_yaml;
use super::{ModelFile, NodeProps, Project, SeedFile, SnapshotDef, blocks};
use crate::diagnostics::{Code, Problem, SourceFile};

/// Relative path with `/` separators.
pub(super) fn slash_path(path: &Path) -> String {
    path.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Files below `root/dir` with one of the extensions, sorted by path.
pub(super) fn files_with(
    root: &Path,
    dirs: &[String],
    exts: &[&str],
) -> Vec<(PathBuf, String, String)> {
    let mut out = Vec::new();
    for dir in dirs {
        let base = root.join(dir);
        if !base.is_dir() {
            continue;
        }
        for entry in walkdir::WalkDir::new(&base)
            .sort_by_file_name()
            .into_iter()
            .filter_map(Result::ok)
        {
            if !entry.file_type().is_file() {
                continue;
            }
            let path = entry.path();
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            if !exts.contains(&ext) {
                continue;
            }
            let rel_root = slash_path(path.strip_prefix(root).unwrap_or(path));
            let rel_dir = slash_path(path.strip_prefix(&base).unwrap_or(path));
            out.push((path.to_path_buf(), rel_root, rel_dir));
        }
    }
    out
}

/// A model file as read: its path from the project root, from its model path, and its text.
pub(super) type ReadModel = (String, String, Result<SourceFile, Problem>);

pub(super) fn fqn_of(project: &str, relative: &str) -> Vec<String> {
    let mut fqn = vec![project.to_string()];
    let parts: Vec<&str> = relative.split('/').collect();
    for p in &parts[..parts.len() - 1] {
        fqn.push((*p).to_string());
    }
    let last = parts[parts.len() - 1];
    fqn.push(
        last.rsplit_once('.')
            .map_or(last, |(stem, _)| stem)
            .to_string(),
    );
    fqn
}

pub(super) fn read_source(
    path: &Path,
    name: &str,
    problems: &mut Vec<Problem>,
) -> Option<SourceFile> {
    match std::fs::read_to_string(path) {
        Ok(text) => Some(SourceFile::new(name, text)),
        Err(e) => {
            problems.push(Problem::io(path, &e));
            None
        }
    }
}

impl Project {
    pub(super) fn discover(&mut self, problems: &mut Vec<Problem>) {
        let root = self.root.clone();
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        let mut yaml_dirs = self.model_paths.clone();
        yaml_dirs.extend(self.seed_paths.iter().cloned());
        yaml_dirs.extend(self.snapshot_paths.iter().cloned());
        yaml_dirs.sort();
        yaml_dirs.dedup();
        // Reading thousands of small files is bound by system calls: read them in parallel,
        // and parse the property files meanwhile (their entries are checked against the model
        // names below, once every model is known).
        let (read, properties): (Vec<ReadModel>, Vec<ReadProperties>) = rayon::join(
            || {
                files_with(&root, &self.model_paths, &["sql"])
                    .into_par_iter()
                    .map(|(abs, rel_root, rel_dir)| {
                        let file = std::fs::read_to_string(&abs)
                            .map(|text| SourceFile::new(rel_root.clone(), text))
                            .map_err(|e| Problem::io(&abs, &e));
                        (rel_root, rel_dir, file)
                    })
                    .collect()
            },
            || {
                files_with(&root, &yaml_dirs, &["yml", "yaml"])
                    .into_par_iter()
                    .map(|(abs, rel_root, _)| {
                        let file = std::fs::read_to_string(&abs)
                            .map(|text| SourceFile::new(rel_root, text))
                            .map_err(|e| Problem::io(&abs, &e))?;
                        let doc = parse_yaml(&file);
                        Ok((file, doc))
                    })
                    .collect()
            },
        );
        for (rel_root, rel_dir, file) in read {
            let file = match file {
                Ok(f) => f,
                Err(p) => {
                    problems.push(p);
                    continue;
                }
            };
            let fqn = fqn_of(&self.name, &rel_dir);
            let name = fqn.last().cloned().unwrap_or_default();
            if let Some(other) = seen.insert(name.clone(), rel_root.clone()) {
                problems.push(
                    Problem::new(
                        Code::DuplicateNode,
                        format!("two models are named `{name}`: `{other}` and `{rel_root}`"),
                    )
                    .at(&file, 0, 0, "second definition")
                    .help("rename one of the files; model names must be unique in a project"),
                );
            }
            self.models.push(ModelFile {
                name,
                path: rel_root,
                relative: rel_dir,
                fqn,
                file,
                version: None,
            });
        }
        for (abs, rel_root, rel_dir) in files_with(&root, &self.seed_paths, &["csv"]) {
            let fqn = fqn_of(&self.name, &rel_dir);
            let name = fqn.last().cloned().unwrap_or_default();
            if let Some(other) = seen.insert(name.clone(), rel_root.clone()) {
                problems.push(
                    Problem::new(
                        Code::DuplicateNode,
                        format!(
                            "a seed and a model share the name `{name}`: `{other}` and `{rel_root}`"
                        ),
                    )
                    .help("rename one of them; `ref()` must know which one you mean"),
                );
            }
            self.seeds.push(SeedFile {
                name,
                path: rel_root,
                relative: rel_dir,
                absolute: abs,
                fqn,
            });
        }
        for (abs, rel_root, _) in files_with(&root, &self.macro_paths, &["sql"]) {
            if let Some(file) = read_source(&abs, &rel_root, problems) {
                self.macro_files.push(file);
            }
        }
        self.discover_tests(problems);
        for (abs, rel_root, rel_dir) in files_with(&root, &self.snapshot_paths, &["sql"]) {
            let Some(file) = read_source(&abs, &rel_root, problems) else {
                continue;
            };
            let blocks = match blocks::extract(&file) {
                Ok(blocks) => blocks,
                Err(e) => {
                    problems.push(
                        Problem::new(
                            Code::Jinja,
                            format!("cannot read the snapshots in `{rel_root}`: {}", e.message),
                        )
                        .at(&file, e.offset, 2, "here")
                        .help("every `{% snapshot name %}` needs a matching `{% endsnapshot %}`"),
                    );
                    continue;
                }
            };
            let mut fqn = fqn_of(&self.name, &rel_dir);
            fqn.pop();
            for block in blocks {
                if block.kind != blocks::BlockKind::Snapshot {
                    continue;
                }
                if let Some(other) = seen.insert(block.name.clone(), rel_root.clone()) {
                    problems.push(
                        Problem::new(
                            Code::DuplicateNode,
                            format!(
                                "two nodes are named `{}`: `{other}` and `{rel_root}`",
                                block.name
                            ),
                        )
                        .at(&file, block.body_offset, 0, "second definition")
                        .help("rename one of them; `ref()` must know which one you mean"),
                    );
                }
                let mut node_fqn = fqn.clone();
                node_fqn.push(block.name.clone());
                self.snapshots.push(SnapshotDef {
                    name: block.name.clone(),
                    path: rel_root.clone(),
                    relative: rel_dir.clone(),
                    fqn: node_fqn,
                    file: file.clone(),
                    body: block.body,
                    body_offset: block.body_offset,
                    props: NodeProps::default(),
                });
            }
        }
        // Model and seed files are discovered before property files.
        let names = KnownNames {
            models: self.models.iter().map(|m| m.name.clone()).collect(),
            seeds: self.seeds.iter().map(|s| s.name.clone()).collect(),
        };
        for entry in properties {
            match entry {
                Ok((file, doc)) => self.read_properties(&file, doc, &names, problems),
                Err(p) => problems.push(p),
            }
        }
        for m in &mut self.models {
            m.version = self.versions.get(&m.name).cloned();
        }
        for s in &mut self.snapshots {
            if let Some(props) = self.pending_snapshot_props.remove(&s.name) {
                s.props = props;
            }
        }
    }

    /// Files in test-paths: those holding `{% test %}` blocks are macro files (custom generic
    /// tests); the others are singular tests.
    pub(super) fn discover_tests(&mut self, problems: &mut Vec<Problem>) {
        let root = self.root.clone();
        for (abs, rel_root, rel_dir) in files_with(&root, &self.test_paths, &["sql", "csv"]) {
            // `<test-path>/fixtures/` holds unit-test fixtures, not tests.
            if rel_dir.starts_with("fixtures/") {
                if let Some(file) = read_source(&abs, &rel_root, problems) {
                    let name = rel_dir.rsplit('/').next().unwrap_or(&rel_dir).to_string();
                    self.fixtures
                        .entry(name)
                        .or_insert((rel_root, file.text.to_string()));
                }
                continue;
            }
            if abs.extension().is_none_or(|e| e != "sql") {
                continue;
            }
            let Some(file) = read_source(&abs, &rel_root, problems) else {
                continue;
            };
            let is_generic = blocks::extract(&file).is_ok_and(|blocks| {
                blocks
                    .iter()
                    .any(|b| matches!(b.kind, blocks::BlockKind::Macro | blocks::BlockKind::Test))
            });
            if is_generic {
                self.macro_files.push(file);
                continue;
            }
            let fqn = fqn_of(&self.name, &rel_dir);
            self.singular_tests.push(ModelFile {
                name: fqn.last().cloned().unwrap_or_default(),
                path: rel_root,
                relative: rel_dir,
                fqn,
                file,
                version: None,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fqn_follows_folders() {
        assert_eq!(
            fqn_of("shop", "marts/core/orders.sql"),
            vec!["shop", "marts", "core", "orders"]
        );
        assert_eq!(fqn_of("shop", "orders.sql"), vec!["shop", "orders"]);
    }
}
