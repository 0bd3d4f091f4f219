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

/// Reaps every child that has exited, returning each pid with its shell-style status; a child
/// that was stopped (by a signal, `WUNTRACED`) goes to `stopped` with that signal, for the
/// supervisor to say so and, for a foreground task, to do what a job-control shell does. A
/// task leader's process group is forgotten by the fault handler as its leader is reaped.
pub fn reap_exited(stopped: &mut Vec<(Pid, Signal)>) -> Vec<(Pid, i32)> {
    let mut reaped = Vec::new();
    loop {
        let flags = WaitPidFlag::WNOHANG | WaitPidFlag::WUNTRACED;
        let (pid, status) = match waitpid(Pid::from_raw(-1), Some(flags)) {
            Ok(WaitStatus::Exited(pid, code)) => (pid, exit_code(Some(code), None)),
            Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, exit_code(None, Some(sig as i32))),
            Ok(WaitStatus::Stopped(pid, sig)) => {
                stopped.push((pid, sig));
                continue;
            }
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

/// Why a process stops, in words, for the warning.
pub fn stop_reason(sig: Signal) -> &'static str {
    match sig {
        Signal::SIGTTIN => "it read the terminal, which another process group has",
        Signal::SIGTTOU => "it wrote to or set the terminal, which another process group has",
        Signal::SIGTSTP => "Ctrl-Z on the terminal, or a SIGTSTP",
        _ => "a stop signal",
    }
}

/// Whether the process group `pgid` still has a member (zombies of other parents included).
pub fn group_alive(pgid: Pid) -> bool {
    !matches!(killpg(pgid, None), Err(Errno::ESRCH))
}

/// Sends `signal` to the process group `pgid`; a group that is gone is not an error.
pub fn signal_group(pgid: Pid, signal: Signal) {
    let _ = killpg(pgid, signal);
}

/// Whether trc has any child at all, living or not yet reaped (one system call).
pub fn has_children() -> bool {
    use nix::sys::wait::{waitid, Id};
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    loop {
        match waitid(Id::All, flags) {
            Err(Errno::EINTR) => continue,
            Err(Errno::ECHILD) => return false,
            _ => return true,
        }
    }
}

/// The pids of trc's living children. None at all is one system call; otherwise the kernel's
/// list of each of trc's threads' children (`/proc/self/task/*/children`), or, on a kernel
/// without it, a scan of every process's `stat` for its parent.
pub fn children() -> Vec<Pid> {
    if !has_children() {
        return Vec::new();
    }
    let listed = children_from_task_lists().unwrap_or_else(scan_proc);
    listed.into_iter().filter(|&pid| process_state(pid).is_some_and(|(state, _)| state != 'Z')).collect()
}

/// The children of process `pid` (the kernel's list of each of its threads' children).
pub fn children_of(pid: Pid) -> Vec<Pid> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace().filter_map(|p| p.parse().ok()).map(Pid::from_raw).collect::<Vec<_>>()
        })
        .collect()
}

fn children_from_task_lists() -> Option<Vec<Pid>> {
    let mut kids = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let list = std::fs::read_to_string(task.path().join("children")).ok()?;
        kids.extend(list.split_whitespace().filter_map(|p| p.parse().ok()).map(Pid::from_raw));
    }
    Some(kids)
}

fn scan_proc() -> Vec<Pid> {
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
        .map(Pid::from_raw)
        .filter(|&pid| process_state(pid).is_some_and(|(_, ppid)| ppid == me))
        .collect()
}

/// The current time in clock ticks since boot, as `/proc/PID/stat` gives start times.
pub fn boot_ticks() -> u64 {
    let Ok(now) = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME) else {
        return 0;
    };
    let hz = clock_ticks_per_second();
    now.tv_sec() as u64 * hz + now.tv_nsec() as u64 * hz / 1_000_000_000
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as u64
    } else {
        100
    }
}

/// A member of a process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub pid: Pid,
    pub parent: Pid,
    /// Its start time in clock ticks since boot.
    pub started: u64,
}

/// The members of process group `pgid`. Reads every process's `stat`: for the rare moments
/// that need it (a task being stopped).
pub fn group_members(pgid: Pid) -> Vec<Member> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (_, rest) = stat.rsplit_once(')')?;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            // After the name: state (field 3), ppid, pgrp (5), ..., starttime (22).
            let parent: i32 = fields.get(1)?.parse().ok()?;
            let pgrp: i32 = fields.get(2)?.parse().ok()?;
            let started: u64 = fields.get(19)?.parse().ok()?;
            let member = Member { pid: Pid::from_raw(pid), parent: Pid::from_raw(parent), started };
            (pgrp == pgid.as_raw() && fields[0] != "Z").then_some(member)
        })
        .collect()
}

/// A process's state letter and parent pid, from its `stat`.
fn process_state(pid: Pid) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may itself contain spaces and parentheses.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_are_listed_and_none_is_cheap() {
        let _forks = crate::fork_lock();
        // (Other tests of this binary may have children of their own: only ours are checked.)
        let mut child = std::process::Command::new("sleep").arg("100").spawn().unwrap();
        let pid = Pid::from_raw(child.id() as i32);
        assert!(has_children());
        assert!(children().contains(&pid));
        assert!(scan_proc().contains(&pid));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!children().contains(&pid));
    }

    #[test]
    fn group_members_have_start_times_from_the_same_clock() {
        let _forks = crate::fork_lock();
        use std::os::unix::process::CommandExt;
        let before = boot_ticks();
        let mut child = std::process::Command::new("sleep").arg("100").process_group(0).spawn().unwrap();
        let pid = Pid::from_raw(child.id() as i32);
        let members = group_members(pid);
        let after = boot_ticks();
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(members.len(), 1, "{members:?}");
        assert_eq!(members[0].pid, pid);
        assert_eq!(members[0].parent.as_raw() as u32, std::process::id());
        // Ticks are coarse (10 ms): the start time falls within one tick of the window.
        let started = members[0].started;
        assert!(started + 1 >= before && started <= after + 1, "{before} <= {members:?} <= {after}");
    }
}
