//! trc's own log lines, in TrivialRC's format: `YYYY-MM-DD HH:MM:SS trc [ns/pid]: message`.
//!
//! trc emits `tracing` events with the fields `ns` (main, async, sync, halt) and `pid`; the
//! [`Console`] layer prints them: INFO on stdout when `RC_VERBOSE=true`, DEBUG too (as
//! `]:  - message`) with `RC_VERBOSE_EXTRA=true`, WARN on stderr when verbose, and ERROR always,
//! on stderr. The flags can change at run time (a boot task may set `RC_VERBOSE`). With
//! `--log-format json` each record is a JSON object instead ([`format`]).
//!
//! Every line, trc's own and its tasks', is written by the [`writer`]'s threads, never by the
//! supervisor's: a reader that stops reading cannot freeze trc.

pub mod format;
pub mod journal;
pub mod notify;
pub mod pipe;
pub mod writer;

use pipe::Output;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

/// Runs `release` once what trc has written to its stdout so far is out (the trailing
/// command, which writes to trc's stdout itself, execs only after its "Launching" line).
pub fn release_after_output(release: Box<dyn FnOnce() + Send>) {
    writer::after_written(Output::Stdout, Box::new(move || writer::after_written(Output::Stderr, release)));
}

/// Prints trc's events on the console. Cloning shares the flags.
#[derive(Clone)]
pub struct Console {
    inner: Arc<Inner>,
}

struct Inner {
    self_name: String,
    main_pid: u32,
    verbose: AtomicBool,
    extra: AtomicBool,
    /// Set when records go to journald natively.
    journal: OnceLock<Arc<journal::Journal>>,
}

impl Console {
    pub fn new(self_name: &str, main_pid: u32) -> Console {
        Console {
            inner: Arc::new(Inner {
                self_name: self_name.to_owned(),
                main_pid,
                verbose: AtomicBool::new(false),
                extra: AtomicBool::new(false),
                journal: OnceLock::new(),
            }),
        }
    }

    /// Installs the console as the global subscriber (once, at start).
    pub fn install(&self) {
        let _ = tracing_subscriber::registry().with(self.clone()).try_init();
    }

    /// Sends trc's own records to journald from now on.
    pub fn use_journal(&self, journal: Arc<journal::Journal>) {
        let _ = self.inner.journal.set(journal);
    }

    pub fn set_verbosity(&self, verbose: bool, extra: bool) {
        self.inner.verbose.store(verbose, Ordering::Relaxed);
        self.inner.extra.store(extra, Ordering::Relaxed);
    }

    /// One line in TrivialRC's format, with a newline.
    pub fn format_line(&self, ns: &str, pid: u32, message: &str) -> String {
        let now = chrono::Local::now().format("%Y-%m-%d %H:%M:%S");
        format!("{now} {} [{ns}/{pid}]: {message}\n", self.inner.self_name)
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    ns: Option<String>,
    pid: Option<u32>,
    task: Option<String>,
    /// For journal records whose console line shows main's pid (a halt task's exit).
    stage: Option<String>,
    task_pid: Option<u32>,
    /// Shown even when not verbose (a warning the operator must see).
    always: bool,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "ns" => self.ns = Some(value.to_owned()),
            "task" => self.task = Some(value.to_owned()),
            "stage" => self.stage = Some(value.to_owned()),
            "message" => self.message.push_str(value),
            _ => {}
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name() == "always" {
            self.always = value;
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "pid" {
            self.pid = u32::try_from(value).ok();
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        match field.name() {
            "pid" => self.pid = u32::try_from(value).ok(),
            "task_pid" => self.task_pid = u32::try_from(value).ok(),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => {
                let _ = write!(self.message, "{value:?}");
            }
            "ns" => self.ns = Some(format!("{value:?}")),
            _ => {}
        }
    }
}

impl<S: Subscriber> Layer<S> for Console {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        let verbose = self.inner.verbose.load(Ordering::Relaxed);
        let shown = match level {
            Level::ERROR => true,
            Level::WARN | Level::INFO => verbose,
            Level::DEBUG => verbose && self.inner.extra.load(Ordering::Relaxed),
            Level::TRACE => false,
        };
        // A warning with `always = true` is shown whatever the verbosity.
        if !shown && level != Level::WARN {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        if !shown && !fields.always {
            return;
        }
        let ns = fields.ns.as_deref().unwrap_or("main");
        let stage = fields.stage.as_deref().unwrap_or(if ns == "main" { "boot" } else { ns });
        let json = format::style().is_json().then(|| {
            let level = match level {
                Level::ERROR => "error",
                Level::WARN => "warn",
                Level::INFO => "info",
                _ => "debug",
            };
            let about = fields.task.as_deref().map(|task| format::About {
                task,
                stage,
                pid: fields.task_pid.or(fields.pid),
            });
            let time = format::Stamp::now(format::Precision::Micros);
            format::own_record(time.as_str(), level, about, &fields.message)
        });
        if level == Level::DEBUG {
            fields.message.insert_str(0, " - ");
        }
        let pid = fields.pid.unwrap_or(self.inner.main_pid);
        let line = self.format_line(ns, pid, &fields.message);
        let output = if level <= Level::WARN { Output::Stderr } else { Output::Stdout };
        if let Some(journal) = self.inner.journal.get() {
            let priority = match level {
                Level::ERROR => journal::PRIORITY_ERR,
                Level::WARN => journal::PRIORITY_WARNING,
                Level::INFO => journal::PRIORITY_INFO,
                _ => journal::PRIORITY_DEBUG,
            };
            // A task's pid only when the record names one (not trc's own, for a task that
            // has no process yet).
            let task_pid = fields.task_pid.or(fields.pid).map(|p| p.to_string());
            let priority = [b'0' + priority];
            let mut record: Vec<(&str, &[u8])> = vec![
                ("MESSAGE", line.trim_end().as_bytes()),
                ("PRIORITY", &priority),
                ("SYSLOG_IDENTIFIER", b"trc"),
            ];
            if let Some(task) = &fields.task {
                record.push(("TRC_TASK", task.as_bytes()));
                record.push(("TRC_STAGE", stage.as_bytes()));
                if let Some(pid) = &task_pid {
                    record.push(("TRC_TASK_PID", pid.as_bytes()));
                }
            }
            // On the console instead if journald turns out to be gone.
            let instead = json.unwrap_or_else(|| line.clone().into_bytes());
            journal.send_or_write(&record, output, instead);
            return;
        }
        writer::write(output, json.unwrap_or_else(|| line.into_bytes()));
    }
}
