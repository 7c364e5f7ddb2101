//! Writing to standard output for the command-line front end: a reader that goes away
//! (`op25b check | head -1`, a closed pipe: EPIPE) ends the command normally, with exit
//! status 0 and no message, as it does for `cat` or `grep`. Any other write error is one
//! line on stderr and exit 74 (EX_IOERR).
//!
//! `println!` would panic on EPIPE ("failed printing to stdout") and print a backtrace.

use std::io::{self, Write};

/// Exit status for an output error other than a closed reader (sysexits EX_IOERR).
pub const EXIT_IO_ERROR: i32 = 74;

/// Writes `args` to stdout; on a closed reader exits 0 at once, on any other error
/// exits [`EXIT_IO_ERROR`].
pub fn write_or_exit(args: std::fmt::Arguments<'_>) {
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_fmt(args) {
        exit_on(e);
    }
}

/// Passes `Ok` through; ends the process for an error as [`exit_on`] does.
pub fn or_exit<T>(r: io::Result<T>) -> T {
    r.unwrap_or_else(|e| exit_on(e))
}

/// Ends the process for an output error `e`: exit 0 for a closed reader (EPIPE),
/// else one line on stderr and [`EXIT_IO_ERROR`].
pub fn exit_on(e: io::Error) -> ! {
    if e.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    let _ = writeln!(io::stderr(), "error: cannot write to standard output: {e}");
    std::process::exit(EXIT_IO_ERROR);
}

/// Writes to stdout for a command whose work is done elsewhere (the appliance's final
/// report): a closed reader is ignored instead of ending the process.
pub fn write_ignoring_closed(args: std::fmt::Arguments<'_>) {
    let _ = io::stdout().lock().write_fmt(args);
}

/// `print!` that treats a closed stdout as a normal end ([`write_or_exit`]).
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::control::daemon::stdout::write_or_exit(format_args!($($arg)*))
    };
}

/// `println!` that treats a closed stdout as a normal end ([`write_or_exit`]).
#[macro_export]
macro_rules! outln {
    () => {
        $crate::control::daemon::stdout::write_or_exit(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::control::daemon::stdout::write_or_exit(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// A clap error as one line: its first paragraph (the error, sometimes the missing
/// arguments on the next lines) joined, for `op25b` and `op25b-bench` alike.
pub fn clap_error_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let first: Vec<&str> = text
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    first.join(" ")
}
