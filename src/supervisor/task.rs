//! The task table's entries and a task's life:
//!
//! ```text
//! Pending --start--> Running --exit--> Finished(status)
//!                     ^  |  |              ^
//!                     |  |  +--stop--> Stopping --exit--+  (stop signal sent; SIGKILL at the deadline)
//!                     |  +--exit, restart due--> Waiting(until) --teardown--> Finished
//!                     +-----------delay over-------+
//! ```
//! A task that cannot be started goes straight to Finished (126, or 127 when not found) and is
//! then subject to its restart policy like any other exit.

use super::restart::RestartState;
use crate::config::{RunMode, Stage, TaskSettings};
use nix::unistd::Pid;
use std::ffi::OsString;
use std::path::PathBuf;
use tokio::time::Instant;

/// Index of a task in the supervisor's table.
pub type TaskId = usize;

/// Where a task's code comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A file of the work dir.
    File { path: PathBuf, run: RunMode },
    /// A `-B/-H/-D/-F` string.
    Command(OsString),
    /// The trailing command.
    Argv(Vec<OsString>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TaskState {
    Pending,
    Running {
        pid: Pid,
    },
    Stopping {
        pid: Pid,
        deadline: Instant,
        killed: bool,
    },
    /// Exited with `status`; starts again at `until`.
    Waiting {
        until: Instant,
        status: i32,
    },
    Finished {
        status: i32,
    },
}

#[derive(Debug, Clone)]
pub struct Task {
    pub name: String,
    pub stage: Stage,
    pub source: Source,
    /// What TrivialRC's log lines call the task: its file path or its command string.
    pub label: String,
    pub state: TaskState,
    /// The task's process group, kept after its leader exits: members may outlive it.
    pub pgid: Option<Pid>,
    /// How it is supervised (its directives on top of the group's defaults).
    pub settings: TaskSettings,
    pub restart: RestartState,
    /// When the current (or last) run started.
    pub started_at: Option<Instant>,
    /// trc sent the stop signal: the exit that follows is not a failure to restart from.
    pub stop_requested: bool,
    /// Stopped by `trcctl stop`: not restarted, and not finished for the wait policy, until
    /// `trcctl start`.
    pub held: bool,
    /// Start again as soon as it has exited (`trcctl restart`, a changed file at reload).
    pub restart_after: bool,
    /// Its file is gone from the work dir (`trcctl reload`): it is stopped and forgotten.
    pub removed: bool,
    /// The version of its file it runs (see `control::fingerprint`).
    pub fingerprint: Option<u64>,
    pub starts: u64,
    pub last_status: Option<i32>,
    pub finished_at: Option<Instant>,
}

impl Task {
    pub fn new(name: String, stage: Stage, source: Source, settings: TaskSettings) -> Task {
        let label = match &source {
            Source::File { path, .. } => path.display().to_string(),
            Source::Command(cmd) => cmd.to_string_lossy().into_owned(),
            Source::Argv(argv) => argv.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" "),
        };
        Task {
            name,
            stage,
            source,
            label,
            state: TaskState::Pending,
            pgid: None,
            settings,
            restart: RestartState::default(),
            started_at: None,
            stop_requested: false,
            held: false,
            restart_after: false,
            removed: false,
            fingerprint: None,
            starts: 0,
            last_status: None,
            finished_at: None,
        }
    }

    pub fn pid(&self) -> Option<Pid> {
        match self.state {
            TaskState::Running { pid } | TaskState::Stopping { pid, .. } => Some(pid),
            _ => None,
        }
    }

    pub fn is_active(&self) -> bool {
        self.pid().is_some()
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.state, TaskState::Finished { .. })
    }

    /// Running, stopping, or waiting to be started again: not finished for good.
    pub fn is_alive(&self) -> bool {
        self.is_active() || matches!(self.state, TaskState::Waiting { .. })
    }

    /// TrivialRC's long name of the stage, as in "Launching in the background".
    pub fn ns_long(&self) -> &'static str {
        match self.stage {
            Stage::Boot => "boot",
            Stage::Async => "background",
            Stage::Sync => "foreground",
            Stage::Halt => "shutdown",
        }
    }
}
