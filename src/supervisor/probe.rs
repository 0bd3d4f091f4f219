//! Readiness, health checks, the per-task watchdog and dependencies between tasks, as the
//! supervisor runs them.
//!
//! - **Readiness** (`ready:`): a task is `Starting` from its spawn until its probe says it is
//!   ready, then `Running`. Event probes: `notify` (a datagram `READY=1` on the task's own
//!   `NOTIFY_SOCKET`, read by a local task), `fd N` (a newline on the write end of a pipe the
//!   task gets as fd N), `log REGEX` (a line of its output matches, seen by the log pump).
//!   Polled probes (`check`, `tcp`, `http`, `file`): the first attempt at once, then one every
//!   `ready-interval`, never two at a time for one task.
//! - **Health** (`health:`): once ready, one check every `health-interval`; `health-retries`
//!   failures in a row make the task unhealthy: logged (always, and PRIORITY 4 in the
//!   journal), then stopped as a failure (the machine's `Fail`). A `WATCHDOG=1` is expected at
//!   least every `watchdog:` once it is ready; none in time (or `WATCHDOG=trigger`) is the same.
//! - **Bounds**: one attempt per task at a time, at most [`MAX_PROBES`] in flight for the
//!   group (the others wait for the next pass); each is given up after `health-timeout` (a
//!   check command's process group is killed); no attempt starts outside the running phase,
//!   and those in flight are cancelled when their task stops or the group stops.
//! - Dependencies (`after:`) are in `deps.rs`.
//!
//! Check commands are trc's children like tasks: their exit comes through the one reap pass
//! and is matched by pid here; network probes and the readers run as local tasks and report
//! through one channel ([`ProbeEvent`]).

use super::machine::{Failure, Input, State};
use super::spawn::{self, SpawnSpec};
use super::task::TaskId;
use super::{reap, Supervisor};
use crate::config::probe::{HttpUrl, LogPattern, Probe};
use crate::config::Stage;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use std::cell::{Cell, RefCell};
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

/// Probe attempts in flight at once, for the whole group.
pub const MAX_PROBES: usize = 64;
/// The longest notify datagram read (systemd takes up to 4 KiB of text too).
const NOTIFY_MAX: usize = 4096;
/// How much of an HTTP answer is read to find its status line.
const HTTP_HEAD_MAX: usize = 8192;

/// Something a reader, a log pump or a network probe has seen.
#[derive(Debug)]
pub struct ProbeEvent {
    pub id: TaskId,
    pub what: ProbeMsg,
}

#[derive(Debug)]
pub enum ProbeMsg {
    /// A datagram on the task's notify socket.
    Notify(String),
    /// `ready: fd N`: a newline came, in run `run`.
    FdReady { run: u64 },
    /// `ready: log REGEX`: a line matched, in run `run`.
    LogMatched { run: u64 },
    /// A network probe's result.
    NetDone { run: u64, health: bool, result: Result<(), String> },
}

/// Shared with a task's log sinks: the pattern its lines are matched against while armed.
#[derive(Debug)]
pub struct LogWatch {
    /// Set at each start of a task with `ready: log` (the directive may change on reload).
    pattern: RefCell<Option<LogPattern>>,
    /// The run being watched (0: not armed).
    armed: Cell<u64>,
    id: TaskId,
    tx: mpsc::UnboundedSender<ProbeEvent>,
}

impl LogWatch {
    pub fn new(id: TaskId, tx: mpsc::UnboundedSender<ProbeEvent>) -> LogWatch {
        LogWatch { pattern: RefCell::new(None), armed: Cell::new(0), id, tx }
    }

    /// Called by the pump with each line: the first match of an armed run is reported.
    pub fn line(&self, line: &[u8]) {
        let run = self.armed.get();
        if run != 0 && self.pattern.borrow().as_ref().is_some_and(|p| p.matches(line)) {
            self.armed.set(0);
            let _ = self.tx.send(ProbeEvent { id: self.id, what: ProbeMsg::LogMatched { run } });
        }
    }
}

/// One attempt of a polled probe.
#[derive(Debug)]
enum InFlight {
    Check { pid: Pid, deadline: Instant, health: bool },
    Net { handle: JoinHandle<()>, health: bool },
}

/// What trc knows of one task's readiness and health.
#[derive(Debug, Default)]
pub struct Probing {
    /// The run (the machine's start count) these belong to.
    run: u64,
    ready_next: Option<Instant>,
    health_next: Option<Instant>,
    /// Failed health checks in a row.
    failures: u32,
    /// Why the last attempt failed.
    pub last_problem: Option<String>,
    in_flight: Option<InFlight>,
    watchdog_due: Option<Instant>,
    /// The task's own `STATUS=` text.
    pub notify_status: Option<String>,
    fd_reader: Option<JoinHandle<()>>,
    pub log_watch: Option<Rc<LogWatch>>,
    /// The task's notify socket and its reader (made at its first start, kept until it is
    /// removed).
    notify: Option<(PathBuf, JoinHandle<()>)>,
    /// When it last became ready.
    pub ready_since: Option<Instant>,
    /// It waits for these dependencies (a start held back).
    pub waiting_for: Vec<String>,
}

impl Probing {
    fn cancel(&mut self) {
        match self.in_flight.take() {
            Some(InFlight::Check { pid, .. }) => reap::signal_group(pid, Signal::SIGKILL),
            Some(InFlight::Net { handle, .. }) => handle.abort(),
            None => {}
        }
    }

    /// Forgets the current run's probes (it exited, or stopped being watched).
    fn stop_run(&mut self) {
        self.cancel();
        self.ready_next = None;
        self.health_next = None;
        self.watchdog_due = None;
        self.failures = 0;
        self.ready_since = None;
        if let Some(reader) = self.fd_reader.take() {
            reader.abort();
        }
        if let Some(watch) = &self.log_watch {
            watch.armed.set(0);
        }
    }

    fn deadline(&self) -> Option<Instant> {
        let check = match &self.in_flight {
            Some(InFlight::Check { deadline, .. }) => Some(*deadline),
            // A network probe has its own timeout; nothing else is due meanwhile.
            Some(InFlight::Net { .. }) => return self.watchdog_due,
            None => None,
        };
        [self.ready_next, self.health_next, self.watchdog_due, check].into_iter().flatten().min()
    }
}

impl Supervisor {
    /// Before a spawn: what the task's readiness probe needs in the child (its notify socket,
    /// its fd). Makes the notify socket at the first start.
    pub(super) fn probe_prepare(&mut self, id: TaskId, spec: &mut SpawnSpec) {
        let settings = self.tasks[id].settings().clone();
        let probing = self.probing.entry(id).or_default();
        if settings.ready == Probe::Notify || settings.watchdog.is_some() {
            if probing.notify.is_none() {
                let path = self.runtime_dir.path().join(format!("notify.{id}"));
                match notify_reader(path.clone(), id, self.probe_tx.clone()) {
                    Ok(reader) => probing.notify = Some((path, reader)),
                    Err(e) => error!(
                        task = self.tasks[id].name.as_str(),
                        "{}: cannot make its notify socket {}: {e}",
                        self.tasks[id].name,
                        path.display()
                    ),
                }
            }
            if let Some((path, _)) = &probing.notify {
                spec.env.push(("NOTIFY_SOCKET".into(), path.as_os_str().to_owned()));
            }
            if let Some(every) = settings.watchdog {
                spec.env.push(("WATCHDOG_USEC".into(), every.as_micros().to_string().into()));
            }
        }
        if let Probe::Fd(n) = settings.ready {
            match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
                Ok((read, write)) => {
                    spec.extra_fd = Some((write, n));
                    let reader = self.fd_reader(id, read);
                    self.probing.entry(id).or_default().fd_reader = Some(reader);
                }
                Err(e) => error!("{}: cannot make its readiness pipe: {e}", self.tasks[id].name),
            }
        }
    }

    /// The watch a task's log sinks match lines with (made with its log pipes).
    pub(super) fn log_watch(&mut self, id: TaskId) -> Rc<LogWatch> {
        let tx = self.probe_tx.clone();
        self.probing
            .entry(id)
            .or_default()
            .log_watch
            .get_or_insert_with(|| Rc::new(LogWatch::new(id, tx)))
            .clone()
    }

    /// The task's notify socket, if it has one.
    pub(super) fn notify_socket_path(&self, id: TaskId) -> Option<PathBuf> {
        self.probing.get(&id)?.notify.as_ref().map(|(path, _)| path.clone())
    }

    /// Reads the readiness pipe of `ready: fd N` until a newline (or its end).
    fn fd_reader(&self, id: TaskId, read: OwnedFd) -> JoinHandle<()> {
        let tx = self.probe_tx.clone();
        let run = self.tasks[id].machine.starts;
        tokio::task::spawn_local(async move {
            let Ok(mut pipe) = tokio::net::unix::pipe::Receiver::from_owned_fd(read) else { return };
            let mut buf = [0u8; 512];
            loop {
                match pipe.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) if buf[..n].contains(&b'\n') => {
                        let _ = tx.send(ProbeEvent { id, what: ProbeMsg::FdReady { run } });
                        return;
                    }
                    Ok(_) => {}
                }
            }
        })
    }

    /// After the spawn: the task is `Starting`; its probe starts watching (or it is ready at
    /// once, without one).
    pub(super) fn probe_started(&mut self, id: TaskId) {
        let run = self.tasks[id].machine.starts;
        let ready = self.tasks[id].settings().ready.clone();
        let probing = self.probing.entry(id).or_default();
        probing.run = run;
        probing.last_problem = None;
        match &ready {
            Probe::None => return self.became_ready(id, "started"),
            Probe::Log(pattern) => {
                if let Some(watch) = &probing.log_watch {
                    *watch.pattern.borrow_mut() = Some(pattern.clone());
                    watch.armed.set(run);
                }
            }
            probe if probe.is_polled() => probing.ready_next = Some(Instant::now()),
            _ => {}
        }
        let task = &self.tasks[id];
        debug!("{}: waiting until it is ready ({ready})", task.name);
    }

    /// Its probe said so: `Starting` becomes `Running`; dependents may start.
    fn became_ready(&mut self, id: TaskId, how: &str) {
        let Some(task) = self.tasks.get(id) else { return };
        if !matches!(task.state(), State::Starting { .. }) {
            return;
        }
        self.feed(id, Input::Ready);
        let task = &self.tasks[id];
        let State::Running { pid } = task.state() else { return };
        let settings = task.settings().clone();
        let now = Instant::now();
        // From the spawn itself (a start held back by its dependencies waited before it).
        let after = task.since.map(|t| now.saturating_duration_since(t));
        if settings.ready != Probe::None {
            let after = after.map(|d| format!(" after {}", format_secs(d))).unwrap_or_default();
            info!(
                ns = task.stage.ns(),
                pid = pid.as_raw(),
                task = task.name.as_str(),
                "Ready: {} ({how}{after})",
                task.label
            );
        }
        let probing = self.probing.entry(id).or_default();
        probing.ready_next = None;
        probing.ready_since = Some(now);
        probing.failures = 0;
        probing.cancel();
        if let Some(watch) = &probing.log_watch {
            watch.armed.set(0);
        }
        if let Some(reader) = probing.fd_reader.take() {
            reader.abort();
        }
        probing.health_next = settings.health.as_ref().map(|_| now + settings.health_interval);
        probing.watchdog_due = settings.watchdog.map(|d| now + d);
        self.status_dirty = true;
    }

    /// Its process has exited (or the task was released): its probes stop.
    pub(super) fn probe_stopped(&mut self, id: TaskId) {
        if let Some(probing) = self.probing.get_mut(&id) {
            probing.stop_run();
        }
    }

    /// The task is gone for good: its notify socket too.
    pub(super) fn probe_release(&mut self, id: TaskId) {
        if let Some(mut probing) = self.probing.remove(&id) {
            probing.stop_run();
            if let Some((path, reader)) = probing.notify.take() {
                reader.abort();
                let _ = std::fs::remove_file(path);
            }
        }
    }

    /// The group stops: no probe runs from now on.
    pub(super) fn probe_stop_all(&mut self) {
        for probing in self.probing.values_mut() {
            probing.stop_run();
        }
    }

    /// The earliest time a probe needs the loop (only while the group runs).
    pub(super) fn probe_deadline(&self) -> Option<Instant> {
        if self.group.phase != super::group::Phase::Running {
            return None;
        }
        self.probing.values().filter_map(Probing::deadline).min()
    }

    /// Starts the attempts that are due, gives up those past their time, and fails the tasks
    /// whose watchdog was not fed.
    pub(super) fn probe_tick(&mut self, now: Instant) {
        if self.group.phase != super::group::Phase::Running {
            return;
        }
        let mut in_flight = self.probing.values().filter(|p| p.in_flight.is_some()).count();
        let ids: Vec<TaskId> = self.probing.keys().copied().collect();
        for id in ids {
            let Some(task) = self.tasks.get(id) else { continue };
            let state = task.state();
            let settings = task.settings().clone();
            let name = task.name.clone();
            let Some(probing) = self.probing.get_mut(&id) else { continue };
            if let Some(InFlight::Check { pid, deadline, health }) = probing.in_flight {
                if deadline <= now {
                    reap::signal_group(pid, Signal::SIGKILL);
                    probing.in_flight = None;
                    in_flight -= 1;
                    let why = format!("no answer within {}", format_secs(settings.health_timeout));
                    self.attempt_done(id, health, Err(why));
                    continue;
                }
            }
            if probing.watchdog_due.is_some_and(|due| due <= now) && matches!(state, State::Running { .. }) {
                probing.watchdog_due = None;
                let every = settings.watchdog.unwrap_or_default();
                self.fail(id, Failure::Watchdog, &format!("no WATCHDOG=1 within {}", format_secs(every)));
                continue;
            }
            if probing.in_flight.is_some() || in_flight >= MAX_PROBES {
                continue;
            }
            let (probe, health) = match state {
                State::Starting { .. } if probing.ready_next.is_some_and(|t| t <= now) => {
                    probing.ready_next = Some(now + settings.ready_interval);
                    (settings.ready.clone(), false)
                }
                State::Running { .. } if probing.health_next.is_some_and(|t| t <= now) => {
                    probing.health_next = Some(now + settings.health_interval);
                    let Some(probe) = settings.health.clone() else { continue };
                    (probe, true)
                }
                _ => continue,
            };
            in_flight += usize::from(self.attempt(id, &name, &probe, health, settings.health_timeout));
        }
    }

    /// Starts one attempt; true when it is in flight (a command or a connection).
    fn attempt(&mut self, id: TaskId, name: &str, probe: &Probe, health: bool, timeout: Duration) -> bool {
        let run = self.probing.get(&id).map_or(0, |p| p.run);
        match probe {
            Probe::File(path) => {
                let result =
                    if path.exists() { Ok(()) } else { Err(format!("{} does not exist", path.display())) };
                self.attempt_done(id, health, result);
                false
            }
            Probe::Check(cmd) => match self.spawn_check(id, name, cmd) {
                Ok(pid) => {
                    self.check_pids.insert(pid, id);
                    if let Some(p) = self.probing.get_mut(&id) {
                        p.in_flight =
                            Some(InFlight::Check { pid, deadline: Instant::now() + timeout, health });
                    }
                    true
                }
                Err(e) => {
                    self.attempt_done(id, health, Err(format!("cannot run \"{cmd}\": {e}")));
                    false
                }
            },
            Probe::Tcp(addr) => {
                let addr = addr.clone();
                self.net_attempt(id, run, health, timeout, async move { tcp(&addr).await });
                true
            }
            Probe::Http(url) => {
                let url = url.clone();
                self.net_attempt(id, run, health, timeout, async move { http(&url).await });
                true
            }
            Probe::None | Probe::Notify | Probe::Fd(_) | Probe::Log(_) => false,
        }
    }

    fn net_attempt(
        &mut self,
        id: TaskId,
        run: u64,
        health: bool,
        timeout: Duration,
        probe: impl std::future::Future<Output = Result<(), String>> + 'static,
    ) {
        let tx = self.probe_tx.clone();
        let handle = tokio::task::spawn_local(async move {
            let result = match tokio::time::timeout(timeout, probe).await {
                Ok(result) => result,
                Err(_) => Err(format!("no answer within {}", format_secs(timeout))),
            };
            let _ = tx.send(ProbeEvent { id, what: ProbeMsg::NetDone { run, health, result } });
        });
        if let Some(p) = self.probing.get_mut(&id) {
            p.in_flight = Some(InFlight::Net { handle, health });
        }
    }

    /// Runs a check command: directly when it is plain words, through `sh -c` when it uses
    /// the shell's syntax. Its output goes nowhere; it gets the task's `TRC_*` variables.
    fn spawn_check(&self, id: TaskId, name: &str, cmd: &str) -> std::io::Result<Pid> {
        const SHELL_SYNTAX: &[char] =
            &['|', '&', ';', '<', '>', '(', ')', '$', '`', '*', '?', '[', '~', '\n', '{', '=', '#'];
        let words = shlex::split(cmd).unwrap_or_default();
        let (program, args): (OsString, Vec<OsString>) = if cmd.contains(SHELL_SYNTAX) || words.is_empty() {
            ("sh".into(), vec!["-c".into(), cmd.into()])
        } else {
            (words[0].clone().into(), words[1..].iter().map(OsString::from).collect())
        };
        let devnull = || std::fs::OpenOptions::new().write(true).open("/dev/null").map(OwnedFd::from);
        let mut env = self.env.clone();
        env.push(("TRC_TASK".into(), name.into()));
        if let Some(pid) = self.tasks[id].pid() {
            env.push(("TRC_TASK_PID".into(), pid.as_raw().to_string().into()));
        }
        let spec = SpawnSpec {
            program,
            args,
            env,
            stdin_null: true,
            stdout: Some(devnull()?),
            stderr: Some(devnull()?),
            ..SpawnSpec::default()
        };
        spawn::spawn(&spec).map(|spawned| spawned.pid)
    }

    /// A check command was reaped: `true` when `pid` was one.
    pub(super) fn check_reaped(&mut self, pid: Pid, status: i32) -> bool {
        let Some(id) = self.check_pids.remove(&pid) else { return false };
        let Some(probing) = self.probing.get_mut(&id) else { return true };
        match probing.in_flight {
            Some(InFlight::Check { pid: current, health, .. }) if current == pid => {
                probing.in_flight = None;
                // Its group may have members left (a background child): they go too.
                reap::signal_group(pid, Signal::SIGKILL);
                let result = if status == 0 { Ok(()) } else { Err(format!("exit status {status}")) };
                self.attempt_done(id, health, result);
            }
            // Given up already (timed out, or its task stopped).
            _ => {}
        }
        true
    }

    /// The result of one attempt.
    fn attempt_done(&mut self, id: TaskId, health: bool, result: Result<(), String>) {
        let Some(task) = self.tasks.get(id) else { return };
        let state = task.state();
        let settings = task.settings().clone();
        let name = task.name.clone();
        let Some(probing) = self.probing.get_mut(&id) else { return };
        match (health, state, result) {
            (false, State::Starting { .. }, Ok(())) => {
                let how = format!("{} passed", settings.ready);
                self.became_ready(id, &how);
            }
            (false, State::Starting { .. }, Err(why)) => {
                debug!("{name}: not ready yet: {why}");
                probing.last_problem = Some(why);
            }
            (true, State::Running { .. }, Ok(())) => {
                if probing.failures > 0 {
                    info!(task = name.as_str(), "{name}: healthy again");
                }
                probing.failures = 0;
                probing.last_problem = None;
            }
            (true, State::Running { .. }, Err(why)) => {
                probing.failures += 1;
                let failures = probing.failures;
                probing.last_problem = Some(why.clone());
                if failures >= settings.health_retries {
                    let what = settings.health.as_ref().map(ToString::to_string).unwrap_or_default();
                    let problem = format!(
                        "{failures} health check{} failed in a row ({what}: {why})",
                        if failures == 1 { "" } else { "s" }
                    );
                    self.fail(id, Failure::Unhealthy, &problem);
                } else {
                    debug!("{name}: health check failed ({failures} of {}): {why}", settings.health_retries);
                }
            }
            // The task moved on meanwhile.
            _ => {}
        }
    }

    /// A task failed its health check or watchdog: said always (PRIORITY 4 in the journal),
    /// then stopped as a failure.
    fn fail(&mut self, id: TaskId, failure: Failure, problem: &str) {
        let task = &self.tasks[id];
        let pid = task.pid().map_or(0, Pid::as_raw);
        warn!(
            always = true,
            ns = task.stage.ns(),
            pid,
            task = task.name.as_str(),
            "{} is unhealthy: {problem}: stopping it",
            task.name
        );
        if let Some(p) = self.probing.get_mut(&id) {
            p.last_problem = Some(problem.to_owned());
        }
        self.feed(id, Input::Fail(failure));
        self.status_dirty = true;
    }

    /// A reader, a log pump or a network probe has seen something.
    pub(super) fn probe_event(&mut self, event: ProbeEvent) {
        let ProbeEvent { id, what } = event;
        let Some(task) = self.tasks.get(id) else { return };
        let current = task.machine.starts;
        match what {
            ProbeMsg::Notify(text) => self.notify_message(id, &text),
            ProbeMsg::FdReady { run } if run == current => {
                let how = format!("{}: a newline came", task.settings().ready);
                self.became_ready(id, &how)
            }
            ProbeMsg::LogMatched { run } if run == current => {
                let how = format!("{} matched", task.settings().ready);
                self.became_ready(id, &how)
            }
            ProbeMsg::NetDone { run, health, result } if run == current => {
                let Some(probing) = self.probing.get_mut(&id) else { return };
                if matches!(probing.in_flight, Some(InFlight::Net { health: h, .. }) if h == health) {
                    probing.in_flight = None;
                    self.attempt_done(id, health, result);
                }
            }
            _ => {}
        }
    }

    /// A datagram of the sd_notify protocol from a task.
    fn notify_message(&mut self, id: TaskId, text: &str) {
        let task = &self.tasks[id];
        let settings = task.settings().clone();
        let running = matches!(task.state(), State::Running { .. });
        for line in text.lines() {
            match line.split_once('=') {
                Some(("READY", "1")) if settings.ready == Probe::Notify => self.became_ready(id, "READY=1"),
                Some(("STATUS", status)) => {
                    let status = crate::config::escape_controls(status);
                    let p = self.probing.entry(id).or_default();
                    p.notify_status = Some(super::cut_at_char_boundary(&status, 200));
                    self.status_dirty = true;
                }
                Some(("WATCHDOG", "1")) if running => {
                    if let (Some(every), Some(p)) = (settings.watchdog, self.probing.get_mut(&id)) {
                        p.watchdog_due = Some(Instant::now() + every);
                    }
                }
                Some(("WATCHDOG", "trigger")) if running && settings.watchdog.is_some() => {
                    self.fail(id, Failure::Watchdog, "WATCHDOG=trigger");
                    return;
                }
                _ => {}
            }
        }
    }

    // ----- the group ------------------------------------------------------------------------

    /// Why a task does not count as ready, if it does not.
    pub(super) fn readiness_problem(&self, id: TaskId) -> Option<String> {
        let task = &self.tasks[id];
        let probing = self.probing.get(&id);
        let why = |fallback: &str| match probing.and_then(|p| p.last_problem.clone()) {
            Some(problem) => format!("{fallback}: {problem}"),
            None => fallback.to_owned(),
        };
        match task.state() {
            State::Running { .. } => None,
            State::Starting { .. } => {
                Some(why(&format!("starting, not ready yet ({})", task.settings().ready)))
            }
            State::Pending if probing.is_some_and(|p| !p.waiting_for.is_empty()) => Some(format!(
                "waiting for {} to be ready",
                probing.map(|p| p.waiting_for.join(", ")).unwrap_or_default()
            )),
            State::Stopping { .. } if self.health_word(id) == Some("unhealthy") => Some(why("unhealthy")),
            _ => Some(why(task.state_word())),
        }
    }

    /// `"healthy"` or `"unhealthy"` for a task with a health check or a watchdog; `None`
    /// without one. Unhealthy from the failed check (or watchdog) on, while it stops and
    /// until its next start.
    pub(super) fn health_word(&self, id: TaskId) -> Option<&'static str> {
        let task = &self.tasks[id];
        let settings = task.settings();
        let failing = matches!(
            task.state(),
            State::Stopping { then: super::machine::Then::Fail(Failure::Unhealthy | Failure::Watchdog), .. }
        ) || (!task.is_active()
            && matches!(task.machine.failure, Some(Failure::Unhealthy | Failure::Watchdog)));
        if failing {
            return Some("unhealthy");
        }
        (settings.health.is_some() || settings.watchdog.is_some()).then_some("healthy")
    }

    /// Every async task wanted up is ready (or finished with status 0): the condition of
    /// trc's own `READY=1`.
    pub(super) fn group_is_ready(&self) -> bool {
        self.group.phase == super::group::Phase::Running
            && self.group.draining.is_none()
            && self.tasks.iter().filter(|(_, t)| t.stage == Stage::Async && !t.is_removed()).all(|(_, t)| {
                match t.state() {
                    State::Running { .. } | State::Stopped { .. } => true,
                    State::Finished { status } => t.completed(status),
                    _ => false,
                }
            })
    }

    /// Counts for `STATUS=`: (ready, starting, unhealthy).
    pub(super) fn readiness_counts(&self) -> (usize, usize, usize) {
        let mut counts = (0, 0, 0);
        for (id, task) in self.tasks.iter() {
            match task.state() {
                State::Running { .. } => counts.0 += 1,
                State::Starting { .. } => counts.1 += 1,
                _ if self.health_word(id) == Some("unhealthy") => counts.2 += 1,
                _ => {}
            }
        }
        counts
    }
}

/// `1.204s`, `250ms`.
pub fn format_secs(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.3}s", d.as_secs_f64())
    }
}

/// Binds the task's notify socket and reads it: each datagram goes to the loop.
fn notify_reader(
    path: PathBuf,
    id: TaskId,
    tx: mpsc::UnboundedSender<ProbeEvent>,
) -> std::io::Result<JoinHandle<()>> {
    let _ = std::fs::remove_file(&path);
    let socket = tokio::net::UnixDatagram::bind(&path)?;
    // The task's alone (given to its user when it runs as another): not trc's umask's mode.
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(tokio::task::spawn_local(async move {
        let mut buf = vec![0u8; NOTIFY_MAX];
        loop {
            match socket.recv(&mut buf).await {
                Ok(n) => {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    if tx.send(ProbeEvent { id, what: ProbeMsg::Notify(text) }).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }))
}

async fn tcp(addr: &str) -> Result<(), String> {
    tokio::net::TcpStream::connect(addr).await.map(drop).map_err(|e| format!("connect to {addr}: {e}"))
}

/// A GET; 2xx is a pass. Only the status line is read.
async fn http(url: &HttpUrl) -> Result<(), String> {
    let mut stream = tokio::net::TcpStream::connect(&url.addr)
        .await
        .map_err(|e| format!("connect to {}: {e}", url.addr))?;
    let request = format!(
        "GET {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: trc\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        url.path, url.host
    );
    stream.write_all(request.as_bytes()).await.map_err(|e| format!("{}: {e}", url.text))?;
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 1024];
    while !head.contains(&b'\n') && head.len() < HTTP_HEAD_MAX {
        match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("{}: {e}", url.text)),
        }
    }
    let line = String::from_utf8_lossy(&head);
    let line = line.lines().next().unwrap_or_default();
    match line.split_whitespace().collect::<Vec<_>>().as_slice() {
        [version, code, ..] if version.starts_with("HTTP/") => match code.parse::<u16>() {
            Ok(200..=299) => Ok(()),
            Ok(code) => Err(format!("{} answered {code}", url.text)),
            Err(_) => Err(format!("{}: not an HTTP answer", url.text)),
        },
        _ => Err(format!("{}: not an HTTP answer", url.text)),
    }
}
