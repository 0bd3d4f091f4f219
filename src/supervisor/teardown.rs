//! Stopping: the stop signal to every task group at once, SIGKILL to what is left of a group
//! after its stop-timeout, groups that outlive their leader, and the sweep of every other
//! process trc adopted.
//!
//! Timing rules:
//! - a task's stop signal goes to its whole process group; its SIGKILL at `stop-timeout`
//!   (the machine's `Stopping` deadline);
//! - a stop signal can be lost on its way: a shell that traps it (a task's own `trap`, or
//!   bash itself when the task has an EXIT trap) and is between `fork` and `wait`, or about to
//!   `exec`, takes it in its handler and then waits for a child that never got it (and does
//!   not run its trap until that child ends), or execs a program that never sees it. So 50 ms,
//!   250 ms, 1 s and 3 s after the signal, while the leader lives, trc sends it again to the
//!   leader alone, when the leader is the bash of a shell task (a second TERM wakes a bash
//!   stuck in `wait` to run its trap; one already running its EXIT trap ignores it; a task's
//!   own TERM trap that does not `exit` runs again) or when it has exec'd another program
//!   since (the signal was forgotten at `exec`). No other process of the group gets it twice
//!   while the leader lives: the commands a trap runs to clean up start after the signal too,
//!   and must not be stopped. Once the leader has exited (its trap ran, and left behind the
//!   program it had forked in that window), its lingering group's members whose parent is
//!   gone (they are trc's now) and that either started after the signal (their start time in
//!   clock ticks is not before the tick it went out in) or were the leader's children then and
//!   run another program now (they were between bash's `fork` and `exec`, took the signal in
//!   bash's handler and forgot it at `exec`) get it: at once, then on the same schedule.
//!   They are what the sweep would stop anyway, only sooner;
//! - a group whose leader has exited is kept ("lingering") while it has members and forgotten
//!   as soon as it is empty, so that trc never signals a number the kernel may have reused;
//!   one that was being stopped is killed at its task's deadline, the others are stopped with
//!   the rest at teardown;
//! - the sweep: SIGTERM to every remaining child of trc (orphans adopted as PID 1 or
//!   subreaper), SIGKILL after the group's stop-timeout, repeated until none is left;
//! - a terminating signal a second or more after teardown began kills what is left at once.

use super::group::Phase;
use super::machine::{Input, RESEND_CHECKS};
use super::task::TaskId;
use super::{reap, Supervisor};
use crate::config::TaskSettings;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use std::collections::HashSet;
use std::time::Duration;
use tokio::time::Instant;
use tracing::{debug, info};

/// A process group whose leader has exited but which still has members.
#[derive(Debug)]
pub struct Lingering {
    pub pgid: Pid,
    stop_signal: Signal,
    stop_timeout: Duration,
    /// SIGKILL then (it has been sent its stop signal).
    pub deadline: Option<Instant>,
    killed: bool,
    /// The stop signal went out in this tick, while the leader lived: members started since
    /// missed it (see the timing rules).
    mark: Option<u64>,
    /// The leader's children when the signal went out, with their programs then: one that
    /// runs another program now exec'd after the signal (it was between bash's `fork` and
    /// `exec`, took the signal in bash's handler, and forgot it at `exec`).
    children: Vec<(Pid, Option<(u64, u64)>)>,
    /// When to look for such members again, and how many times it was done.
    next_check: Option<Instant>,
    checks: usize,
}

impl Lingering {
    /// A group left by its leader; `stopping` when its task was being stopped (its mark).
    pub fn new(pgid: Pid, settings: TaskSettings, stopping: Option<&StopMark>) -> Lingering {
        let mut group = Lingering {
            pgid,
            stop_signal: settings.stop_signal,
            stop_timeout: settings.stop_timeout,
            deadline: stopping.map(|m| m.deadline),
            killed: false,
            mark: stopping.map(|m| m.ticks),
            children: stopping.map(|m| m.children.clone()).unwrap_or_default(),
            next_check: None,
            checks: 0,
        };
        group.resend(Instant::now());
        group
    }

    /// The stop signal to the members started since it went out, and the next check.
    fn resend(&mut self, now: Instant) {
        let Some(mark) = self.mark else { return };
        let trc = nix::unistd::getpid();
        for member in reap::group_members(self.pgid) {
            let exec_since =
                self.children.iter().any(|&(pid, exe)| pid == member.pid && exe_identity(pid) != exe);
            if member.parent == trc && (member.started >= mark || exec_since) {
                let member = member.pid;
                debug!(
                    "sending SIG{} again to <pid={member}>: it missed it",
                    super::signals::name(self.stop_signal as i32)
                );
                let _ = nix::sys::signal::kill(member, self.stop_signal);
            }
        }
        self.next_check = RESEND_CHECKS.get(self.checks).map(|&after| now + after);
        self.checks += 1;
    }
}

/// What was known of a task's group when its stop signal went out.
#[derive(Debug)]
pub struct StopMark {
    /// The clock tick (since boot) the signal went out in.
    pub ticks: u64,
    /// The leader's program then.
    leader_exe: Option<(u64, u64)>,
    /// The leader is the bash of a shell task.
    shell: bool,
    /// The leader's children then, with their programs.
    children: Vec<(Pid, Option<(u64, u64)>)>,
    pub deadline: Instant,
}

/// The sweep of adopted processes.
#[derive(Debug)]
pub struct Sweep {
    deadline: Instant,
    signalled: HashSet<Pid>,
    killed: bool,
    announced: bool,
}

impl Supervisor {
    /// Stops every task group at once (and the groups that outlived their leader).
    pub(super) fn begin_teardown(&mut self) {
        self.group.phase = Phase::Stopping;
        self.teardown_started = Some(Instant::now());
        self.notify("STOPPING=1");
        info!("Trying to terminate sub-processes...");
        self.refuse_waiters("trc is stopping");
        // No probe runs during teardown; tasks waiting for their dependencies never start.
        self.probe_stop_all();
        self.blocked.clear();
        for id in self.tasks.ids() {
            // Reverse dependency order: a task stops once every task that depends on it has.
            if !self.active_dependents(id).is_empty() {
                self.teardown_held.push(id);
                self.feed(id, Input::Ending);
                continue;
            }
            let task = &self.tasks[id];
            if let Some(pid) = task.pid() {
                info!(
                    task = task.name.as_str(),
                    stage = task.stage.as_str(),
                    task_pid = pid.as_raw(),
                    "terminating the child process <pid={pid}>"
                );
            }
            self.feed(id, Input::Teardown);
        }
        let now = Instant::now();
        for group in &mut self.lingering {
            if group.deadline.is_none() && reap::group_alive(group.pgid) {
                group.mark = Some(reap::boot_ticks());
                reap::signal_group(group.pgid, group.stop_signal);
                continue_group(group.pgid, group.stop_signal);
                group.deadline = Some(now + group.stop_timeout);
                group.next_check = Some(now + RESEND_CHECKS[0]);
            }
        }
    }

    /// The machine's `Signal`: the task's stop signal to its process group.
    pub(super) fn send_stop_signal(&mut self, id: TaskId) {
        let task = &self.tasks[id];
        let Some(pid) = task.pid() else { return };
        let leader_exe = exe_identity(pid);
        let children = reap::children_of(pid).into_iter().map(|child| (child, exe_identity(child))).collect();
        let ticks = reap::boot_ticks();
        reap::signal_group(pid, task.settings().stop_signal);
        continue_group(pid, task.settings().stop_signal);
        let deadline = Instant::now() + task.settings().stop_timeout;
        self.stop_marks.insert(id, StopMark { ticks, leader_exe, shell: task.runs_bash, children, deadline });
    }

    /// The machine's `Resend`: the stop signal again to a leader that may have lost it.
    pub(super) fn resend_stop_signal(&mut self, id: TaskId) {
        let (Some(pid), Some(mark)) = (self.tasks[id].pid(), self.stop_marks.get(&id)) else { return };
        let exec_since = mark.leader_exe.is_some() && exe_identity(pid) != mark.leader_exe;
        if mark.shell || exec_since {
            let signal = self.tasks[id].settings().stop_signal;
            let name = super::signals::name(signal as i32);
            debug!("sending SIG{name} again to <pid={pid}> of {}: it may have lost it", self.tasks[id].label);
            let _ = nix::sys::signal::kill(pid, signal);
        }
    }

    /// The machine's `Kill`.
    pub(super) fn kill_group(&mut self, id: TaskId) {
        if let Some(pid) = self.tasks[id].pid() {
            debug!("killing the process group of {} <pid={pid}>", self.tasks[id].label);
            reap::signal_group(pid, Signal::SIGKILL);
        }
    }

    /// Deadlines of lingering groups and of the sweep.
    pub(super) fn teardown_deadline(&self) -> Option<Instant> {
        let lingering =
            self.lingering.iter().filter(|g| !g.killed).flat_map(|g| [g.deadline, g.next_check]).flatten();
        let sweep = self.sweep.as_ref().filter(|s| !s.killed).map(|s| s.deadline);
        lingering.chain(sweep).min()
    }

    /// Forgets the groups that are empty now, and kills those and the sweep's processes that
    /// are overdue.
    pub(super) fn teardown_tick(&mut self, now: Instant) {
        self.lingering.retain(|g| reap::group_alive(g.pgid));
        for group in &mut self.lingering {
            if !group.killed && group.deadline.is_some_and(|d| d <= now) {
                reap::signal_group(group.pgid, Signal::SIGKILL);
                group.killed = true;
            } else if !group.killed && group.next_check.is_some_and(|t| t <= now) {
                group.resend(now);
            }
        }
        if let Some(sweep) = &mut self.sweep {
            if !sweep.killed && sweep.deadline <= now {
                sweep.killed = true;
                for pid in reap::children() {
                    let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
                }
            }
        }
    }

    /// Every task has exited and every lingering group is empty.
    pub(super) fn teardown_done(&mut self) -> bool {
        self.lingering.retain(|g| reap::group_alive(g.pgid));
        self.lingering.is_empty() && !self.tasks.iter().any(|(_, t)| t.is_active())
    }

    /// Whether a signal now is the operator insisting ("press Ctrl-C again to force"): at least
    /// a second after teardown began. The same signal often arrives twice at once (sent to trc
    /// and to its process group, as `timeout` and a terminal do); that must not count.
    pub(super) fn is_insistent(&self) -> bool {
        self.teardown_started.is_some_and(|t| t.elapsed() >= Duration::from_secs(1))
    }

    /// SIGKILL to everything that is left, now.
    pub(super) fn kill_everything_now(&mut self) {
        for (_, task) in self.tasks.iter() {
            if let Some(pid) = task.pid() {
                debug!("killing the process group of {} <pid={pid}>", task.label);
                reap::signal_group(pid, Signal::SIGKILL);
            }
        }
        for group in &mut self.lingering {
            if reap::group_alive(group.pgid) {
                reap::signal_group(group.pgid, Signal::SIGKILL);
            }
            group.killed = true;
        }
        if let Some(sweep) = &mut self.sweep {
            sweep.killed = true;
            for pid in reap::children() {
                let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            }
        }
    }

    /// Starts stopping every process that is still trc's child though no task leads it:
    /// orphans that came to trc as PID 1 or subreaper (double-forked daemons, leftovers of
    /// finished tasks).
    pub(super) fn begin_sweep(&mut self, then_halt: bool) {
        if then_halt {
            debug!("removing all unexpected sub-processes");
        }
        self.group.phase = Phase::Sweep { then_halt };
        self.sweep = Some(Sweep {
            deadline: Instant::now() + self.settings.task.stop_timeout,
            signalled: HashSet::new(),
            killed: false,
            announced: false,
        });
    }

    /// One round of the sweep: the stop signal to every child not signalled yet (SIGKILL once
    /// overdue). True when none is left.
    pub(super) fn sweep_done(&mut self) -> bool {
        let Some(sweep) = &mut self.sweep else { return true };
        let children = reap::children();
        if children.is_empty() {
            self.sweep = None;
            return true;
        }
        if !sweep.announced {
            debug!("removing all unexpected sub-processes");
            sweep.announced = true;
        }
        let sig = if sweep.killed { Signal::SIGKILL } else { Signal::SIGTERM };
        for pid in children {
            if sweep.signalled.insert(pid) || sweep.killed {
                debug!("terminating the adopted process <pid={pid}>");
                let _ = nix::sys::signal::kill(pid, sig);
            }
        }
        false
    }
}

/// The device and inode of the program a process runs, while it can be read.
fn exe_identity(pid: Pid) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(format!("/proc/{pid}/exe")).ok()?;
    Some((meta.dev(), meta.ino()))
}

/// SIGCONT after the stop signal (as systemd does): a stopped process (Ctrl-Z, SIGTTIN, a
/// `kill -STOP`) acts on its stop signal only once it runs, and would else wait for its
/// SIGKILL.
fn continue_group(pgid: nix::unistd::Pid, sent: Signal) {
    if sent != Signal::SIGCONT && sent != Signal::SIGKILL {
        reap::signal_group(pgid, Signal::SIGCONT);
    }
}
