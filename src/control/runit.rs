//! The runit backend: a task is a service directory in runsvdir's service dir, driven with
//! `sv`. `ensure` builds the directory under a dot name (runsvdir skips those) and renames it
//! into place, so runsvdir never sees half a service:
//!
//! ```text
//! NAME/run          #!/bin/sh, exec 2>&1, then cd/exports/exec of the command (shell_body)
//! NAME/finish       records the exit (exit-status) and applies restart/restart-delay
//! NAME/log/run      exec svlogd -tt ./main   (so `logs` reads NAME/log/main/current)
//! ```
//!
//! Directives: runit restarts a service whenever it exits (waiting a second when it exited at
//! once), so `restart: always` is the default here (trc's is `never`). `restart: never` and
//! `on-failure` are done by `finish`, which tells runsv "down" (`d` to `supervise/control`)
//! after an exit that should not be restarted, and marks the service `finished`;
//! `restart-delay` is a `sleep` in `finish` (runsv starts `run` again when `finish` ends), a
//! fixed delay that does not double. runit has no stop signal, stop timeout or start limit:
//! those directives are refused. Because `sv restart` makes `run` exit with `finish` still in
//! charge, a `restart: never` service restarted with sv itself stays down; `restart` here is
//! a stop and a start instead.
//!
//! Status comes from `supervise/status`, the 20-byte record runsv keeps (and `sv status`
//! reads): TAI64N time of the last change, pid (little-endian), paused, want (`u`/`d`), got
//! TERM, state (0 down, 1 run, 2 finish). `logs` reads `log/main/current` (only the current
//! file, not the rotated ones) and gives the lines without svlogd's timestamp (the file keeps
//! it); `run` sends stderr to stdout, so every line is "stdout".

use super::backend::{directive_settings, find_program, poll_until, run_tool, unique_suffix};
use super::manager::{shell_body, EnsureSpec, Ensured, Manager, ManagerError, Result};
use super::protocol::{LogLine, ReloadReport, TaskInfo};
use super::tail;
use crate::config::{Restart, TaskSettings};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::fs;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The service dir when neither `$SVDIR` nor a running runsvdir names one.
pub const DEFAULT_SVDIR: &str = "/etc/service";
/// How long `ensure` waits for runsvdir to notice a new service (it looks every second or
/// so, and at least every five).
const SUPERVISE_WAIT: Duration = Duration::from_secs(15);
/// How long `start` waits for the service to run, and `stop` for it to go down before it is
/// killed: sv's own default wait.
const SV_WAIT: Duration = Duration::from_secs(7);
/// How long `stop` then waits for a killed service.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// The directives runit can honour.
const SUPPORTED: [&str; 2] = ["restart", "restart-delay"];

pub struct Runit {
    svdir: PathBuf,
    sv: PathBuf,
}

impl Runit {
    /// Services in `svdir` (a runsvdir must watch it for them to run).
    pub fn new(svdir: PathBuf) -> Runit {
        let svdir = std::path::absolute(&svdir).unwrap_or(svdir);
        Runit { svdir, sv: find_program("sv").unwrap_or_else(|| PathBuf::from("sv")) }
    }

    /// runit on this machine: a runsvdir runs and `sv` is in PATH. The service dir is `$SVDIR`,
    /// else the one the (first) running runsvdir watches, else /etc/service.
    pub fn detect() -> Result<Runit> {
        let watched = running_runsvdirs();
        if watched.is_empty() {
            return Err(ManagerError::Unavailable(
                "runit is not running on this machine (no runsvdir process)".into(),
            ));
        }
        let sv = find_program("sv")
            .ok_or_else(|| ManagerError::Unavailable("runit's sv is not in PATH".to_owned()))?;
        let svdir = std::env::var_os("SVDIR")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| watched.into_iter().flatten().next())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SVDIR));
        Ok(Runit { sv, ..Runit::new(svdir) })
    }

    /// The service dir.
    pub fn svdir(&self) -> &Path {
        &self.svdir
    }

    /// The dir of an existing service.
    fn service(&self, name: &str) -> Result<PathBuf> {
        super::manager::check_task_name(name)?;
        let dir = self.svdir.join(name);
        if dir.is_dir() {
            Ok(dir)
        } else {
            Err(ManagerError::Refused(format!("unknown service \"{name}\" (no {})", dir.display())))
        }
    }

    /// `sv COMMAND DIR` (the dir by its absolute path, so `$SVDIR` plays no part).
    fn sv(&self, command: &str, dir: &Path) -> Result<()> {
        run_tool(Command::new(&self.sv).arg(command).arg(dir)).map(|_| ())
    }

    /// Fails unless a runsv supervises `dir`, waiting up to `wait` for runsvdir to start one.
    fn supervised(&self, dir: &Path, wait: Duration) -> Result<()> {
        if poll_until(wait, || runsv_running(dir)) {
            return Ok(());
        }
        Err(ManagerError::Unavailable(format!(
            "no runsv supervises {} (is a runsvdir watching {}?)",
            dir.display(),
            self.svdir.display()
        )))
    }

    fn info(&self, name: &str, dir: &Path) -> TaskInfo {
        let mut info = TaskInfo {
            name: name.to_owned(),
            command: dir.join("run").display().to_string(),
            last_status: read_exit_status(dir),
            ..TaskInfo::default()
        };
        let status = if runsv_running(dir) { read_status(dir) } else { None };
        let Some(status) = status else {
            info.state = "unsupervised".to_owned();
            return info;
        };
        info.pid = status.pid;
        info.since_secs = Some(status.since_secs);
        info.state = status.state_word(dir.join("finished").exists()).to_owned();
        info
    }

    fn up(&self, name: &str, dir: &Path) -> Result<TaskInfo> {
        self.supervised(dir, Duration::ZERO)?;
        let _ = fs::remove_file(dir.join("finished"));
        self.sv("up", dir)?;
        settle(dir);
        Ok(self.info(name, dir))
    }

    fn down(&self, name: &str, dir: &Path) -> Result<TaskInfo> {
        self.supervised(dir, Duration::ZERO)?;
        self.sv("down", dir)?;
        let is_down = || {
            let status = read_status(dir);
            if let Some(SuperviseStatus { state: STATE_FINISH, want_up: false, pid: Some(pid), .. }) = status
            {
                cut_restart_delay(pid);
            }
            status.is_some_and(|s| s.state == STATE_DOWN)
        };
        if !poll_until(SV_WAIT, is_down) {
            self.sv("kill", dir)?;
            if !poll_until(KILL_WAIT, is_down) {
                return Err(ManagerError::Refused(format!("{name} did not stop, even after SIGKILL")));
            }
        }
        Ok(self.info(name, dir))
    }

    /// Creates the service under a dot name and renames it into place.
    fn create(&self, name: &str, run: &str, finish: &str) -> Result<PathBuf> {
        let dir = self.svdir.join(name);
        let temp = self.svdir.join(format!(".{name}.tmp-{}", unique_suffix()));
        let build = || -> std::io::Result<()> {
            fs::create_dir(&temp)?;
            write_script(&temp.join("run"), run)?;
            write_script(&temp.join("finish"), finish)?;
            fs::create_dir_all(temp.join("log/main"))?;
            write_script(&temp.join("log/run"), LOG_RUN)?;
            fs::rename(&temp, &dir)
        };
        build().map_err(|e| {
            let _ = fs::remove_dir_all(&temp);
            ManagerError::Refused(format!("cannot create the service {}: {e}", dir.display()))
        })?;
        Ok(dir)
    }
}

impl Manager for Runit {
    fn kind(&self) -> &'static str {
        "runit"
    }

    fn list(&mut self) -> Result<Vec<TaskInfo>> {
        Ok(self.names()?.iter().map(|name| self.info(name, &self.svdir.join(name))).collect())
    }

    fn status(&mut self, name: &str) -> Result<TaskInfo> {
        let dir = self.service(name)?;
        Ok(self.info(name, &dir))
    }

    fn start(&mut self, name: &str) -> Result<TaskInfo> {
        let dir = self.service(name)?;
        self.up(name, &dir)
    }

    fn stop(&mut self, name: &str) -> Result<TaskInfo> {
        let dir = self.service(name)?;
        self.down(name, &dir)
    }

    fn restart(&mut self, name: &str) -> Result<TaskInfo> {
        let dir = self.service(name)?;
        self.down(name, &dir)?;
        self.up(name, &dir)
    }

    fn signal(&mut self, name: &str, signal: Signal) -> Result<()> {
        let dir = self.service(name)?;
        let pid =
            self.info(name, &dir).pid.filter(|_| read_status(&dir).is_some_and(|s| s.state == STATE_RUN));
        let Some(pid) = pid else {
            return Err(ManagerError::Refused(format!("{name} is not running")));
        };
        match sv_signal_command(signal) {
            Some(command) => self.sv(command, &dir),
            None => kill(Pid::from_raw(pid), signal)
                .map_err(|e| ManagerError::Refused(format!("kill -{signal} {pid} ({name}): {e}"))),
        }
    }

    fn ensure(&mut self, spec: &EnsureSpec) -> Result<(Ensured, TaskInfo)> {
        super::manager::check_task_name(&spec.name)?;
        let name = spec.name.as_str();
        if spec.command.is_empty() {
            let dir = self.service(name)?;
            return Ok((Ensured::Unchanged, self.up(name, &dir)?));
        }
        let spec = super::backend::absolute_cwd(spec)?;
        let run = format!("#!/bin/sh\nexec 2>&1\n{}", shell_body(&spec)?);
        let finish = finish_script(&spec.directives)?;
        let dir = self.svdir.join(name);
        if !dir.is_dir() {
            let dir = self.create(name, &run, &finish)?;
            self.supervised(&dir, SUPERVISE_WAIT)?;
            // runsv starts a new service by itself (there is no `down` file); an `sv up` now
            // could come after a `restart: never` service has finished, and start it again.
            settle(&dir);
            return Ok((Ensured::Created, self.info(name, &dir)));
        }
        self.supervised(&dir, SUPERVISE_WAIT)?;
        let same = |file: &str, text: &str| fs::read_to_string(dir.join(file)).is_ok_and(|t| t == text);
        if same("run", &run) && same("finish", &finish) {
            return Ok((Ensured::Unchanged, self.up(name, &dir)?));
        }
        for (file, text) in [("run", &run), ("finish", &finish)] {
            super::backend::write_atomically(&dir.join(file), text.as_bytes(), 0o755).map_err(|e| {
                ManagerError::Refused(format!("cannot write {}: {e}", dir.join(file).display()))
            })?;
        }
        self.down(name, &dir)?;
        Ok((Ensured::Updated, self.up(name, &dir)?))
    }

    fn start_all(&mut self) -> Result<Vec<String>> {
        let mut started = Vec::new();
        for name in self.names()? {
            let dir = self.svdir.join(&name);
            if runsv_running(&dir) && read_status(&dir).is_some_and(|s| s.state == STATE_DOWN) {
                self.up(&name, &dir)?;
                started.push(name);
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
        let dir = self.service(name)?;
        if !dir.join("log").is_dir() {
            return Err(ManagerError::Refused(format!(
                "{name} has no log service ({}/log): its output goes wherever runsvdir's goes",
                dir.display()
            )));
        }
        let current = dir.join("log/main/current");
        let unreadable = |e: std::io::Error| ManagerError::Refused(format!("{}: {e}", current.display()));
        let mut give = |raw: &[u8]| {
            let text = String::from_utf8_lossy(raw);
            sink(LogLine { stream: "stdout".to_owned(), text: strip_svlogd_stamp(&text).to_owned() })
        };
        let (last, end) = tail::last_lines(&current, lines).map_err(unreadable)?;
        for raw in &last {
            if give(raw).is_err() {
                return Ok(());
            }
        }
        if follow {
            tail::follow(&current, end, &mut || dir.is_dir(), &mut give).map_err(unreadable)?;
        }
        Ok(())
    }

    /// runsvdir picks up added and removed service dirs by itself (within seconds), and runsv
    /// reads `run` at every start: there is nothing to apply. Every service is reported as
    /// unchanged.
    fn reload(&mut self) -> Result<ReloadReport> {
        Ok(ReloadReport { unchanged: self.names()?, ..ReloadReport::default() })
    }
}

impl Runit {
    /// The services: every dir in the service dir whose name does not start with a dot.
    fn names(&self) -> Result<Vec<String>> {
        let entries = fs::read_dir(&self.svdir)
            .map_err(|e| ManagerError::Unavailable(format!("cannot read {}: {e}", self.svdir.display())))?;
        let mut names: Vec<String> = entries
            .flatten()
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        Ok(names)
    }
}

const LOG_RUN: &str = "#!/bin/sh\nexec svlogd -tt ./main\n";

/// `finish`: records how `run` ended and applies `restart` and `restart-delay`.
pub fn finish_script(directives: &[(String, String)]) -> Result<String> {
    let defaults = TaskSettings { restart: Restart::Always, ..TaskSettings::default() };
    let given = |key: &str| directives.iter().any(|(k, _)| k == key);
    let settings = directive_settings(directives, defaults, &SUPPORTED, "runit")?;
    let mut script = String::from(
        "#!/bin/sh\n\
         # Managed by trcctl. runsv runs this each time ./run has ended: $1 is its exit code (-1\n\
         # when a signal ended it), $2 the signal.\n\
         echo \"$1 $2\" > exit-status.new && mv -f exit-status.new exit-status\n\
         case $(cat supervise/stat 2>/dev/null) in\n\
         *'want down'* | *'want exit'*) rm -f finished; exit 0 ;; # stopped on request\n\
         esac\n",
    );
    match settings.restart {
        Restart::Always => {}
        Restart::Never => {
            script.push_str("# restart: never\ntouch finished\nprintf d > supervise/control\nexit 0\n")
        }
        Restart::OnFailure => script.push_str(
            "# restart: on-failure\n\
             if [ \"$1\" = 0 ]; then\n    touch finished\n    printf d > supervise/control\n    exit 0\nfi\n",
        ),
    }
    if given("restart-delay") && !settings.restart_delay.is_zero() && settings.restart != Restart::Never {
        let secs = format!("{:.3}", settings.restart_delay.as_secs_f64());
        let secs = secs.trim_end_matches('0').trim_end_matches('.');
        script.push_str(&format!(
            "# restart-delay: runsv starts ./run again when this script ends\nexec sleep {secs}\n"
        ));
    }
    Ok(script)
}

fn write_script(path: &Path, text: &str) -> std::io::Result<()> {
    fs::write(path, text)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
}

/// Waits (up to [`SV_WAIT`]) until runsv has acted on an "up": the service is no longer down
/// and wanted up. (One that exits at once may never be seen running.)
fn settle(dir: &Path) {
    poll_until(SV_WAIT, || read_status(dir).is_some_and(|s| !(s.state == STATE_DOWN && s.want_up)));
}

/// Ends the `sleep` of a `finish` waiting out a restart delay (runsv's pid while `finish` runs
/// is `finish`'s): the service is going down, there is nothing to wait for.
fn cut_restart_delay(pid: i32) {
    if fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == "sleep") {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
}

/// The `sv` command that sends `signal`, for those it has.
fn sv_signal_command(signal: Signal) -> Option<&'static str> {
    Some(match signal {
        Signal::SIGHUP => "hup",
        Signal::SIGTERM => "term",
        Signal::SIGINT => "interrupt",
        Signal::SIGUSR1 => "1",
        Signal::SIGUSR2 => "2",
        Signal::SIGALRM => "alarm",
        Signal::SIGCONT => "cont",
        Signal::SIGSTOP => "pause",
        Signal::SIGQUIT => "quit",
        Signal::SIGKILL => "kill",
        _ => return None,
    })
}

const STATE_DOWN: u8 = 0;
const STATE_RUN: u8 = 1;
const STATE_FINISH: u8 = 2;
/// TAI64 labels are 2^62 + TAI seconds; runit takes TAI as Unix time + 10.
const TAI64_UNIX_EPOCH: u64 = (1 << 62) + 10;

/// runsv's `supervise/status`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct SuperviseStatus {
    pid: Option<i32>,
    /// Since the last change of state (start or exit).
    since_secs: f64,
    paused: bool,
    want_up: bool,
    state: u8,
}

impl SuperviseStatus {
    fn parse(bytes: &[u8], now: SystemTime) -> Option<SuperviseStatus> {
        let bytes: &[u8; 20] = bytes.try_into().ok()?;
        let tai = u64::from_be_bytes(bytes[0..8].try_into().ok()?);
        let nanos = u32::from_be_bytes(bytes[8..12].try_into().ok()?);
        let pid = u32::from_le_bytes(bytes[12..16].try_into().ok()?);
        let changed = Duration::new(tai.checked_sub(TAI64_UNIX_EPOCH)?, nanos.min(999_999_999));
        let now = now.duration_since(UNIX_EPOCH).ok()?;
        Some(SuperviseStatus {
            pid: (pid != 0).then_some(pid as i32),
            since_secs: now.saturating_sub(changed).as_secs_f64(),
            paused: bytes[16] != 0,
            want_up: bytes[17] == b'u',
            state: bytes[19],
        })
    }

    /// The state in TaskInfo's words; `finished`: `finish` took the service down.
    fn state_word(&self, finished: bool) -> &'static str {
        match (self.state, self.want_up) {
            (STATE_RUN, true) if self.paused => "paused",
            (STATE_RUN, true) => "running",
            (STATE_RUN, false) => "stopping",
            (STATE_FINISH, true) => "waiting",
            (STATE_FINISH, false) => "stopping",
            (STATE_DOWN, true) => "waiting",
            (STATE_DOWN, false) if finished => "finished",
            (STATE_DOWN, false) => "stopped",
            _ => "unknown",
        }
    }
}

fn read_status(dir: &Path) -> Option<SuperviseStatus> {
    SuperviseStatus::parse(&fs::read(dir.join("supervise/status")).ok()?, SystemTime::now())
}

/// Whether a runsv supervises `dir`: it holds `supervise/ok`, a FIFO, open for reading, so
/// opening it for writing without blocking succeeds (this is how sv checks too).
fn runsv_running(dir: &Path) -> bool {
    fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(dir.join("supervise/ok")).is_ok()
}

/// The last exit recorded by `finish`: its status, 128+N for signal N.
fn read_exit_status(dir: &Path) -> Option<i32> {
    let text = fs::read_to_string(dir.join("exit-status")).ok()?;
    let mut words = text.split_whitespace().map(str::parse::<i32>);
    match (words.next()?.ok()?, words.next()?.ok()?) {
        (-1, signal) => Some(128 + signal),
        (code, _) => Some(code),
    }
}

/// A line of svlogd's `current` without the `-tt` timestamp (`2026-11-25_06:17:44.03708 `).
pub fn strip_svlogd_stamp(line: &str) -> &str {
    let b = line.as_bytes();
    let stamp = b.len() >= 26
        && b[..26].iter().enumerate().all(|(i, &c)| match i {
            4 | 7 => c == b'-',
            10 => c == b'_',
            13 | 16 => c == b':',
            19 => c == b'.',
            25 => c == b' ',
            _ => c.is_ascii_digit(),
        });
    if stamp {
        &line[26..]
    } else {
        line
    }
}

/// The dirs the running runsvdir processes watch, lowest pid first (`None`: unreadable).
fn running_runsvdirs() -> Vec<Option<PathBuf>> {
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    let mut pids: Vec<i32> = entries.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect();
    pids.sort();
    pids.into_iter()
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == "runsvdir")
        })
        .map(|pid| {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let args: Vec<String> = cmdline
                .split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let dir = runsvdir_service_dir(&args)?;
            // A relative dir is relative to where runsvdir runs (it returns there after scans).
            Some(fs::read_link(format!("/proc/{pid}/cwd")).map(|cwd| cwd.join(&dir)).unwrap_or(dir))
        })
        .collect()
}

/// The service dir in runsvdir's command line: `runsvdir [-P] dir [log]`.
pub fn runsvdir_service_dir(args: &[String]) -> Option<PathBuf> {
    args.iter().skip(1).find(|a| !a.starts_with('-')).map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_records() {
        // Taken from a running service: pid 6008, want up, running.
        let bytes =
            [0x40, 0, 0, 0, 0x6b, 0x06, 0x7d, 0x92, 0x01, 0xd1, 0xd7, 0xdc, 0x78, 0x17, 0, 0, 0, b'u', 0, 1];
        let changed = UNIX_EPOCH + Duration::new(0x6b06_7d92 - 10, 0x01d1_d7dc);
        let status = SuperviseStatus::parse(&bytes, changed + Duration::from_secs(45)).unwrap();
        assert_eq!(status.pid, Some(6008));
        assert!((status.since_secs - 45.0).abs() < 1e-6, "{}", status.since_secs);
        assert_eq!(status.state_word(false), "running");
        let down = SuperviseStatus { state: STATE_DOWN, want_up: false, pid: None, ..status };
        assert_eq!(down.state_word(false), "stopped");
        assert_eq!(down.state_word(true), "finished");
        assert!(SuperviseStatus::parse(&bytes[..19], changed).is_none());
    }

    #[test]
    fn runsvdir_command_lines() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let dir = |a: &[&str]| runsvdir_service_dir(&args(a));
        assert_eq!(dir(&["runsvdir", "-P", "/etc/service", "log: ......"]), Some("/etc/service".into()));
        assert_eq!(dir(&["runsvdir", "/srv/sv"]), Some("/srv/sv".into()));
        assert_eq!(dir(&["runsvdir", "-P"]), None);
    }

    #[test]
    fn svlogd_stamps() {
        assert_eq!(strip_svlogd_stamp("2026-11-25_06:17:44.03708 hello"), "hello");
        assert_eq!(strip_svlogd_stamp("2026-11-25_06:17:44.03708 "), "");
        assert_eq!(strip_svlogd_stamp("hello world, not a stamp at all"), "hello world, not a stamp at all");
    }

    #[test]
    fn finish_scripts() {
        let d = |pairs: &[(&str, &str)]| {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>()
        };
        let always = finish_script(&[]).unwrap();
        assert!(
            always.contains("exit-status")
                && !always.contains("supervise/control")
                && !always.contains("sleep")
        );
        let never = finish_script(&d(&[("restart", "never"), ("restart-delay", "2s")])).unwrap();
        assert!(never.contains("printf d > supervise/control") && !never.contains("sleep"), "{never}");
        let on_failure =
            finish_script(&d(&[("restart", "on-failure"), ("restart-delay", "1500ms")])).unwrap();
        assert!(
            on_failure.contains("if [ \"$1\" = 0 ]") && on_failure.ends_with("exec sleep 1.5\n"),
            "{on_failure}"
        );
        assert!(finish_script(&d(&[("log-prefix", "no")])).is_ok());
        for bad in [
            ("stop-signal", "INT"),
            ("start-limit", "3 in 10s"),
            ("restart", "sometimes"),
            ("log-prefix", "yes"),
        ] {
            let err = finish_script(&d(&[bad])).unwrap_err();
            assert!(matches!(err, ManagerError::Refused(_)), "{bad:?}");
        }
    }
}
