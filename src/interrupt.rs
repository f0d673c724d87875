//! Ctrl-C and SIGTERM (and SIGHUP). An interrupted run leaves finished outputs or nothing,
//! never hidden debris: on a signal the temporary files of outputs still being written are
//! removed and the process exits with [`INTERRUPTED_EXIT_CODE`]. A command that can stop
//! cleanly on its own (record streams keep their finished records, training writes a
//! checkpoint) calls [`stop_on_request`]: the first signal then only sets the flag it polls,
//! and a second one ends the process at once, as above.

use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

/// Exit code of a run ended by a signal: 128 + SIGINT, as shells report an interrupted job.
pub const INTERRUPTED_EXIT_CODE: u8 = 130;

static STOP: AtomicBool = AtomicBool::new(false);
static POLLED: AtomicBool = AtomicBool::new(false);
static WATCH: Once = Once::new();

/// Starts handling the signals (once per process; later calls do nothing). Called as soon as
/// a command creates its first temporary output file; commands that write nothing keep the
/// default behaviour (the signal ends them).
pub fn watch() {
    WATCH.call_once(|| {
        if let Err(e) = ctrlc::set_handler(on_signal) {
            tracing::warn!("cannot handle Ctrl-C: {e}; an interrupted run may leave temporary files");
        }
    });
}

/// The running command polls [`stop_requested`] and stops on its own; from now on the first
/// signal only asks it to.
pub fn stop_on_request() {
    watch();
    POLLED.store(true, Ordering::SeqCst);
}

/// Whether a signal asked the run to stop (only ever set after [`stop_on_request`]).
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// The flag [`stop_requested`] reads, for code that takes a stop flag.
pub fn stop_flag() -> &'static AtomicBool {
    &STOP
}

/// Runs on the thread `ctrlc` keeps for signals, not inside a signal handler, so it may
/// print, lock and remove files; it never holds one lock while taking another.
fn on_signal() {
    if POLLED.load(Ordering::SeqCst) && !STOP.swap(true, Ordering::SeqCst) {
        eprintln!(
            "stopping after the work in progress (Ctrl-C again quits at once, keeping nothing unfinished)"
        );
        return;
    }
    eprintln!("interrupted: removing unfinished outputs");
    // Not `std::process::exit`: see `exit_now` for why no exit handler may run.
    crate::atomic_file::remove_unfinished_then_exit(crate::llama::exit_now, i32::from(INTERRUPTED_EXIT_CODE));
}
