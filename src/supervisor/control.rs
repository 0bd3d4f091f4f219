//! The supervisor's answers to control requests (`trcctl`). They run inside the event loop:
//! a verb only changes what the operator *wants* of a task (`machine::Wanted`) or asks the
//! machine for a restart; the machine does the rest. What takes time (a task stopping, file
//! work) is answered later: through a [`Waiter`] when the task has started or exited, or when
//! the worker's result comes back (`files.rs`).
//!
//! Rules:
//! - reading (info, list, status, logs) works at any time; changing (start, stop, restart,
//!   signal, ensure, start-all, reload) only while the group runs, not during boot or teardown;
//! - a task stopped by `stop` is held down: it is not restarted, and the wait policy does not
//!   count it as finished (it may come back with `start`);
//! - boot and halt tasks and the trailing command run once: trc refuses to control them;
//! - sync tasks keep their chain (one at a time, in order): `start` of a sync task that has
//!   not had its turn yet is refused (it will run in its turn); `start` of one that has run or
//!   was held down puts it at the head of the chain (it runs at once if no sync task runs, else
//!   right after the one that runs); `stop` of a pending one holds it down, so the chain skips
//!   it; `stop` of the running one stops it and the chain goes on; `restart` of the running
//!   one stops it and starts it again in its place.

use super::files::{JobDone, Written};
use super::group::Phase;
use super::machine::{Input, State, Wanted};
use super::task::{Source, TaskId};
use super::Supervisor;
use crate::config::{
    apply, escape_controls, header_directives, parse_signal, Stage, TaskFile, TaskFiles, TaskSettings,
};
use crate::control::manager::{check_task_name, shell_body, EnsureSpec, Ensured};
use crate::control::protocol::{
    CheckReport, Command, InstanceInfo, ReloadReport, Reply, TaskInfo, DEFAULT_LOG_LINES,
};
use crate::control::server::{Answer, Call};
use std::collections::BTreeMap;
use std::path::PathBuf;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::info;

/// A reply that waits for a task to be up again or down.
pub struct Waiter {
    pub task: TaskId,
    pub want: Want,
    pub answer: oneshot::Sender<Answer>,
    /// `ensure`'s outcome, for its reply.
    pub ensured: Option<Ensured>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Started (`restart`).
    Up,
    /// Exited (`stop`).
    Down,
}

impl Supervisor {
    /// Answers one request (now, or later through a waiter or a worker's result).
    pub(super) fn control(&mut self, call: Call) {
        let Call { request, answer } = call;
        let command = request.command;
        let changes = !matches!(
            command,
            Command::Info
                | Command::List
                | Command::Status { .. }
                | Command::Logs { .. }
                | Command::Check { .. }
        );
        if changes && self.group.phase != Phase::Running {
            let why = match self.group.phase {
                Phase::Boot => "trc is still booting",
                _ => "trc is stopping",
            };
            let _ = answer.send(Reply::error(why).into());
            return;
        }
        let reply = match command {
            Command::Info => Ok(Reply { instance: Some(self.instance_info()), ..Reply::ok() }),
            Command::List => Ok(Reply {
                tasks: Some(
                    self.tasks.iter().filter(|(_, t)| !t.is_removed()).map(|(id, _)| self.task_info(id)).collect(),
                ),
                ..Reply::ok()
            }),
            Command::Status { task } => self.find(&task).map(|id| self.task_reply(id)),
            Command::Start { task } => self.find(&task).and_then(|id| self.control_start(id)),
            Command::Stop { task } => match self.find(&task).and_then(|id| self.control_stop(id)) {
                Ok(id) if self.tasks.get(id).is_some_and(|t| t.is_active()) => {
                    self.waiters.push(Waiter { task: id, want: Want::Down, answer, ensured: None });
                    return;
                }
                Ok(id) => Ok(self.task_reply(id)),
                Err(e) => Err(e),
            },
            Command::Restart { task } => match self.find(&task).and_then(|id| self.control_restart(id)) {
                Ok(id) if self.tasks.get(id).is_some_and(|t| t.is_active()) => {
                    self.waiters.push(Waiter { task: id, want: Want::Up, answer, ensured: None });
                    return;
                }
                Ok(id) => Ok(self.task_reply(id)),
                Err(e) => Err(e),
            },
            Command::Signal { task, signal } => self.find(&task).and_then(|id| self.control_signal(id, &signal)),
            Command::Ensure { task, command, cwd, env, directives } => {
                let spec = EnsureSpec {
                    name: task,
                    command,
                    cwd: cwd.map(PathBuf::from),
                    env: env.into_iter().collect(),
                    directives: directives.into_iter().collect(),
                };
                match self.ensure_check(&spec) {
                    Ok(()) => return self.submit_ensure(spec, answer),
                    Err(e) => Err(e),
                }
            }
            Command::StartAll => Ok(self.start_all()),
            Command::Logs { task, lines, follow } => match self.find(&task) {
                Ok(id) => match self.logs.get(&id) {
                    Some(logs) => {
                        let mut ring = logs.ring.borrow_mut();
                        let reply = Reply {
                            lines: Some(ring.recent(lines.unwrap_or(DEFAULT_LOG_LINES))),
                            ..Reply::ok()
                        };
                        if follow {
                            let rx = ring.follow();
                            let _ = answer.send(Answer::Follow(reply, rx));
                            return;
                        }
                        Ok(reply)
                    }
                    None => Err(format!("task \"{task}\" has no captured output (not started yet, or the trailing command, whose output is trc's own)")),
                },
                Err(e) => Err(e),
            },
            Command::Reload => return self.submit_reload(answer),
            Command::Check { tasks } => self.check(&tasks).map(|check| Reply { check: Some(check), ..Reply::ok() }),
        };
        let _ = answer.send(reply.unwrap_or_else(Reply::error).into());
    }

    /// A worker's result: the file work of `ensure` or `reload` is done; now the table.
    pub(super) fn job_done(&mut self, job: JobDone) {
        if self.group.phase != Phase::Running {
            let answer = match job {
                JobDone::Ensure { answer, .. } | JobDone::Reload { answer, .. } => answer,
            };
            let _ = answer.send(Reply::error("trc is stopping").into());
            return;
        }
        match job {
            JobDone::Ensure { spec, answer, result } => {
                match result.and_then(|w| self.ensure_apply(&spec, w)) {
                    Ok((id, ensured, true)) => {
                        self.waiters.push(Waiter { task: id, want: Want::Up, answer, ensured: Some(ensured) })
                    }
                    Ok((id, ensured, false)) => {
                        let reply =
                            Reply { ensured: Some(ensured.as_str().to_owned()), ..self.task_reply(id) };
                        let _ = answer.send(reply.into());
                    }
                    Err(e) => {
                        let _ = answer.send(Reply::error(e).into());
                    }
                }
            }
            JobDone::Reload { answer, result } => {
                let reply = result
                    .and_then(|files| self.reload(files))
                    .map(|report| Reply { reload: Some(report), ..Reply::ok() });
                let _ = answer.send(reply.unwrap_or_else(Reply::error).into());
            }
        }
    }

    fn instance_info(&self) -> InstanceInfo {
        InstanceInfo {
            name: self.runtime_dir.name().to_owned(),
            pid: std::process::id() as i32,
            work_dir: self.work_dir_label.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            wait_policy: self.settings.wait_policy.as_str().to_owned(),
        }
    }

    /// A task by name: `NAME` (an async or sync task first, then any other), or `STAGE.NAME`.
    fn find(&self, name: &str) -> Result<TaskId, String> {
        let live = || self.tasks.iter().filter(|(_, t)| !t.is_removed());
        if let Some((stage, rest)) = name.split_once('.') {
            if let Some((id, _)) = live().find(|(_, t)| t.stage.as_str() == stage && t.name == rest) {
                return Ok(id);
            }
        }
        live()
            .filter(|(_, t)| t.name == name)
            .max_by_key(|(_, t)| t.is_supervised())
            .map(|(id, _)| id)
            .ok_or_else(|| format!("unknown task \"{name}\""))
    }

    pub(super) fn task_info(&self, id: TaskId) -> TaskInfo {
        let task = &self.tasks[id];
        let now = Instant::now();
        let probing = self.probing.get(&id);
        TaskInfo {
            name: task.name.clone(),
            stage: task.stage.as_str().to_owned(),
            // A start held back by its dependencies has not begun.
            state: match probing {
                Some(p) if !p.waiting_for.is_empty() => "pending".to_owned(),
                _ => task.state_word().to_owned(),
            },
            pid: task.pid().map(|p| p.as_raw()),
            since_secs: task.since.map(|t| (now - t).as_secs_f64()),
            starts: task.launches,
            last_status: task.last_status,
            command: task.label.clone(),
            ready: matches!(task.state(), super::machine::State::Running { .. }),
            health: self.health_word(id).map(str::to_owned),
            reason: task.machine.failure.map(|f| f.as_str().to_owned()),
            notify_status: probing.and_then(|p| p.notify_status.clone()),
            waiting_for: probing.map(|p| p.waiting_for.clone()).unwrap_or_default(),
            probe_problem: probing.and_then(|p| p.last_problem.clone()),
        }
    }

    /// `check`: the named tasks (default: every async task) that are unhealthy or not ready.
    /// Without names, async tasks that finished with status 0 (one-shot) or are held down by
    /// `stop` are left out of readiness, as for trc's own READY=1.
    fn check(&self, names: &[String]) -> Result<CheckReport, String> {
        let ids: Vec<TaskId> = if names.is_empty() {
            self.tasks
                .iter()
                .filter(|(_, t)| t.stage == Stage::Async && !t.is_removed())
                .map(|(id, _)| id)
                .collect()
        } else {
            names.iter().map(|n| self.find(n)).collect::<Result<_, _>>()?
        };
        let mut report = CheckReport::default();
        match self.group.phase {
            Phase::Running if self.group.draining.is_some() => {
                report.not_ready.push("trc: stopping soon (draining: --stop-delay)".to_owned())
            }
            Phase::Running => {}
            Phase::Boot => report.not_ready.push("trc: still booting".to_owned()),
            _ => report.not_ready.push("trc: stopping".to_owned()),
        }
        for id in ids {
            let task = &self.tasks[id];
            let problem = self.probing.get(&id).and_then(|p| p.last_problem.clone());
            // Unhealthy while trc stops it for that (the state `unhealthy`); once stopped,
            // trc is dealing with it (restart policy), and `--ready` still says it is not up.
            if task.state_word() == "unhealthy" {
                let why = problem.clone().unwrap_or_else(|| "unhealthy".to_owned());
                report.unhealthy.push(format!("{}: unhealthy: {why}", task.name));
            }
            let exempt = names.is_empty()
                && match task.state() {
                    super::machine::State::Stopped { .. } => true,
                    super::machine::State::Finished { status } => task.completed(status),
                    _ => false,
                };
            if !exempt {
                if let Some(why) = self.readiness_problem(id) {
                    report.not_ready.push(format!("{}: {why}", task.name));
                }
            }
        }
        Ok(report)
    }

    fn task_reply(&self, id: TaskId) -> Reply {
        Reply { task: Some(self.task_info(id)), ..Reply::ok() }
    }

    fn check_supervised(&self, id: TaskId) -> Result<(), String> {
        let task = &self.tasks[id];
        match (&task.stage, &task.source) {
            (Stage::Boot | Stage::Halt, _) => {
                Err(format!("{} is a {} task: it runs once, trc does not control it", task.name, task.stage))
            }
            (_, Source::Argv(_)) => {
                Err(format!("{} is the trailing command: trc does not control it", task.name))
            }
            _ => Ok(()),
        }
    }

    /// `start`: starts a task that is not running, lifting its hold. Running already is fine.
    fn control_start(&mut self, id: TaskId) -> Result<Reply, String> {
        self.check_supervised(id)?;
        if self.tasks[id].stage == Stage::Sync {
            self.sync_start(id)?;
        } else {
            if !self.tasks[id].is_active() {
                info!("Starting on request: {}", self.tasks[id].label);
            }
            match self.tasks[id].state() {
                State::Pending => self.feed(id, Input::Restart),
                _ => self.feed(id, Input::Want(Wanted::Up)),
            }
        }
        Ok(self.task_reply(id))
    }

    /// A sync task's `start`, keeping the chain: see the module's rules.
    fn sync_start(&mut self, id: TaskId) -> Result<(), String> {
        let task = &self.tasks[id];
        let in_queue = self.group.sync.queue.contains(&id);
        let current = self.group.sync.current == Some(id);
        match task.state() {
            _ if current => {
                // Its turn now: lift a hold (a stopping one starts again once it has exited).
                self.feed(id, Input::Want(Wanted::Up));
                Ok(())
            }
            State::Pending if in_queue && task.machine.wanted == Wanted::Up => Err(format!(
                "{} is a sync task waiting for its turn: sync tasks run one at a time, in order",
                task.name
            )),
            _ => {
                info!("Starting on request (next in the sync chain): {}", task.label);
                self.group.sync.queue.retain(|&q| q != id);
                let machine = &mut self.tasks[id].machine;
                machine.wanted = Wanted::Up;
                // Started by hand: its restart history (and a start limit it hit) starts over.
                machine.restart = Default::default();
                self.group.sync.queue.push_front(id);
                self.next_sync();
                Ok(())
            }
        }
    }

    /// `stop`: holds the task down and stops it.
    fn control_stop(&mut self, id: TaskId) -> Result<TaskId, String> {
        self.check_supervised(id)?;
        if self.tasks[id].is_active() {
            info!("Stopping on request: {}", self.tasks[id].label);
        }
        self.feed(id, Input::Want(Wanted::Down));
        Ok(id)
    }

    /// `restart`: stops the task if it runs and starts it again at once.
    fn control_restart(&mut self, id: TaskId) -> Result<TaskId, String> {
        self.check_supervised(id)?;
        let task = &self.tasks[id];
        if task.stage == Stage::Sync && !task.is_active() {
            self.sync_start(id)?;
            return Ok(id);
        }
        if task.is_active() {
            info!("Restarting on request: {}", task.label);
        } else {
            info!("Starting on request: {}", task.label);
        }
        self.feed(id, Input::Restart);
        Ok(id)
    }

    fn control_signal(&mut self, id: TaskId, signal: &str) -> Result<Reply, String> {
        let signal = parse_signal(signal)?;
        let task = &self.tasks[id];
        let Some(pid) = task.pid() else {
            return Err(format!("{} is not running", task.name));
        };
        info!("Sending SIG{} on request: {}", super::signals::name(signal as i32), task.label);
        super::reap::signal_group(pid, signal);
        Ok(self.task_reply(id))
    }

    fn start_all(&mut self) -> Reply {
        let mut started = Vec::new();
        for id in self.tasks.ids() {
            let task = &self.tasks[id];
            if task.stage != Stage::Async || task.is_removed() || matches!(task.source, Source::Argv(_)) {
                continue;
            }
            let was_active = task.is_active();
            match task.state() {
                State::Pending => self.feed(id, Input::Restart),
                _ => self.feed(id, Input::Want(Wanted::Up)),
            }
            if !was_active && self.tasks.get(id).is_some_and(|t| t.is_active()) {
                started.push(id);
            }
        }
        Reply { tasks: Some(started.into_iter().map(|id| self.task_info(id)).collect()), ..Reply::ok() }
    }

    /// `ensure`, before its file work: the name is valid and not taken by another kind of task.
    fn ensure_check(&self, spec: &EnsureSpec) -> Result<(), String> {
        check_task_name(&spec.name).map_err(|e| e.to_string())?;
        match self.find_async(&spec.name) {
            Some(id) => match &self.tasks[id].source {
                Source::File { path, .. }
                    if path.parent() == Some(&self.trc_d()) || spec.command.is_empty() =>
                {
                    Ok(())
                }
                Source::File { path, .. } => {
                    Err(format!("task \"{}\" comes from {}: edit that file", spec.name, path.display()))
                }
                _ => Err(format!("\"{}\" is a command-line task", spec.name)),
            },
            None if spec.command.is_empty() => Err(format!(
                "unknown task \"{}\": give its command the first time (ensure NAME -- CMD...)",
                spec.name
            )),
            None => Ok(()),
        }
    }

    /// `ensure`, after its file work: the task takes its file's new version and is made to
    /// run (restarted when its file changed). Returns the task, what was done to its file, and
    /// whether the reply must wait for it to start again.
    fn ensure_apply(
        &mut self,
        spec: &EnsureSpec,
        written: Written,
    ) -> Result<(TaskId, Ensured, bool), String> {
        let existing = self.find_async(&spec.name);
        let outcome = written.outcome;
        let id = match (existing, outcome) {
            (Some(id), Ensured::Unchanged) => id,
            _ => self.apply_file(existing, written.file),
        };
        info!("Ensured ({}): {}", outcome.as_str(), self.tasks[id].label);
        let state = self.tasks[id].state();
        let changed = outcome != Ensured::Unchanged;
        let wait = match state {
            State::Stopping { .. } => true,
            State::Starting { .. } | State::Running { .. } => changed,
            State::Backoff { .. } if !changed => {
                self.feed(id, Input::Want(Wanted::Up));
                return Ok((id, outcome, false));
            }
            _ => false,
        };
        if wait || !matches!(state, State::Starting { .. } | State::Running { .. }) {
            self.feed(id, Input::Restart);
        }
        let wait = wait && self.tasks.get(id).is_some_and(|t| t.is_active());
        Ok((id, outcome, wait))
    }

    /// `reload`: applies a fresh scan of the work dir to the async tasks: new ones start,
    /// removed ones stop (and are forgotten), changed ones restart (or just take effect at
    /// their next start when they are not running). The other stages take the new files at
    /// their next run (halt at teardown). A file that clashes with a command-line task fails
    /// the whole reload, before anything changes.
    fn reload(&mut self, files: TaskFiles) -> Result<ReloadReport, String> {
        for file in files.stage(Stage::Async) {
            if let Some(id) = self.find_async(&file.name) {
                if !matches!(self.tasks[id].source, Source::File { .. }) {
                    return Err(format!("{}: the name of a command-line task", file.path.display()));
                }
            }
        }
        let mut report = ReloadReport::default();
        let mut seen = Vec::new();
        for file in files.stage(Stage::Async).to_vec() {
            let name = file.name.clone();
            match self.find_async(&name) {
                Some(id) if self.tasks[id].fingerprint == file.fingerprint => {
                    seen.push(id);
                    report.unchanged.push(name);
                }
                Some(id) => {
                    let id = self.apply_file(Some(id), file);
                    seen.push(id);
                    if self.tasks[id].is_active() {
                        self.feed(id, Input::Restart);
                    }
                    report.restarted.push(name);
                }
                None => {
                    let id = self.apply_file(None, file);
                    seen.push(id);
                    self.feed(id, Input::Restart);
                    report.added.push(name);
                }
            }
        }
        for id in self.tasks.ids() {
            let task = &self.tasks[id];
            let from_file = matches!(task.source, Source::File { .. });
            if task.stage == Stage::Async && from_file && !task.is_removed() && !seen.contains(&id) {
                info!("Removed from the work dir: {}", task.label);
                report.removed.push(task.name.clone());
                self.feed(id, Input::Want(Wanted::Removed));
            }
        }
        self.files = files;
        Ok(report)
    }

    /// The async task of that name that is still in the work dir (or from the command line).
    fn find_async(&self, name: &str) -> Option<TaskId> {
        self.tasks
            .iter()
            .find(|(_, t)| t.stage == Stage::Async && t.name == name && !t.is_removed())
            .map(|(id, _)| id)
    }

    fn trc_d(&self) -> PathBuf {
        self.work_dir.join("trc.d")
    }

    /// Puts a file's current version into the table: a new task, or `id` updated (source,
    /// settings, fingerprint; it takes effect at its next start). A task of that name that was
    /// removed but has not exited yet is taken back.
    fn apply_file(&mut self, id: Option<TaskId>, file: TaskFile) -> TaskId {
        let revived = id.or_else(|| {
            self.tasks
                .iter()
                .find(|(_, t)| t.is_removed() && t.stage == Stage::Async && t.name == file.name)
                .map(|(id, _)| id)
        });
        let Some(id) = revived else {
            let id = self.add_task(
                file.name,
                Stage::Async,
                Source::File { path: file.path, run: file.run },
                &file.directives,
            );
            self.tasks[id].fingerprint = file.fingerprint;
            return id;
        };
        let settings = match crate::config::apply(&self.settings.task, &file.directives) {
            Ok(settings) => settings,
            Err(e) => {
                tracing::warn!("{}:{}: {} (using the defaults)", file.path.display(), e.line, e.problem);
                self.settings.task.clone()
            }
        };
        let task = &mut self.tasks[id];
        task.source = Source::File { path: file.path, run: file.run };
        task.machine.settings = settings;
        task.fingerprint = file.fingerprint;
        if task.is_removed() {
            task.machine.wanted = Wanted::Down;
        }
        id
    }

    /// Answers the waiters of `id` that want what just happened.
    pub(super) fn wake_waiters(&mut self, id: TaskId, happened: Want) {
        let mut i = 0;
        while i < self.waiters.len() {
            if self.waiters[i].task == id && self.waiters[i].want == happened {
                let waiter = self.waiters.swap_remove(i);
                let reply = match self.tasks.get(id) {
                    Some(_) => Reply {
                        ensured: waiter.ensured.map(|e| e.as_str().to_owned()),
                        ..self.task_reply(id)
                    },
                    None => Reply::ok(),
                };
                let _ = waiter.answer.send(reply.into());
            } else {
                i += 1;
            }
        }
    }

    /// Answers every waiter with an error (trc is stopping).
    pub(super) fn refuse_waiters(&mut self, why: &str) {
        for waiter in self.waiters.drain(..) {
            let _ = waiter.answer.send(Reply::error(why).into());
        }
    }
}

/// `command:`, `cwd:` and `env:` directives for `ensure`'s command, or `None` when one of its
/// words or values cannot be a directive value (a control character; in `--cwd`, which is not
/// quoted, a `#` that could start a comment), or its `--cwd` is not a directory now: then the
/// file is a shell fragment. A `#` in a word or an `--env` value is fine: it is quoted, and a
/// `command:` or `env:` value keeps what its quotes hold.
fn command_directives(spec: &EnsureSpec) -> Option<Vec<(&'static str, String)>> {
    let one_line = |text: &str| !text.chars().any(char::is_control);
    let plain = |text: &str| !text.contains('#') && one_line(text);
    if spec.command.is_empty() || !spec.command.iter().all(|w| one_line(w)) {
        return None;
    }
    let line = shlex::try_join(spec.command.iter().map(String::as_str)).ok()?;
    if shlex::split(&line).as_ref() != Some(&spec.command) {
        return None;
    }
    let mut out = vec![("command", line)];
    if let Some(cwd) = &spec.cwd {
        let text = cwd.to_str()?;
        if !plain(text) || text.trim() != text || !cwd.is_dir() {
            return None;
        }
        out.push(("cwd", text.to_owned()));
    }
    for (key, value) in &spec.env {
        if !one_line(value) {
            return None;
        }
        let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
        out.push(("env", format!("{key}=\"{escaped}\"")));
    }
    Some(out)
}

/// The text of `trc.d/async.NAME` for `ensure`: the directives as a header block with the
/// command as `command:` (and `cwd:`, `env:`), so that it runs without a shell; or, when a word
/// cannot be a directive value, a shell fragment that execs the command. Everything is checked before a byte is written: the
/// name, every key (known) and value (valid on top of `defaults`, no control characters, read
/// back unchanged), and the whole text is parsed by the scan's own header parser, so a file that
/// `ensure` writes can never fail the next scan.
pub fn task_file_text(spec: &EnsureSpec, defaults: &TaskSettings) -> Result<String, String> {
    check_task_name(&spec.name).map_err(|e| e.to_string())?;
    let mut text = String::new();
    for (key, value) in &spec.directives {
        if let Some(c) = key.chars().chain(value.chars()).find(|c| c.is_control()) {
            return Err(format!(
                "{}: {value:?} has a control character ({c:?}); directive keys and values are one line of text",
                escape_controls(key)
            ));
        }
    }
    let directives: BTreeMap<&str, &str> =
        spec.directives.iter().map(|(k, v)| (k.as_str(), v.trim())).collect();
    if let Some(key) = directives.keys().find(|k| matches!(**k, "command" | "cwd" | "env")) {
        return Err(format!("{key}: given by ensure itself (the command, --cwd, --env)"));
    }
    // The command as directives (no shell needed to run it), when every word can be one.
    let generated = command_directives(spec);
    let mut asked: Vec<(&str, &str)> = directives.iter().map(|(k, v)| (*k, *v)).collect();
    if let Some(generated) = &generated {
        asked.extend(generated.iter().map(|(k, v)| (*k, v.as_str())));
    }
    if !asked.is_empty() {
        let mut check = TaskSettings::default();
        text.push_str("### BEGIN TRC\n");
        for (key, value) in &asked {
            check.set(key, value).map_err(|e| format!("{key}: {e}"))?;
            text.push_str(&format!("# {key}: {value}\n"));
        }
        text.push_str("### END TRC\n");
    }
    text.push_str(&format!(
        "# Written by `trcctl ensure {}`; trcctl rewrites it when the command changes.\n",
        spec.name
    ));
    if generated.is_none() {
        // A shell fragment needs bash at every start: without it, refused now rather than a
        // task that fails with 127 at every restart.
        if crate::fsutil::find_in_path(std::ffi::OsStr::new("bash")).is_none() {
            return Err(format!(
                "the command cannot be a \"command:\" header (a word or value with a control character, or a --cwd with \"#\" or not a directory now), and its shell fragment needs bash, which is not on trc's PATH ({})",
                std::env::var("PATH").unwrap_or_default()
            ));
        }
        text.push_str(&shell_body(spec).map_err(|e| e.to_string())?);
    }
    // Read it back as the scan will.
    let file = format!("async.{}", spec.name);
    let bad = |e: crate::config::DirectiveError| {
        format!("the file would not be valid ({file}:{}: {})", e.line, e.problem)
    };
    let read = header_directives(&text).map_err(bad)?;
    apply(defaults, &read).map_err(bad)?;
    let read: Vec<(&str, &str)> = read.iter().map(|d| (d.key.as_str(), d.value.as_str())).collect();
    if read != asked {
        return Err(format!(
            "the directives would be read back as {read:?}, not {asked:?} (a value may not hold \" #\", which starts a comment)"
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ensure_files_carry_directives_and_the_command() {
        let spec = EnsureSpec {
            name: "web".into(),
            command: vec!["sleep".into(), "100".into()],
            directives: vec![("restart".into(), "always".into())],
            ..EnsureSpec::default()
        };
        let defaults = TaskSettings::default();
        let text = task_file_text(&spec, &defaults).unwrap();
        assert!(
            text.starts_with("### BEGIN TRC\n# restart: always\n# command: sleep 100\n### END TRC\n"),
            "{text}"
        );
        assert!(!text.contains("exec"), "no shell: {text}");
        // With --cwd and --env, quoted where needed.
        let dir = std::env::temp_dir();
        let with = EnsureSpec {
            command: vec!["sh".into(), "-c".into(), "echo \"$K\"".into()],
            cwd: Some(dir.clone()),
            env: vec![("K".into(), "two \"words\"".into())],
            ..spec.clone()
        };
        let text = task_file_text(&with, &defaults).unwrap();
        let settings = crate::config::parse_header(&text, &defaults).unwrap();
        assert_eq!(settings.command.as_ref(), Some(&with.command), "{text}");
        assert_eq!(settings.cwd.as_ref(), Some(&dir), "{text}");
        assert_eq!(settings.env, [("K".to_owned(), "two \"words\"".to_owned())], "{text}");
        // A `#` is quoted in a `command:` (and an `env:`), and read back as it was.
        let hash = EnsureSpec {
            command: vec!["echo".into(), "a #b".into(), "c#d".into(), "#".into()],
            env: vec![("K".into(), "v #w".into())],
            ..spec.clone()
        };
        let text = task_file_text(&hash, &defaults).unwrap();
        let settings = crate::config::parse_header(&text, &defaults).unwrap();
        assert_eq!(settings.command.as_ref(), Some(&hash.command), "{text}");
        assert_eq!(settings.env, [("K".to_owned(), "v #w".to_owned())], "{text}");
        assert!(!text.contains("exec"), "no shell: {text}");
        // A word that cannot be a directive value: a shell fragment.
        let newline = EnsureSpec { command: vec!["echo".into(), "a\nb".into()], ..spec.clone() };
        let text = task_file_text(&newline, &defaults).unwrap();
        assert!(text.ends_with("exec echo 'a\nb'\n") && !text.contains("command:"), "{text}");
        let bad = EnsureSpec { directives: vec![("restart".into(), "sometimes".into())], ..spec.clone() };
        assert!(task_file_text(&bad, &defaults).unwrap_err().starts_with("restart: "));
        let unknown = EnsureSpec { directives: vec![("colour".into(), "red".into())], ..spec };
        assert!(task_file_text(&unknown, &defaults).is_err());
    }

    #[test]
    fn ensure_files_that_would_not_scan_are_refused() {
        let defaults = TaskSettings::default();
        let spec = |directives: &[(&str, &str)], command: &[&str]| EnsureSpec {
            name: "x".into(),
            command: command.iter().map(|w| w.to_string()).collect(),
            directives: directives.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..EnsureSpec::default()
        };
        let sleep = ["sleep", "1"];
        let cases: [(EnsureSpec, &str); 7] = [
            (spec(&[("restart", "\nalways")], &sleep), "control character"),
            (spec(&[("restart", "always\n# stop-signal: KILL")], &sleep), "control character"),
            (spec(&[("stop-signal", "TERM\x1b")], &sleep), "control character"),
            (spec(&[("restart\t", "always")], &sleep), "control character"),
            (spec(&[("restart-delay", "1m")], &sleep), "shorter than restart-delay"),
            (spec(&[("log-prefix", "yes #x")], &sleep), "log-prefix"),
            (spec(&[], &["echo", "\n### BEGIN TRC\n"]), "would not be valid"),
        ];
        for (spec, needle) in cases {
            let err = task_file_text(&spec, &defaults).unwrap_err();
            assert!(err.contains(needle), "{:?}: {err}", spec.directives);
        }
        // The group's defaults count: a long restart-max-delay lets restart-delay be long.
        let long =
            TaskSettings { restart_max_delay: std::time::Duration::from_secs(600), ..defaults.clone() };
        assert!(task_file_text(&spec(&[("restart-delay", "1m")], &sleep), &long).is_ok());
        let bad_name = EnsureSpec { name: "x\ny".into(), ..spec(&[], &sleep) };
        assert!(task_file_text(&bad_name, &defaults).unwrap_err().contains("bad task name"));
    }
}
