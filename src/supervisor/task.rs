//! The task table's entries: what a task is (name, stage, where its code comes from) and its
//! place in the state machine (`machine.rs`).

use super::machine::{Failure, Machine, State, Then, Wanted};
use super::spawn::ExecReport;
use crate::config::{RunMode, Stage, TaskSettings};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use tokio::time::Instant;

/// A task's key in the supervisor's table. Ids grow with every task added and are never
/// reused, so the table iterates in the order tasks were added (their run order).
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

#[derive(Debug)]
pub struct Task {
    pub name: String,
    pub stage: Stage,
    pub source: Source,
    /// What TrivialRC's log lines call the task: its file path or its command string.
    pub label: String,
    pub machine: Machine,
    /// The version of its file it runs (see `control::fingerprint`).
    pub fingerprint: Option<u64>,
    pub last_status: Option<i32>,
    /// The pid of its current or last process.
    pub last_pid: Option<Pid>,
    /// When its current run started or its last one ended, for `trcctl list`.
    pub since: Option<Instant>,
    /// How its current process's exec went (read once it has been reaped).
    pub exec_report: Option<ExecReport>,
    /// Its current process is trc's bash running a shell task.
    pub runs_bash: bool,
    /// How many times it was launched (spawned, or tried and failed): `trcctl`'s STARTS. The
    /// machine's own count also has the starts held back by dependencies.
    pub launches: u64,
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
            machine: Machine::new(stage, settings),
            fingerprint: None,
            last_status: None,
            last_pid: None,
            since: None,
            exec_report: None,
            runs_bash: false,
            launches: 0,
        }
    }

    pub fn state(&self) -> State {
        self.machine.state
    }

    pub fn settings(&self) -> &TaskSettings {
        &self.machine.settings
    }

    pub fn pid(&self) -> Option<Pid> {
        self.machine.pid()
    }

    /// Shell code that bash runs (a fragment file, a `-B/-D/-F/-H` string), as opposed to a
    /// program (an ELF or `#!` file, a `command:` header, the trailing command): only shell
    /// code can change the boot state. (A program is exec'd through bash after a boot task,
    /// to get what boot exported, but it replaces that bash.)
    pub fn is_shell_code(&self) -> bool {
        match &self.source {
            Source::File { run: RunMode::Fragment, .. } => self.settings().command.is_none(),
            Source::File { .. } | Source::Argv(_) => false,
            Source::Command(_) => true,
        }
    }

    /// Finished with `status` counts as having done its job (a one-shot that completed): a
    /// success status (0 or `success-exit-status`), not a stop by trc for a failure.
    pub fn completed(&self, status: i32) -> bool {
        self.machine.failure.is_none() && self.settings().is_success(status)
    }

    /// It has a process (running or stopping).
    pub fn is_active(&self) -> bool {
        self.pid().is_some()
    }

    /// Async or sync: supervised, restarted, counted by the wait policy.
    pub fn is_supervised(&self) -> bool {
        matches!(self.stage, Stage::Async | Stage::Sync)
    }

    pub fn is_removed(&self) -> bool {
        self.machine.wanted == Wanted::Removed
    }

    /// The word `trcctl list` shows for its state.
    pub fn state_word(&self) -> &'static str {
        match self.state() {
            State::Pending if self.machine.starts > 0 => "starting",
            State::Pending => "pending",
            State::Starting { .. } => "starting",
            State::Running { .. } => "running",
            State::Stopping { then: Then::Fail(Failure::Unhealthy | Failure::Watchdog), .. } => "unhealthy",
            State::Stopping { .. } => "stopping",
            State::Backoff { .. } => "waiting",
            State::Stopped { .. } => "stopped",
            State::Finished { .. } => "finished",
            State::GaveUp { .. } => "gave-up",
        }
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

    /// "script" or "command", as TrivialRC's halt lines say.
    pub fn kind_word(&self) -> &'static str {
        if matches!(self.source, Source::File { .. }) {
            "script"
        } else {
            "command"
        }
    }
}

/// The table: tasks by id, in the order they were added.
#[derive(Debug, Default)]
pub struct Table {
    tasks: BTreeMap<TaskId, Task>,
    next: TaskId,
}

impl Table {
    pub fn add(&mut self, task: Task) -> TaskId {
        let id = self.next;
        self.next += 1;
        self.tasks.insert(id, task);
        id
    }

    pub fn remove(&mut self, id: TaskId) -> Option<Task> {
        self.tasks.remove(&id)
    }

    pub fn get(&self, id: TaskId) -> Option<&Task> {
        self.tasks.get(&id)
    }

    pub fn get_mut(&mut self, id: TaskId) -> Option<&mut Task> {
        self.tasks.get_mut(&id)
    }

    pub fn iter(&self) -> impl Iterator<Item = (TaskId, &Task)> {
        self.tasks.iter().map(|(&id, t)| (id, t))
    }

    pub fn ids(&self) -> Vec<TaskId> {
        self.tasks.keys().copied().collect()
    }

    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

impl std::ops::Index<TaskId> for Table {
    type Output = Task;
    fn index(&self, id: TaskId) -> &Task {
        &self.tasks[&id]
    }
}

impl std::ops::IndexMut<TaskId> for Table {
    fn index_mut(&mut self, id: TaskId) -> &mut Task {
        self.tasks.get_mut(&id).expect("a task id of the table")
    }
}
