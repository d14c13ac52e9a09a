//! Standard output that a closed pipe ends quietly.
//!
//! Rust ignores SIGPIPE, so `println!` panics (exit 101) when the reader
//! goes away: `mer render … | head -1` would crash, and `mer run … | head`
//! would die before its report and MLflow sync. Here a closed pipe turns
//! every later write into a no-op and the command finishes as it would
//! have, with its own exit code.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `args` to stdout; stops writing once the reader has gone.
pub fn write(args: std::fmt::Arguments) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        // Any other write error (a full disk behind a redirect) is worth
        // one line on stderr; either way there is no point in retrying.
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("warning: standard output: {e}");
        }
        CLOSED.store(true, Ordering::Relaxed);
    }
}

/// `print!` that survives a closed pipe.
#[macro_export]
macro_rules! out {
    ($($t:tt)*) => { $crate::out::write(format_args!($($t)*)) };
}

/// `println!` that survives a closed pipe.
#[macro_export]
macro_rules! outln {
    () => { $crate::out::write(format_args!("\n")) };
    ($($t:tt)*) => { $crate::out::write(format_args!("{}\n", format_args!($($t)*))) };
}
