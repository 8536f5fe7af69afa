//! Git packages through the `git` command line, as dbt installs them: clone, check out the
//! revision (a branch, tag or commit), and record the commit it resolved to.
//!
//! A URL may carry a token read with `env_var` in the packages file: git is given the rendered
//! URL, and every message shows the URL as written, with git's own words masked likewise.

use std::path::Path;
use std::process::Command;

use crate::diagnostics::{Code, Problem};
use crate::project::packages::render_env_vars;

/// Clone `url` into `dir` and check out `revision` (the default branch's head without one).
/// Returns the commit checked out.
pub fn clone_at(url: &str, revision: Option<&str>, dir: &Path) -> Result<String, Problem> {
    let rendered = render_env_vars(url, "packages.yml")?;
    let mask = |text: &str| {
        if rendered == url {
            text.to_string()
        } else {
            text.replace(&rendered, url)
        }
    };
    let run = |args: &[&str], cwd: Option<&Path>| -> Result<String, String> {
        let mut cmd = Command::new("git");
        cmd.args(args).env("GIT_TERMINAL_PROMPT", "0");
        if let Some(d) = cwd {
            cmd.current_dir(d);
        }
        let out = cmd
            .output()
            .map_err(|e| format!("cannot run git (is it installed?): {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(mask(String::from_utf8_lossy(&out.stderr).trim()))
        }
    };
    let target = dir.to_string_lossy().to_string();
    if revision.is_some_and(|r| r.starts_with('-')) {
        return Err(Problem::new(
            Code::Packages,
            format!(
                "the revision `{}` of `{url}` is not a branch, tag or commit",
                revision.unwrap_or_default()
            ),
        )
        .help("a revision cannot start with `-`"));
    }
    run(&["clone", "--quiet", "--", &rendered, &target], None).map_err(|e| {
        Problem::new(Code::Packages, format!("cannot clone `{url}`: {e}"))
            .help("check the URL and that this machine may read the repository (a token can come from `env_var` in the packages file)")
    })?;
    if let Some(rev) = revision {
        // A branch or tag name, or a commit (also one not on the default branch).
        let checked = run(&["checkout", "--quiet", rev], Some(dir)).or_else(|_| {
            run(&["fetch", "--quiet", "origin", rev], Some(dir))
                .and_then(|_| run(&["checkout", "--quiet", "FETCH_HEAD"], Some(dir)))
        });
        if let Err(e) = checked {
            return Err(Problem::new(
                Code::Packages,
                format!("the revision `{rev}` does not exist in `{url}`"),
            )
            .help(format!(
                "give a branch, tag or commit of the repository in `revision:` (git said: {e})"
            )));
        }
    }
    run(&["rev-parse", "HEAD"], Some(dir)).map_err(|e| {
        Problem::new(
            Code::Packages,
            format!("cannot read the commit of `{url}`: {e}"),
        )
    })
}
