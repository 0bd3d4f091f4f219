//! The group: its phase, the boot, sync and halt chains, the wait policy's state, and the one
//! dispatch of every event ([`Supervisor::handle`]).
//!
//! ```text
//!   Boot --all boot tasks done--> Running --policy decides / signal--> Stopping
//!    |                                                                   |
//!    +--a boot task fails, a signal--> Stopping (no halt)    every task group gone
//!                                                                        v
//!   Done <--no child left-- Sweep <--halt chain done-- Halt <--(boot completed)-- Sweep
//! ```
//! - Boot, sync and halt tasks run as chains: one at a time, in order. A sync task held down
//!   (`trcctl stop`) is skipped when its turn comes; `start` puts it back at the head of the
//!   chain (it runs at once when no sync task runs). A sync task never runs beside another.
//! - Signals: in Boot and Running a terminating signal N ends the group with 128+N; in
//!   Stopping and Sweep it is noted, and one that comes a second or more after teardown began
//!   kills what is left at once; in Halt it is ignored (halt tasks run to their end).

use super::event::{Batch, MAX_STARTS};
use super::machine::{Action, Failure, Input, State, Wanted};
use super::policy::{self, GroupPolicy};
use super::task::{Source, TaskId};
use super::{signals, Supervisor};

use crate::config::{apply, Settings, Stage, WaitPolicy};
use crate::shell::{boot_save_failure, read_boot_save};
use crate::{EXIT_CONFIG, EXIT_USAGE};
use nix::unistd::Pid;
use std::collections::VecDeque;
use std::ffi::OsString;
use tokio::time::Instant;
use tracing::{debug, error, info};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Boot,
    Running,
    Stopping,
    /// Stopping every adopted process; then halt (when boot completed) or done.
    Sweep {
        then_halt: bool,
    },
    Halt,
    Done,
}

/// Tasks that run one at a time, in order.
#[derive(Debug, Default)]
pub struct Chain {
    pub queue: VecDeque<TaskId>,
    pub current: Option<TaskId>,
}

#[derive(Debug)]
pub struct Group {
    pub phase: Phase,
    pub boot: Chain,
    /// The `-B` tasks have been added (after the boot files, which may rewrite them).
    cli_boot_added: bool,
    pub sync: Chain,
    pub halt: Chain,
    policy: GroupPolicy,
    /// The group's status, once decided.
    pub status: Option<i32>,
    /// Halt runs after teardown: boot completed.
    halt_after_teardown: bool,
    /// The last halt task's status, if any ran.
    last_halt: Option<i32>,
    /// Said once: every sync task has run under wait_forever.
    announced_forever: bool,
    /// `--stop-delay`: a terminating signal came; the group ends with `status` at `until`
    /// (not ready meanwhile).
    pub draining: Option<Drain>,
}

#[derive(Debug, Clone, Copy)]
pub struct Drain {
    pub until: Instant,
    status: i32,
}

impl Group {
    pub fn new() -> Group {
        Group {
            phase: Phase::Boot,
            boot: Chain::default(),
            cli_boot_added: false,
            sync: Chain::default(),
            halt: Chain::default(),
            policy: GroupPolicy::new(WaitPolicy::Any),
            status: None,
            halt_after_teardown: false,
            last_halt: None,
            announced_forever: false,
            draining: None,
        }
    }

    /// trc's exit status, once the run is over.
    pub fn exit_status(&self) -> Option<i32> {
        (self.phase == Phase::Done).then(|| policy::final_status(self.status.unwrap_or(0), self.last_halt))
    }
}

impl Supervisor {
    /// Starts the run: the first boot task (or the group, when there is none).
    pub(super) fn begin(&mut self) {
        self.group.policy = GroupPolicy::new(self.settings.wait_policy);
        debug!("Looking for `boot` scripts and commands...");
        self.group.boot.queue = self.add_file_tasks(Stage::Boot).into();
        self.next_boot();
    }

    /// Every event of one pass, in order of urgency.
    pub(super) fn handle(&mut self, batch: Batch) {
        for sig in batch.signals {
            self.on_signal(sig);
        }
        for (pid, status) in batch.reaped {
            self.on_reaped(pid, status);
        }
        for (pid, sig) in batch.stopped {
            self.on_stopped(pid, sig);
        }
        for call in batch.calls {
            self.control(call);
        }
        for job in batch.jobs {
            self.job_done(job);
        }
        for event in batch.probes {
            self.probe_event(event);
        }
        if let Some(now) = batch.now {
            self.on_time(now);
        }
        self.dependencies_changed();
        if self.group.phase == Phase::Stopping {
            self.stop_released_dependencies();
        }
        self.advance();
    }

    /// Feeds one input to a task and carries out what its machine asks for.
    pub(super) fn feed(&mut self, id: TaskId, input: Input) {
        let Some(task) = self.tasks.get_mut(id) else { return };
        let sync = task.stage == Stage::Sync;
        let actions = task.machine.transition(input, Instant::now());
        for action in actions {
            self.act(id, action);
        }
        if sync {
            self.sync_chain_check(id);
        }
    }

    fn act(&mut self, id: TaskId, action: Action) {
        match action {
            Action::Spawn => self.launch(id),
            Action::Signal => self.send_stop_signal(id),
            Action::Resend => self.resend_stop_signal(id),
            Action::Kill => self.kill_group(id),
            Action::Restarting { delay, count } => {
                let task = &self.tasks[id];
                info!(
                    ns = task.stage.ns(),
                    pid = task.last_pid.map_or(std::process::id() as i32, Pid::as_raw),
                    task = task.name.as_str(),
                    "Restarting in the {} in {} (restart {count}): {}",
                    task.ns_long(),
                    humantime::format_duration(delay),
                    task.label
                );
            }
            Action::GiveUp { starts, window } => {
                let task = &self.tasks[id];
                error!(
                    ns = task.stage.ns(),
                    pid = task.last_pid.map_or(std::process::id() as i32, Pid::as_raw),
                    task = task.name.as_str(),
                    "{}: giving up after {starts} starts in {} (last exitcode={}): {}",
                    task.name,
                    humantime::format_duration(window),
                    task.last_status.unwrap_or_default(),
                    task.label
                );
            }
            Action::Finished { status } => self.task_finished(id, status),
            Action::Release => self.release(id),
            Action::Failing(Failure::ReadyTimeout) => {
                let task = &self.tasks[id];
                let settings = task.settings();
                tracing::warn!(
                    always = true,
                    ns = task.stage.ns(),
                    pid = task.pid().map_or(0, Pid::as_raw),
                    task = task.name.as_str(),
                    "{} is not ready within {} ({}): stopping it, a failed start",
                    task.name,
                    humantime::format_duration(settings.ready_timeout.unwrap_or_default()),
                    settings.ready
                );
            }
            // Said by the health check or the watchdog (`probe.rs`), which know why.
            Action::Failing(_) => {}
        }
    }

    // ----- signals ------------------------------------------------------------------------

    fn on_signal(&mut self, sig: i32) {
        let forwarded = self.settings.forward_signals.iter().any(|s| *s as i32 == sig);
        if forwarded {
            return match self.group.phase {
                Phase::Boot | Phase::Running => self.forward_signal(sig),
                _ => debug!("SIG{} while stopping: not forwarded", signals::name(sig)),
            };
        }
        match self.group.phase {
            Phase::Running if self.group.draining.is_some() => {
                info!("got SIG{} while draining: stopping now", signals::name(sig));
                self.end_drain();
            }
            Phase::Running if !self.settings.stop_delay.is_zero() => {
                let delay = self.settings.stop_delay;
                info!(
                    "got SIG{}: stopping in {} (--stop-delay; not ready meanwhile)",
                    signals::name(sig),
                    humantime::format_duration(delay)
                );
                self.group.draining =
                    Some(Drain { until: Instant::now() + delay, status: policy::signal_status(sig) });
                self.status_dirty = true;
            }
            Phase::Boot | Phase::Running => {
                debug!("sig-trap (exitcode={})", policy::signal_status(sig));
                let halt = self.group.phase == Phase::Running;
                self.end_group(policy::signal_status(sig), halt);
            }
            Phase::Stopping | Phase::Sweep { .. } if self.is_insistent() => {
                tracing::warn!(
                    "got SIG{} again while stopping: killing what is left now",
                    signals::name(sig)
                );
                self.kill_everything_now();
            }
            Phase::Stopping | Phase::Sweep { .. } => {
                debug!("SIG{} while stopping: already stopping", signals::name(sig))
            }
            // Halt tasks run to completion, as in TrivialRC (which ignores signals from its
            // exit hook on): a signal must not cut a cleanup short.
            Phase::Halt | Phase::Done => debug!("SIG{} during halt: ignored", signals::name(sig)),
        }
    }

    /// The drain delay is over (or cut short): the group ends with the signal's status.
    fn end_drain(&mut self) {
        if let Some(drain) = self.group.draining.take() {
            self.end_group(drain.status, true);
        }
    }

    // ----- exits --------------------------------------------------------------------------

    fn on_reaped(&mut self, pid: Pid, status: i32) {
        if self.check_reaped(pid, status) {
            return;
        }
        let Some(id) = self.by_pid.remove(&pid) else {
            debug!("reaped an adopted process <pid={pid}> (exitcode={status})");
            return;
        };
        let exec_failed = self.exited(id, pid, status);
        self.feed(id, Input::Exited { status, exec_failed });
        self.wake_waiters(id, super::control::Want::Down);
    }

    /// A task finished for good: the chains move on and the wait policy decides.
    fn task_finished(&mut self, id: TaskId, status: i32) {
        let stage = self.tasks[id].stage;
        match stage {
            Stage::Boot => self.boot_task_done(id, status),
            Stage::Halt => {
                if self.group.halt.current == Some(id) {
                    self.group.halt.current = None;
                    self.group.last_halt = Some(status);
                    self.next_halt();
                }
            }
            Stage::Async | Stage::Sync => {
                if self.group.phase != Phase::Running {
                    return;
                }
                // `success-exit-status`: such a status is a success for the wait policy and the
                // group's status.
                let status = if self.tasks[id].settings().is_success(status) { 0 } else { status };
                let all_done = self.group.sync.queue.is_empty()
                    && !self.tasks.iter().any(|(_, t)| t.is_supervised() && t.machine.is_alive());
                if let Some(status) = self.group.policy.task_finished(status, all_done) {
                    if self.settings.wait_policy == WaitPolicy::Any {
                        let task = &self.tasks[id];
                        debug!(
                            ns = task.stage.ns(),
                            pid = task.last_pid.map_or(0, Pid::as_raw),
                            "terminating the main process <pid={}>",
                            std::process::id()
                        );
                        // TrivialRC's main shell then takes that TERM in its signal trap.
                        debug!("sig-trap (exitcode={})", policy::signal_status(libc::SIGTERM));
                    }
                    self.end_group(status, true);
                }
            }
        }
    }

    // ----- time ---------------------------------------------------------------------------

    fn on_time(&mut self, now: Instant) {
        let mut starts = 0;
        for id in self.tasks.ids() {
            let Some(task) = self.tasks.get(id) else { continue };
            if task.machine.deadline().is_none_or(|d| d > now) {
                continue;
            }
            if matches!(task.state(), State::Backoff { .. }) {
                if starts >= MAX_STARTS {
                    continue;
                }
                starts += 1;
            }
            self.feed(id, Input::Tick { now });
        }
        if self.group.draining.is_some_and(|d| d.until <= now) && self.group.phase == Phase::Running {
            self.end_drain();
        }
        self.probe_tick(now);
        self.teardown_tick(now);
    }

    /// Moves the group on once its phase's work is done.
    pub(super) fn advance(&mut self) {
        loop {
            let before = self.group.phase;
            match before {
                Phase::Stopping if self.teardown_done() => {
                    let then_halt = self.group.halt_runs();
                    self.begin_sweep(then_halt);
                }
                Phase::Sweep { then_halt } if self.sweep_done() => {
                    if then_halt {
                        self.begin_halt();
                    } else {
                        self.group.phase = Phase::Done;
                    }
                }
                _ => {}
            }
            if self.group.phase == before {
                break;
            }
        }
    }

    /// Ends the group with `status`: teardown, then halt if `halt` (boot completed).
    pub(super) fn end_group(&mut self, status: i32, halt: bool) {
        if !matches!(self.group.phase, Phase::Boot | Phase::Running) {
            return;
        }
        self.group.status = Some(status);
        self.group.halt_after_teardown = halt;
        debug!("exit-trap (exitcode={status})");
        self.begin_teardown();
    }

    // ----- boot ---------------------------------------------------------------------------

    fn next_boot(&mut self) {
        if self.group.boot.queue.is_empty() && !self.group.cli_boot_added {
            // The -B commands of the command line as the boot files left it.
            self.group.cli_boot_added = true;
            self.group.boot.queue = self.add_cli_tasks(Stage::Boot).into();
        }
        match self.group.boot.queue.pop_front() {
            Some(id) => {
                self.group.boot.current = Some(id);
                let task = &self.tasks[id];
                info!(task = task.name.as_str(), stage = "boot", "Launching in the boot: {}", task.label);
                self.feed(id, Input::Start);
            }
            None => self.begin_running(),
        }
    }

    /// A boot task has exited: the group ends if it failed, else what it saved is taken over
    /// and the next one runs.
    fn boot_task_done(&mut self, id: TaskId, status: i32) {
        if self.group.boot.current != Some(id) || self.group.phase != Phase::Boot {
            return;
        }
        self.group.boot.current = None;
        if status != 0 {
            return self.end_group(status, false);
        }
        // A boot task that ran without bash (an ELF binary, a #! script, `command:`) cannot
        // change the shell state: what earlier boot tasks saved stays.
        if !self.tasks[id].is_shell_code() {
            return self.next_boot();
        }
        let may_rewrite_argv = matches!(self.tasks[id].source, Source::File { .. });
        match self.take_boot_save(id, may_rewrite_argv) {
            Ok(()) => self.next_boot(),
            Err(status) => self.end_group(status, false),
        }
    }

    /// Takes over what a boot task saved. `Err(status)` ends the group.
    fn take_boot_save(&mut self, id: TaskId, may_rewrite_argv: bool) -> Result<(), i32> {
        let save_to = self.boot_save_path(id);
        if let Some(reason) = boot_save_failure(&save_to) {
            let dir = save_to.parent().unwrap_or(&save_to);
            error!(
                "boot task {}: cannot save its state in the runtime dir {}: {reason}",
                self.tasks[id].label,
                dir.display()
            );
            return Err(EXIT_CONFIG);
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
        // Re-parsed only when the boot file changed it: `"$@"` shows a trailing command as it
        // is, without the `--` that let one starting with `-` through the first parse.
        if may_rewrite_argv && save.argv != self.cli.task_argv() {
            match self.cli.reparse_tasks(save.argv) {
                Ok(cli) => {
                    let checked = self
                        .files
                        .check_cli_names(cli.stage_counts(), !cli.command.is_empty())
                        .and_then(|()| self.files.check_dependencies(cli.async_.len()));
                    if let Err(e) = checked {
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
        let settings = match Settings::from_lookup(|name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        }) {
            Ok(settings) => settings,
            Err(e) => {
                error!("{}: {e}", self.tasks[id].label);
                return Err(EXIT_CONFIG);
            }
        };
        self.console.set_verbosity(settings.verbose, settings.verbose_extra);
        self.settings = settings;
        self.group.policy = GroupPolicy::new(self.settings.wait_policy);
        // The directives were checked against the defaults from before boot; the ones boot set
        // may clash with them (a restart-max-delay below RC_RESTART_DELAY).
        for stage in [Stage::Async, Stage::Sync, Stage::Halt] {
            for file in self.files.stage(stage) {
                if let Err(e) = apply(&self.settings.task, &file.directives) {
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
        Ok(())
    }

    // ----- running ------------------------------------------------------------------------

    /// Starts the async tasks and the sync chain.
    fn begin_running(&mut self) {
        self.group.phase = Phase::Running;
        self.warn_unforwarded();
        debug!("Looking for `halt` commands...");
        debug!("Looking for `async` scripts and commands...");
        let mut asyncs = self.add_file_tasks(Stage::Async);
        asyncs.extend(self.add_cli_tasks(Stage::Async));
        debug!("Looking for `sync` scripts and commands...");
        let mut syncs: VecDeque<TaskId> = self.add_file_tasks(Stage::Sync).into();
        syncs.extend(self.add_cli_tasks(Stage::Sync));
        if asyncs.is_empty() && syncs.is_empty() {
            if let Some(status) = self.group.policy.empty_group() {
                return self.end_group(status, true);
            }
        }
        self.group.sync.queue = syncs;
        for id in asyncs {
            self.feed(id, Input::Start);
        }
        // trc's own READY=1 comes once every async task is ready (`check_group_ready`).
        self.next_sync();
    }

    /// Starts the next sync task whose turn it is, unless one runs. Tasks held down are
    /// skipped (they stay down).
    pub(super) fn next_sync(&mut self) {
        if self.group.phase != Phase::Running || self.group.sync.current.is_some() {
            return;
        }
        while let Some(id) = self.group.sync.queue.pop_front() {
            if self.tasks.get(id).is_some_and(|t| t.machine.wanted == Wanted::Up) {
                self.group.sync.current = Some(id);
                self.feed(id, Input::Start);
                return;
            }
        }
        if self.settings.wait_policy == WaitPolicy::Forever && !self.group.announced_forever {
            self.group.announced_forever = true;
            info!("Activated infinite loop! To stop, press <Ctrl+C> or send SIGTERM...");
        }
    }

    /// The sync chain moves on when its current task is no longer running or about to run
    /// again (finished, given up, held down, removed).
    pub(super) fn sync_chain_check(&mut self, id: TaskId) {
        if self.group.sync.current != Some(id) {
            return;
        }
        let done = match self.tasks.get(id) {
            None => true,
            Some(t) => {
                matches!(t.state(), State::Finished { .. } | State::GaveUp { .. } | State::Stopped { .. })
            }
        };
        if done {
            self.group.sync.current = None;
            self.next_sync();
        }
    }

    // ----- halt ---------------------------------------------------------------------------

    fn begin_halt(&mut self) {
        self.group.phase = Phase::Halt;
        debug!("Looking for `halt` scripts...");
        let mut halts: VecDeque<TaskId> = self.add_file_tasks(Stage::Halt).into();
        halts.extend(self.add_cli_tasks(Stage::Halt));
        let group = self.group.status.unwrap_or(0);
        self.env.push((OsString::from("TRC_EXIT_STATUS"), OsString::from(group.to_string())));
        self.group.halt.queue = halts;
        self.next_halt();
    }

    fn next_halt(&mut self) {
        if self.group.phase != Phase::Halt {
            return;
        }
        match self.group.halt.queue.pop_front() {
            Some(id) => {
                self.group.halt.current = Some(id);
                self.feed(id, Input::Start);
            }
            None => self.begin_sweep(false),
        }
    }
}

impl Group {
    /// Whether halt runs after teardown (boot completed).
    fn halt_runs(&self) -> bool {
        self.halt_after_teardown
    }
}
