//! Which signal means what to trc.

use nix::sys::signal::{signal, sigprocmask, SigHandler, SigSet, SigmaskHow, Signal};

/// Signals that end the group gracefully with status 128+N. TrivialRC traps the same ones
/// (plus QUIT, which bash ignores there). Fault signals (SEGV, BUS, ILL, FPE, TRAP, SYS) keep
/// their default action: a handler that returns would re-run the faulting instruction forever.
pub const TERMINATING: [i32; 11] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGABRT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGALRM,
    libc::SIGTERM,
    libc::SIGXCPU,
    libc::SIGXFSZ,
    libc::SIGVTALRM,
];

/// Prepares trc's own signal state before any handler is registered: nothing blocked (a
/// parent may hand us a mask), SIGPIPE ignored (a closed stdout must not kill the supervisor),
/// SIGTTOU/SIGTTIN ignored (trc takes the terminal back from a foreground task).
pub fn prepare() -> nix::Result<()> {
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
    for sig in [Signal::SIGPIPE, Signal::SIGTTOU, Signal::SIGTTIN] {
        // SAFETY: setting SIG_IGN installs no handler code, so no async-signal-safety concern.
        unsafe { signal(sig, SigHandler::SigIgn) }?;
    }
    Ok(())
}

/// The signal's name without `SIG`, for log lines.
pub fn name(sig: i32) -> String {
    Signal::try_from(sig)
        .map(|s| s.as_str().trim_start_matches("SIG").to_owned())
        .unwrap_or_else(|_| sig.to_string())
}
