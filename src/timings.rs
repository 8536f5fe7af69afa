//! Phase timings for profiling: with `XFORM_TIMINGS=1`, each `mark` prints how long the phase
//! that just ended took and the resident memory at its end, to stderr. Costs one relaxed load when off.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

static ON: AtomicBool = AtomicBool::new(false);
static LAST: Mutex<Option<Instant>> = Mutex::new(None);

/// Start timing if `XFORM_TIMINGS` is set.
pub fn init() {
    if std::env::var_os("XFORM_TIMINGS").is_some() {
        ON.store(true, Ordering::Relaxed);
        *LAST.lock().expect("timings lock") = Some(Instant::now());
    }
}

/// The process's resident memory now, from `/proc/self/statm` (0 where there is none).
fn resident_mb() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096 / (1 << 20))
}

/// End a phase.
pub fn mark(phase: &str) {
    if !ON.load(Ordering::Relaxed) {
        return;
    }
    let mut last = LAST.lock().expect("timings lock");
    let now = Instant::now();
    if let Some(prev) = *last {
        eprintln!(
            "timing: {phase:<24} {:>8.1} ms {:>6} MB",
            (now - prev).as_secs_f64() * 1000.0,
            resident_mb()
        );
    }
    *last = Some(now);
}
