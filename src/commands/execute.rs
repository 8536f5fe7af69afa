//! `xform run`, `seed`, `snapshot`, `test` and `build`: parse the project, choose the nodes,
//! read the run's flags, hand them to `execute::run`, then print the problems and the summary
//! line and pick the exit code.

use std::time::Instant;

use super::{EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, report};
use crate::cli::CommonArgs;
use crate::compile::parse;
use crate::config::Session;
use crate::diagnostics::{Code, Problem};
use crate::execute::{self, Finished, Mode, Request, Stopped};
use crate::materialize::microbatch;

/// `--event-time-start` and `--event-time-end`, read and checked.
type EventTimes = (Option<chrono::NaiveDateTime>, Option<chrono::NaiveDateTime>);

pub(super) fn event_times(args: &CommonArgs) -> Result<EventTimes, Problem> {
    let mut times = [None, None];
    for (slot, (flag, value)) in times.iter_mut().zip([
        ("--event-time-start", &args.event_time_start),
        ("--event-time-end", &args.event_time_end),
    ]) {
        if let Some(text) = value {
            let Some(t) = microbatch::parse_time(text) else {
                return Err(Problem::new(
                    Code::ProjectConfig,
                    format!("{flag} `{text}` is not a date or timestamp"),
                )
                .help("write it as an ISO date or timestamp: 2024-01-31 or 2024-01-31T06:00:00"));
            };
            *slot = Some(t);
        }
    }
    let [start, end] = times;
    if let (Some(start), Some(end)) = (start, end)
        && start >= end
    {
        return Err(Problem::new(
            Code::ProjectConfig,
            "--event-time-start must be before --event-time-end",
        ));
    }
    Ok((start, end))
}

pub fn execute(s: &Session, args: &CommonArgs, mode: Mode) -> i32 {
    let clock = Instant::now();
    let (renderer, graph) = match parse(&s.project, &s.target, &s.run) {
        Ok(g) => g,
        Err(p) => {
            report(&p);
            return EXIT_USAGE;
        }
    };
    let crate::select::Selection {
        nodes: slots,
        unmatched: empty,
    } = match super::choose(s, &graph, args, &mode.types()) {
        Ok(c) => c,
        Err(p) => {
            report(&[p]);
            return EXIT_USAGE;
        }
    };
    for e in &empty {
        eprintln!("warning: the selector `{e}` matches no node");
    }
    let (event_time_start, event_time_end) = match event_times(args) {
        Ok(t) => t,
        Err(p) => {
            report(&[p]);
            return EXIT_USAGE;
        }
    };
    let defer = |compiler: &mut crate::compile::Compiler<'_>,
                 selected: &dyn Fn(usize) -> bool,
                 exists: &dyn Fn(&crate::render::Relation) -> Option<bool>| {
        super::apply_defer(compiler, &graph, selected, exists, args)
    };
    // `build` reports each enabled exposure and saved query as `no-op`, as dbt 1.11 does (a
    // saved query with no exports has nothing to run). Which of them a `--select` reaches
    // (through metrics and semantic models) is not worked out: a selective build reports none.
    let no_ops = if matches!(mode, Mode::Build) && args.select.is_empty() && args.selector.is_none()
    {
        s.project
            .resources
            .iter()
            .filter(|r| r.kind == "saved_query" || r.kind == "exposure")
            .filter(|r| {
                r.yaml
                    .pointer("/config/enabled")
                    .and_then(serde_json::Value::as_bool)
                    != Some(false)
            })
            .map(|r| format!("{}.{}.{}", r.kind, r.package, r.name))
            .collect()
    } else {
        Vec::new()
    };
    let request = Request {
        mode,
        slots,
        no_ops,
        event_time_start,
        event_time_end,
        fail_fast: args.fail_fast,
        defer: if args.defer { Some(&defer) } else { None },
        args: serde_json::json!({
            "which": mode.name(),
            "select": args.select,
            "exclude": args.exclude,
            "threads": serde_json::Value::Null,
            "full_refresh": args.full_refresh,
            "state": args.state.as_ref().map(|p| p.display().to_string()),
            "defer": args.defer,
            "favor_state": args.favor_state,
            "empty": args.empty,
            "event_time_start": args.event_time_start,
            "event_time_end": args.event_time_end,
            "target": s.target.name,
        }),
    };
    match execute::run(s, &renderer, &graph, request, clock) {
        Ok(finished) => finish(&finished),
        Err(Stopped::Usage(problems)) => {
            report(&problems);
            EXIT_USAGE
        }
        Err(Stopped::Failed(problems)) => {
            report(&problems);
            EXIT_FAILED
        }
    }
}

/// Print the problems and the summary line; the exit code.
fn finish(f: &Finished) -> i32 {
    let warned = if f.warned > 0 {
        format!("{} warned, ", f.warned)
    } else {
        String::new()
    };
    let mut summary = format!(
        "Done in {:.2} s: {} passed, {warned}{} failed, {} skipped",
        f.elapsed, f.passed, f.failed, f.skipped
    );
    if f.interrupted {
        summary.push_str(" (interrupted)");
    }
    report(&f.problems);
    println!("{summary}");
    if f.interrupted {
        EXIT_INTERRUPTED
    } else if f.failed > 0 || f.problems.iter().any(|p| !p.warning) {
        EXIT_FAILED
    } else {
        EXIT_OK
    }
}
