//! The supervisor: one event loop that owns every task and all of trc's state.
//!
//! A run goes through boot (one task at a time, `set -e`), the group (async tasks all at once,
//! sync tasks one by one, until the wait policy decides), teardown (SIGTERM every task group at
//! once, SIGKILL after the stop-timeout, then every adopted process), halt (one at a time, only
//! if boot completed) and exit. The loop sleeps until a signal (SIGCHLD included) or a deadline
//! wakes it: there is no polling.

pub mod policy;
pub mod reap;
pub mod signals;
pub mod spawn;
pub mod task;

use crate::cli::CommandLine;
use crate::config::{scan_work_dir, RunMode, Settings, Stage, TaskFiles};
use crate::logs::Console;
use crate::runtime_dir::RuntimeDir;
use crate::shell::{read_boot_save, ShellKind, ShellTask};
use crate::{EXIT_CONFIG, EXIT_USAGE};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use policy::GroupPolicy;
use signal_hook_tokio::Signals;
use spawn::SpawnSpec;
use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use task::{Source, Task, TaskId, TaskState};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

/// What wakes the loop.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Event {
    /// A terminating signal arrived.
    Signal(i32),
    /// A task's leader exited with this status.
    Exited { task: TaskId, status: i32 },
    /// A process that is not a task leader (an adopted orphan) was reaped.
    Reaped,
    /// The deadline given to `next_event` passed.
    Deadline,
}

/// A process group whose task's leader has exited but which still has members, being stopped.
struct Lingering {
    pgid: Pid,
    deadline: Instant,
    killed: bool,
}

/// How boot ended.
enum Boot {
    /// Every boot task completed.
    Completed,
    /// The group ends here with this status, without halt (a boot task failed or called
    /// `exit`, or a signal arrived).
    Ended(i32),
}

/// Everything trc needs to start, resolved from the command line and the environment.
pub struct Setup {
    pub cli: CommandLine,
    pub console: Console,
    /// trc's argv[0], given to shell tasks as `$0`.
    pub arg0: OsString,
    /// `SELF_NAME` for tasks.
    pub self_name: String,
}

/// Runs trc to the end and returns its exit status. Config errors are reported here, before
/// anything starts.
pub fn run(setup: Setup) -> i32 {
    let overrides = setup.cli.rc_overrides();
    let lookup = |name: &str| {
        overrides
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var(name).ok())
    };
    let settings = match Settings::from_lookup(lookup) {
        Ok(settings) => settings,
        Err(e) => return config_error(&e, EXIT_CONFIG),
    };
    setup
        .console
        .set_verbosity(settings.verbose, settings.verbose_extra);
    let (work_dir, work_dir_label) = work_dir(&setup.cli);
    let files = match scan_work_dir(&work_dir) {
        Ok(files) => files,
        Err(e) => return config_error(&e, EXIT_CONFIG),
    };
    if let Err(e) = signals::prepare() {
        return config_error(&format!("cannot set up signals: {e}"), EXIT_CONFIG);
    }
    if let Err(e) = reap::become_subreaper() {
        warn!("cannot become a child subreaper ({e}): orphans of tasks will go to init");
    }
    let runtime_dir = match RuntimeDir::create() {
        Ok(dir) => dir,
        Err(e) => return config_error(&e, EXIT_CONFIG),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            runtime_dir.remove();
            return config_error(&format!("cannot start the event loop: {e}"), EXIT_CONFIG);
        }
    };
    runtime.block_on(async move {
        let mut watched: Vec<i32> = signals::TERMINATING.to_vec();
        watched.push(libc::SIGCHLD);
        let signals = match Signals::new(&watched) {
            Ok(signals) => signals,
            Err(e) => {
                runtime_dir.remove();
                return config_error(&format!("cannot install signal handlers: {e}"), EXIT_CONFIG);
            }
        };
        let mut env = vec![
            (
                OsString::from("RC_WORK_DIR"),
                OsString::from(&work_dir_label),
            ),
            (
                OsString::from("MAINPID"),
                OsString::from(std::process::id().to_string()),
            ),
            (
                OsString::from("SELF_NAME"),
                OsString::from(&setup.self_name),
            ),
        ];
        env.extend(
            overrides
                .iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v))),
        );
        let supervisor = Supervisor {
            console: setup.console,
            cli: setup.cli,
            arg0: setup.arg0,
            settings,
            files,
            work_dir_label,
            env,
            runtime_dir,
            terminal: on_terminal(),
            tasks: Vec::new(),
            by_pid: HashMap::new(),
            boot_state: None,
            signals,
            pending: VecDeque::new(),
        };
        supervisor.run().await
    })
}

fn config_error(e: &dyn std::fmt::Display, status: i32) -> i32 {
    eprintln!("trc: {e}");
    status
}

/// The work dir to scan and the text shown for it (`RC_WORK_DIR`, log lines):
/// `-w DIR`, else `$RC_WORK_DIR`, else the current directory (as `$PWD` names it).
fn work_dir(cli: &CommandLine) -> (PathBuf, String) {
    let given = cli
        .workdir
        .clone()
        .or_else(|| std::env::var_os("RC_WORK_DIR").filter(|v| !v.is_empty()));
    if let Some(dir) = given {
        let label = dir.to_string_lossy().into_owned();
        return (PathBuf::from(dir), label);
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let same_as_cwd = |pwd: &PathBuf| {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(pwd), std::fs::metadata(".")) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    };
    let shown = std::env::var_os("PWD")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute() && same_as_cwd(p));
    let label = shown.unwrap_or_else(|| cwd.clone()).display().to_string();
    (cwd, label)
}

/// Whether trc runs in the foreground process group of the terminal on its stdin.
fn on_terminal() -> bool {
    use std::os::fd::AsFd;
    let stdin = std::io::stdin();
    let fd = stdin.as_fd();
    nix::unistd::isatty(fd).unwrap_or(false)
        && nix::unistd::tcgetpgrp(fd).ok() == Some(nix::unistd::getpgrp())
}

struct Supervisor {
    console: Console,
    /// The command line as boot left it.
    cli: CommandLine,
    arg0: OsString,
    settings: Settings,
    files: TaskFiles,
    work_dir_label: String,
    /// Variables set for every task (on top of trc's own environment).
    env: Vec<(OsString, OsString)>,
    runtime_dir: RuntimeDir,
    /// trc is the terminal's foreground: the trailing command gets the terminal.
    terminal: bool,
    tasks: Vec<Task>,
    by_pid: HashMap<Pid, TaskId>,
    /// The state the last completed boot task saved, restored by every later shell task.
    boot_state: Option<PathBuf>,
    signals: Signals,
    /// Events taken from one wake-up that are still to be handled.
    pending: VecDeque<Event>,
}

impl Supervisor {
    async fn run(mut self) -> i32 {
        info!("The wait policy: {}", self.settings.wait_policy.as_str());
        info!("Work dir: {}", self.work_dir_label);
        let status = match self.boot().await {
            Boot::Completed => {
                let group = self.run_group().await;
                self.teardown().await;
                let status = self.halt(group).await;
                self.sweep_adopted().await;
                status
            }
            Boot::Ended(status) => {
                self.teardown().await;
                status
            }
        };
        info!("Exited (exitcode={status})");
        status
    }

    // ----- the stages -------------------------------------------------------------------

    /// Runs the boot files, then the `-B` commands, one by one. Each may change what the rest
    /// of the run sees; a boot file may also rewrite the command line.
    async fn boot(&mut self) -> Boot {
        debug!("Looking for `boot` scripts and commands...");
        let files: Vec<_> = self.files.boot.clone();
        for file in files {
            let id = self.add_task(
                file.name,
                Stage::Boot,
                Source::File {
                    path: file.path,
                    run: file.run,
                },
            );
            if let Err(status) = self.run_boot_task(id, true).await {
                return Boot::Ended(status);
            }
        }
        let commands = self.cli.boot.clone();
        for (i, cmd) in commands.into_iter().enumerate() {
            let id = self.add_task(format!("boot-{}", i + 1), Stage::Boot, Source::Command(cmd));
            if let Err(status) = self.run_boot_task(id, false).await {
                return Boot::Ended(status);
            }
        }
        Boot::Completed
    }

    /// Runs one boot task to its end and takes over what it saved. `Err(status)` ends the group.
    async fn run_boot_task(&mut self, id: TaskId, may_rewrite_argv: bool) -> Result<(), i32> {
        let save_to = self.runtime_dir.path().join(format!("boot-{id}"));
        info!("Launching in the boot: {}", self.tasks[id].label);
        self.start(id, Some(&save_to));
        let status = loop {
            match self.next_event(None).await {
                Event::Exited { task, status } => {
                    self.finished(task, status);
                    if task == id {
                        break status;
                    }
                }
                Event::Signal(sig) => {
                    debug!("sig-trap (exitcode={})", policy::signal_status(sig));
                    return Err(policy::signal_status(sig));
                }
                Event::Reaped | Event::Deadline => {}
            }
        };
        if status != 0 {
            return Err(status);
        }
        let save = match read_boot_save(&save_to) {
            Ok(Some(save)) => save,
            // It called `exit 0` before its end: in TrivialRC that ends the main shell, and so
            // the group, with status 0 (halt does not run: boot did not complete).
            Ok(None) => return Err(0),
            Err(e) => {
                error!(
                    "cannot read what boot task {} saved: {e}",
                    self.tasks[id].label
                );
                return Err(EXIT_CONFIG);
            }
        };
        self.boot_state = Some(save.state);
        if may_rewrite_argv {
            match self.cli.reparse_tasks(save.argv) {
                Ok(cli) => self.cli = cli,
                Err(e) => {
                    let msg = e.render().to_string();
                    error!(
                        "{}: the command line it left is not valid: {}",
                        self.tasks[id].label,
                        msg.lines().next().unwrap_or_default()
                    );
                    return Err(EXIT_USAGE);
                }
            }
        }
        let vars = save.rc_vars;
        match Settings::from_lookup(|name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        }) {
            Ok(settings) => {
                self.console
                    .set_verbosity(settings.verbose, settings.verbose_extra);
                self.settings = settings;
            }
            Err(e) => {
                error!("{}: {e}", self.tasks[id].label);
                return Err(EXIT_CONFIG);
            }
        }
        Ok(())
    }

    /// Starts the async tasks and runs the sync tasks until the wait policy decides. Returns
    /// the group's status.
    async fn run_group(&mut self) -> i32 {
        debug!("Looking for `halt` commands...");
        debug!("Looking for `async` scripts and commands...");
        let mut asyncs = Vec::new();
        for file in self.files.async_.clone() {
            asyncs.push(self.add_task(
                file.name,
                Stage::Async,
                Source::File {
                    path: file.path,
                    run: file.run,
                },
            ));
        }
        for (i, cmd) in self.cli.async_.clone().into_iter().enumerate() {
            asyncs.push(self.add_task(
                format!("async-{}", i + 1),
                Stage::Async,
                Source::Command(cmd),
            ));
        }
        debug!("Looking for `sync` scripts and commands...");
        let mut syncs = VecDeque::new();
        for file in self.files.sync.clone() {
            syncs.push_back(self.add_task(
                file.name,
                Stage::Sync,
                Source::File {
                    path: file.path,
                    run: file.run,
                },
            ));
        }
        for (i, cmd) in self.cli.sync.clone().into_iter().enumerate() {
            syncs.push_back(self.add_task(
                format!("sync-{}", i + 1),
                Stage::Sync,
                Source::Command(cmd),
            ));
        }
        if !self.cli.command.is_empty() {
            syncs.push_back(self.add_task(
                "cmd".to_owned(),
                Stage::Sync,
                Source::Argv(self.cli.command.clone()),
            ));
        }

        let mut policy = GroupPolicy::new(self.settings.wait_policy);
        if asyncs.is_empty() && syncs.is_empty() {
            if let Some(status) = policy.empty_group() {
                return status;
            }
        }
        for &id in &asyncs {
            self.start(id, None);
        }
        self.start_next_sync(&mut syncs);
        loop {
            match self.next_event(None).await {
                Event::Signal(sig) => {
                    debug!("sig-trap (exitcode={})", policy::signal_status(sig));
                    return policy::signal_status(sig);
                }
                Event::Exited { task, status } => {
                    self.finished(task, status);
                    let all_done = syncs.is_empty()
                        && !self.tasks.iter().any(|t| {
                            matches!(t.stage, Stage::Async | Stage::Sync) && t.is_active()
                        });
                    if let Some(status) = policy.task_finished(status, all_done) {
                        return status;
                    }
                    if self.tasks[task].stage == Stage::Sync {
                        self.start_next_sync(&mut syncs);
                    }
                }
                Event::Reaped | Event::Deadline => {}
            }
        }
    }

    fn start_next_sync(&mut self, syncs: &mut VecDeque<TaskId>) {
        match syncs.pop_front() {
            Some(id) => self.start(id, None),
            None if self.settings.wait_policy == crate::config::WaitPolicy::Forever => {
                info!("Activated infinite loop! To stop, press <Ctrl+C> or send SIGTERM...");
            }
            None => {}
        }
    }

    /// Stops every task group at once: the stop signal now, SIGKILL to what is left of a group
    /// after its stop-timeout. Then every other process trc adopted.
    async fn teardown(&mut self) {
        info!("Trying to terminate sub-processes...");
        // Groups whose leader already exited may still have members: they are stopped too.
        let mut lingering: Vec<Lingering> = Vec::new();
        for id in 0..self.tasks.len() {
            if let Some(pid) = self.tasks[id].pid() {
                info!("terminating the child process <pid={pid}>");
                self.stop(id);
            } else if let Some(pgid) = self.tasks[id].pgid.filter(|&g| reap::group_alive(g)) {
                reap::signal_group(pgid, Signal::SIGTERM);
                let deadline = Instant::now() + self.settings.stop_timeout;
                lingering.push(Lingering {
                    pgid,
                    deadline,
                    killed: false,
                });
            }
        }
        loop {
            lingering.retain(|l| !l.killed && reap::group_alive(l.pgid));
            if lingering.is_empty() && !self.tasks.iter().any(Task::is_active) {
                break;
            }
            let next = self
                .tasks
                .iter()
                .filter_map(|t| match t.state {
                    TaskState::Stopping {
                        deadline,
                        killed: false,
                        ..
                    } => Some(deadline),
                    _ => None,
                })
                .chain(lingering.iter().map(|l| l.deadline))
                .min();
            match self.next_event(next).await {
                Event::Exited { task, status } => {
                    let deadline = match self.tasks[task].state {
                        TaskState::Stopping { deadline, .. } => deadline,
                        _ => Instant::now() + self.settings.stop_timeout,
                    };
                    self.finished(task, status);
                    if let Some(pgid) = self.tasks[task].pgid.filter(|&g| reap::group_alive(g)) {
                        lingering.push(Lingering {
                            pgid,
                            deadline,
                            killed: false,
                        });
                    }
                }
                Event::Deadline => self.kill_overdue(Some(Instant::now()), &mut lingering),
                Event::Signal(sig) => {
                    warn!(
                        "got SIG{} while stopping: killing what is left now",
                        signals::name(sig)
                    );
                    self.kill_overdue(None, &mut lingering);
                }
                Event::Reaped => {}
            }
        }
        self.sweep_adopted().await;
    }

    /// Asks a running task to stop: SIGTERM to its process group now, SIGKILL when its
    /// stop-timeout has passed (`kill_overdue`). Returns whether the task was running.
    fn stop(&mut self, id: TaskId) -> bool {
        let deadline = Instant::now() + self.settings.stop_timeout;
        let task = &mut self.tasks[id];
        let TaskState::Running { pid } = task.state else {
            return false;
        };
        reap::signal_group(pid, Signal::SIGTERM);
        task.state = TaskState::Stopping {
            pid,
            deadline,
            killed: false,
        };
        true
    }

    /// SIGKILL to every stopping task group and lingering group whose deadline is not after
    /// `now` (all of them with `None`).
    fn kill_overdue(&mut self, now: Option<Instant>, lingering: &mut [Lingering]) {
        let due = |deadline: Instant| now.is_none_or(|now| deadline <= now);
        for task in &mut self.tasks {
            if let TaskState::Stopping {
                pid,
                deadline,
                killed: false,
            } = task.state
            {
                if due(deadline) {
                    debug!("killing the process group of {} <pid={pid}>", task.label);
                    reap::signal_group(pid, Signal::SIGKILL);
                    task.state = TaskState::Stopping {
                        pid,
                        deadline,
                        killed: true,
                    };
                }
            }
        }
        for group in lingering.iter_mut().filter(|l| due(l.deadline)) {
            reap::signal_group(group.pgid, Signal::SIGKILL);
            group.killed = true;
        }
    }

    /// Stops every process that is still trc's child though no task leads it: orphans that
    /// came to trc as PID 1 or subreaper (double-forked daemons, leftovers of finished tasks).
    /// SIGTERM, then SIGKILL after the stop-timeout; repeated until none is left, since each
    /// one that dies may hand its own children over to trc.
    async fn sweep_adopted(&mut self) {
        let deadline = Instant::now() + self.settings.stop_timeout;
        let mut signalled: HashSet<Pid> = HashSet::new();
        let mut killed = false;
        let mut announced = false;
        loop {
            let children = reap::children();
            if children.is_empty() {
                return;
            }
            if !announced {
                debug!("removing all unexpected sub-processes");
                announced = true;
            }
            let sig = if killed {
                Signal::SIGKILL
            } else {
                Signal::SIGTERM
            };
            for pid in children {
                if signalled.insert(pid) {
                    debug!("terminating the adopted process <pid={pid}>");
                    let _ = nix::sys::signal::kill(pid, sig);
                }
            }
            match self
                .next_event(if killed { None } else { Some(deadline) })
                .await
            {
                Event::Deadline | Event::Signal(_) => {
                    killed = true;
                    for pid in reap::children() {
                        let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
                    }
                }
                Event::Exited { task, status } => self.finished(task, status),
                Event::Reaped => {}
            }
        }
    }

    /// Runs the halt files, then the `-H` commands, one by one. Returns trc's exit status:
    /// the last halt task's status if any ran, else the group's.
    async fn halt(&mut self, group: i32) -> i32 {
        debug!("Looking for `halt` scripts...");
        let mut halts = Vec::new();
        for file in self.files.halt.clone() {
            halts.push(self.add_task(
                file.name,
                Stage::Halt,
                Source::File {
                    path: file.path,
                    run: file.run,
                },
            ));
        }
        for (i, cmd) in self.cli.halt.clone().into_iter().enumerate() {
            halts.push(self.add_task(format!("halt-{}", i + 1), Stage::Halt, Source::Command(cmd)));
        }
        self.env.push((
            OsString::from("TRC_EXIT_STATUS"),
            OsString::from(group.to_string()),
        ));
        let mut last = None;
        for id in halts {
            self.start(id, None);
            let status = loop {
                match self.next_event(None).await {
                    Event::Exited { task, status } => {
                        self.finished(task, status);
                        if task == id {
                            break status;
                        }
                    }
                    Event::Signal(sig) => {
                        if let Some(pid) = self.tasks[id].pid() {
                            warn!(
                                "got SIG{} during halt: killing {}",
                                signals::name(sig),
                                self.tasks[id].label
                            );
                            reap::signal_group(pid, Signal::SIGKILL);
                        }
                    }
                    Event::Reaped | Event::Deadline => {}
                }
            };
            last = Some(status);
        }
        policy::final_status(group, last)
    }

    // ----- one task ---------------------------------------------------------------------

    fn add_task(&mut self, name: String, stage: Stage, source: Source) -> TaskId {
        self.tasks.push(Task::new(name, stage, source));
        self.tasks.len() - 1
    }

    /// Starts a task. A task that cannot start is reported (always) and finishes at once with
    /// 127 (not found) or 126, so the wait policy applies to it like to any other.
    fn start(&mut self, id: TaskId, save_to: Option<&Path>) {
        let spec = self.spec_for(id, save_to);
        let task = &self.tasks[id];
        let forked = match spawn::spawn(&spec) {
            Ok(forked) => forked,
            Err(e) => {
                let status = if e.kind() == std::io::ErrorKind::NotFound {
                    127
                } else {
                    126
                };
                error!(ns = task.stage.ns(), "cannot start {}: {e}", task.label);
                self.pending.push_back(Event::Exited { task: id, status });
                return;
            }
        };
        let pid = forked.pid;
        let task = &mut self.tasks[id];
        task.state = TaskState::Running { pid };
        task.pgid = Some(pid);
        self.by_pid.insert(pid, id);
        let (ns, long, label) = (task.stage.ns(), task.ns_long(), &task.label);
        match task.stage {
            Stage::Async | Stage::Sync => {
                info!(ns, pid = pid.as_raw(), "Launching in the {long}: {label}")
            }
            Stage::Halt => {
                let what = if matches!(task.source, Source::File { .. }) {
                    "script"
                } else {
                    "command"
                };
                info!(
                    ns,
                    pid = pid.as_raw(),
                    "Running the shutdown {what}: {label}"
                )
            }
            Stage::Boot => {}
        }
        // Logged first, then let it run: its output can only come after the line above.
        if let Err(e) = forked.release() {
            let hint = match (&task.source, e.kind()) {
                (Source::File { .. }, std::io::ErrorKind::NotFound) => {
                    " (is the interpreter on its #! line installed?)"
                }
                _ => "",
            };
            error!(ns, pid = pid.as_raw(), "cannot start {label}: {e}{hint}");
        }
    }

    /// What runs a task: its own program, or bash with the prelude.
    fn spec_for(&self, id: TaskId, save_to: Option<&Path>) -> SpawnSpec {
        let task = &self.tasks[id];
        let task_argv = self.cli.task_argv();
        let shell = |kind: ShellKind, src: &OsStr, args: &[OsString]| {
            ShellTask {
                stage: task.stage,
                kind,
                src,
                args,
                state: self.boot_state.as_deref(),
                save_to,
                arg0: &self.arg0,
            }
            .spec()
        };
        let mut spec = match &task.source {
            Source::File {
                path,
                run: RunMode::Fragment,
            } => shell(ShellKind::File, path.as_os_str(), &task_argv),
            Source::File {
                path,
                run: RunMode::Executable,
            } if self.boot_state.is_some() => shell(ShellKind::Exec, path.as_os_str(), &[]),
            Source::File {
                path,
                run: RunMode::Executable,
            } => {
                // A relative work dir gives a relative path: exec needs a slash to take it as one.
                let path = if path.is_absolute() {
                    path.clone()
                } else {
                    Path::new(".").join(path)
                };
                SpawnSpec {
                    program: path.into_os_string(),
                    ..SpawnSpec::default()
                }
            }
            Source::Command(cmd) => shell(ShellKind::Command, cmd, &task_argv),
            Source::Argv(argv) => {
                let mut spec = if self.boot_state.is_none() && is_program(&argv[0]) {
                    SpawnSpec {
                        program: argv[0].clone(),
                        args: argv[1..].to_vec(),
                        ..SpawnSpec::default()
                    }
                } else {
                    shell(ShellKind::Argv, OsStr::new(""), argv)
                };
                spec.foreground = self.terminal;
                spec
            }
        };
        let mut env = self.env.clone();
        env.push((
            "RC_WAIT_POLICY".into(),
            self.settings.wait_policy.as_str().into(),
        ));
        env.push(("TRC_TASK".into(), task.name.clone().into()));
        env.push(("TRC_STAGE".into(), task.stage.as_str().into()));
        env.append(&mut spec.env);
        spec.env = env;
        spec.stdin_null = task.stage == Stage::Async;
        spec
    }

    /// Records that a task's leader exited, and logs it as TrivialRC does.
    fn finished(&mut self, id: TaskId, status: i32) {
        let task = &mut self.tasks[id];
        let pid = task.pid();
        if let Some(pid) = pid {
            self.by_pid.remove(&pid);
        }
        task.state = TaskState::Finished { status };
        let task = &self.tasks[id];
        match task.stage {
            Stage::Async | Stage::Sync => info!(
                ns = task.stage.ns(),
                pid = pid.map_or(0, Pid::as_raw),
                "Exiting in the {} (exitcode={status}): {}",
                task.ns_long(),
                task.label
            ),
            Stage::Halt => {
                let what = if matches!(task.source, Source::File { .. }) {
                    "script"
                } else {
                    "command"
                };
                info!(
                    "Exiting from the shutdown {what} (exitcode={status}): {}",
                    task.label
                )
            }
            Stage::Boot => debug!("boot task {} exited (exitcode={status})", task.label),
        }
        if matches!(task.source, Source::Argv(_)) && self.terminal {
            // Take the terminal back, so that Ctrl-C reaches trc again.
            let _ = nix::unistd::tcsetpgrp(std::io::stdin(), nix::unistd::getpgrp());
        }
    }

    // ----- the loop ---------------------------------------------------------------------

    /// Waits for the next event: a signal, a reaped child, or the deadline.
    async fn next_event(&mut self, deadline: Option<Instant>) -> Event {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return event;
            }
            let signals = &mut self.signals;
            let next_signal = std::future::poll_fn(|cx| {
                futures_core::Stream::poll_next(Pin::new(&mut *signals), cx)
            });
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                sig = next_signal => match sig {
                    Some(libc::SIGCHLD) => self.reap(),
                    Some(sig) => return Event::Signal(sig),
                    None => return Event::Signal(libc::SIGTERM),
                },
                () = sleep => return Event::Deadline,
            }
        }
    }

    /// Reaps every exited child and queues an event for each.
    fn reap(&mut self) {
        for (pid, status) in reap::reap_exited() {
            match self.by_pid.get(&pid) {
                Some(&task) => self.pending.push_back(Event::Exited { task, status }),
                None => {
                    debug!("reaped an adopted process <pid={pid}> (exitcode={status})");
                    self.pending.push_back(Event::Reaped);
                }
            }
        }
    }
}

impl Drop for Supervisor {
    /// Last resort (a panic unwinding through the loop): nothing trc started may outlive it.
    fn drop(&mut self) {
        for task in &self.tasks {
            if let Some(pid) = task.pid() {
                reap::signal_group(pid, Signal::SIGKILL);
            }
        }
        for pid in reap::children() {
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        }
        self.runtime_dir.remove();
    }
}

/// Whether `name` is a program trc can exec itself: a path to an executable file, or a name
/// found as one in `$PATH`. Anything else (a builtin such as `exit`, a typo) goes through bash,
/// which runs it or says "command not found" with status 127, as TrivialRC does.
fn is_program(name: &OsStr) -> bool {
    use std::os::unix::ffi::OsStrExt;
    if name.as_bytes().contains(&b'/') {
        spawn::is_executable_file(Path::new(name))
    } else {
        spawn::find_in_path(name).is_some()
    }
}
