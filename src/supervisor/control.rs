//! The supervisor's answers to control requests (`trcctl`). They run inside the event loop, so
//! they see and change the task table like any other event; what takes time (a task stopping)
//! is answered later, from `start` and `finished`, through a [`Waiter`].
//!
//! Rules: reading (info, list, status, logs) works at any time; changing (start, stop, restart,
//! signal, ensure, start-all, reload) only while the group runs, not during boot or teardown.
//! A task stopped by `stop` is held down: it is not restarted, and the wait policy does not
//! count it as finished (it may come back with `start`).

use super::task::{Source, TaskId, TaskState};
use super::{Phase, Supervisor};
use crate::config::{parse_signal, scan_work_dir, RunMode, Stage, TaskFile};
use crate::control::manager::{check_task_name, shell_body, EnsureSpec, Ensured};
use crate::control::protocol::{Command, InstanceInfo, ReloadReport, Reply, TaskInfo, DEFAULT_LOG_LINES};
use crate::control::server::{Answer, Call};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{info, warn};

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
    /// Answers one request (now, or later through a waiter).
    pub(super) fn control(&mut self, call: Call) {
        let Call { request, answer } = call;
        let command = request.command;
        let changes =
            !matches!(command, Command::Info | Command::List | Command::Status { .. } | Command::Logs { .. });
        if changes && self.phase != Phase::Group {
            let why = match self.phase {
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
                    (0..self.tasks.len())
                        .filter(|&id| !self.tasks[id].removed)
                        .map(|id| self.task_info(id))
                        .collect(),
                ),
                ..Reply::ok()
            }),
            Command::Status { task } => self.find(&task).map(|id| self.task_reply(id)),
            Command::Start { task } => self.find(&task).and_then(|id| self.control_start(id)),
            Command::Stop { task } => match self.find(&task).and_then(|id| self.control_stop(id)) {
                Ok(Some(id)) => {
                    self.waiters.push(Waiter { task: id, want: Want::Down, answer, ensured: None });
                    return;
                }
                Ok(None) => self.find(&task).map(|id| self.task_reply(id)),
                Err(e) => Err(e),
            },
            Command::Restart { task } => match self.find(&task).and_then(|id| self.control_restart(id)) {
                Ok(id) => {
                    self.waiters.push(Waiter { task: id, want: Want::Up, answer, ensured: None });
                    return;
                }
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
                match self.ensure(&spec) {
                    Ok((id, ensured, true)) => {
                        self.waiters.push(Waiter { task: id, want: Want::Up, answer, ensured: Some(ensured) });
                        return;
                    }
                    Ok((id, ensured, false)) => {
                        Ok(Reply { ensured: Some(ensured.as_str().to_owned()), ..self.task_reply(id) })
                    }
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
            Command::Reload => self.reload().map(|report| Reply { reload: Some(report), ..Reply::ok() }),
        };
        let _ = answer.send(reply.unwrap_or_else(Reply::error).into());
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
        let live = |id: &TaskId| !self.tasks[*id].removed;
        let ids = || (0..self.tasks.len()).filter(live);
        if let Some((stage, rest)) = name.split_once('.') {
            if let Some(id) =
                ids().find(|&id| self.tasks[id].stage.as_str() == stage && self.tasks[id].name == rest)
            {
                return Ok(id);
            }
        }
        ids()
            .filter(|&id| self.tasks[id].name == name)
            .max_by_key(|&id| matches!(self.tasks[id].stage, Stage::Async | Stage::Sync))
            .ok_or_else(|| format!("unknown task \"{name}\""))
    }

    pub(super) fn task_info(&self, id: TaskId) -> TaskInfo {
        let task = &self.tasks[id];
        let now = Instant::now();
        let state = match task.state {
            TaskState::Pending => "pending",
            TaskState::Running { .. } => "running",
            TaskState::Stopping { .. } => "stopping",
            TaskState::Waiting { .. } => "waiting",
            TaskState::Finished { .. } if task.held => "stopped",
            TaskState::Finished { .. } => "finished",
        };
        let since = match task.state {
            TaskState::Running { .. } | TaskState::Stopping { .. } => task.started_at,
            _ => task.finished_at,
        };
        TaskInfo {
            name: task.name.clone(),
            stage: task.stage.as_str().to_owned(),
            state: state.to_owned(),
            pid: task.pid().map(|p| p.as_raw()),
            since_secs: since.map(|t| (now - t).as_secs_f64()),
            starts: task.starts,
            last_status: task.last_status,
            command: task.label.clone(),
        }
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
        let task = &mut self.tasks[id];
        task.held = false;
        match task.state {
            TaskState::Running { .. } => {}
            TaskState::Stopping { .. } => task.restart_after = true,
            TaskState::Pending | TaskState::Waiting { .. } | TaskState::Finished { .. } => {
                info!("Starting on request: {}", task.label);
                self.start(id, None);
            }
        }
        Ok(self.task_reply(id))
    }

    /// `stop`: holds the task down and stops it. `Some(id)` when the reply must wait for its
    /// exit.
    fn control_stop(&mut self, id: TaskId) -> Result<Option<TaskId>, String> {
        self.check_supervised(id)?;
        let task = &mut self.tasks[id];
        task.held = true;
        task.restart_after = false;
        match task.state {
            TaskState::Running { .. } => {
                info!("Stopping on request: {}", task.label);
                self.stop(id);
                Ok(Some(id))
            }
            TaskState::Stopping { .. } => Ok(Some(id)),
            TaskState::Waiting { status, .. } => {
                task.state = TaskState::Finished { status };
                Ok(None)
            }
            TaskState::Pending | TaskState::Finished { .. } => Ok(None),
        }
    }

    /// `restart`: stops the task if it runs and starts it again at once. The reply waits for
    /// the new start.
    fn control_restart(&mut self, id: TaskId) -> Result<TaskId, String> {
        self.check_supervised(id)?;
        let task = &mut self.tasks[id];
        task.held = false;
        match task.state {
            TaskState::Running { .. } => {
                info!("Restarting on request: {}", task.label);
                task.restart_after = true;
                self.stop(id);
            }
            TaskState::Stopping { .. } => task.restart_after = true,
            _ => {
                info!("Starting on request: {}", task.label);
                self.start(id, None);
            }
        }
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
        for id in 0..self.tasks.len() {
            let task = &mut self.tasks[id];
            if task.stage != Stage::Async || task.removed || matches!(task.source, Source::Argv(_)) {
                continue;
            }
            task.held = false;
            match task.state {
                TaskState::Running { .. } => {}
                TaskState::Stopping { .. } => task.restart_after = true,
                _ => {
                    self.start(id, None);
                    started.push(id);
                }
            }
        }
        Reply { tasks: Some(started.into_iter().map(|id| self.task_info(id)).collect()), ..Reply::ok() }
    }

    /// `ensure`: writes `trc.d/async.NAME` when the command is given and differs, then makes
    /// sure the task runs (restarting it when its file changed). Returns the task, what was
    /// done to its file, and whether the reply must wait for it to start again.
    fn ensure(&mut self, spec: &EnsureSpec) -> Result<(TaskId, Ensured, bool), String> {
        check_task_name(&spec.name).map_err(|e| e.to_string())?;
        let existing = self.find_async(&spec.name);
        if let Some(id) = existing {
            match &self.tasks[id].source {
                Source::File { path, .. }
                    if path.parent() == Some(&self.trc_d()) || spec.command.is_empty() => {}
                Source::File { path, .. } => {
                    return Err(format!(
                        "task \"{}\" comes from {}: edit that file",
                        spec.name,
                        path.display()
                    ))
                }
                _ => return Err(format!("\"{}\" is a command-line task", spec.name)),
            }
        }
        let mut outcome = Ensured::Unchanged;
        if !spec.command.is_empty() {
            let text = task_file_text(spec)?;
            let path = self.trc_d().join(format!("async.{}", spec.name));
            let old = std::fs::read(&path).ok();
            if old.as_deref() != Some(text.as_bytes()) {
                write_atomically(&path, text.as_bytes())
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                outcome = if old.is_some() { Ensured::Updated } else { Ensured::Created };
            }
        } else if existing.is_none() {
            return Err(format!(
                "unknown task \"{}\": give its command the first time (ensure NAME -- CMD...)",
                spec.name
            ));
        }
        let id = match (existing, outcome) {
            (Some(id), Ensured::Unchanged) => id,
            _ => {
                let file = self.scan_one(&spec.name)?;
                self.apply_file(existing, file)
            }
        };
        let task = &mut self.tasks[id];
        task.held = false;
        info!("Ensured ({}): {}", outcome.as_str(), task.label);
        let wait = match (outcome, task.state) {
            (_, TaskState::Stopping { .. }) => {
                task.restart_after = true;
                true
            }
            (Ensured::Unchanged, TaskState::Running { .. } | TaskState::Waiting { .. }) => false,
            (_, TaskState::Running { .. }) => {
                task.restart_after = true;
                self.stop(id);
                true
            }
            _ => {
                self.start(id, None);
                false
            }
        };
        Ok((id, outcome, wait))
    }

    /// `reload`: scans the work dir again and applies the async files: new ones start, removed
    /// ones stop, changed ones restart (or just take effect at their next start when they are
    /// not running). The other stages take the new files at their next run (halt at teardown).
    fn reload(&mut self) -> Result<ReloadReport, String> {
        let files = scan_work_dir(&self.work_dir, &self.settings.task).map_err(|e| e.to_string())?;
        files
            .check_cli_names(self.cli.stage_counts(), !self.cli.command.is_empty())
            .map_err(|e| e.to_string())?;
        let mut report = ReloadReport::default();
        let mut seen = Vec::new();
        for file in files.async_.clone() {
            let name = file.name.clone();
            match self.find_async(&name) {
                Some(id) if !matches!(self.tasks[id].source, Source::File { .. }) => {
                    return Err(format!("{}: the name of a command-line task", file.path.display()))
                }
                Some(id) if self.tasks[id].fingerprint == fingerprint(&file) => {
                    seen.push(id);
                    report.unchanged.push(name);
                }
                Some(id) => {
                    let id = self.apply_file(Some(id), file);
                    seen.push(id);
                    if self.tasks[id].is_active() {
                        self.tasks[id].restart_after = true;
                        self.stop(id);
                    }
                    report.restarted.push(name);
                }
                None => {
                    let id = self.apply_file(None, file);
                    seen.push(id);
                    self.start(id, None);
                    report.added.push(name);
                }
            }
        }
        for id in 0..self.tasks.len() {
            let task = &mut self.tasks[id];
            let from_file = matches!(task.source, Source::File { .. });
            if task.stage == Stage::Async && from_file && !task.removed && !seen.contains(&id) {
                info!("Removed from the work dir: {}", task.label);
                task.removed = true;
                task.restart_after = false;
                if let TaskState::Waiting { status, .. } = task.state {
                    task.state = TaskState::Finished { status };
                }
                report.removed.push(task.name.clone());
                self.stop(id);
            }
        }
        self.files = files;
        Ok(report)
    }

    /// The async task of that name that is still in the work dir (or from the command line).
    fn find_async(&self, name: &str) -> Option<TaskId> {
        (0..self.tasks.len()).find(|&id| {
            let t = &self.tasks[id];
            t.stage == Stage::Async && t.name == name && !t.removed
        })
    }

    fn trc_d(&self) -> PathBuf {
        self.work_dir.join("trc.d")
    }

    /// Scans the work dir for the async file of that name (with its directives checked).
    fn scan_one(&self, name: &str) -> Result<TaskFile, String> {
        let files = scan_work_dir(&self.work_dir, &self.settings.task).map_err(|e| e.to_string())?;
        files
            .async_
            .into_iter()
            .find(|f| f.name == name)
            .ok_or_else(|| format!("async.{name} is not a task file of {}", self.work_dir_label))
    }

    /// Puts a file's current version into the table: a new task, or `id` updated (source,
    /// settings, fingerprint; it takes effect at its next start). A task of that name removed
    /// earlier is brought back, keeping its log ring.
    fn apply_file(&mut self, id: Option<TaskId>, file: TaskFile) -> TaskId {
        let print = fingerprint(&file);
        let revived = id.or_else(|| {
            (0..self.tasks.len()).find(|&i| {
                let t = &self.tasks[i];
                t.removed && t.stage == Stage::Async && t.name == file.name && !t.is_active()
            })
        });
        let Some(id) = revived else {
            return self.add_task(
                file.name,
                Stage::Async,
                Source::File { path: file.path, run: file.run },
                &file.directives,
            );
        };
        let settings = match crate::config::apply(self.settings.task, &file.directives) {
            Ok(settings) => settings,
            Err(e) => {
                warn!("{}:{}: {} (using the defaults)", file.path.display(), e.line, e.problem);
                self.settings.task
            }
        };
        let task = &mut self.tasks[id];
        task.source = Source::File { path: file.path, run: file.run };
        task.settings = settings;
        task.fingerprint = print;
        if task.removed {
            task.removed = false;
            task.restart = Default::default();
        }
        id
    }

    /// Answers the waiters of `id` that want what just happened.
    pub(super) fn wake_waiters(&mut self, id: TaskId, happened: Want) {
        let mut i = 0;
        while i < self.waiters.len() {
            if self.waiters[i].task == id && self.waiters[i].want == happened {
                let waiter = self.waiters.swap_remove(i);
                let reply =
                    Reply { ensured: waiter.ensured.map(|e| e.as_str().to_owned()), ..self.task_reply(id) };
                let _ = waiter.answer.send(reply.into());
            } else {
                i += 1;
            }
        }
    }
}

/// What identifies a version of a task file: its content and how it runs.
pub fn fingerprint(file: &TaskFile) -> Option<u64> {
    file_fingerprint(&file.path, file.run)
}

pub fn file_fingerprint(path: &Path, run: RunMode) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let bytes = std::fs::read(path).ok()?;
    let mut hasher = std::hash::DefaultHasher::new();
    bytes.hash(&mut hasher);
    (run == RunMode::Executable).hash(&mut hasher);
    Some(hasher.finish())
}

/// The text of `trc.d/async.NAME` for `ensure`: the directives as a header block, then a
/// shell fragment that execs the command.
pub fn task_file_text(spec: &EnsureSpec) -> Result<String, String> {
    let mut text = String::new();
    let directives: BTreeMap<&str, &str> =
        spec.directives.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    if !directives.is_empty() {
        let mut check = crate::config::TaskSettings::default();
        text.push_str("### BEGIN TRC\n");
        for (key, value) in &directives {
            check.set(key, value).map_err(|e| format!("{key}: {e}"))?;
            text.push_str(&format!("# {key}: {value}\n"));
        }
        text.push_str("### END TRC\n");
    }
    text.push_str(&format!(
        "# Written by `trcctl ensure {}`; trcctl rewrites it when the command changes.\n",
        spec.name
    ));
    text.push_str(&shell_body(spec).map_err(|e| e.to_string())?);
    Ok(text)
}

/// Writes a file so that a reader sees the old or the new content, never a part: a temporary
/// file in the same directory (a dot name, which the work-dir scan ignores), then rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
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
        let text = task_file_text(&spec).unwrap();
        assert!(text.starts_with("### BEGIN TRC\n# restart: always\n### END TRC\n"), "{text}");
        assert!(text.ends_with("exec sleep 100\n"), "{text}");
        let bad = EnsureSpec { directives: vec![("restart".into(), "sometimes".into())], ..spec.clone() };
        assert!(task_file_text(&bad).unwrap_err().starts_with("restart: "));
        let unknown = EnsureSpec { directives: vec![("colour".into(), "red".into())], ..spec };
        assert!(task_file_text(&unknown).is_err());
    }
}
