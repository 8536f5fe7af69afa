//! Phase timings for profiling: with `XFORM_TIMINGS=1`, each `mark` prints how long the phase
//! that just ended took, to stderr. Costs one relaxed load when off.

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

/// End a phase.
pub fn mark(phase: &str) {
    if !ON.load(Ordering::Relaxed) {
        return;
    }
    let mut last = LAST.lock().expect("timings lock");
    let now = Instant::now();
    if let Some(prev) = *last {
        eprintln!(
            "timing: {phase:<24} {:>8.1} ms",
            (now - prev).as_secs_f64() * 1000.0
        );
    }
    *last = Some(now);
}
