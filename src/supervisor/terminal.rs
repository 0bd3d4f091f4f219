//! Job control for the task that holds the terminal. A foreground task (boot, sync, halt, the
//! trailing command) gets the terminal's foreground while it runs when trc has it (launch.rs),
//! so a Ctrl-Z reaches that task's process group, not trc. A task stopped that way, or by
//! reading the terminal without having it (SIGTTIN, SIGTTOU, after `bg`), is never left
//! stopped silently: trc does what the shell's job control would have done to TrivialRC's
//! single process group — it stops itself too (the shell prints "Stopped" and gets the
//! terminal back), and when it is continued (`fg`) it hands the terminal to the task again and
//! continues it. Where nothing could continue trc (PID 1, a session leader: no job-control
//! shell above it), it continues the task at once instead, and says so.

use super::reap;
use super::Supervisor;
use crate::config::Stage;
use nix::sys::signal::{killpg, raise, Signal};
use nix::unistd::{getpgrp, getpid, getsid, tcgetpgrp, tcsetpgrp, Pid};
use tracing::{info, warn};

impl Supervisor {
    /// A child of trc was stopped by `sig`.
    pub(super) fn on_stopped(&mut self, pid: Pid, sig: Signal) {
        let Some(&id) = self.by_pid.get(&pid) else {
            warn!(
                always = true,
                "process <pid={pid}> was stopped by {} ({}): it waits until it gets SIGCONT",
                sig.as_str(),
                reap::stop_reason(sig)
            );
            return;
        };
        let task = &self.tasks[id];
        let job_control = self.terminal
            && task.stage != Stage::Async
            && matches!(sig, Signal::SIGTSTP | Signal::SIGTTIN | Signal::SIGTTOU);
        warn!(
            always = true,
            ns = task.stage.ns(),
            pid = pid.as_raw(),
            task = task.name.as_str(),
            "{} <pid={pid}> was stopped by {} ({}){}",
            task.name,
            sig.as_str(),
            reap::stop_reason(sig),
            if job_control { "" } else { ": it waits until it gets SIGCONT" }
        );
        if job_control {
            self.suspend_with(pid);
        }
    }

    /// The foreground task `pgid` has stopped: trc stops too, as the shell's job, and goes on
    /// (giving the terminal back to the task and continuing it) once it is continued.
    fn suspend_with(&mut self, pgid: Pid) {
        let stdin = std::io::stdin();
        let suspendable = getpid().as_raw() != 1 && getsid(None).ok() != Some(getpgrp());
        if !suspendable {
            warn!(
                always = true,
                "trc cannot be suspended here (no job-control shell above it): continuing <pid={pgid}>"
            );
            let _ = killpg(pgid, Signal::SIGCONT);
            return;
        }
        // The terminal comes back to trc's group (only from the task that holds it: after
        // `bg` it is the shell's, and stays so), and the shell sees its job stop.
        if tcgetpgrp(&stdin).ok() == Some(pgid) {
            let _ = tcsetpgrp(&stdin, getpgrp());
        }
        info!("suspending trc with its foreground task <pid={pgid}> (job control: fg continues both)");
        let _ = raise(Signal::SIGSTOP);
        // Continued: in the foreground again (`fg`), the task gets the terminal back; in the
        // background (`bg`), it runs without it (and stops again if it reads it).
        if tcgetpgrp(&stdin).ok() == Some(getpgrp()) {
            let _ = tcsetpgrp(&stdin, pgid);
        }
        info!("continued: continuing <pid={pgid}>");
        let _ = killpg(pgid, Signal::SIGCONT);
    }
}
