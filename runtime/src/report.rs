//! `report!`: an `eprintln!` for the process's last words.

/// `eprintln!` that never panics: when standard error is closed or a pipe
/// whose reader is gone, the message is lost instead of the process (a
/// shutdown or a clean `exit` must still happen).
#[macro_export]
macro_rules! report {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let _ = ::std::writeln!(::std::io::stderr(), $($arg)*);
    }};
}
