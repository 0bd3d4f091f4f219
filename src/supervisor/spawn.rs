//! Starting a task's process: its own process group, a clean signal state, only fds 0-2, and
//! (for the trailing command on a terminal) the terminal's foreground.
//!
//! `std::process::Command` does the fork and exec and reports exec errors; trc never calls
//! `wait` on the `Child` it returns: all reaping is `waitpid(-1)` in `reap.rs`.

use nix::unistd::Pid;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

/// How the child is set up beyond its command and environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct SpawnOptions {
    /// stdin from /dev/null (async tasks) instead of trc's own.
    pub stdin_null: bool,
    /// Make the child's process group the foreground group of the terminal on stdin.
    pub foreground: bool,
}

/// Starts `cmd` as the leader of a new process group and returns its pid. When this returns,
/// the child has exec'd (or the error says why it could not).
pub fn spawn(mut cmd: Command, options: SpawnOptions) -> io::Result<Pid> {
    if options.stdin_null {
        cmd.stdin(Stdio::null());
    }
    let foreground = options.foreground;
    // SAFETY: the closure runs in the forked child before exec and only makes async-signal-safe
    // system calls (setpgid, sigprocmask, tcsetpgrp, sigaction, close_range/fcntl); it does not
    // allocate or take locks.
    unsafe {
        cmd.pre_exec(move || prepare_child(foreground));
    }
    let child = cmd.spawn()?;
    Ok(Pid::from_raw(child.id() as i32))
}

/// Runs in the child between fork and exec.
fn prepare_child(foreground: bool) -> io::Result<()> {
    // SAFETY: plain system calls on our own process with valid arguments; see `spawn`.
    unsafe {
        if libc::setpgid(0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        if foreground {
            // A background process group that calls tcsetpgrp gets SIGTTOU unless it blocks it.
            let mut ttou: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut ttou);
            libc::sigaddset(&mut ttou, libc::SIGTTOU);
            libc::sigprocmask(libc::SIG_BLOCK, &ttou, std::ptr::null_mut());
            libc::tcsetpgrp(0, libc::getpid());
        }
        // Default dispositions for every signal (trc ignores some; handlers reset on exec anyway).
        for sig in 1..libc::SIGRTMAX() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        // Only fds 0-2 survive exec: mark every other one close-on-exec.
        let flags = libc::CLOSE_RANGE_CLOEXEC as libc::c_long;
        if libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_long,
            libc::c_long::from(u32::MAX),
            flags,
        ) != 0
        {
            let max = libc::sysconf(libc::_SC_OPEN_MAX).clamp(1024, 65536) as libc::c_int;
            for fd in 3..max {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
        }
    }
    Ok(())
}
