//! `xform clean`: delete the project's clean-targets (never a folder outside the project).

use super::{EXIT_FAILED, EXIT_OK, Session, report};
use crate::diagnostics::{Code, Problem};

pub fn clean(s: &Session) -> i32 {
    let mut problems = Vec::new();
    for t in &s.project.clean_targets {
        let path = s.project.root.join(t);
        let Ok(canonical) = std::fs::canonicalize(&path) else {
            continue;
        };
        if !canonical.starts_with(&s.project.root) || canonical == s.project.root {
            problems.push(
                Problem::new(
                    Code::ProjectConfig,
                    format!("clean-targets entry `{t}` is outside the project; not deleted"),
                )
                .help("list only folders inside the project under clean-targets"),
            );
            continue;
        }
        match std::fs::remove_dir_all(&canonical) {
            Ok(()) => println!("Cleaned {t}/"),
            Err(e) => problems.push(Problem::io(&canonical, &e)),
        }
    }
    report(&problems);
    if problems.is_empty() {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
}
