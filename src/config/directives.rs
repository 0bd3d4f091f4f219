//! Per-task directives: a header block in the task file, in the style of LSB init headers,
//! written in the file's own comment syntax (`#`, `//`, `--`, `;`, ...):
//!
//! ```text
//! ### BEGIN TRC
//! # restart: on-failure        # never (default) | on-failure | always
//! # restart-delay: 1s          # first delay; doubles on each restart up to restart-max-delay
//! # restart-max-delay: 30s     # the doubling resets once the task has stayed up this long
//! # start-limit: 5 in 60s      # more starts than this in the window: give up
//! # stop-timeout: 5s           # SIGTERM (or stop-signal), then SIGKILL after this
//! # stop-signal: TERM
//! # log-prefix: yes            # no: pass output through untouched
//! # ready: log ^listening      # how trc knows it is ready (see `probe.rs`); default none
//! # ready-timeout: 90s         # not ready by then: a failed start; none = wait for ever
//! # ready-interval: 1s         # how often a polled readiness probe runs
//! # after: db cache            # start only once these async tasks are ready
//! # health: http http://127.0.0.1:8080/healthz
//! # health-interval: 10s       # how often the health check runs
//! # health-timeout: 5s         # one check (health or readiness) is given up after this
//! # health-retries: 3          # this many failed checks in a row: unhealthy
//! # watchdog: 30s              # WATCHDOG=1 expected at least this often (sd_notify)
//! # command: /app/srv --port 8080   # exec this argv instead of the file: no shell at all
//! ### END TRC
//! ```
//!
//! Most keys have a group-wide default from an `RC_*` variable (and long option), so tasks
//! given on the command line can be supervised too; `ready`, `after`, `health` and `watchdog`
//! are the task's own.

use super::context::{self, Limit, RunAs};
use super::probe::{parse_names, Probe};
use super::Stage;
use nix::sys::signal::Signal;
use std::path::Path;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// When a task that has exited is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Restart {
    #[default]
    Never,
    /// After a non-zero status, or death by a signal other than the stop signal trc sent.
    OnFailure,
    /// After any exit that trc did not ask for.
    Always,
}

impl FromStr for Restart {
    type Err = String;
    fn from_str(s: &str) -> Result<Restart, String> {
        match s {
            "never" | "no" => Ok(Restart::Never),
            "on-failure" => Ok(Restart::OnFailure),
            "always" => Ok(Restart::Always),
            _ => Err(format!("unknown restart policy \"{s}\" (expected never, on-failure or always)")),
        }
    }
}

/// At most `starts` starts within `window`; one more and the task gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartLimit {
    pub starts: u32,
    pub window: Duration,
}

impl FromStr for StartLimit {
    type Err = String;
    fn from_str(s: &str) -> Result<StartLimit, String> {
        let bad = || format!("\"{s}\" is not a start limit (write e.g. \"5 in 60s\", or \"none\")");
        let (count, window) = s.split_once(" in ").ok_or_else(bad)?;
        let starts: u32 = count.trim().parse().map_err(|_| bad())?;
        if starts == 0 {
            return Err(format!("\"{s}\": a start limit needs at least 1 start"));
        }
        let window = parse_duration(window).map_err(|e| format!("\"{s}\": {e}"))?;
        Ok(StartLimit { starts, window })
    }
}

/// How one task is supervised.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSettings {
    pub restart: Restart,
    pub restart_delay: Duration,
    pub restart_max_delay: Duration,
    /// `None`: no limit.
    pub start_limit: Option<StartLimit>,
    pub stop_timeout: Duration,
    pub stop_signal: Signal,
    pub log_prefix: bool,
    /// How trc knows it is ready.
    pub ready: Probe,
    /// `None`: it may take for ever.
    pub ready_timeout: Option<Duration>,
    pub ready_interval: Duration,
    /// The async tasks it starts after (once each is ready).
    pub after: Vec<String>,
    /// Its health check, if any.
    pub health: Option<Probe>,
    pub health_interval: Duration,
    pub health_timeout: Duration,
    pub health_retries: u32,
    /// `WATCHDOG=1` expected at least this often, once it is ready.
    pub watchdog: Option<Duration>,
    /// `command:` the argv to exec instead of the file (no shell).
    pub command: Option<Vec<String>>,
    /// `user:` who it runs as.
    pub user: Option<RunAs>,
    /// `group:` its group (overrides the user's primary group).
    pub group: Option<u32>,
    pub cwd: Option<PathBuf>,
    /// `env:` lines, in order.
    pub env: Vec<(String, String)>,
    /// `env-file:` paths (read at every start), with whether each is optional.
    pub env_files: Vec<(PathBuf, bool)>,
    pub umask: Option<u32>,
    pub nice: Option<i32>,
    /// `limit-*:`, one per resource.
    pub limits: Vec<Limit>,
    /// Exit statuses that count as success (besides 0).
    pub success_exit_status: Vec<i32>,
    /// `forward-signals:` the signals trc passes to it (with `--forward-signals`).
    pub forward_signals: Vec<Signal>,
}

impl Default for TaskSettings {
    fn default() -> Self {
        TaskSettings {
            restart: Restart::Never,
            restart_delay: Duration::from_secs(1),
            restart_max_delay: Duration::from_secs(30),
            start_limit: Some(StartLimit { starts: 5, window: Duration::from_secs(60) }),
            stop_timeout: Duration::from_secs(5),
            stop_signal: Signal::SIGTERM,
            log_prefix: true,
            ready: Probe::None,
            ready_timeout: Some(Duration::from_secs(90)),
            ready_interval: Duration::from_secs(1),
            after: Vec::new(),
            health: None,
            health_interval: Duration::from_secs(10),
            health_timeout: Duration::from_secs(5),
            health_retries: 3,
            watchdog: None,
            command: None,
            user: None,
            group: None,
            cwd: None,
            env: Vec::new(),
            env_files: Vec::new(),
            umask: None,
            nice: None,
            limits: Vec::new(),
            success_exit_status: Vec::new(),
            forward_signals: Vec::new(),
        }
    }
}

/// The directive keys, with the `RC_*` variable that gives each its group-wide default (none
/// for the keys that only make sense for one task).
pub const KEYS: [(&str, Option<&str>); 42] = [
    ("restart", Some("RC_RESTART")),
    ("restart-delay", Some("RC_RESTART_DELAY")),
    ("restart-max-delay", Some("RC_RESTART_MAX_DELAY")),
    ("start-limit", Some("RC_START_LIMIT")),
    ("stop-timeout", Some("RC_STOP_TIMEOUT")),
    ("stop-signal", Some("RC_STOP_SIGNAL")),
    ("log-prefix", Some("RC_LOG_PREFIX")),
    ("ready", None),
    ("ready-timeout", Some("RC_READY_TIMEOUT")),
    ("ready-interval", Some("RC_READY_INTERVAL")),
    ("after", None),
    ("health", None),
    ("health-interval", Some("RC_HEALTH_INTERVAL")),
    ("health-timeout", Some("RC_HEALTH_TIMEOUT")),
    ("health-retries", Some("RC_HEALTH_RETRIES")),
    ("watchdog", None),
    ("command", None),
    ("user", Some("RC_USER")),
    ("group", Some("RC_GROUP")),
    ("cwd", Some("RC_CWD")),
    ("env", None),
    ("env-file", Some("RC_ENV_FILE")),
    ("umask", Some("RC_UMASK")),
    ("nice", Some("RC_NICE")),
    ("success-exit-status", Some("RC_SUCCESS_EXIT_STATUS")),
    ("forward-signals", None),
    ("limit-as", Some("RC_LIMIT_AS")),
    ("limit-core", Some("RC_LIMIT_CORE")),
    ("limit-cpu", Some("RC_LIMIT_CPU")),
    ("limit-data", Some("RC_LIMIT_DATA")),
    ("limit-fsize", Some("RC_LIMIT_FSIZE")),
    ("limit-locks", Some("RC_LIMIT_LOCKS")),
    ("limit-memlock", Some("RC_LIMIT_MEMLOCK")),
    ("limit-msgqueue", Some("RC_LIMIT_MSGQUEUE")),
    ("limit-nice", Some("RC_LIMIT_NICE")),
    ("limit-nofile", Some("RC_LIMIT_NOFILE")),
    ("limit-nproc", Some("RC_LIMIT_NPROC")),
    ("limit-rss", Some("RC_LIMIT_RSS")),
    ("limit-rtprio", Some("RC_LIMIT_RTPRIO")),
    ("limit-rttime", Some("RC_LIMIT_RTTIME")),
    ("limit-sigpending", Some("RC_LIMIT_SIGPENDING")),
    ("limit-stack", Some("RC_LIMIT_STACK")),
];

/// Keys whose value is a duration (their errors quote the value).
const DURATION_KEYS: [&str; 8] = [
    "restart-delay",
    "ready-timeout",
    "restart-max-delay",
    "stop-timeout",
    "ready-interval",
    "health-interval",
    "health-timeout",
    "watchdog",
];

impl TaskSettings {
    /// Sets `key` to `value`; the error says what is wrong with the value.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let value = value.trim();
        match key {
            "restart" => self.restart = value.parse()?,
            "restart-delay" => self.restart_delay = parse_duration(value)?,
            "restart-max-delay" => self.restart_max_delay = parse_duration(value)?,
            "start-limit" => {
                self.start_limit = match value {
                    "none" | "unlimited" | "infinity" => None,
                    _ => Some(value.parse()?),
                }
            }
            "stop-timeout" => self.stop_timeout = parse_duration(value)?,
            "stop-signal" => self.stop_signal = parse_signal(value)?,
            "log-prefix" => self.log_prefix = parse_bool(value)?,
            "ready" => self.ready = Probe::parse_ready(value)?,
            "ready-timeout" => {
                self.ready_timeout = match value {
                    "none" | "infinity" => None,
                    _ => Some(positive(value)?),
                }
            }
            "ready-interval" => self.ready_interval = positive(value)?,
            // Repeatable: each line adds names.
            "after" => self.after.extend(parse_names(value)?),
            "health" => {
                self.health = match value {
                    "none" => None,
                    _ => Some(Probe::parse_health(value)?),
                }
            }
            "health-interval" => self.health_interval = positive(value)?,
            "health-timeout" => self.health_timeout = positive(value)?,
            "health-retries" => {
                self.health_retries = match value.parse::<u32>() {
                    Ok(n) if n >= 1 => n,
                    _ => return Err(format!("\"{value}\" is not a number of checks (1 or more)")),
                }
            }
            "command" => {
                self.command = match shlex::split(value) {
                    Some(words) if !words.is_empty() => Some(words),
                    Some(_) => return Err("\"command:\" needs a program (and its arguments)".to_owned()),
                    None => return Err(format!("\"{value}\" is not a command line (unbalanced quotes?)")),
                }
            }
            "user" => {
                let run_as = context::parse_user(value)?;
                let other = run_as.uid != nix::unistd::geteuid().as_raw()
                    || run_as.gid != nix::unistd::getegid().as_raw();
                check_may_switch("user", other)?;
                self.user = Some(run_as);
            }
            "group" => {
                let gid = context::parse_group(value)?;
                check_may_switch("group", gid != nix::unistd::getegid().as_raw())?;
                self.group = Some(gid);
            }
            "cwd" => self.cwd = Some(context::parse_cwd(value)?),
            // Repeatable.
            "env" => self.env.push(context::parse_env(value)?),
            "env-file" => self.env_files.push(context::parse_env_file(value)?),
            "umask" => self.umask = Some(context::parse_umask(value)?),
            "nice" => self.nice = Some(context::parse_nice(value)?),
            key if key.starts_with("limit-") && context::LIMITS.iter().any(|(k, _)| *k == key) => {
                let limit = context::parse_limit(key, value)?;
                self.limits.retain(|l| l.resource != limit.resource);
                self.limits.push(limit);
            }
            "success-exit-status" => {
                self.success_exit_status = value
                    .split(|c: char| c.is_whitespace() || c == ',')
                    .filter(|w| !w.is_empty())
                    .map(|w| match w.parse::<i32>() {
                        Ok(n) if (0..=255).contains(&n) => Ok(n),
                        _ => parse_signal(w).map(|s| 128 + s as i32).map_err(|_| {
                            format!("\"{w}\" is not an exit status (0-255) or a signal name (TERM: 143)")
                        }),
                    })
                    .collect::<Result<_, _>>()?;
            }
            "forward-signals" => self.forward_signals = parse_forwardable(value)?,
            "watchdog" => {
                self.watchdog = match value {
                    "none" | "0" => None,
                    _ => Some(positive(value)?),
                }
            }
            _ => {
                let mut known: Vec<&str> =
                    KEYS.iter().map(|(k, _)| *k).filter(|k| !k.starts_with("limit-")).collect();
                known.push("limit-nofile (and the other limit-* of setrlimit)");
                return Err(format!("unknown directive \"{key}\" (known: {})", known.join(", ")));
            }
        }
        Ok(())
    }

    /// The group-wide defaults from the `RC_*` variables seen through `lookup`. The error names
    /// the variable.
    pub fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<TaskSettings, String> {
        let mut settings = TaskSettings::default();
        for (key, var) in KEYS.iter().filter_map(|&(key, var)| Some((key, var?))) {
            if let Some(value) = lookup(var).filter(|v| !v.is_empty()) {
                settings.set(key, &value).map_err(|e| format!("{var}={value:?}: {e}"))?;
            }
        }
        settings.check().map_err(|e| format!("RC_RESTART_DELAY/RC_RESTART_MAX_DELAY: {e}"))?;
        settings.check_allowed().map_err(|(key, problem)| {
            let var = KEYS.iter().find(|(k, _)| *k == key).and_then(|(_, v)| *v).unwrap_or("RC_NICE");
            let value = lookup(var).unwrap_or_default();
            format!("{var}={value:?}: {problem}")
        })?;
        Ok(settings)
    }

    /// Whether the kernel will let trc apply these limits and this nice value (before anything
    /// starts, rather than a failed start): the error has the key that is refused.
    fn check_allowed(&self) -> Result<(), (&'static str, String)> {
        for limit in &self.limits {
            context::check_limit_allowed(limit).map_err(|e| (context::limit_key(limit.resource), e))?;
        }
        if let Some(nice) = self.nice {
            let nice_limit = self.limits.iter().find(|l| l.resource == libc::RLIMIT_NICE).map(|l| l.soft);
            context::check_nice_allowed(nice, nice_limit).map_err(|e| ("nice", e))?;
        }
        Ok(())
    }

    /// Rules between keys.
    fn check(&self) -> Result<(), String> {
        if self.restart_max_delay < self.restart_delay {
            return Err(format!(
                "restart-max-delay ({}) is shorter than restart-delay ({})",
                humantime::format_duration(self.restart_max_delay),
                humantime::format_duration(self.restart_delay)
            ));
        }
        Ok(())
    }
}

impl TaskSettings {
    /// The group-wide defaults as they apply to a task of `stage`. A boot task runs as trc's
    /// user (what it sets becomes trc's: its variables, the boot state, the runtime files it
    /// writes), so `RC_USER` and `RC_GROUP` are not its defaults; the other defaults are
    /// (`RC_CWD`, `RC_UMASK`, `RC_NICE`, `RC_LIMIT_*`, `RC_ENV_FILE`...).
    pub fn defaults_for(&self, stage: Stage) -> TaskSettings {
        let mut defaults = self.clone();
        if stage == Stage::Boot {
            defaults.user = None;
            defaults.group = None;
        }
        defaults
    }

    /// Whether an exit status counts as success: 0, or one of `success-exit-status`.
    pub fn is_success(&self, status: i32) -> bool {
        status == 0 || self.success_exit_status.contains(&status)
    }
}

/// Only root may run a task as another user or group.
fn check_may_switch(what: &str, other: bool) -> Result<(), String> {
    if other && !nix::unistd::geteuid().is_root() {
        return Err(format!(
            "\"{what}:\" needs trc to run as root (it runs as uid {})",
            nix::unistd::geteuid()
        ));
    }
    Ok(())
}

/// Signals trc can pass on to tasks: those that would end it, and WINCH.
pub const FORWARDABLE: [Signal; 12] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGABRT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGALRM,
    Signal::SIGTERM,
    Signal::SIGXCPU,
    Signal::SIGXFSZ,
    Signal::SIGVTALRM,
    Signal::SIGWINCH,
];

/// A list of signals trc can forward (`HUP,USR2` or `HUP USR2`).
pub fn parse_forwardable(text: &str) -> Result<Vec<Signal>, String> {
    let signals = parse_signals(text)?;
    if let Some(bad) = signals.iter().find(|s| !FORWARDABLE.contains(s)) {
        let names: Vec<&str> = FORWARDABLE.iter().map(|s| s.as_str().trim_start_matches("SIG")).collect();
        return Err(format!("{} cannot be forwarded (these can: {})", bad.as_str(), names.join(", ")));
    }
    Ok(signals)
}

/// `HUP,USR2` or `HUP USR2`.
pub fn parse_signals(text: &str) -> Result<Vec<Signal>, String> {
    let signals: Vec<Signal> = text
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
        .map(parse_signal)
        .collect::<Result<_, _>>()?;
    if signals.is_empty() {
        return Err("no signal named (write e.g. HUP,USR2)".to_owned());
    }
    Ok(signals)
}

/// A signal by name (`TERM`, `SIGTERM`, `term`) or number.
pub fn parse_signal(text: &str) -> Result<Signal, String> {
    if let Ok(num) = text.parse::<i32>() {
        return Signal::try_from(num).map_err(|_| format!("{num} is not a signal number"));
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    name.parse::<Signal>().map_err(|_| format!("unknown signal \"{text}\""))
}

/// A duration above zero.
fn positive(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        Duration::ZERO => Err("zero (must be more than 0)".to_owned()),
        d => Ok(d),
    }
}

fn parse_bool(text: &str) -> Result<bool, String> {
    match text {
        "yes" | "true" | "on" | "1" => Ok(true),
        "no" | "false" | "off" | "0" => Ok(false),
        _ => Err(format!("\"{text}\" is not yes or no")),
    }
}

/// A directive error: the file, the 1-based line and the problem.
#[derive(Debug, Clone, PartialEq)]
pub struct DirectiveError {
    pub line: usize,
    pub problem: String,
}

/// One `key: value` line of a header block.
#[derive(Debug, Clone, PartialEq)]
pub struct Directive {
    /// 1-based line number in the file.
    pub line: usize,
    pub key: String,
    pub value: String,
}

/// Applies `directives` on top of `defaults`.
pub fn apply(defaults: &TaskSettings, directives: &[Directive]) -> Result<TaskSettings, DirectiveError> {
    let mut settings = defaults.clone();
    for d in directives {
        settings.set(&d.key, &d.value).map_err(|problem| {
            // Say which value is wrong (the other keys' errors quote it already).
            let value = d.value.trim();
            let duration = DURATION_KEYS.contains(&d.key.as_str());
            let problem = if duration { format!("\"{value}\" is {problem}") } else { problem };
            DirectiveError { line: d.line, problem }
        })?;
    }
    let last = directives.last().map_or(1, |d| d.line);
    settings.check().map_err(|problem| DirectiveError { line: last, problem })?;
    settings.check_allowed().map_err(|(key, problem)| {
        // The line that set it (a `limit-nice:` may be what makes a default nice refused).
        let line = directives.iter().rev().find(|d| d.key == key).map_or(last, |d| d.line);
        DirectiveError { line, problem }
    })?;
    Ok(settings)
}

/// Reads the `BEGIN TRC` ... `END TRC` block of a task file's text and applies it on top of
/// `defaults`. A file without the block gets the defaults.
pub fn parse_header(text: &str, defaults: &TaskSettings) -> Result<TaskSettings, DirectiveError> {
    apply(defaults, &header_directives(text)?)
}

/// A header block must start on one of the file's first `HEADER_START_LINES` lines (room for a
/// `#!` line, a licence or a few comments before it).
pub const HEADER_START_LINES: usize = 20;
/// A header block is at most `HEADER_MAX_LINES` lines long, its BEGIN and END lines included.
pub const HEADER_MAX_LINES: usize = 200;

/// The directives of the header block, in order (none without a block). Only the form is
/// checked here; the values are checked by [`apply`]. The block must start within the first
/// [`HEADER_START_LINES`] lines and end within [`HEADER_MAX_LINES`]; a `BEGIN TRC` line anywhere
/// else in the file (past the bound, or a second block) is an error, never ignored.
pub fn header_directives(text: &str) -> Result<Vec<Directive>, DirectiveError> {
    let mut lines = text.lines().enumerate();
    let mut directives = Vec::new();
    let first = lines.by_ref().find_map(|(n, line)| block_marker(line, "BEGIN TRC").map(|m| (n, m)));
    let Some((begin, marker)) = first else {
        return Ok(directives);
    };
    if begin >= HEADER_START_LINES {
        return Err(DirectiveError {
            line: begin + 1,
            problem: format!(
                "\"{marker} BEGIN TRC\" past line {HEADER_START_LINES}: a header block must start within the first {HEADER_START_LINES} lines of the file"
            ),
        });
    }
    let comment = marker.chars().next().unwrap_or('#');
    let mut ended = false;
    for (n, line) in lines.by_ref() {
        let err = |problem: String| DirectiveError { line: n + 1, problem };
        if n - begin >= HEADER_MAX_LINES {
            return Err(DirectiveError {
                line: begin + 1,
                problem: format!(
                    "the TRC block has no \"{marker} END TRC\" line within {HEADER_MAX_LINES} lines (a header block is at most {HEADER_MAX_LINES} lines long)"
                ),
            });
        }
        if block_marker(line, "END TRC").is_some() {
            ended = true;
            break;
        }
        let body = line.trim_start();
        let Some(body) = body.strip_prefix(comment) else {
            return Err(err(format!(
                "not a comment line inside the TRC block (it starts at line {}; end it with a \"{marker} END TRC\" line)",
                begin + 1
            )));
        };
        let whole = body.trim_start_matches(comment).trim();
        let body = strip_trailing_comment(whole, &marker);
        if body.is_empty() {
            continue;
        }
        let (key, value) = body
            .split_once(':')
            .ok_or_else(|| err(format!("\"{body}\" is not a \"key: value\" directive")))?;
        let key = key.trim();
        // Values in shell quoting keep a comment character inside their quotes.
        let value = match whole.split_once(':') {
            Some((_, value)) if QUOTED_KEYS.contains(&key) => strip_trailing_comment_quoted(value, &marker),
            _ => value,
        };
        directives.push(Directive { line: n + 1, key: key.to_owned(), value: value.trim().to_owned() });
    }
    if !ended {
        return Err(DirectiveError {
            line: begin + 1,
            problem: format!("the TRC block has no \"{marker} END TRC\" line"),
        });
    }
    match lines.find_map(|(n, line)| block_marker(line, "BEGIN TRC").map(|m| (n, m))) {
        Some((n, again)) => Err(DirectiveError {
            line: n + 1,
            problem: format!(
                "a second \"{again} BEGIN TRC\" (the header block at line {} is the only one a file may have)",
                begin + 1
            ),
        }),
        None => Ok(directives),
    }
}

/// The comment marker of a `### BEGIN TRC`-style line (`###`, `//`, `--`...), if it is one.
fn block_marker(line: &str, words: &str) -> Option<String> {
    let line = line.trim();
    let marker = line.strip_suffix(words)?.trim_end();
    let is_marker = !marker.is_empty() && marker.chars().all(|c| c.is_ascii_punctuation());
    is_marker.then(|| marker.to_owned())
}

/// `on-failure   # never | ...` → `on-failure`: a comment after the value, introduced by
/// whitespace and the file's comment character.
fn strip_trailing_comment<'a>(body: &'a str, marker: &str) -> &'a str {
    let mut prev_space = false;
    for (i, c) in body.char_indices() {
        if prev_space && starts_comment(&body[i..], marker) {
            return body[..i].trim_end();
        }
        prev_space = c.is_whitespace();
    }
    body
}

/// Whether `rest` starts a comment in the file's syntax: `#` (or `;`...) at once; for `--`
/// and `//` the two characters and then a space or the end, so that `--port 8080` and `-q`
/// are words of a value, not comments.
fn starts_comment(rest: &str, marker: &str) -> bool {
    let comment = marker.chars().next().unwrap_or('#');
    match comment {
        '-' | '/' => {
            let mut chars = rest.chars();
            chars.next() == Some(comment)
                && chars.next() == Some(comment)
                && chars.next().is_none_or(char::is_whitespace)
        }
        _ => rest.starts_with(comment),
    }
}

/// Keys whose values are read with shell quoting (`command: /bin/x 'a #b'`, `env: K="a #b"`):
/// a comment after them starts outside the quotes.
const QUOTED_KEYS: [&str; 2] = ["command", "env"];

/// As [`strip_trailing_comment`], but a comment character inside single or double quotes, or
/// after a backslash, starts no comment. With unbalanced quotes (`env: K=it's  # c`) the plain
/// rule holds.
fn strip_trailing_comment_quoted<'a>(body: &'a str, marker: &str) -> &'a str {
    let (mut quote, mut escaped, mut prev_space) = (None, false, false);
    for (i, c) in body.char_indices() {
        let literal = escaped;
        match quote {
            _ if escaped => escaped = false,
            Some('\'') if c == '\'' => quote = None,
            Some('\'') => {}
            Some(_) if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\\' => escaped = true,
            None if c == '\'' || c == '"' => quote = Some(c),
            None if prev_space && starts_comment(&body[i..], marker) => return body[..i].trim_end(),
            None => {}
        }
        prev_space = quote.is_none() && !literal && c.is_whitespace();
    }
    if quote.is_some() {
        return strip_trailing_comment(body, marker);
    }
    body
}

/// The directives in the header of the task file at `path`. The whole file is read: the block
/// may end anywhere within its line bound, and a `BEGIN TRC` line past the bound must be seen to
/// be refused.
pub fn read_directives(path: &Path) -> std::io::Result<Result<Vec<Directive>, DirectiveError>> {
    let text = std::fs::read(path)?;
    Ok(header_directives(&String::from_utf8_lossy(&text)))
}

/// A duration in humantime syntax (`5s`, `1m 30s`, `250ms`), or a plain number of seconds
/// (`5`, `0.5`) as `sleep` takes it.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|_| "not a valid number of seconds".to_owned());
    }
    humantime::parse_duration(text).map_err(|e| format!("not a duration ({e}); write e.g. 5s, 500ms, 1m"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_EXAMPLE: &str = "\
#!/bin/bash
### BEGIN TRC
# restart: on-failure        # never (default) | on-failure | always
# restart-delay: 1s          # first delay; doubles on each restart up to restart-max-delay
# restart-max-delay: 30s     # the doubling resets once the task has stayed up this long
# start-limit: 5 in 60s      # more starts than this in the window: give up
# stop-timeout: 5s           # SIGTERM (or stop-signal), then SIGKILL after this
# stop-signal: TERM
# log-prefix: yes            # no: pass output through untouched
### END TRC
exec my-daemon
";

    #[test]
    fn the_spec_example_parses() {
        let s = parse_header(SPEC_EXAMPLE, &TaskSettings::default()).unwrap();
        assert_eq!(s.restart, Restart::OnFailure);
        assert_eq!(s.restart_delay, Duration::from_secs(1));
        assert_eq!(s.restart_max_delay, Duration::from_secs(30));
        assert_eq!(s.start_limit, Some(StartLimit { starts: 5, window: Duration::from_secs(60) }));
        assert_eq!(s.stop_signal, Signal::SIGTERM);
        assert!(s.log_prefix);
    }

    #[test]
    fn other_comment_syntaxes() {
        let js = "// BEGIN TRC\n// restart: always\n// stop-signal: int // Ctrl-C\n// END TRC\n";
        let s = parse_header(js, &TaskSettings::default()).unwrap();
        assert_eq!(s.restart, Restart::Always);
        assert_eq!(s.stop_signal, Signal::SIGINT);
        let lua = "-- BEGIN TRC\n-- restart-delay: 250ms\n-- start-limit: none\n-- END TRC\n";
        let s = parse_header(lua, &TaskSettings::default()).unwrap();
        assert_eq!(s.restart_delay, Duration::from_millis(250));
        assert_eq!(s.start_limit, None);
        // Options of a value are words, not comments: only `--`/`//` and a space start one.
        let sql = "-- BEGIN TRC\n-- command: /app/srv --port 8080 -q   -- the server\n-- END TRC\n";
        let s = parse_header(sql, &TaskSettings::default()).unwrap();
        let argv: Vec<&str> = s.command.iter().flatten().map(String::as_str).collect();
        assert_eq!(argv, ["/app/srv", "--port", "8080", "-q"]);
        let js = "// BEGIN TRC\n// health: check curl -sf http://127.0.0.1/ //x // c\n// END TRC\n";
        let s = parse_header(js, &TaskSettings::default()).unwrap();
        assert_eq!(format!("{:?}", s.health).matches("//x").count(), 1, "{:?}", s.health);
    }

    #[test]
    fn quoted_values_keep_their_comment_characters() {
        let text = "### BEGIN TRC\n\
# command: /bin/hello 'a #b' \"c #d\" e\\ #f  # a comment\n\
# env: K=\"v #w\"   # a comment\n\
# env: L=it's # a comment\n\
# restart: never # 'a comment'\n\
### END TRC\n";
        let d = header_directives(text).unwrap();
        let values: Vec<&str> = d.iter().map(|d| d.value.as_str()).collect();
        assert_eq!(values, ["/bin/hello 'a #b' \"c #d\" e\\ #f", "K=\"v #w\"", "L=it's", "never"]);
        let s = apply(&TaskSettings::default(), &d).unwrap();
        assert_eq!(s.command.unwrap(), ["/bin/hello", "a #b", "c #d", "e #f"]);
        assert_eq!(s.env[0], ("K".to_owned(), "v #w".to_owned()));
    }

    #[test]
    fn no_block_means_defaults() {
        let defaults = TaskSettings { restart: Restart::Always, ..TaskSettings::default() };
        assert_eq!(parse_header("echo hi\n# restart: never\n", &defaults).unwrap(), defaults);
    }

    #[test]
    fn errors_carry_the_line() {
        let cases = [
            ("### BEGIN TRC\n# restrat: always\n### END TRC\n", 2, "unknown directive \"restrat\""),
            ("### BEGIN TRC\n# restart: sometimes\n### END TRC\n", 2, "unknown restart policy"),
            ("x\n### BEGIN TRC\n# restart-delay: soon\n### END TRC\n", 3, "not a duration"),
            ("### BEGIN TRC\n# start-limit: 5 per minute\n### END TRC\n", 2, "is not a start limit"),
            ("### BEGIN TRC\n# start-limit: 0 in 1s\n### END TRC\n", 2, "at least 1 start"),
            ("### BEGIN TRC\n# stop-signal: FOO\n### END TRC\n", 2, "unknown signal"),
            ("### BEGIN TRC\n# log-prefix: maybe\n### END TRC\n", 2, "is not yes or no"),
            ("### BEGIN TRC\n# restart always\n### END TRC\n", 2, "is not a \"key: value\""),
            ("### BEGIN TRC\nrestart: always\n### END TRC\n", 2, "not a comment line"),
            ("\n### BEGIN TRC\n# restart: always\n", 2, "has no \"### END TRC\" line"),
            (
                "### BEGIN TRC\n# restart-delay: 10s\n# restart-max-delay: 1s\n### END TRC\n",
                3,
                "shorter than",
            ),
        ];
        for (text, line, needle) in cases {
            let err = parse_header(text, &TaskSettings::default()).unwrap_err();
            assert_eq!(err.line, line, "{text:?}: {err:?}");
            assert!(err.problem.contains(needle), "{text:?}: {}", err.problem);
        }
    }

    #[test]
    fn a_header_ending_past_64_kib_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("async.web");
        let long = format!("#!/bin/bash\n# {}\n", "x".repeat(70 * 1024));
        let text = format!("{long}### BEGIN TRC\n# restart: always\n### END TRC\nexec sleep 1\n");
        std::fs::write(&path, &text).unwrap();
        let directives = read_directives(&path).unwrap().unwrap();
        assert_eq!(directives.len(), 1);
        assert_eq!((directives[0].line, directives[0].key.as_str()), (4, "restart"));
        // A block of comments longer than 64 KiB, within the line bound.
        let filler = format!("#{}\n", "#".repeat(1024)).repeat(100);
        let text = format!("### BEGIN TRC\n{filler}# stop-signal: INT\n### END TRC\n");
        std::fs::write(&path, &text).unwrap();
        let s = apply(&TaskSettings::default(), &read_directives(&path).unwrap().unwrap()).unwrap();
        assert_eq!(s.stop_signal, Signal::SIGINT);
    }

    #[test]
    fn a_block_out_of_bounds_is_an_error_never_ignored() {
        let late = format!("{}### BEGIN TRC\n# restart: sometimes\n### END TRC\n", "echo\n".repeat(20));
        let err = header_directives(&late).unwrap_err();
        assert_eq!(err.line, 21, "{err:?}");
        assert!(err.problem.contains("must start within the first 20 lines"), "{}", err.problem);
        // Just inside the bound is fine.
        let ok = format!("{}### BEGIN TRC\n# restart: always\n### END TRC\n", "echo\n".repeat(19));
        assert_eq!(header_directives(&ok).unwrap().len(), 1);
        // Past 64 KiB (once silently ignored).
        let far = format!(
            "# {}\n{}### BEGIN TRC\n# restart: sometimes\n### END TRC\n",
            "x".repeat(70 * 1024),
            "echo\n".repeat(25)
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("async.web");
        std::fs::write(&path, far).unwrap();
        let err = read_directives(&path).unwrap().unwrap_err();
        assert_eq!(err.line, 27, "{err:?}");
        // A second block.
        let two = "### BEGIN TRC\n# restart: always\n### END TRC\necho\n// BEGIN TRC\n// END TRC\n";
        let err = header_directives(two).unwrap_err();
        assert_eq!(err.line, 5, "{err:?}");
        assert!(err.problem.contains("a second \"// BEGIN TRC\""), "{}", err.problem);
        // A block longer than its bound.
        let long = format!("### BEGIN TRC\n{}### END TRC\n", "#\n".repeat(HEADER_MAX_LINES - 1));
        let err = header_directives(&long).unwrap_err();
        assert_eq!(err.line, 1, "{err:?}");
        assert!(err.problem.contains("within 200 lines"), "{}", err.problem);
        let longest = format!("### BEGIN TRC\n{}### END TRC\n", "#\n".repeat(HEADER_MAX_LINES - 2));
        assert!(header_directives(&longest).unwrap().is_empty());
    }

    #[test]
    fn defaults_from_rc_variables() {
        let vars = [("RC_RESTART", "always"), ("RC_START_LIMIT", "3 in 10s"), ("RC_STOP_SIGNAL", "SIGINT")];
        let s =
            TaskSettings::from_lookup(&|n| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string()))
                .unwrap();
        assert_eq!(s.restart, Restart::Always);
        assert_eq!(s.start_limit, Some(StartLimit { starts: 3, window: Duration::from_secs(10) }));
        assert_eq!(s.stop_signal, Signal::SIGINT);
        let err =
            TaskSettings::from_lookup(&|n| (n == "RC_RESTART").then(|| "maybe".to_owned())).unwrap_err();
        assert!(err.starts_with("RC_RESTART=\"maybe\": unknown restart policy"), "{err}");
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
    }

    /// `man/trc.d.5` is hand-written: each key has its `.TP` entry there, tagged
    /// `\fBkey:\fR`, that gives its default and its `RC_*` variable; and it documents no key
    /// that `KEYS` does not have.
    #[test]
    fn the_man_page_documents_every_directive() {
        let page = include_str!("../../man/trc.d.5");
        let entries: Vec<(&str, &str)> = page
            .split("\n.TP\n")
            .skip(1)
            .filter_map(|entry| {
                let tag = entry.lines().next()?.strip_prefix("\\fB")?;
                let (key, _) = tag.split_once(":\\fR")?;
                Some((key, entry.split("\n.S").next().unwrap_or(entry)))
            })
            .collect();
        for (key, var) in KEYS {
            let roff_key = key.replace('-', "\\-");
            let found: Vec<_> = entries.iter().filter(|(k, _)| *k == roff_key).collect();
            assert_eq!(
                found.len(),
                1,
                "man/trc.d.5: {key}: expected one \".TP\" entry tagged \\fB{roff_key}:\\fR"
            );
            let text = found[0].1.replace('\n', " ");
            assert!(text.contains("Default: "), "man/trc.d.5: {key}: no \"Default: \"");
            match var {
                Some(var) => {
                    let var = format!("Group default: \\fB{var}\\fR");
                    assert!(text.contains(&var), "man/trc.d.5: {key}: no \"{var}\"");
                }
                None => {
                    assert!(text.contains("No group default"), "man/trc.d.5: {key}: no \"No group default\"")
                }
            }
        }
        for (key, _) in &entries {
            let key = key.replace("\\-", "-");
            assert!(
                KEYS.iter().any(|(k, _)| *k == key),
                "man/trc.d.5 documents \"{key}:\", which is not a directive"
            );
        }
    }
}
