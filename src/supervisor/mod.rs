//! The supervisor: one event loop that owns every task and all of trc's state.
//!
//! A run goes through the group's phases (`group.rs`): boot (one task at a time, `set -e`),
//! running (async tasks all at once, sync tasks one by one, until the wait policy decides),
//! stopping (the stop signal to every task group at once, SIGKILL after the stop-timeout),
//! sweep (every adopted process), halt (one at a time, only if boot completed), sweep again,
//! done. Every event — a signal, a reaped child, a deadline, a control request, the result of
//! file work done off the loop — goes through one dispatch (`group.rs`), and every change of a
//! task through one transition function (`machine.rs`). The loop sleeps until something
//! happens (`event.rs`): there is no polling.
//!
//! The files: `mod.rs` start-up wiring; `event.rs` the one wait; `group.rs` phases, chains,
//! the wait policy; `machine.rs` a task's states; `task.rs` the table; `launch.rs` from a
//! task to a process; `teardown.rs` stopping, lingering groups, the sweep; `control.rs`
//! trcctl's verbs; `files.rs` ensure/reload's file work on a worker thread; `leftovers.rs`
//! the record of task groups in the runtime dir, and stopping those a dead trc left;
//! `access.rs` what of the runtime dir a task of another user reaches; `forward.rs` who gets
//! a `--forward-signals` signal.

mod access;
pub mod control;
mod deps;
mod event;
mod files;
mod forward;
mod group;
mod launch;
mod leftovers;
pub mod machine;
pub mod policy;
pub mod probe;
pub mod reap;
pub mod restart;
pub mod signals;
pub mod spawn;
pub mod task;
mod teardown;
mod terminal;

use crate::cli::CommandLine;
use crate::config::{scan_work_dir, Settings, TaskFiles};
use crate::control::ring::LogRing;
use crate::control::server::{self, Call};
use crate::logs::journal::Journal;
use crate::logs::notify::{self, Notifier};
use crate::logs::pipe::LogStream;
use crate::logs::Console;
use crate::runtime_dir::{RuntimeDir, SOCKET_FILE};
use crate::EXIT_CONFIG;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use task::{Table, TaskId};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{error, warn};

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
    match crate::config::log_style(lookup) {
        Ok(style) => crate::logs::format::set_style(style),
        Err(e) => return config_error(&e, EXIT_CONFIG),
    }
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
    if let Err(e) = files.check_dependencies(setup.cli.async_.len()) {
        return config_error(&e, EXIT_CONFIG);
    }
    if let Err(e) = check_bash(&files, &setup.cli) {
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
    // A relative runtime dir (the option's or RC_RUNTIME_DIR's) is taken from trc's cwd now:
    // a task with its own `cwd:` (its log pipe, the prelude, trcctl in it) must find the same
    // place.
    let explicit_runtime_dir = setup.cli.runtime_dir.as_deref().map(absolute);
    if let Some(dir) = std::env::var_os("RC_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        if Path::new(&dir).is_relative() {
            std::env::set_var("RC_RUNTIME_DIR", absolute(Path::new(&dir)));
        }
    }
    let mut runtime_dir = match RuntimeDir::create(
        instance.as_deref().filter(|s| !s.is_empty()),
        &crate::runtime_dir::default_name(&work_dir),
        explicit_runtime_dir.as_deref(),
    ) {
        Ok(dir) => dir,
        Err(e) => return config_error(&e, EXIT_CONFIG),
    };
    // Tasks that run as another user must reach their files in it.
    for stage in crate::config::Stage::ALL {
        for file in files.stage(stage) {
            let defaults = settings.task.defaults_for(stage);
            let Ok(task) = crate::config::apply(&defaults, &file.directives) else { continue };
            let uid = task.user.as_ref().map_or(nix::unistd::geteuid().as_raw(), |u| u.uid);
            let gid =
                task.group.or(task.user.as_ref().map(|u| u.gid)).unwrap_or(nix::unistd::getegid().as_raw());
            if uid == nix::unistd::geteuid().as_raw() && gid == nix::unistd::getegid().as_raw() {
                continue;
            }
            if let Some(why) = access::unreachable_runtime_dir(runtime_dir.path(), uid, gid) {
                return config_error(&format!("{}: {why}", file.path.display()), EXIT_CONFIG);
            }
        }
    }
    // A trc of this instance that died suddenly may have left processes: they go before
    // anything of ours starts.
    if let Some(stale) = runtime_dir.take_stale_groups() {
        leftovers::stop(&stale, runtime_dir.name(), settings.task.stop_timeout);
    }
    let groups = leftovers::Record::new(runtime_dir.path());
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
        if settings.forward_signals.contains(&Signal::SIGWINCH) {
            watched.push(libc::SIGWINCH);
        }
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
            // TrivialRC's tasks see its `work_dir` variable.
            (OsString::from("work_dir"), OsString::from(&work_dir_label)),
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
        let prelude_file = match crate::shell::write_prelude(runtime_dir.path()) {
            Ok(path) => Some(path),
            Err(e) => {
                warn!("cannot write the shell prelude into the runtime dir ({e}): shell tasks get it inline");
                None
            }
        };
        let (jobs_tx, jobs) = mpsc::unbounded_channel();
        let (probe_tx, probe_rx) = mpsc::unbounded_channel();
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
            groups,
            terminal: on_terminal(),
            tasks: Table::default(),
            by_pid: HashMap::new(),
            boot_state: None,
            signals,
            logs: HashMap::new(),
            journal,
            notifier,
            control,
            jobs,
            jobs_tx,
            worker: files::Worker::new(),
            sweep: None,
            group: group::Group::new(),
            lingering: Vec::new(),
            stop_marks: HashMap::new(),
            waiters: Vec::new(),
            teardown_started: None,
            status_dirty: false,
            probing: HashMap::new(),
            check_pids: HashMap::new(),
            probe_tx,
            probe_rx,
            blocked: Vec::new(),
            teardown_held: Vec::new(),
            ready_sent: false,
            prelude_file,
            user_preludes: HashMap::new(),
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
    // Through the writer, so that it comes after what trc has queued for stderr already. When
    // stderr is the journal (a systemd service), the syslog prefix `<3>` makes it an error
    // there (journald strips it), not the stream's default info. Elsewhere, in the run's style
    // (a JSON object with --log-format json).
    let line = if crate::logs::journal::stderr_is_journal() {
        crate::logs::journal::with_priority(3, &format!("trc: {e}")).into_bytes()
    } else {
        crate::logs::format::plain_line("error", &e.to_string())
    };
    crate::logs::writer::write(crate::logs::pipe::Output::Stderr, line);
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

/// `path` made absolute against the current directory (as it is, if that cannot be known).
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
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
    /// The task groups as recorded in the runtime dir, for a trc that takes it over after
    /// this one died.
    groups: leftovers::Record,
    /// trc is the terminal's foreground: the trailing command gets the terminal.
    terminal: bool,
    tasks: Table,
    by_pid: HashMap<Pid, TaskId>,
    /// The state the last completed boot task saved, restored by every later shell task.
    boot_state: Option<PathBuf>,
    signals: signals::Watch,
    /// The log pipes of the tasks that have them (all but the trailing command).
    logs: HashMap<TaskId, TaskLogs>,
    /// journald, when records go there natively.
    journal: Option<Arc<Journal>>,
    /// systemd's notify socket, when trc runs as a `Type=notify` service.
    notifier: Option<Rc<Notifier>>,
    /// Requests from the control socket.
    control: Option<mpsc::UnboundedReceiver<Call>>,
    /// Results of file work done off the loop (`files.rs`).
    jobs: mpsc::UnboundedReceiver<files::JobDone>,
    jobs_tx: mpsc::UnboundedSender<files::JobDone>,
    worker: files::Worker,
    /// The phase, the boot/sync/halt chains and the wait policy.
    group: group::Group,
    /// Process groups whose leader has exited but which still have members.
    lingering: Vec<teardown::Lingering>,
    /// What was known of a stopping task's group when its stop signal went out.
    stop_marks: HashMap<TaskId, teardown::StopMark>,
    /// The sweep of adopted processes, while it runs.
    sweep: Option<teardown::Sweep>,
    /// Control replies waiting for a task to start or exit.
    waiters: Vec<control::Waiter>,
    /// When teardown began (for telling a repeated signal from an insistent one).
    teardown_started: Option<tokio::time::Instant>,
    /// A task started or exited since the last STATUS= line.
    status_dirty: bool,
    /// Readiness, health and watchdog state per task (`probe.rs`).
    probing: HashMap<TaskId, probe::Probing>,
    /// Check commands in flight, by pid.
    check_pids: HashMap<Pid, TaskId>,
    /// What readers, log pumps and network probes report.
    probe_tx: mpsc::UnboundedSender<probe::ProbeEvent>,
    probe_rx: mpsc::UnboundedReceiver<probe::ProbeEvent>,
    /// Tasks whose start waits for their dependencies, in the order they asked.
    blocked: Vec<TaskId>,
    /// Teardown: tasks whose stop waits for their dependents to stop.
    teardown_held: Vec<TaskId>,
    /// trc's own READY=1 has been sent.
    ready_sent: bool,
    /// The bash prelude as a file in the runtime dir (shell tasks source it), trc's alone.
    prelude_file: Option<PathBuf>,
    /// The copies of the prelude for the users tasks run as (`access.rs`), by uid.
    user_preludes: HashMap<u32, PathBuf>,
}

/// A task's two log pipes, their pumps and its recent lines.
struct TaskLogs {
    stdout: Rc<LogStream>,
    stderr: Rc<LogStream>,
    pumps: [JoinHandle<()>; 2],
    /// Both streams' recent lines.
    ring: Rc<RefCell<LogRing>>,
}

impl TaskLogs {
    fn drain(&self) {
        self.stdout.drain();
        self.stderr.drain();
    }

    /// Stops the pumps and removes the FIFOs: what is still in them is written first.
    fn close(self) {
        self.drain();
        for pump in &self.pumps {
            pump.abort();
        }
        let _ = std::fs::remove_file(self.stdout.path());
        let _ = std::fs::remove_file(self.stderr.path());
    }
}

impl Supervisor {
    async fn run(mut self) -> i32 {
        tracing::info!("The wait policy: {}", self.settings.wait_policy.as_str());
        tracing::info!("Work dir: {}", self.work_dir_label);
        self.begin();
        self.advance();
        let status = loop {
            self.check_group_ready();
            self.send_status();
            self.record_groups();
            if let Some(status) = self.group.exit_status() {
                break status;
            }
            let batch = self.wait().await;
            self.handle(batch);
            // The pumps and the control connections share this thread: let them run.
            tokio::task::yield_now().await;
        };
        // Lines written late (by processes of the tasks that were stopped last) are not lost.
        for logs in self.logs.values() {
            logs.drain();
        }
        tracing::info!("Exited (exitcode={status})");
        status
    }

    /// A STATUS= update for systemd, once per pass in which tasks started or exited.
    fn send_status(&mut self) {
        if std::mem::take(&mut self.status_dirty) {
            if let Some(notifier) = &self.notifier {
                notifier.send(&format!("STATUS={}", self.status_line()));
            }
        }
    }

    /// Writes the task groups that live now to the runtime dir, when they changed since the
    /// last pass: the leaders of running tasks and the groups that outlived their leader.
    fn record_groups(&mut self) {
        let leaders = self.tasks.iter().filter_map(|(_, t)| t.pid()).map(|p| p.as_raw());
        let live = leaders.chain(self.lingering.iter().map(|g| g.pgid.as_raw())).collect();
        self.groups.update(&live);
    }

    /// Sends a notify message to systemd, if trc runs under it, with a fresh STATUS line.
    fn notify(&self, message: &str) {
        if let Some(notifier) = &self.notifier {
            notifier.send(&format!("{message}\nSTATUS={}", self.status_line()));
        }
    }

    /// trc's own `READY=1`, once: boot is done and every async task is ready.
    fn check_group_ready(&mut self) {
        if !self.ready_sent && self.group_is_ready() {
            self.ready_sent = true;
            self.notify("READY=1");
        }
    }

    /// `STATUS=` text: which tasks run now, how many are ready, starting, unhealthy.
    fn status_line(&self) -> String {
        let running: Vec<&str> =
            self.tasks.iter().filter(|(_, t)| t.is_active()).map(|(_, t)| t.name.as_str()).collect();
        let waiting =
            self.tasks.iter().filter(|(_, t)| matches!(t.state(), machine::State::Backoff { .. })).count();
        let mut line = format!("{} running", running.len());
        if !running.is_empty() {
            line.push_str(": ");
            line.push_str(&cut_at_char_boundary(&running.join(", "), 200));
            let (ready, starting, unhealthy) = self.readiness_counts();
            line.push_str(&format!("; {ready} ready"));
            if starting > 0 {
                line.push_str(&format!(", {starting} starting"));
            }
            if unhealthy > 0 {
                line.push_str(&format!(", {unhealthy} unhealthy"));
            }
        }
        if waiting > 0 {
            line.push_str(&format!("; {waiting} waiting to restart"));
        }
        if self.group.draining.is_some() {
            line.push_str("; draining (stop signal received)");
        }
        line
    }
}

/// `text` cut to at most `max` bytes at a character boundary, with `...` when cut.
pub fn cut_at_char_boundary(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

impl Drop for Supervisor {
    /// Last resort (a panic unwinding through the loop): nothing trc started may outlive it.
    fn drop(&mut self) {
        for (_, task) in self.tasks.iter() {
            if let Some(pid) = task.pid() {
                reap::signal_group(pid, Signal::SIGKILL);
            }
        }
        for group in &self.lingering {
            if reap::group_alive(group.pgid) {
                reap::signal_group(group.pgid, Signal::SIGKILL);
            }
        }
        for pid in reap::children() {
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        }
        self.runtime_dir.remove();
    }
}

/// Shell tasks need bash: when it cannot be found, the first shell task is named before
/// anything starts. A group of tasks that need no shell (ELF binaries, `#!` scripts for another
/// interpreter, `command:` headers, a trailing command that is a program) runs without it.
fn check_bash(files: &TaskFiles, cli: &CommandLine) -> Result<(), String> {
    if crate::fsutil::find_in_path(OsStr::new("bash")).is_some() {
        return Ok(());
    }
    let path = std::env::var("PATH").unwrap_or_default();
    let why = format!(
        "a shell task, and bash is not on the PATH ({path}): shell tasks are run by bash; a task that needs no shell is an ELF binary, a #! script for another interpreter, or has a \"command:\" header"
    );
    for stage in crate::config::Stage::ALL {
        for file in files.stage(stage) {
            let command = file.directives.iter().any(|d| d.key == "command");
            if file.run == crate::config::RunMode::Fragment && !command {
                return Err(format!("{}: {why}", file.path.display()));
            }
        }
    }
    for (option, commands) in [("-B", &cli.boot), ("-D", &cli.async_), ("-F", &cli.sync), ("-H", &cli.halt)] {
        if let Some(cmd) = commands.first() {
            return Err(format!("{option} {:?}: {why}", cmd.to_string_lossy()));
        }
    }
    if let Some(program) = cli.command.first() {
        if !is_program(program) {
            return Err(format!("the command {:?}: {why}", program.to_string_lossy()));
        }
    }
    Ok(())
}

/// Whether `name` is a program trc can exec itself: a path to an executable file, or a name
/// found as one in `$PATH`. Anything else (a builtin such as `exit`, a typo) goes through bash,
/// which runs it or says "command not found" with status 127, as TrivialRC does.
fn is_program(name: &OsStr) -> bool {
    use std::os::unix::ffi::OsStrExt;
    if name.as_bytes().contains(&b'/') {
        crate::fsutil::is_executable_file(Path::new(name))
    } else {
        crate::fsutil::find_in_path(name).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_fall_on_char_boundaries() {
        assert_eq!(cut_at_char_boundary("abc", 3), "abc");
        assert_eq!(cut_at_char_boundary("abcd", 3), "abc...");
        // "数" is 3 bytes: a cut at 4 or 5 falls inside the second character.
        assert_eq!(cut_at_char_boundary("数据库", 4), "数...");
        assert_eq!(cut_at_char_boundary("数据库", 5), "数...");
        assert_eq!(cut_at_char_boundary("数据库", 6), "数据...");
    }
}
