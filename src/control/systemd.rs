//! The systemd backend: a task is a unit `NAME.service` written by trcctl into
//! /etc/systemd/system (or, for `--user`, ~/.config/systemd/user), marked with a first line
//! `# Managed by trcctl` so that `list` shows those units only, driven with `systemctl` and read
//! with `journalctl`.
//!
//! Directives map to unit settings: `restart` → `Restart=` (`always` by default, as a service
//! manager is expected to keep a service up; `never` → `no`), `restart-delay` → `RestartSec=`
//! (a fixed delay: it does not double), `stop-signal` → `KillSignal=`, `stop-timeout` →
//! `TimeoutStopSec=`, `start-limit` → `StartLimitBurst=`/`StartLimitIntervalSec=`,
//! `log-prefix: no` is what the journal does anyway; `restart-max-delay` is refused.
//!
//! `reload` is `systemctl daemon-reload`: systemd starts and stops nothing on it, so every
//! managed unit is reported as unchanged.

use super::backend::{absolute_cwd, directive_settings, find_program, run_tool, write_atomically};
use super::manager::{check_task_name, EnsureSpec, Ensured, Manager, ManagerError, Result};
use super::protocol::{LogLine, ReloadReport, TaskInfo};
use crate::config::{Restart, TaskSettings};
use nix::sys::signal::Signal;
use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The first line of every unit trcctl writes.
pub const MARKER: &str = "# Managed by trcctl";
/// The directives a unit can honour (besides `log-prefix: no`).
const SUPPORTED: [&str; 5] = ["restart", "restart-delay", "stop-signal", "stop-timeout", "start-limit"];
/// What `status` asks systemd about a unit.
const PROPERTIES: &str = "Id,LoadState,ActiveState,SubState,MainPID,ExecMainStartTimestampMonotonic,\
                          ExecMainExitTimestampMonotonic,ExecMainCode,ExecMainStatus,NRestarts,FragmentPath";

pub struct Systemd {
    user: bool,
    unit_dir: PathBuf,
    systemctl: PathBuf,
}

impl Systemd {
    /// systemd on this machine: it runs as PID 1 (/run/systemd/system exists) and `systemctl` is
    /// in PATH. `user`: the user's manager and units (`systemctl --user`).
    pub fn detect(user: bool) -> Result<Systemd> {
        if !Path::new("/run/systemd/system").is_dir() {
            return Err(ManagerError::Unavailable(
                "systemd is not running as PID 1 on this machine (no /run/systemd/system)".to_owned(),
            ));
        }
        let systemctl = find_program("systemctl")
            .ok_or_else(|| ManagerError::Unavailable("systemd's systemctl is not in PATH".to_owned()))?;
        if user {
            // The user's manager listens on $XDG_RUNTIME_DIR/systemd/private: without it every
            // verb would fail, and `list` would show an empty table as if nothing ran.
            let runtime = std::env::var_os("XDG_RUNTIME_DIR")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(format!("/run/user/{}", nix::unistd::geteuid())));
            let socket = runtime.join("systemd/private");
            if !socket.exists() {
                return Err(ManagerError::Unavailable(format!(
                    "no systemd user manager runs for this user (no {}); log in with a session, or `loginctl enable-linger`",
                    socket.display()
                )));
            }
        }
        let unit_dir = if user {
            let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
            let config = var("XDG_CONFIG_HOME")
                .or_else(|| var("HOME").map(|h| h.join(".config")))
                .ok_or_else(|| {
                    ManagerError::Unavailable(
                        "no place for user units: set HOME or XDG_CONFIG_HOME".to_owned(),
                    )
                })?;
            config.join("systemd/user")
        } else {
            PathBuf::from("/etc/systemd/system")
        };
        Ok(Systemd { user, unit_dir, systemctl })
    }

    /// Where the units are written.
    pub fn unit_dir(&self) -> &Path {
        &self.unit_dir
    }

    fn unit_path(&self, name: &str) -> PathBuf {
        self.unit_dir.join(format!("{name}.service"))
    }

    fn systemctl(&self) -> Command {
        let mut command = Command::new(&self.systemctl);
        if self.user {
            command.arg("--user");
        }
        command
    }

    /// `systemctl ARGS...`; a manager that does not answer is `Unavailable`.
    fn run(&self, args: &[&str]) -> Result<String> {
        run_tool(self.systemctl().args(args)).map_err(|e| match e {
            ManagerError::Refused(text)
                if text.contains("Failed to connect to bus")
                    || text.contains("has not been booted with systemd") =>
            {
                ManagerError::Unavailable(text)
            }
            other => other,
        })
    }

    /// The units trcctl manages: files in the unit dir that start with the marker.
    fn managed(&self) -> Result<Vec<String>> {
        let entries = match fs::read_dir(&self.unit_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ManagerError::Refused(format!("{}: {e}", self.unit_dir.display()))),
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| Some((e.path(), e.file_name().to_str()?.strip_suffix(".service")?.to_owned())))
            .filter(|(path, _)| is_managed(path))
            .map(|(_, name)| name)
            .collect();
        names.sort();
        Ok(names)
    }

    /// The state of `names` (one `systemctl show` for all of them).
    fn infos(&self, names: &[String]) -> Result<Vec<TaskInfo>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let units: Vec<String> = names.iter().map(|n| format!("{n}.service")).collect();
        let mut args = vec!["show", "-p", PROPERTIES, "--"];
        args.extend(units.iter().map(String::as_str));
        let out = self.run(&args)?;
        let now = monotonic_usec();
        let blocks = out.split("\n\n").filter(|b| !b.trim().is_empty());
        Ok(names.iter().zip(blocks).map(|(name, block)| task_info(name, &properties(block), now)).collect())
    }

    fn info(&self, name: &str) -> Result<TaskInfo> {
        let info = self.infos(&[name.to_owned()])?.pop().unwrap_or_default();
        if info.state == "not-found" {
            return Err(ManagerError::Refused(format!(
                "unknown service \"{name}\" (no unit {name}.service)"
            )));
        }
        Ok(info)
    }

    fn verb(&self, verb: &str, name: &str) -> Result<TaskInfo> {
        check_unit_name(name)?;
        self.info(name)?;
        self.run(&[verb, "--", &format!("{name}.service")])?;
        self.info(name)
    }
}

/// A task's name as the user may write it, `web` or `web.service`: the unit is `web.service`.
fn unit_base(name: &str) -> &str {
    name.strip_suffix(".service").filter(|base| !base.is_empty()).unwrap_or(name)
}

impl Manager for Systemd {
    fn kind(&self) -> &'static str {
        "systemd"
    }

    fn list(&mut self) -> Result<Vec<TaskInfo>> {
        self.infos(&self.managed()?)
    }

    fn status(&mut self, name: &str) -> Result<TaskInfo> {
        let name = unit_base(name);
        check_unit_name(name)?;
        self.info(name)
    }

    fn start(&mut self, name: &str) -> Result<TaskInfo> {
        let name = unit_base(name);
        self.verb("start", name)
    }

    /// `systemctl stop` returns when the stop job is done: the service has exited.
    fn stop(&mut self, name: &str) -> Result<TaskInfo> {
        let name = unit_base(name);
        self.verb("stop", name)
    }

    fn restart(&mut self, name: &str) -> Result<TaskInfo> {
        let name = unit_base(name);
        self.verb("restart", name)
    }

    /// `systemctl kill`: to every process of the unit (its cgroup), as trc signals a task's
    /// process group.
    fn signal(&mut self, name: &str, signal: Signal) -> Result<()> {
        let name = unit_base(name);
        check_unit_name(name)?;
        if self.info(name)?.pid.is_none() {
            return Err(ManagerError::Refused(format!("{name} is not running")));
        }
        self.run(&["kill", "-s", signal.as_str(), "--", &format!("{name}.service")]).map(|_| ())
    }

    fn ensure(&mut self, spec: &EnsureSpec) -> Result<(Ensured, TaskInfo)> {
        let spec = &EnsureSpec { name: unit_base(&spec.name).to_owned(), ..spec.clone() };
        let name = spec.name.as_str();
        check_unit_name(name)?;
        let unit = format!("{name}.service");
        if spec.command.is_empty() {
            self.info(name)?;
            self.run(&["start", "--", &unit])?;
            return Ok((Ensured::Unchanged, self.info(name)?));
        }
        let text = unit_file_for(&absolute_cwd(spec)?, self.user)?;
        let path = self.unit_path(name);
        let ensured = match fs::read_to_string(&path) {
            Ok(old) if !old.starts_with(MARKER) => {
                return Err(ManagerError::Refused(format!(
                    "{} exists and is not managed by trcctl (no \"{MARKER}\" line)",
                    path.display()
                )))
            }
            Ok(old) if old == text => Ensured::Unchanged,
            Ok(_) => Ensured::Updated,
            Err(_) => {
                // A unit of that name elsewhere (/usr/lib/systemd/system...) would be shadowed.
                let loaded = properties(&self.run(&["show", "-p", "LoadState,FragmentPath", "--", &unit])?);
                let fragment = loaded.get("FragmentPath").map(String::as_str).unwrap_or("");
                if !fragment.is_empty() {
                    return Err(ManagerError::Refused(format!("a unit {unit} exists already ({fragment})")));
                }
                Ensured::Created
            }
        };
        if ensured != Ensured::Unchanged {
            fs::create_dir_all(&self.unit_dir)
                .and_then(|()| write_atomically(&path, text.as_bytes(), 0o644))
                .map_err(|e| ManagerError::Refused(format!("cannot write {}: {e}", path.display())))?;
            self.run(&["daemon-reload"])?;
        }
        self.run(&["enable", "--now", "--", &unit])?;
        if ensured == Ensured::Updated {
            self.run(&["restart", "--", &unit])?;
        }
        Ok((ensured, self.info(name)?))
    }

    fn start_all(&mut self) -> Result<Vec<String>> {
        let mut started = Vec::new();
        for info in self.list()? {
            if !matches!(info.state.as_str(), "running" | "starting" | "reloading") {
                self.run(&["start", "--", &format!("{}.service", info.name)])?;
                started.push(info.name);
            }
        }
        Ok(started)
    }

    fn logs(
        &mut self,
        name: &str,
        lines: usize,
        follow: bool,
        sink: &mut dyn FnMut(LogLine) -> std::io::Result<()>,
    ) -> Result<()> {
        let name = unit_base(name);
        check_unit_name(name)?;
        self.info(name)?;
        let journalctl = find_program("journalctl")
            .ok_or_else(|| ManagerError::Unavailable("systemd's journalctl is not in PATH".to_owned()))?;
        let mut command = Command::new(journalctl);
        command.arg(if self.user { "--user-unit" } else { "--unit" }).arg(format!("{name}.service"));
        command.args(["--lines", &lines.to_string(), "--output", "cat", "--no-pager"]);
        if follow {
            command.arg("--follow");
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| ManagerError::Unavailable(format!("cannot run journalctl: {e}")))?;
        let stdout = child.stdout.take().expect("piped");
        let mut reader_gone = false;
        for raw in BufReader::new(stdout).split(b'\n') {
            let Ok(raw) = raw else { break };
            let text = String::from_utf8_lossy(&raw).into_owned();
            if sink(LogLine { stream: "stdout".to_owned(), text }).is_err() {
                reader_gone = true;
                break;
            }
        }
        if reader_gone {
            let _ = child.kill();
        }
        let output =
            child.wait_with_output().map_err(|e| ManagerError::Unavailable(format!("journalctl: {e}")))?;
        if !reader_gone && !output.status.success() {
            return Err(ManagerError::Refused(format!(
                "journalctl failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        Ok(())
    }

    fn reload(&mut self) -> Result<ReloadReport> {
        self.run(&["daemon-reload"])?;
        Ok(ReloadReport { unchanged: self.managed()?, ..ReloadReport::default() })
    }
}

/// A unit name systemd takes as it is: a task name without `@` (that would make a template or
/// an instance).
fn check_unit_name(name: &str) -> Result<()> {
    check_task_name(name)?;
    if name.contains('@') {
        return Err(ManagerError::Refused(format!(
            "\"{name}\": a systemd service name with '@' is a template or an instance; use another name"
        )));
    }
    Ok(())
}

fn is_managed(path: &Path) -> bool {
    fs::read_to_string(path).is_ok_and(|text| text.lines().next() == Some(MARKER))
}

/// The unit file for `spec` as a system unit.
pub fn unit_file(spec: &EnsureSpec) -> Result<String> {
    unit_file_for(spec, false)
}

/// The unit file for `spec`; `user`: for the user's manager (`WantedBy=default.target`).
pub fn unit_file_for(spec: &EnsureSpec, user: bool) -> Result<String> {
    check_unit_name(&spec.name)?;
    let Some(program) = spec.command.first() else {
        return Err(ManagerError::Refused(format!("{}: no command to run", spec.name)));
    };
    // systemd reads these prefixes off the first word even when it is quoted.
    if program.starts_with(['-', '@', ':', '+', '!']) {
        return Err(ManagerError::Refused(format!(
            "a program name cannot start with '{}' in a unit",
            &program[..1]
        )));
    }
    let defaults = TaskSettings { restart: Restart::Always, ..TaskSettings::default() };
    let settings = directive_settings(&spec.directives, defaults, &SUPPORTED, "systemd")?;
    let given = |key: &str| spec.directives.iter().any(|(k, _)| k == key);

    let mut unit = format!("{MARKER}\n[Unit]\nDescription={} (managed by trcctl)\n", spec.name);
    if given("start-limit") {
        match settings.start_limit {
            Some(limit) => unit.push_str(&format!(
                "StartLimitIntervalSec={}\nStartLimitBurst={}\n",
                time_span(limit.window),
                limit.starts
            )),
            None => unit.push_str("StartLimitIntervalSec=0\n"),
        }
    }
    let words: Vec<String> = spec.command.iter().map(|w| quote_exec_word(w)).collect::<Result<_>>()?;
    unit.push_str(&format!("\n[Service]\nExecStart={}\n", words.join(" ")));
    if let Some(cwd) = &spec.cwd {
        unit.push_str(&format!("WorkingDirectory={}\n", working_directory(cwd)?));
    }
    for (key, value) in &spec.env {
        if key.is_empty()
            || key.starts_with(|c: char| c.is_ascii_digit())
            || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(ManagerError::Refused(format!("bad variable name \"{key}\"")));
        }
        unit.push_str(&format!("Environment={}\n", quote_word(&format!("{key}={value}"), false)?));
    }
    let restart = match settings.restart {
        Restart::Always => "always",
        Restart::OnFailure => "on-failure",
        Restart::Never => "no",
    };
    unit.push_str(&format!("Restart={restart}\n"));
    if given("restart-delay") {
        unit.push_str(&format!("RestartSec={}\n", time_span(settings.restart_delay)));
    }
    if given("stop-signal") {
        unit.push_str(&format!("KillSignal={}\n", settings.stop_signal.as_str()));
    }
    if given("stop-timeout") {
        unit.push_str(&format!("TimeoutStopSec={}\n", time_span(settings.stop_timeout)));
    }
    let target = if user { "default.target" } else { "multi-user.target" };
    unit.push_str(&format!("\n[Install]\nWantedBy={target}\n"));
    Ok(unit)
}

/// A duration as a systemd time span, in milliseconds (exact for what humantime gives, bar
/// sub-millisecond parts).
fn time_span(duration: Duration) -> String {
    format!("{}ms", duration.as_millis())
}

/// One word of `ExecStart=`: quoted, with `$` doubled so systemd does not expand variables.
fn quote_exec_word(word: &str) -> Result<String> {
    quote_word(word, true)
}

/// A double-quoted word as systemd unquotes it: C escapes for `\`, `"` and control
/// characters, `%%` for `%` (specifiers), and with `exec`, `$$` for `$`.
fn quote_word(word: &str, exec: bool) -> Result<String> {
    let mut quoted = String::from("\"");
    for c in word.chars() {
        match c {
            '\0' => return Err(ManagerError::Refused(format!("cannot put a NUL byte in a unit: {word:?}"))),
            '\\' => quoted.push_str("\\\\"),
            '"' => quoted.push_str("\\\""),
            '%' => quoted.push_str("%%"),
            '$' if exec => quoted.push_str("$$"),
            '\n' => quoted.push_str("\\n"),
            '\t' => quoted.push_str("\\t"),
            c if c.is_ascii_control() => quoted.push_str(&format!("\\x{:02x}", c as u32)),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    Ok(quoted)
}

/// `WorkingDirectory=` takes the rest of the line unquoted, with specifiers.
fn working_directory(cwd: &Path) -> Result<String> {
    let text = cwd.to_str().ok_or_else(|| ManagerError::Refused(format!("{}: not UTF-8", cwd.display())))?;
    if !cwd.is_absolute() || text.chars().any(|c| c.is_control()) || text.trim() != text {
        return Err(ManagerError::Refused(format!(
            "working directory {text:?}: a unit needs an absolute path without control characters or edge spaces"
        )));
    }
    Ok(text.replace('%', "%%"))
}

/// `systemctl show` output: `Key=Value` lines.
fn properties(block: &str) -> HashMap<String, String> {
    block.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

/// A unit's state in TaskInfo's words; `now`: CLOCK_MONOTONIC in µs, systemd's clock for the
/// `...Monotonic` timestamps.
fn task_info(name: &str, p: &HashMap<String, String>, now: u64) -> TaskInfo {
    let get = |key: &str| p.get(key).map(String::as_str).unwrap_or("");
    let number = |key: &str| get(key).parse::<u64>().unwrap_or(0);
    let (active, sub) = (get("ActiveState"), get("SubState"));
    let state = match (active, sub) {
        _ if get("LoadState") == "not-found" => "not-found",
        ("active" | "reloading", _) => "running",
        ("activating", "auto-restart") => "waiting",
        ("activating", _) => "starting",
        ("deactivating", _) => "stopping",
        ("inactive", _) => "stopped",
        ("failed", _) => "failed",
        (other, _) => other,
    };
    let started = number("ExecMainStartTimestampMonotonic");
    let exited = number("ExecMainExitTimestampMonotonic");
    let since = |at: u64| (at > 0).then(|| now.saturating_sub(at) as f64 / 1e6);
    let pid = get("MainPID").parse::<i32>().ok().filter(|&p| p > 0);
    let last_status = (exited > 0).then(|| {
        let status = get("ExecMainStatus").parse::<i32>().unwrap_or(0);
        // ExecMainCode is a CLD_* code: 1 exited, 2 killed, 3 dumped.
        if get("ExecMainCode") == "1" {
            status
        } else {
            128 + status
        }
    });
    TaskInfo {
        name: name.to_owned(),
        state: state.to_owned(),
        pid,
        since_secs: if pid.is_some() { since(started) } else { since(exited) },
        starts: if started > 0 { number("NRestarts") + 1 } else { 0 },
        last_status,
        command: get("FragmentPath").to_owned(),
        ..TaskInfo::default()
    }
}

fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(command: &[&str]) -> EnsureSpec {
        EnsureSpec {
            name: "web".into(),
            command: command.iter().map(|s| s.to_string()).collect(),
            ..EnsureSpec::default()
        }
    }

    #[test]
    fn exec_words_are_quoted() {
        assert_eq!(quote_exec_word("a b").unwrap(), "\"a b\"");
        assert_eq!(quote_exec_word(r#"say "hi" \ 100% $HOME"#).unwrap(), r#""say \"hi\" \\ 100%% $$HOME""#);
        assert_eq!(quote_exec_word("tab\there\nnl\x01").unwrap(), "\"tab\\there\\nnl\\x01\"");
        assert_eq!(quote_word("K=$v %", false).unwrap(), "\"K=$v %%\"");
        assert!(quote_exec_word("nul\0").is_err());
    }

    #[test]
    fn units() {
        let unit = unit_file(&spec(&["/bin/sleep", "1000"])).unwrap();
        assert_eq!(
            unit,
            "# Managed by trcctl\n[Unit]\nDescription=web (managed by trcctl)\n\n[Service]\n\
             ExecStart=\"/bin/sleep\" \"1000\"\nRestart=always\n\n[Install]\nWantedBy=multi-user.target\n"
        );
        let mut s = spec(&["/bin/sleep", "1000"]);
        s.directives = [
            ("restart", "never"),
            ("restart-delay", "1.5s"),
            ("stop-signal", "int"),
            ("start-limit", "3 in 1m"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let unit = unit_file_for(&s, true).unwrap();
        for line in [
            "Restart=no\n",
            "RestartSec=1500ms\n",
            "KillSignal=SIGINT\n",
            "StartLimitIntervalSec=60000ms\nStartLimitBurst=3\n",
            "WantedBy=default.target\n",
        ] {
            assert!(unit.contains(line), "{line:?} not in\n{unit}");
        }
        s.directives = vec![("restart-max-delay".into(), "1m".into())];
        assert!(unit_file(&s).is_err());
        assert!(unit_file(&spec(&["-/bin/sleep"])).is_err());
        assert!(unit_file(&spec(&[])).is_err());
        assert!(unit_file(&EnsureSpec { name: "a@b".into(), ..spec(&["/bin/true"]) }).is_err());
    }

    #[test]
    fn show_output() {
        let p = properties(
            "Id=web.service\nLoadState=loaded\nActiveState=active\nSubState=running\nMainPID=42\n\
             ExecMainStartTimestampMonotonic=1000000\nExecMainExitTimestampMonotonic=0\nNRestarts=2\n\
             FragmentPath=/etc/systemd/system/web.service",
        );
        let info = task_info("web", &p, 6_000_000);
        assert_eq!(
            (info.state.as_str(), info.pid, info.since_secs, info.starts),
            ("running", Some(42), Some(5.0), 3)
        );
        let p = properties(
            "ActiveState=failed\nSubState=failed\nMainPID=0\nExecMainStartTimestampMonotonic=1000000\n\
             ExecMainExitTimestampMonotonic=2000000\nExecMainCode=2\nExecMainStatus=9",
        );
        let info = task_info("web", &p, 4_000_000);
        assert_eq!(
            (info.state.as_str(), info.last_status, info.since_secs),
            ("failed", Some(137), Some(2.0))
        );
    }
}
