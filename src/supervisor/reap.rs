//! Reaping and adoption. trc is the only caller of `waitpid` on its children: as PID 1 it
//! inherits every orphan of the container; otherwise it registers as a child subreaper so that
//! orphans of its tasks (double-forked daemons) come to it rather than to init.

use super::policy::exit_code;
use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Makes trc the reaper of its descendants' orphans (not needed as PID 1).
pub fn become_subreaper() -> nix::Result<()> {
    if std::process::id() == 1 {
        return Ok(());
    }
    nix::sys::prctl::set_child_subreaper(true)
}

/// Reaps every child that has exited, returning each pid with its shell-style status. A task
/// leader's process group is forgotten by the fault handler as its leader is reaped.
pub fn reap_exited() -> Vec<(Pid, i32)> {
    let mut reaped = Vec::new();
    loop {
        let (pid, status) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => (pid, exit_code(Some(code), None)),
            Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, exit_code(None, Some(sig as i32))),
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            Err(_) => break,
        };
        super::signals::untrack_group(pid.as_raw());
        reaped.push((pid, status));
    }
    reaped
}

/// Whether the process group `pgid` still has a member (zombies of other parents included).
pub fn group_alive(pgid: Pid) -> bool {
    !matches!(killpg(pgid, None), Err(Errno::ESRCH))
}

/// Sends `signal` to the process group `pgid`; a group that is gone is not an error.
pub fn signal_group(pgid: Pid, signal: Signal) {
    let _ = killpg(pgid, signal);
}

/// The pids of trc's living children, from /proc (each `stat` names its parent).
pub fn children() -> Vec<Pid> {
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut kids = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command name, which may itself contain spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let ppid = fields.next().and_then(|p| p.parse::<i32>().ok());
        if ppid == Some(me) && state != Some("Z") {
            kids.push(Pid::from_raw(pid));
        }
    }
    kids
}
