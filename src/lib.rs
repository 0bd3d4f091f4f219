//! trc: a process supervisor that runs a TrivialRC-style `trc.d` group of programs as one unit.
//!
//! The crate is a library with a thin binary (`src/main.rs`). Parsing and policy are pure and
//! unit-tested ([`cli`], [`config`], [`supervisor::policy`]); the mechanics (spawning, reaping,
//! signals, teardown) live in [`supervisor`] and are tested through the real binary in `tests/`.

pub mod cli;
pub mod config;
pub mod control;
pub mod fsutil;
pub mod logs;
pub mod runtime_dir;
pub mod shell;
pub mod supervisor;

/// Exit status for usage errors (bad command line), as clap and most tools use.
pub const EXIT_USAGE: i32 = 2;
/// Exit status for configuration errors (`EX_CONFIG` from sysexits.h).
pub const EXIT_CONFIG: i32 = 78;

/// Tests of this crate that fork, and those that a forked child would disturb (an OFD lock
/// stays held while a child between `fork` and `exec` holds a copy of its fd), take this lock.
#[cfg(test)]
pub(crate) fn fork_lock() -> std::sync::MutexGuard<'static, ()> {
    static FORKS: std::sync::Mutex<()> = std::sync::Mutex::new(());
    FORKS.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
