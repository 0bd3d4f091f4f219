//! From a task to a process and back: adding tasks to the table, their log pipes, what runs
//! them ([`SpawnSpec`]), starting them, and booking their exit (with TrivialRC's log lines).

use super::machine::Input;
use super::spawn::{self, SpawnSpec};
use super::task::{Source, Task, TaskId};
use super::{control, is_program, reap, teardown, Supervisor, TaskLogs};
use crate::config::{apply, Directive, RunMode, Stage};
use crate::control::ring::LogRing;
use crate::logs::pipe::{LineSink, LogStream, Output};
use crate::shell::{ShellKind, ShellTask};
use nix::unistd::Pid;
use std::cell::RefCell;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use tokio::time::Instant;
use tracing::{debug, error, info};

/// What [`Supervisor::prepare_context`] makes ready for one start of a task.
struct Prepared {
    context: spawn::Context,
    /// Its `env-file:` and `env:` variables (and HOME, USER, LOGNAME of its `user:`).
    env: Vec<(OsString, OsString)>,
    /// Its own copy of the boot state, when it runs as another user.
    state: Option<PathBuf>,
    /// The prelude file it can read (`None`: inline).
    prelude: Option<PathBuf>,
}

/// The files a shell task reads and writes: the boot state it restores, the prelude, and (a
/// boot task) where it saves its own state.
#[derive(Clone, Copy)]
struct ShellFiles<'a> {
    state: Option<&'a Path>,
    prelude: Option<&'a Path>,
    save_to: Option<&'a Path>,
}

impl Supervisor {
    /// Adds the file tasks of `stage` to the table, in run order.
    pub(super) fn add_file_tasks(&mut self, stage: Stage) -> Vec<TaskId> {
        let files = self.files.stage(stage).to_vec();
        files
            .into_iter()
            .map(|f| {
                let id =
                    self.add_task(f.name, stage, Source::File { path: f.path, run: f.run }, &f.directives);
                self.tasks[id].fingerprint = f.fingerprint;
                id
            })
            .collect()
    }

    /// Adds the command-line tasks of `stage` (`-B`, `-D`, `-F` and the trailing command,
    /// `-H`) to the table, named `boot-N`, `async-N`, `sync-N`, `halt-N` and `cmd`.
    pub(super) fn add_cli_tasks(&mut self, stage: Stage) -> Vec<TaskId> {
        let commands = match stage {
            Stage::Boot => self.cli.boot.clone(),
            Stage::Async => self.cli.async_.clone(),
            Stage::Sync => self.cli.sync.clone(),
            Stage::Halt => self.cli.halt.clone(),
        };
        let mut ids: Vec<TaskId> = commands
            .into_iter()
            .enumerate()
            .map(|(i, cmd)| self.add_task(format!("{stage}-{}", i + 1), stage, Source::Command(cmd), &[]))
            .collect();
        if stage == Stage::Sync && !self.cli.command.is_empty() {
            ids.push(self.add_task("cmd".to_owned(), stage, Source::Argv(self.cli.command.clone()), &[]));
        }
        ids
    }

    /// Adds a task to the table; its settings are the group's defaults as they are now (after
    /// boot; without `RC_USER`/`RC_GROUP` for a boot task) with the file's directives on top.
    pub(super) fn add_task(
        &mut self,
        name: String,
        stage: Stage,
        source: Source,
        directives: &[Directive],
    ) -> TaskId {
        let defaults = self.settings.task.defaults_for(stage);
        let settings = apply(&defaults, directives).unwrap_or_else(|e| {
            if let Source::File { path, .. } = &source {
                error!("{}:{}: {} (using the defaults)", path.display(), e.line, e.problem);
            }
            defaults.clone()
        });
        self.tasks.add(Task::new(name, stage, source, settings))
    }

    pub(super) fn boot_save_path(&self, id: TaskId) -> PathBuf {
        self.runtime_dir.path().join(format!("boot-{id}"))
    }

    /// Carries out the machine's `Spawn`: makes the process and feeds back how it went. A
    /// task that cannot be started is reported (always); the machine counts it as a start
    /// that failed (127 when not found, else 126).
    pub(super) fn launch(&mut self, id: TaskId) {
        if self.held_by_dependencies(id) {
            self.wake_waiters(id, control::Want::Up);
            return;
        }
        self.tasks[id].launches += 1;
        self.set_up_logs(id);
        let save_to = (self.tasks[id].stage == Stage::Boot).then(|| self.boot_save_path(id));
        let prepared = self.prepare_context(id);
        let spawned = prepared.and_then(|prepared| {
            let files = ShellFiles {
                state: prepared.state.as_deref().or(self.boot_state.as_deref()),
                prelude: prepared.prelude.as_deref(),
                save_to: save_to.as_deref(),
            };
            let mut spec = self.spec_for(id, files, prepared.env);
            spec.context = prepared.context;
            self.probe_prepare(id, &mut spec);
            self.open_runtime_files(id)?;
            self.tasks[id].runs_bash = spec.program == "bash";
            spawn::spawn(&spec)
            // The child has its copy of the readiness pipe's write end: ours goes with `spec`,
            // so that the reader sees its end when the task's processes are gone.
        });
        let spawned = match spawned {
            Ok(spawned) => spawned,
            Err(e) => {
                let task = &self.tasks[id];
                let status = if e.kind() == std::io::ErrorKind::NotFound { 127 } else { 126 };
                error!(task = task.name.as_str(), "cannot start {} ({}): {e}", task.name, task.label);
                self.tasks[id].last_status = Some(status);
                self.tasks[id].since = Some(Instant::now());
                self.status_dirty = true;
                self.feed(id, Input::SpawnFailed { status });
                self.wake_waiters(id, control::Want::Up);
                return;
            }
        };
        let pid = spawned.pid;
        self.groups.started(pid);
        let task = &mut self.tasks[id];
        task.since = Some(Instant::now());
        task.last_pid = Some(pid);
        task.exec_report = Some(spawned.exec_report);
        if let Some(logs) = self.logs.get(&id) {
            logs.stdout.set_pid(pid.as_raw());
            logs.stderr.set_pid(pid.as_raw());
        }
        self.by_pid.insert(pid, id);
        let task = &self.tasks[id];
        let (ns, long, label) = (task.stage.ns(), task.ns_long(), &task.label);
        match task.stage {
            Stage::Async | Stage::Sync => {
                info!(ns, pid = pid.as_raw(), task = task.name.as_str(), "Launching in the {long}: {label}")
            }
            Stage::Halt => info!(
                ns,
                pid = pid.as_raw(),
                task = task.name.as_str(),
                "Running the shutdown {}: {label}",
                task.kind_word()
            ),
            Stage::Boot => {}
        }
        // A held child (the trailing command, which writes to trc's own stdout) runs once the
        // line above is out.
        if let Some(go) = spawned.go {
            crate::logs::release_after_output(Box::new(move || go.release()));
        }
        self.status_dirty = true;
        self.feed(id, Input::Spawned { pid });
        // Ready at once without a `ready:` probe; else when it says so.
        self.probe_started(id);
        self.wake_waiters(id, control::Want::Up);
    }

    /// Books the exit of a task's leader: its last lines, how its exec went, TrivialRC's exit
    /// line, and its process group (kept while members are left). Returns whether its exec
    /// failed (the process never ran the program).
    pub(super) fn exited(&mut self, id: TaskId, pid: Pid, status: i32) -> bool {
        // Every line the task wrote comes before the line that says it exited.
        if let Some(logs) = self.logs.get(&id) {
            logs.drain();
        }
        self.status_dirty = true;
        self.probe_stopped(id);
        let task = &mut self.tasks[id];
        task.last_status = Some(status);
        task.since = Some(Instant::now());
        let exec_error = task.exec_report.take().and_then(|report| report.take());
        let task = &self.tasks[id];
        if let Some(e) = &exec_error {
            let command = task.settings().command.is_some();
            let hint = match (&task.source, e.error.kind(), e.at_exec) {
                (Source::File { .. }, std::io::ErrorKind::NotFound, true) if !command => {
                    " (is the interpreter on its #! line installed?)"
                }
                _ => "",
            };
            error!(ns = task.stage.ns(), pid = pid.as_raw(), "cannot start {}: {e}{hint}", task.label);
        }
        match task.stage {
            Stage::Async | Stage::Sync => {
                // TrivialRC's debug lines of the task's subshell traps.
                let ns = task.stage.ns();
                if status > 128 {
                    debug!(ns, pid = pid.as_raw(), "sig-trap (exitcode={status})");
                } else if status != 0 {
                    debug!(ns, pid = pid.as_raw(), "err-trap (exitcode={status})");
                }
                debug!(ns, pid = pid.as_raw(), "exit-trap (exitcode={status})");
                info!(
                    ns,
                    pid = pid.as_raw(),
                    task = task.name.as_str(),
                    "Exiting in the {} (exitcode={status}): {}",
                    task.ns_long(),
                    task.label
                )
            }
            Stage::Halt => info!(
                task = task.name.as_str(),
                stage = "halt",
                task_pid = pid.as_raw(),
                "Exiting from the shutdown {} (exitcode={status}): {}",
                task.kind_word(),
                task.label
            ),
            Stage::Boot => debug!("boot task {} exited (exitcode={status})", task.label),
        }
        if task.stage != Stage::Async && self.terminal {
            // Take the terminal back, so that Ctrl-C reaches trc again.
            let _ = nix::unistd::tcsetpgrp(std::io::stdin(), nix::unistd::getpgrp());
        }
        // Its group may outlive its leader (a background child): kept until it is empty, and
        // forgotten then (its number may be reused).
        if reap::group_alive(pid) {
            let settings = task.settings().clone();
            let group = teardown::Lingering::new(pid, settings, self.stop_marks.get(&id));
            self.lingering.push(group);
        }
        self.stop_marks.remove(&id);
        exec_error.is_some()
    }

    /// Frees what a removed task held: its log pipes and pumps, its recent lines, its entry.
    pub(super) fn release(&mut self, id: TaskId) {
        if let Some(logs) = self.logs.remove(&id) {
            logs.close();
        }
        self.stop_marks.remove(&id);
        self.probe_release(id);
        self.blocked.retain(|&b| b != id);
        self.wake_waiters(id, control::Want::Down);
        self.waiters.retain(|w| w.task != id);
        if let Some(task) = self.tasks.remove(id) {
            debug!("forgot the removed task {}", task.label);
        }
    }

    /// Makes a task's log pipes the first time it starts (all tasks but the trailing command,
    /// whose stdio is trc's own; in JSON on the console it has them too, as every console line
    /// is an object) and starts copying their lines. If that fails, the task writes to trc's
    /// stdout and stderr directly.
    fn set_up_logs(&mut self, id: TaskId) {
        let task = &self.tasks[id];
        let style = crate::logs::format::style();
        let own_stdio =
            matches!(task.source, Source::Argv(_)) && !(style.is_json() && self.journal.is_none());
        if self.logs.contains_key(&id) || own_stdio {
            return;
        }
        let base = format!("{}.{}", task.stage, task.name);
        let ring = Rc::new(RefCell::new(LogRing::default()));
        let watch = self.log_watch(id);
        let task = &self.tasks[id];
        let open = |suffix: &str, output| {
            let path = self.runtime_dir.path().join(format!("{base}.{suffix}"));
            let sink = LineSink {
                output,
                prefix: Vec::new(),
                raw: !task.settings().log_prefix,
                style,
                journal: self.journal.clone(),
                task: task.name.clone(),
                stage: task.stage.as_str(),
                pid: std::cell::Cell::new(0),
                ring: Some(ring.clone()),
                watch: Some(watch.clone()),
            };
            LogStream::create(path, sink)
        };
        match (open("stdout", Output::Stdout), open("stderr", Output::Stderr)) {
            (Ok(stdout), Ok(stderr)) => {
                let pumps = [
                    tokio::task::spawn_local(stdout.clone().pump()),
                    tokio::task::spawn_local(stderr.clone().pump()),
                ];
                self.logs.insert(id, TaskLogs { stdout, stderr, pumps, ring });
            }
            (Err(e), _) | (_, Err(e)) => {
                error!("{}: cannot make its log pipe, its output goes straight to trc's: {e}", task.label)
            }
        }
    }

    /// The task's execution context for the child, the variables of its `env-file:` and
    /// `env:` (files read now, at every start), and the shell files it reads: for a task
    /// running as another user, its own copies (`access.rs`). An env file that cannot be read
    /// fails the start.
    fn prepare_context(&mut self, id: TaskId) -> std::io::Result<Prepared> {
        let settings = self.tasks[id].settings().clone();
        let mut env: Vec<(OsString, OsString)> = Vec::new();
        if let Some(user) = &settings.user {
            match (&user.name, &user.home) {
                (Some(name), Some(home)) => {
                    env.push(("HOME".into(), home.as_os_str().to_owned()));
                    env.push(("USER".into(), name.into()));
                    env.push(("LOGNAME".into(), name.into()));
                }
                // A number without a passwd entry: not trc's HOME (root's, say).
                _ => {
                    env.push(("HOME".into(), "/".into()));
                    env.push(("USER".into(), user.uid.to_string().into()));
                    env.push(("LOGNAME".into(), user.uid.to_string().into()));
                }
            }
        }
        for (path, optional) in &settings.env_files {
            let vars =
                crate::config::context::read_env_file(path, *optional).map_err(std::io::Error::other)?;
            // trc's own variables stay trc's: such a line of an env file is ignored (an `env:`
            // line naming one was refused before anything started).
            let vars = vars.into_iter().filter(|(k, _)| !crate::config::context::is_trc_own(k));
            env.extend(vars.map(|(k, v)| (k.into(), v.into())));
        }
        env.extend(settings.env.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))));
        // trc's own user and group: nothing to switch (and no privilege to set groups with).
        let switch = self.other_user(id).is_some();
        let context = spawn::Context {
            uid: settings.user.as_ref().map(|u| u.uid).filter(|_| switch),
            gid: settings.group.or(settings.user.as_ref().map(|u| u.gid)).filter(|_| switch),
            groups: settings.user.as_ref().filter(|_| switch).map(|u| u.groups.clone()).unwrap_or_default(),
            cwd: settings.cwd.clone(),
            umask: settings.umask,
            nice: settings.nice,
            limits: settings.limits.clone(),
        };
        let (state, prelude) = self.shell_files_for(id)?;
        Ok(Prepared { context, env, state, prelude })
    }

    /// What runs a task: its own program, or bash with the prelude (`files`); `context_env` (its
    /// `env-file:` and `env:`) on top of trc's variables, under trc's own `TRC_*`.
    fn spec_for(&self, id: TaskId, files: ShellFiles, context_env: Vec<(OsString, OsString)>) -> SpawnSpec {
        let task = &self.tasks[id];
        let task_argv = self.cli.task_argv();
        let after_state = after_state_code(task.settings(), &context_env);
        let shell = |kind: ShellKind, src: &OsStr, args: &[OsString]| {
            let command = ShellTask {
                stage: task.stage,
                kind,
                src,
                args,
                state: files.state,
                save_to: files.save_to,
                arg0: &self.arg0,
                stop_signal: task.settings().stop_signal,
                after_state: after_state.as_deref(),
                prelude_file: files.prelude,
                name: &task.name,
            }
            .command();
            SpawnSpec {
                program: command.program,
                arg0: Some(command.title),
                args: command.args,
                env: command.env,
                ..SpawnSpec::default()
            }
        };
        // With `cwd:` the task's file is found from trc's directory all the same.
        let own_path = |path: &PathBuf| -> PathBuf {
            match &task.settings().cwd {
                Some(_) => std::path::absolute(path).unwrap_or_else(|_| path.clone()),
                None => path.clone(),
            }
        };
        let mut spec = match &task.source {
            // `command:` — an argv, no shell (but bash restores what boot saved, if boot ran).
            Source::File { .. } if task.settings().command.is_some() => {
                let argv: Vec<OsString> =
                    task.settings().command.iter().flatten().map(OsString::from).collect();
                if self.boot_state.is_some() {
                    shell(ShellKind::Argv, OsStr::new(""), &argv)
                } else {
                    SpawnSpec { program: argv[0].clone(), args: argv[1..].to_vec(), ..SpawnSpec::default() }
                }
            }
            Source::File { path, run: RunMode::Fragment } => {
                shell(ShellKind::File, own_path(path).as_os_str(), &task_argv)
            }
            Source::File { path, run: RunMode::Executable } if self.boot_state.is_some() => {
                shell(ShellKind::Exec, own_path(path).as_os_str(), &[])
            }
            Source::File { path, run: RunMode::Executable } => {
                // A relative work dir gives a relative path: exec needs a slash to take it as one.
                let path = own_path(path);
                let path = if path.is_absolute() { path } else { Path::new(".").join(path) };
                SpawnSpec { program: path.into_os_string(), ..SpawnSpec::default() }
            }
            Source::Command(cmd) => shell(ShellKind::Command, cmd, &task_argv),
            Source::Argv(argv) => {
                let mut spec = if self.boot_state.is_none() && is_program(&argv[0]) {
                    SpawnSpec { program: argv[0].clone(), args: argv[1..].to_vec(), ..SpawnSpec::default() }
                } else {
                    shell(ShellKind::Argv, OsStr::new(""), argv)
                };
                spec.foreground = self.terminal;
                spec.hold = true;
                spec
            }
        };
        let mut env = self.env.clone();
        env.extend(context_env);
        env.push(("RC_WAIT_POLICY".into(), self.settings.wait_policy.as_str().into()));
        env.push(("TRC_TASK".into(), task.name.clone().into()));
        env.push(("TRC_STAGE".into(), task.stage.as_str().into()));
        if let Some(logs) = self.logs.get(&id) {
            env.push(("TRC_LOG_PIPE".into(), logs.stdout.path().as_os_str().to_owned()));
            match (logs.stdout.writer(), logs.stderr.writer()) {
                (Ok(out), Ok(err)) => {
                    spec.stdout = Some(out);
                    spec.stderr = Some(err);
                }
                (Err(e), _) | (_, Err(e)) => error!("{}: cannot open its log pipe: {e}", task.label),
            }
        }
        // A foreground task (boot, sync, halt: one at a time) gets the terminal while it runs,
        // so that it can read it (TrivialRC's tasks share its terminal) and Ctrl-C reaches it.
        if task.stage != Stage::Async {
            spec.foreground = self.terminal;
        }
        env.append(&mut spec.env);
        spec.env = env;
        spec.stdin_null = task.stage == Stage::Async;
        spec
    }
}

/// Bash code that re-applies a task's own `cwd:`, `umask:` and variables after the boot state
/// (which restores boot's directory, umask and every variable) was sourced.
fn after_state_code(settings: &crate::config::TaskSettings, env: &[(OsString, OsString)]) -> Option<String> {
    let quote = |text: &str| shlex::try_quote(text).map(|q| q.into_owned()).unwrap_or_default();
    let mut code = String::new();
    if let Some(cwd) = &settings.cwd {
        let cwd = std::path::absolute(cwd).unwrap_or_else(|_| cwd.clone());
        code.push_str(&format!("builtin cd -- {} || exit 1\n", quote(&cwd.to_string_lossy())));
    }
    if let Some(mask) = settings.umask {
        code.push_str(&format!("builtin umask {mask:03o}\n"));
    }
    for (key, value) in env {
        code.push_str(&format!(
            "builtin export {}={}\n",
            key.to_string_lossy(),
            quote(&value.to_string_lossy())
        ));
    }
    (!code.is_empty()).then_some(code)
}
