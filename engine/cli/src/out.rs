//! Writing to standard output when it may close early
//! (`warrant policy check … | head`).
//!
//! `println!` panics when the reader has gone. [`line`] stops writing
//! instead: the command runs on and exits with the code its own outcome
//! gives (so `warrant audit … | head` still exits 1 on a violation).
//! Any other write error is reported once on standard error.

use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicBool, Ordering};

static FAILED: AtomicBool = AtomicBool::new(false);

/// Writes `args` and a newline to standard output.
pub fn line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let written = out.write_fmt(args).and_then(|()| out.write_all(b"\n"));
    if let Err(e) = written
        && e.kind() != ErrorKind::BrokenPipe
        && !FAILED.swap(true, Ordering::Relaxed)
    {
        eprintln!("warrant: cannot write to standard output: {e}");
    }
}

/// `println!` through [`line`]: never panics when standard output closes.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::out::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::out::line(format_args!($($arg)*))
    };
}
