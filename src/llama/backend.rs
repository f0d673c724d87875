//! The llama.cpp backend: initialised once per process, its log routed to `tracing`.

use std::cell::{Cell, RefCell};
use std::ffi::{CStr, c_char, c_void};
use std::sync::Once;

static INIT: Once = Once::new();

/// Initialises llama.cpp's backend once; every model load calls this first.
pub fn init_backend() {
    INIT.call_once(|| {
        // SAFETY: `route_log` is a plain `extern "C"` function that lives for the whole
        // program and never unwinds; the user-data pointer is unused and may be null.
        unsafe { llama_sys::llama_log_set(Some(route_log), std::ptr::null_mut()) };
        // SAFETY: called exactly once, before any other llama.cpp call, guarded by `Once`.
        unsafe { llama_sys::llama_backend_init() };
    });
}

/// Ends the process at once with `code`, running no exit handlers. An interrupted run ends
/// this way from the signal-watching thread while another thread may still be inside
/// llama.cpp: `std::process::exit` would run llama.cpp's static destructors (the backend
/// registry, the tensor-name tables) under that thread's feet, and it could crash instead.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` has no preconditions; it ends the process without touching any
    // state of this program, so no invariant of Rust or of llama.cpp can be broken by it.
    unsafe { libc::_exit(code) }
}

/// llama.cpp's description of the CPU features it was built with and found.
pub fn system_info() -> String {
    init_backend();
    // SAFETY: returns a pointer to a static NUL-terminated buffer owned by llama.cpp.
    let info = unsafe { CStr::from_ptr(llama_sys::llama_print_system_info()) };
    info.to_string_lossy().trim().to_string()
}

thread_local! {
    /// Level of the last message, for llama.cpp's continuation chunks.
    static LAST_LEVEL: Cell<llama_sys::ggml_log_level> = const { Cell::new(llama_sys::GGML_LOG_LEVEL_INFO) };
    /// A listener for the log chunks of this thread (see [`with_log_tap`]).
    static LOG_TAP: RefCell<Option<LogTap>> = const { RefCell::new(None) };
}

/// A listener for raw log chunks.
type LogTap = Box<dyn FnMut(&str)>;

/// Runs `work` with `tap` receiving every raw log chunk llama.cpp writes on this thread,
/// besides the usual routing to `tracing`. Some llama.cpp calls report progress only
/// through their log (the quantizer prints one line per tensor), so this is how we follow.
pub(crate) fn with_log_tap<R>(tap: impl FnMut(&str) + 'static, work: impl FnOnce() -> R) -> R {
    struct Untap;
    impl Drop for Untap {
        fn drop(&mut self) {
            LOG_TAP.with(|t| t.borrow_mut().take());
        }
    }
    LOG_TAP.with(|t| *t.borrow_mut() = Some(Box::new(tap)));
    let _untap = Untap;
    work()
}

/// Forwards llama.cpp and ggml log lines to `tracing` under the target `llama.cpp`. They
/// name files and tensors, never prompt text. Quiet unless the subscriber asks for them.
extern "C" fn route_log(level: llama_sys::ggml_log_level, text: *const c_char, _user: *mut c_void) {
    if text.is_null() {
        return;
    }
    // A panic must not unwind into C; drop the log line instead.
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: llama.cpp passes a valid NUL-terminated string for the call's duration.
        let message = unsafe { CStr::from_ptr(text) }.to_string_lossy();
        let _ = LOG_TAP.try_with(|tap| {
            if let Ok(mut tap) = tap.try_borrow_mut()
                && let Some(tap) = tap.as_mut()
            {
                tap(&message);
            }
        });
        let message = message.trim_end();
        let level = if level == llama_sys::GGML_LOG_LEVEL_CONT {
            LAST_LEVEL.with(Cell::get)
        } else {
            LAST_LEVEL.with(|l| l.set(level));
            level
        };
        if message.is_empty() {
            return;
        }
        match level {
            llama_sys::GGML_LOG_LEVEL_ERROR => tracing::error!(target: "llama.cpp", "{message}"),
            llama_sys::GGML_LOG_LEVEL_WARN => tracing::warn!(target: "llama.cpp", "{message}"),
            llama_sys::GGML_LOG_LEVEL_INFO => tracing::info!(target: "llama.cpp", "{message}"),
            _ => tracing::debug!(target: "llama.cpp", "{message}"),
        }
    });
}
