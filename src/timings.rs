//! Phase timings for profiling: with `XFORM_TIMINGS=1`, each `mark` prints how long the phase
//! that just ended took, the CPU time the process spent in it (all threads: a phase that leaves
//! a core idle shows), and the resident memory at its end, to stderr. Costs one relaxed load when off.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

static ON: AtomicBool = AtomicBool::new(false);
static LAST: Mutex<Option<(Instant, f64)>> = Mutex::new(None);

/// Start timing if `XFORM_TIMINGS` is set.
pub fn init() {
    if std::env::var_os("XFORM_TIMINGS").is_some() {
        ON.store(true, Ordering::Relaxed);
        *LAST.lock().expect("timings lock") = Some((Instant::now(), cpu_ms()));
    }
}

/// The process's resident memory now, from `/proc/self/statm` (0 where there is none).
fn resident_mb() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096 / (1 << 20))
}

/// CPU time (user and system) of the whole process so far, in milliseconds, threads that
/// already ended included (the process's CPU clock); 0 where it cannot be read.
fn cpu_ms() -> f64 {
    cpu_time::ProcessTime::try_now().map_or(0.0, |t| t.as_duration().as_secs_f64() * 1e3)
}

/// End a phase.
pub fn mark(phase: &str) {
    if !ON.load(Ordering::Relaxed) {
        return;
    }
    let mut last = LAST.lock().expect("timings lock");
    let now = (Instant::now(), cpu_ms());
    if let Some(prev) = *last {
        eprintln!(
            "timing: {phase:<24} {:>8.1} ms {:>8.1} ms CPU {:>6} MB",
            (now.0 - prev.0).as_secs_f64() * 1000.0,
            now.1 - prev.1,
            resident_mb()
        );
    }
    *last = Some(now);
}
