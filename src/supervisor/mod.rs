//! The supervisor: one event loop that owns every task and all of trc's state.
//!
//! A run goes through boot (one task at a time, `set -e`), the group (async tasks all at once,
//! sync tasks one by one, until the wait policy decides), teardown (SIGTERM every task group at
//! once, SIGKILL after the stop-timeout, then every adopted process), halt (one at a time, only
//! if boot completed) and exit. The loop sleeps until a signal (SIGCHLD included) or a deadline
//! wakes it: there is no polling.

pub mod control;
pub mod policy;
pub mod reap;
pub mod restart;
pub mod signals;
pub mod spawn;
pub mod task;

use crate::cli::CommandLine;
use crate::config::{apply, scan_work_dir, Directive, RunMode, Settings, Stage, TaskFiles};
use crate::control::server::{self, Call};
use crate::logs::journal::Journal;
use crate::logs::notify::{self, Notifier};
use crate::logs::pipe::{LineSink, LogStream, Output};
use crate::logs::ring::LogRing;
use crate::logs::Console;
use crate::runtime_dir::{RuntimeDir, SOCKET_FILE};
use crate::shell::{read_boot_save, ShellKind, ShellTask};
use crate::{EXIT_CONFIG, EXIT_USAGE};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use policy::GroupPolicy;
use restart::Decision;
use spawn::SpawnSpec;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use task::{Source, Task, TaskId, TaskState};
use tokio::sync::mpsc;
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
    /// A control request was answered (or queued): the caller looks at its deadlines again.
    Control,
}

/// Where the run is: control requests that change tasks are taken only in `Group`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Boot,
    Group,
    Stopping,
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
    setup.console.set_verbosity(settings.verbose, settings.verbose_extra);
    let (work_dir, work_dir_label) = work_dir(&setup.cli);
    let files = match scan_work_dir(&work_dir, &settings.task) {
        Ok(files) => files,
        Err(e) => return config_error(&e, EXIT_CONFIG),
    };
    if let Err(e) = files.check_cli_names(setup.cli.stage_counts(), !setup.cli.command.is_empty()) {
        return config_error(&e, EXIT_CONFIG);
    }
    if let Err(e) = signals::prepare() {
        return config_error(&format!("cannot set up signals: {e}"), EXIT_CONFIG);
    }
    if let Err(e) = reap::become_subreaper() {
        warn!("cannot become a child subreaper ({e}): orphans of tasks will go to init");
    }
    let journal = choose_journal(&setup);
    // The notify socket is trc's: tasks must not talk to systemd in its name.
    let notifier = Notifier::from_env().map(Rc::new);
    let watchdog = notifier.as_ref().and(notify::watchdog_interval());
    for var in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
        std::env::remove_var(var);
    }
    if let Some(journal) = &journal {
        setup.console.use_journal(journal.clone());
    }
    // The instance name is this trc's alone: a nested trc must not inherit it.
    let instance = setup.cli.instance.clone().or_else(|| std::env::var("RC_INSTANCE").ok());
    std::env::remove_var("RC_INSTANCE");
    let runtime_dir = match RuntimeDir::create(
        instance.as_deref().filter(|s| !s.is_empty()),
        &crate::runtime_dir::default_name(&work_dir),
    ) {
        Ok(dir) => dir,
        Err(e) => return config_error(&e, EXIT_CONFIG),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            return config_error(&format!("cannot start the event loop: {e}"), EXIT_CONFIG);
        }
    };
    // Local tasks: the log pumps share the supervisor's single thread.
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let mut watched: Vec<i32> = signals::TERMINATING.to_vec();
        watched.push(libc::SIGCHLD);
        let signals = match signals::Watch::new(&watched) {
            Ok(signals) => signals,
            Err(e) => {
                return config_error(&format!("cannot install signal handlers: {e}"), EXIT_CONFIG);
            }
        };
        let control = match server::listen(&runtime_dir.path().join(SOCKET_FILE)) {
            Ok(calls) => Some(calls),
            Err(e) => {
                error!("cannot open the control socket (trcctl will not reach this trc): {e}");
                None
            }
        };
        let mut env = vec![
            (OsString::from("RC_WORK_DIR"), OsString::from(&work_dir_label)),
            (OsString::from("MAINPID"), OsString::from(std::process::id().to_string())),
            (OsString::from("SELF_NAME"), OsString::from(&setup.self_name)),
            (OsString::from("TRC_INSTANCE"), OsString::from(runtime_dir.name())),
        ];
        env.extend(overrides.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))));
        if let (Some(notifier), Some(every)) = (notifier.clone(), watchdog) {
            tokio::task::spawn_local(async move {
                loop {
                    tokio::time::sleep(every).await;
                    notifier.send("WATCHDOG=1");
                }
            });
        }
        let supervisor = Supervisor {
            console: setup.console,
            cli: setup.cli,
            arg0: setup.arg0,
            settings,
            files,
            work_dir,
            work_dir_label,
            env,
            runtime_dir,
            terminal: on_terminal(),
            tasks: Vec::new(),
            by_pid: HashMap::new(),
            boot_state: None,
            signals,
            pending: VecDeque::new(),
            teardown_started: None,
            logs: HashMap::new(),
            journal,
            notifier,
            control,
            phase: Phase::Boot,
            waiters: Vec::new(),
        };
        supervisor.run().await
    })
}

/// Where records go: journald natively when trc's stderr is the journal (`JOURNAL_STREAM`) or
/// `--log journal` / `RC_LOG=journal` asks for it; the console otherwise, also when journald's
/// socket cannot be reached (with one warning).
fn choose_journal(setup: &Setup) -> Option<Arc<Journal>> {
    let wanted = setup.cli.log.clone().or_else(|| std::env::var("RC_LOG").ok()).unwrap_or_default();
    let use_journal = match wanted.as_str() {
        "journal" => true,
        "console" => false,
        _ => crate::logs::journal::stderr_is_journal(),
    };
    if !use_journal {
        return None;
    }
    let path = std::path::Path::new(crate::logs::journal::SOCKET);
    match Journal::connect(path) {
        Ok(journal) => Some(Arc::new(journal)),
        Err(e) => {
            error!("cannot reach journald at {} ({e}): logging to the console", path.display());
            None
        }
    }
}

fn config_error(e: &dyn std::fmt::Display, status: i32) -> i32 {
    eprintln!("trc: {e}");
    status
}

/// The work dir to scan and the text shown for it (`RC_WORK_DIR`, log lines):
/// `-w DIR`, else `$RC_WORK_DIR`, else the current directory (as `$PWD` names it).
fn work_dir(cli: &CommandLine) -> (PathBuf, String) {
    let given = cli.workdir.clone().or_else(|| std::env::var_os("RC_WORK_DIR").filter(|v| !v.is_empty()));
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
    let shown = std::env::var_os("PWD").map(PathBuf::from).filter(|p| p.is_absolute() && same_as_cwd(p));
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
    /// The work dir as given (relative or not): what file paths are built from.
    work_dir: PathBuf,
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
    signals: signals::Watch,
    /// Events taken from one wake-up that are still to be handled.
    pending: VecDeque<Event>,
    /// When teardown began (for telling a repeated signal from an insistent one).
    teardown_started: Option<Instant>,
    /// The log pipes of the tasks that have them (all but the trailing command).
    logs: HashMap<TaskId, TaskLogs>,
    /// journald, when records go there natively.
    journal: Option<Arc<Journal>>,
    /// systemd's notify socket, when trc runs as a `Type=notify` service.
    notifier: Option<Rc<Notifier>>,
    /// Requests from the control socket.
    control: Option<mpsc::UnboundedReceiver<Call>>,
    phase: Phase,
    /// Control replies waiting for a task to start or exit.
    waiters: Vec<control::Waiter>,
}

/// A task's two log pipes.
struct TaskLogs {
    stdout: Rc<LogStream>,
    stderr: Rc<LogStream>,
    /// Both streams' recent lines.
    ring: Rc<RefCell<LogRing>>,
}

impl TaskLogs {
    fn drain(&self) {
        self.stdout.drain();
        self.stderr.drain();
    }
}

impl Supervisor {
    async fn run(mut self) -> i32 {
        info!("The wait policy: {}", self.settings.wait_policy.as_str());
        info!("Work dir: {}", self.work_dir_label);
        let status = match self.boot().await {
            Boot::Completed => {
                self.phase = Phase::Group;
                let group = self.run_group().await;
                self.phase = Phase::Stopping;
                self.teardown().await;
                let status = self.halt(group).await;
                self.sweep_adopted().await;
                status
            }
            Boot::Ended(status) => {
                self.phase = Phase::Stopping;
                self.teardown().await;
                status
            }
        };
        // Lines written late (by processes of the tasks that were stopped last) are not lost.
        for logs in self.logs.values() {
            logs.drain();
        }
        info!("Exited (exitcode={status})");
        status
    }

    // ----- the stages -------------------------------------------------------------------

    /// Runs the boot files, then the `-B` commands, one by one. Each may change what the rest
    /// of the run sees; a boot file may also rewrite the command line.
    async fn boot(&mut self) -> Boot {
        debug!("Looking for `boot` scripts and commands...");
        for id in self.add_file_tasks(Stage::Boot) {
            if let Err(status) = self.run_boot_task(id, true).await {
                return Boot::Ended(status);
            }
        }
        // The -B commands of the command line as the boot files left it.
        for id in self.add_cli_tasks(Stage::Boot) {
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
                Event::Reaped | Event::Deadline | Event::Control => {}
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
                error!("cannot read what boot task {} saved: {e}", self.tasks[id].label);
                return Err(EXIT_CONFIG);
            }
        };
        self.boot_state = Some(save.state);
        if may_rewrite_argv {
            match self.cli.reparse_tasks(save.argv) {
                Ok(cli) => {
                    if let Err(e) = self.files.check_cli_names(cli.stage_counts(), !cli.command.is_empty()) {
                        error!("{}: after the command line it left: {e}", self.tasks[id].label);
                        return Err(EXIT_CONFIG);
                    }
                    self.cli = cli;
                }
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
        match Settings::from_lookup(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())) {
            Ok(settings) => {
                self.console.set_verbosity(settings.verbose, settings.verbose_extra);
                self.settings = settings;
                // The directives were checked against the defaults from before boot; the ones
                // boot set may clash with them (a restart-max-delay below RC_RESTART_DELAY).
                for stage in [Stage::Async, Stage::Sync, Stage::Halt] {
                    for file in self.files.stage(stage) {
                        if let Err(e) = apply(self.settings.task, &file.directives) {
                            error!(
                                "{}:{}: {} (with the defaults boot task {} set)",
                                file.path.display(),
                                e.line,
                                e.problem,
                                self.tasks[id].label
                            );
                            return Err(EXIT_CONFIG);
                        }
                    }
                }
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
        let mut asyncs = self.add_file_tasks(Stage::Async);
        asyncs.extend(self.add_cli_tasks(Stage::Async));
        debug!("Looking for `sync` scripts and commands...");
        let mut syncs: VecDeque<TaskId> = self.add_file_tasks(Stage::Sync).into();
        syncs.extend(self.add_cli_tasks(Stage::Sync));

        let mut policy = GroupPolicy::new(self.settings.wait_policy);
        if asyncs.is_empty() && syncs.is_empty() {
            if let Some(status) = policy.empty_group() {
                return status;
            }
        }
        for &id in &asyncs {
            self.start(id, None);
        }
        // Boot is done and every async task has started.
        self.notify("READY=1");
        self.start_next_sync(&mut syncs);
        loop {
            // Restarts that are due, and tasks stopped on request that overrun their timeout.
            let next = self
                .tasks
                .iter()
                .filter_map(|t| match t.state {
                    TaskState::Waiting { until, .. } => Some(until),
                    TaskState::Stopping { deadline, killed: false, .. } => Some(deadline),
                    _ => None,
                })
                .min();
            match self.next_event(next).await {
                Event::Signal(sig) => {
                    debug!("sig-trap (exitcode={})", policy::signal_status(sig));
                    return policy::signal_status(sig);
                }
                Event::Exited { task, status } => {
                    self.finished(task, status);
                    let t = &mut self.tasks[task];
                    if t.restart_after && !t.removed {
                        // Restarted on request: at once, whatever the policy.
                        t.restart_after = false;
                        self.start(task, None);
                        continue;
                    }
                    if t.held || t.removed {
                        // Stopped on request: neither restarted nor finished for the policy.
                        continue;
                    }
                    if self.restart_if_due(task, status) {
                        continue;
                    }
                    // Finished for good: the wait policy decides. A task held down may still
                    // come back, so the group is not done while one is.
                    let all_done = syncs.is_empty()
                        && !self.tasks.iter().any(|t| {
                            matches!(t.stage, Stage::Async | Stage::Sync)
                                && !t.removed
                                && (t.is_alive() || t.held)
                        });
                    if let Some(status) = policy.task_finished(status, all_done) {
                        return status;
                    }
                    if self.tasks[task].stage == Stage::Sync {
                        self.start_next_sync(&mut syncs);
                    }
                }
                Event::Deadline => {
                    let now = Instant::now();
                    for id in 0..self.tasks.len() {
                        if matches!(self.tasks[id].state, TaskState::Waiting { until, .. } if until <= now) {
                            self.start(id, None);
                        }
                    }
                    self.kill_overdue(Some(now), &mut []);
                }
                Event::Reaped | Event::Control => {}
            }
        }
    }

    /// Applies the restart policy to an async or sync task that just exited: starts it again
    /// now (no delay) or schedules it (`Waiting`), and returns true; or returns false when it
    /// has finished for good (including giving up, which is logged as an error).
    fn restart_if_due(&mut self, id: TaskId, status: i32) -> bool {
        let now = Instant::now();
        let task = &mut self.tasks[id];
        if !matches!(task.stage, Stage::Async | Stage::Sync) {
            return false;
        }
        let ran_for = task.started_at.map_or(Duration::ZERO, |t| now.duration_since(t));
        let decision = task.restart.decide(&task.settings, status, task.stop_requested, ran_for, now);
        let (ns, pid) = (task.stage.ns(), task.pgid.map_or(0, Pid::as_raw));
        match decision {
            Decision::Done => false,
            Decision::GiveUp { starts, window } => {
                error!(
                    ns,
                    pid,
                    task = task.name.as_str(),
                    "{}: giving up after {starts} starts in {} (last exitcode={status}): {}",
                    task.name,
                    humantime::format_duration(window),
                    task.label
                );
                false
            }
            Decision::Restart { delay, count } => {
                info!(
                    ns,
                    pid,
                    task = task.name.as_str(),
                    "Restarting in the {} in {} (restart {count}): {}",
                    task.ns_long(),
                    humantime::format_duration(delay),
                    task.label
                );
                if delay.is_zero() {
                    self.start(id, None);
                } else {
                    task.state = TaskState::Waiting { until: now + delay, status };
                }
                true
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
        self.teardown_started = Some(Instant::now());
        self.notify("STOPPING=1");
        info!("Trying to terminate sub-processes...");
        // Groups whose leader already exited may still have members: they are stopped too.
        let mut lingering: Vec<Lingering> = Vec::new();
        for id in 0..self.tasks.len() {
            let task = &mut self.tasks[id];
            if let TaskState::Waiting { status, .. } = task.state {
                // A restart during teardown never happens.
                debug!("cancelling the restart of {}", task.label);
                task.state = TaskState::Finished { status };
            }
            if let Some(pid) = self.tasks[id].pid() {
                info!("terminating the child process <pid={pid}>");
                self.stop(id);
            } else if let Some(pgid) = self.tasks[id].pgid.filter(|&g| reap::group_alive(g)) {
                let settings = self.tasks[id].settings;
                reap::signal_group(pgid, settings.stop_signal);
                let deadline = Instant::now() + settings.stop_timeout;
                lingering.push(Lingering { pgid, deadline, killed: false });
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
                    TaskState::Stopping { deadline, killed: false, .. } => Some(deadline),
                    _ => None,
                })
                .chain(lingering.iter().map(|l| l.deadline))
                .min();
            match self.next_event(next).await {
                Event::Exited { task, status } => {
                    let deadline = match self.tasks[task].state {
                        TaskState::Stopping { deadline, .. } => deadline,
                        _ => Instant::now() + self.tasks[task].settings.stop_timeout,
                    };
                    self.finished(task, status);
                    if let Some(pgid) = self.tasks[task].pgid.filter(|&g| reap::group_alive(g)) {
                        lingering.push(Lingering { pgid, deadline, killed: false });
                    }
                }
                Event::Deadline => self.kill_overdue(Some(Instant::now()), &mut lingering),
                Event::Signal(sig) if self.is_insistent() => {
                    warn!("got SIG{} again while stopping: killing what is left now", signals::name(sig));
                    self.kill_overdue(None, &mut lingering);
                }
                Event::Signal(sig) => debug!("SIG{} while stopping: already stopping", signals::name(sig)),
                Event::Reaped | Event::Control => {}
            }
        }
        self.sweep_adopted().await;
    }

    /// Whether a signal now is the operator insisting ("press Ctrl-C again to force"): at least
    /// a second after teardown began. The same signal often arrives twice at once (sent to trc
    /// and to its process group, as `timeout` and a terminal do); that must not count.
    fn is_insistent(&self) -> bool {
        self.teardown_started.is_some_and(|t| t.elapsed() >= Duration::from_secs(1))
    }

    /// Asks a running task to stop: its stop signal to its process group now, SIGKILL when its
    /// stop-timeout has passed (`kill_overdue`). Returns whether the task was running.
    fn stop(&mut self, id: TaskId) -> bool {
        let task = &mut self.tasks[id];
        let deadline = Instant::now() + task.settings.stop_timeout;
        let TaskState::Running { pid } = task.state else {
            return false;
        };
        task.stop_requested = true;
        reap::signal_group(pid, task.settings.stop_signal);
        task.state = TaskState::Stopping { pid, deadline, killed: false };
        true
    }

    /// SIGKILL to every stopping task group and lingering group whose deadline is not after
    /// `now` (all of them with `None`).
    fn kill_overdue(&mut self, now: Option<Instant>, lingering: &mut [Lingering]) {
        let due = |deadline: Instant| now.is_none_or(|now| deadline <= now);
        for task in &mut self.tasks {
            if let TaskState::Stopping { pid, deadline, killed: false } = task.state {
                if due(deadline) {
                    debug!("killing the process group of {} <pid={pid}>", task.label);
                    reap::signal_group(pid, Signal::SIGKILL);
                    task.state = TaskState::Stopping { pid, deadline, killed: true };
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
        let deadline = Instant::now() + self.settings.task.stop_timeout;
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
            let sig = if killed { Signal::SIGKILL } else { Signal::SIGTERM };
            for pid in children {
                if signalled.insert(pid) {
                    debug!("terminating the adopted process <pid={pid}>");
                    let _ = nix::sys::signal::kill(pid, sig);
                }
            }
            let event = self.next_event(if killed { None } else { Some(deadline) }).await;
            match event {
                Event::Signal(sig) if !self.is_insistent() => {
                    debug!("SIG{} while stopping: already stopping", signals::name(sig))
                }
                Event::Deadline | Event::Signal(_) => {
                    killed = true;
                    for pid in reap::children() {
                        let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
                    }
                }
                Event::Exited { task, status } => self.finished(task, status),
                Event::Reaped | Event::Control => {}
            }
        }
    }

    /// Runs the halt files, then the `-H` commands, one by one. Returns trc's exit status:
    /// the last halt task's status if any ran, else the group's.
    async fn halt(&mut self, group: i32) -> i32 {
        debug!("Looking for `halt` scripts...");
        let mut halts = self.add_file_tasks(Stage::Halt);
        halts.extend(self.add_cli_tasks(Stage::Halt));
        self.env.push((OsString::from("TRC_EXIT_STATUS"), OsString::from(group.to_string())));
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
                    // Halt tasks run to completion, as in TrivialRC (which ignores signals
                    // from its exit hook on): a signal must not cut a cleanup short.
                    Event::Signal(sig) => debug!("SIG{} during halt: ignored", signals::name(sig)),
                    Event::Reaped | Event::Deadline | Event::Control => {}
                }
            };
            last = Some(status);
        }
        policy::final_status(group, last)
    }

    // ----- one task ---------------------------------------------------------------------

    /// Makes a task's log pipes the first time it starts (all tasks but the trailing command,
    /// whose stdio is trc's own) and starts copying their lines. If that fails, the task
    /// writes to trc's stdout and stderr directly.
    fn set_up_logs(&mut self, id: TaskId) {
        let task = &self.tasks[id];
        if self.logs.contains_key(&id) || matches!(task.source, Source::Argv(_)) {
            return;
        }
        let base = format!("{}.{}", task.stage, task.name);
        let ring = Rc::new(RefCell::new(LogRing::default()));
        let open = |suffix: &str, output| {
            let path = self.runtime_dir.path().join(format!("{base}.{suffix}"));
            let sink = LineSink {
                output,
                prefix: Vec::new(),
                raw: !task.settings.log_prefix,
                journal: self.journal.clone(),
                task: task.name.clone(),
                stage: task.stage.as_str(),
                pid: std::cell::Cell::new(0),
                ring: Some(ring.clone()),
            };
            LogStream::create(path, sink)
        };
        match (open("stdout", Output::Stdout), open("stderr", Output::Stderr)) {
            (Ok(stdout), Ok(stderr)) => {
                tokio::task::spawn_local(stdout.clone().pump());
                tokio::task::spawn_local(stderr.clone().pump());
                self.logs.insert(id, TaskLogs { stdout, stderr, ring });
            }
            (Err(e), _) | (_, Err(e)) => {
                error!("{}: cannot make its log pipe, its output goes straight to trc's: {e}", task.label)
            }
        }
    }

    /// Adds the file tasks of `stage` to the table, in run order.
    fn add_file_tasks(&mut self, stage: Stage) -> Vec<TaskId> {
        let files = self.files.stage(stage).to_vec();
        files
            .into_iter()
            .map(|f| self.add_task(f.name, stage, Source::File { path: f.path, run: f.run }, &f.directives))
            .collect()
    }

    /// Adds the command-line tasks of `stage` (`-B`, `-D`, `-F` and the trailing command,
    /// `-H`) to the table, named `boot-N`, `async-N`, `sync-N`, `halt-N` and `cmd`.
    fn add_cli_tasks(&mut self, stage: Stage) -> Vec<TaskId> {
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
    /// boot) with the file's directives on top.
    fn add_task(&mut self, name: String, stage: Stage, source: Source, directives: &[Directive]) -> TaskId {
        let settings = apply(self.settings.task, directives).unwrap_or_else(|e| {
            if let Source::File { path, .. } = &source {
                error!("{}:{}: {} (using the defaults)", path.display(), e.line, e.problem);
            }
            self.settings.task
        });
        let mut task = Task::new(name, stage, source, settings);
        if let Source::File { path, run } = &task.source {
            task.fingerprint = control::file_fingerprint(path, *run);
        }
        self.tasks.push(task);
        self.tasks.len() - 1
    }

    /// Starts a task. A task that cannot start is reported (always) and finishes at once with
    /// 127 (not found) or 126, so the wait policy applies to it like to any other.
    fn start(&mut self, id: TaskId, save_to: Option<&Path>) {
        self.set_up_logs(id);
        let spec = SpawnSpec { hold: true, ..self.spec_for(id, save_to) };
        let task = &self.tasks[id];
        let forked = match spawn::spawn(&spec) {
            Ok(forked) => forked,
            Err(e) => {
                let status = if e.kind() == std::io::ErrorKind::NotFound { 127 } else { 126 };
                error!(ns = task.stage.ns(), "cannot start {}: {e}", task.label);
                self.tasks[id].starts += 1;
                self.pending.push_back(Event::Exited { task: id, status });
                self.wake_waiters(id, control::Want::Up);
                return;
            }
        };
        let pid = forked.pid;
        let task = &mut self.tasks[id];
        let now = Instant::now();
        task.state = TaskState::Running { pid };
        task.pgid = Some(pid);
        task.started_at = Some(now);
        task.stop_requested = false;
        task.starts += 1;
        task.restart.started(now);
        if let Some(logs) = self.logs.get(&id) {
            logs.stdout.set_pid(pid.as_raw());
            logs.stderr.set_pid(pid.as_raw());
        }
        self.by_pid.insert(pid, id);
        let (ns, long, label) = (task.stage.ns(), task.ns_long(), &task.label);
        match task.stage {
            Stage::Async | Stage::Sync => {
                info!(ns, pid = pid.as_raw(), task = task.name.as_str(), "Launching in the {long}: {label}")
            }
            Stage::Halt => {
                let what = if matches!(task.source, Source::File { .. }) { "script" } else { "command" };
                info!(
                    ns,
                    pid = pid.as_raw(),
                    task = task.name.as_str(),
                    "Running the shutdown {what}: {label}"
                )
            }
            Stage::Boot => {}
        }
        // Logged first, then let it run: its output can only come after the line above.
        if let Some(go) = forked.go {
            go.release();
        }
        // Stopgap until the new core reads the report after reaping: wait for exec, as before.
        let mut report =
            libc::pollfd { fd: forked.exec_report.as_fd().as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one pollfd on the stack, alive across the call.
        unsafe { libc::poll(&mut report, 1, -1) };
        if let Some(e) = forked.exec_report.take() {
            let hint = match (&task.source, e.kind()) {
                (Source::File { .. }, std::io::ErrorKind::NotFound) => {
                    " (is the interpreter on its #! line installed?)"
                }
                _ => "",
            };
            error!(ns, pid = pid.as_raw(), "cannot start {label}: {e}{hint}");
        }
        self.notify_status();
        self.wake_waiters(id, control::Want::Up);
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
                stop_signal: task.settings.stop_signal,
            }
            .spec()
        };
        let mut spec = match &task.source {
            Source::File { path, run: RunMode::Fragment } => {
                shell(ShellKind::File, path.as_os_str(), &task_argv)
            }
            Source::File { path, run: RunMode::Executable } if self.boot_state.is_some() => {
                shell(ShellKind::Exec, path.as_os_str(), &[])
            }
            Source::File { path, run: RunMode::Executable } => {
                // A relative work dir gives a relative path: exec needs a slash to take it as one.
                let path = if path.is_absolute() { path.clone() } else { Path::new(".").join(path) };
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
                spec
            }
        };
        let mut env = self.env.clone();
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
        env.append(&mut spec.env);
        spec.env = env;
        spec.stdin_null = task.stage == Stage::Async;
        spec
    }

    /// Records that a task's leader exited, and logs it as TrivialRC does.
    fn finished(&mut self, id: TaskId, status: i32) {
        // Every line the task wrote comes before the line that says it exited.
        if let Some(logs) = self.logs.get(&id) {
            logs.drain();
        }
        let task = &mut self.tasks[id];
        let pid = task.pid();
        if let Some(pid) = pid {
            self.by_pid.remove(&pid);
        }
        task.state = TaskState::Finished { status };
        task.last_status = Some(status);
        task.finished_at = Some(Instant::now());
        self.wake_waiters(id, control::Want::Down);
        let task = &self.tasks[id];
        match task.stage {
            Stage::Async | Stage::Sync => info!(
                ns = task.stage.ns(),
                pid = pid.map_or(0, Pid::as_raw),
                task = task.name.as_str(),
                "Exiting in the {} (exitcode={status}): {}",
                task.ns_long(),
                task.label
            ),
            Stage::Halt => {
                let what = if matches!(task.source, Source::File { .. }) { "script" } else { "command" };
                info!(
                    task = task.name.as_str(),
                    stage = "halt",
                    task_pid = pid.map_or(0, Pid::as_raw),
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
        self.notify_status();
    }

    /// A STATUS= update for systemd, when a task has started or exited.
    fn notify_status(&self) {
        if let Some(notifier) = &self.notifier {
            notifier.send(&format!("STATUS={}", self.status_line()));
        }
    }

    /// Sends a notify message to systemd, if trc runs under it, with a fresh STATUS line.
    fn notify(&self, message: &str) {
        if let Some(notifier) = &self.notifier {
            notifier.send(&format!("{message}\nSTATUS={}", self.status_line()));
        }
    }

    /// `STATUS=` text: which tasks run now.
    fn status_line(&self) -> String {
        let running: Vec<&str> =
            self.tasks.iter().filter(|t| t.is_active()).map(|t| t.name.as_str()).collect();
        let waiting = self.tasks.iter().filter(|t| matches!(t.state, TaskState::Waiting { .. })).count();
        let mut line = format!("{} running", running.len());
        if !running.is_empty() {
            let mut names = running.join(", ");
            if names.len() > 200 {
                names.truncate(200);
                names.push_str("...");
            }
            line.push_str(&format!(": {names}"));
        }
        if waiting > 0 {
            line.push_str(&format!("; {waiting} waiting to restart"));
        }
        line
    }

    // ----- the loop ---------------------------------------------------------------------

    /// Waits for the next event: a signal, a reaped child, or the deadline.
    async fn next_event(&mut self, deadline: Option<Instant>) -> Event {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return event;
            }
            let signals = &mut self.signals;
            let next_signal =
                std::future::poll_fn(|cx| futures_core::Stream::poll_next(Pin::new(&mut *signals), cx));
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let control = &mut self.control;
            let next_call = async {
                match control {
                    Some(calls) => calls.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                call = next_call => match call {
                    Some(call) => {
                        self.control(call);
                        return Event::Control;
                    }
                    None => self.control = None,
                },
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
