//! The tmux backend, the fallback when no process manager runs: one tmux server on a private
//! socket (`tmux -L trcctl`, started without a config file), one session `trcctl`, one window
//! per service, named after it. tmux keeps no record of what a window should run, so the
//! commands live in a registry, a JSON file written atomically (name → command, cwd, env).
//!
//! - A window is started gated: its shell first waits on a tmux channel (`wait-for`) while
//!   trcctl sets `remain-on-exit on` (a dead pane stays, with its exit status), tags the
//!   window (`@trcctl_service`, and `@trcctl_spec`: the registry entry it runs) and opens
//!   `pipe-pane` to the service's log file (`tmux-logs/NAME.log` next to the registry; not
//!   `pipe-pane -o`, which would close a pipe that is open already); then trcctl signals the
//!   channel. Nothing the service prints is missed by the log, and a service that exits at
//!   once still leaves its status. The log is a terminal's output: stdout and stderr mixed
//!   (all "stdout" in `logs`), `\r\n` line ends (taken off), never rotated.
//! - `signal` goes to the pane's process group, as trc signals a task's.
//! - `stop` sends SIGTERM to the pane's process group, SIGKILL after 10 s, waits for the pane
//!   to be dead and kills the window: no window means stopped, a dead pane means finished.
//!   `start` opens a new window, or respawns a dead pane. `restart` is a stop of the process
//!   (the window stays) and a respawn.
//! - Windows without the tag are not services; tagged windows no longer registered are
//!   removed by `reload`.
//!
//! tmux restarts nothing: the only restart directive taken is `restart: never`.

use super::backend::{
    absolute_cwd, directive_settings, find_program, poll_until, run_tool, unique_suffix, write_atomically,
};
use super::manager::{check_task_name, shell_body, EnsureSpec, Ensured, Manager, ManagerError, Result};
use super::protocol::{LogLine, ReloadReport, TaskInfo};
use super::tail;
use crate::config::{Restart, TaskSettings};
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The session that holds the service windows.
pub const SESSION: &str = "trcctl";
/// The socket name when `TRCCTL_TMUX_SOCKET` does not give one.
pub const DEFAULT_SOCKET: &str = "trcctl";
/// How long `stop` waits after SIGTERM before SIGKILL, and then for the pane to die.
const STOP_WAIT: Duration = Duration::from_secs(10);
const KILL_WAIT: Duration = Duration::from_secs(5);
/// The window options trcctl sets on a service window.
const SERVICE_OPTION: &str = "@trcctl_service";
const SPEC_OPTION: &str = "@trcctl_spec";

/// What a registered service runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

/// The registry file: service name → entry.
pub type Registry = BTreeMap<String, Entry>;

impl Entry {
    fn spec(&self, name: &str) -> EnsureSpec {
        EnsureSpec {
            name: name.to_owned(),
            command: self.command.clone(),
            cwd: self.cwd.clone(),
            env: self.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            directives: Vec::new(),
        }
    }

    /// How the entry is tagged on its window, to tell whether the window runs it.
    fn tag(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A service window's only pane, as `list-panes` shows it.
#[derive(Debug, Clone)]
struct Pane {
    service: String,
    window_id: String,
    pane_id: String,
    pid: i32,
    dead: bool,
    /// Exit status, or 128+N for signal N, of a dead pane's process.
    last_status: Option<i32>,
    /// When the process of a dead pane ended (Unix time).
    dead_time: Option<i64>,
    tag: String,
}

const PANE_FORMAT: &str = "#{@trcctl_service}\t#{window_id}\t#{pane_id}\t#{pane_pid}\t#{pane_dead}\t\
                           #{pane_dead_status}\t#{pane_dead_signal}\t#{pane_dead_time}\t#{@trcctl_spec}";

impl Pane {
    fn parse(line: &str) -> Option<Pane> {
        let f: Vec<&str> = line.splitn(9, '\t').collect();
        if f.len() != 9 || f[0].is_empty() {
            return None;
        }
        let status: Option<i32> = f[5].parse().ok();
        let signal: Option<i32> = f[6].parse().ok();
        Some(Pane {
            service: f[0].to_owned(),
            window_id: f[1].to_owned(),
            pane_id: f[2].to_owned(),
            pid: f[3].parse().ok()?,
            dead: f[4] == "1",
            last_status: status.or(signal.map(|s| 128 + s)),
            dead_time: f[7].parse().ok(),
            tag: f[8].to_owned(),
        })
    }

    /// Dead, but its process not reaped by tmux yet (its status unknown).
    fn unreaped(&self) -> bool {
        self.dead && self.last_status.is_none() && Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}

pub struct Tmux {
    tmux: PathBuf,
    socket: String,
    registry: PathBuf,
}

impl Tmux {
    /// Services on the tmux server `tmux -L socket_name`, registered in `registry`.
    pub fn new(socket_name: String, registry: PathBuf) -> Tmux {
        let registry = std::path::absolute(&registry).unwrap_or(registry);
        Tmux {
            tmux: find_program("tmux").unwrap_or_else(|| PathBuf::from("tmux")),
            socket: socket_name,
            registry,
        }
    }

    /// tmux on this machine (it is in PATH). Socket `TRCCTL_TMUX_SOCKET` or `trcctl`; registry
    /// `TRCCTL_TMUX_REGISTRY`, else `$XDG_STATE_HOME/trcctl/tmux-services.json`, else
    /// `~/.local/state/trcctl/tmux-services.json`.
    pub fn detect() -> Result<Tmux> {
        let tmux = find_program("tmux")
            .ok_or_else(|| ManagerError::Unavailable("tmux is not in PATH".to_owned()))?;
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let socket = var("TRCCTL_TMUX_SOCKET")
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| DEFAULT_SOCKET.to_owned());
        let registry = match var("TRCCTL_TMUX_REGISTRY") {
            Some(path) => PathBuf::from(path),
            None => {
                let state = var("XDG_STATE_HOME")
                    .map(PathBuf::from)
                    .or_else(|| var("HOME").map(|home| PathBuf::from(home).join(".local/state")));
                let state = state.ok_or_else(|| {
                    ManagerError::Unavailable(
                        "no place for the tmux registry: set HOME or XDG_STATE_HOME".into(),
                    )
                })?;
                state.join("trcctl/tmux-services.json")
            }
        };
        Ok(Tmux { tmux, ..Tmux::new(socket, registry) })
    }

    pub fn registry_path(&self) -> &Path {
        &self.registry
    }

    /// Where the output of service `name` is copied.
    pub fn log_file(&self, name: &str) -> PathBuf {
        self.registry.with_file_name("tmux-logs").join(format!("{name}.log"))
    }

    fn tmux(&self) -> Command {
        let mut command = Command::new(&self.tmux);
        command.args(["-L", &self.socket, "-f", "/dev/null"]);
        command
    }

    /// Holds other trcctl processes off the registry and the windows while this one changes
    /// them.
    fn lock(&self) -> Result<Flock<File>> {
        let path = self.registry.with_extension("lock");
        let failed = |e: &dyn std::fmt::Display| ManagerError::Refused(format!("{}: {e}", path.display()));
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| failed(&e))?;
        }
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| failed(&e))?;
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| failed(&e))
    }

    /// The registry, every name in it checked as `ensure` checks it: a hand-edited name such
    /// as `../x` would otherwise put a log file outside `tmux-logs/`.
    pub fn load(&self) -> Result<Registry> {
        let refused = |e: &dyn std::fmt::Display| {
            ManagerError::Refused(format!("registry {}: {e}", self.registry.display()))
        };
        let registry: Registry = match fs::read(&self.registry) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| refused(&e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Registry::new()),
            Err(e) => return Err(refused(&e)),
        };
        for name in registry.keys() {
            check_task_name(name).map_err(|e| refused(&e))?;
        }
        Ok(registry)
    }

    fn save(&self, registry: &Registry) -> Result<()> {
        let failed = |e: &dyn std::fmt::Display| {
            ManagerError::Refused(format!("cannot write the registry {}: {e}", self.registry.display()))
        };
        let mut text = serde_json::to_vec_pretty(registry).map_err(|e| failed(&e))?;
        text.push(b'\n');
        if let Some(dir) = self.registry.parent() {
            fs::create_dir_all(dir).map_err(|e| failed(&e))?;
        }
        write_atomically(&self.registry, &text, 0o600).map_err(|e| failed(&e))
    }

    fn entry(&self, name: &str) -> Result<Entry> {
        check_task_name(name)?;
        self.load()?.remove(name).ok_or_else(|| {
            ManagerError::Refused(format!("unknown service \"{name}\" (not in {})", self.registry.display()))
        })
    }

    /// The service windows (the session's tagged panes); none when there is no server.
    fn panes(&self) -> Result<Vec<Pane>> {
        let session = format!("={SESSION}");
        let exists = self.tmux().args(["has-session", "-t", &session]).output();
        if !exists.map_err(|e| ManagerError::Unavailable(format!("cannot run tmux: {e}")))?.status.success() {
            return Ok(Vec::new());
        }
        let list = || -> Result<Vec<Pane>> {
            let out = run_tool(self.tmux().args(["list-panes", "-s", "-t", &session, "-F", PANE_FORMAT]))?;
            Ok(out.lines().filter_map(Pane::parse).collect())
        };
        let mut panes = list()?;
        if panes.iter().any(Pane::unreaped) {
            // tmux (seen with 3.3a on a loaded machine) sometimes misses the SIGCHLD of a pane's
            // process: the pane shows dead, the process stays a zombie, its status unknown,
            // until some other child of the server exits. A SIGCHLD sent to the server makes
            // it reap at once.
            let server = run_tool(self.tmux().args(["display-message", "-p", "#{pid}"]))?;
            if let Ok(server) = server.trim().parse::<i32>() {
                let _ = nix::sys::signal::kill(Pid::from_raw(server), Signal::SIGCHLD);
            }
            poll_until(Duration::from_secs(1), || match list() {
                Ok(again) => {
                    panes = again;
                    !panes.iter().any(Pane::unreaped)
                }
                Err(_) => true,
            });
        }
        Ok(panes)
    }

    fn pane(&self, name: &str) -> Result<Option<Pane>> {
        Ok(self.panes()?.into_iter().find(|p| p.service == name))
    }

    /// Starts `entry` in a new window, or in `dead`'s pane; returns once the pane runs it.
    fn launch(&self, name: &str, entry: &Entry, dead: Option<&Pane>) -> Result<()> {
        let log = self.log_file(name);
        if let Some(dir) = log.parent() {
            fs::create_dir_all(dir)
                .map_err(|e| ManagerError::Refused(format!("cannot create {}: {e}", dir.display())))?;
        }
        let channel = format!("trcctl-{name}-{}-{}", std::process::id(), unique_suffix());
        let quote = |word: &str| {
            shlex::try_quote(word)
                .map(|q| q.into_owned())
                .map_err(|_| ManagerError::Refused(format!("cannot quote {word:?} for the shell")))
        };
        // The pane's shell waits on the channel (its $TMUX names the server's socket) until
        // the window is set up.
        let script = format!(
            "{} -S \"${{TMUX%%,*}}\" wait-for {channel}\n{}",
            quote(&self.tmux.to_string_lossy())?,
            shell_body(&entry.spec(name))?
        );
        let argv = ["/bin/sh", "-c", script.as_str()];
        let pane_id = match dead {
            Some(pane) => {
                run_tool(self.tmux().args(["respawn-pane", "-t", &pane.pane_id]).args(argv))?;
                pane.pane_id.clone()
            }
            None => {
                let session = format!("={SESSION}");
                let exists = self.tmux().args(["has-session", "-t", &session]).output();
                let mut new = self.tmux();
                if exists.is_ok_and(|o| o.status.success()) {
                    new.args(["new-window", "-d", "-t", &format!("{session}:")]);
                } else {
                    new.args(["new-session", "-d", "-s", SESSION, "-x", "200", "-y", "50"]);
                }
                new.args(["-n", name, "-P", "-F", "#{pane_id}"]).args(argv);
                run_tool(&mut new)?.trim().to_owned()
            }
        };
        let pipe = pipe_command(&log)?;
        let tag = entry.tag();
        let set = |option: &str, value: &str| {
            ["set-option", "-w", "-t", &pane_id, option, value, ";"].map(str::to_owned).to_vec()
        };
        let mut setup = self.tmux();
        setup
            .args(set("remain-on-exit", "on"))
            .args(set(SERVICE_OPTION, name))
            .args(set(SPEC_OPTION, &tag))
            .args(["pipe-pane", "-t", &pane_id, &pipe, ";"])
            .args(["wait-for", "-S", &channel]);
        run_tool(&mut setup).map(|_| ()).inspect_err(|_| {
            // Let the pane go on rather than wait forever.
            let _ = self.tmux().args(["wait-for", "-S", &channel]).output();
        })
    }

    /// Ends the pane's process: SIGTERM to its process group, SIGKILL after [`STOP_WAIT`];
    /// returns once tmux has seen it die (the pane stays, dead).
    fn terminate(&self, pane: &Pane) -> Result<()> {
        let dead = || self.panes().is_ok_and(|ps| ps.iter().any(|p| p.pane_id == pane.pane_id && p.dead));
        let _ = killpg(Pid::from_raw(pane.pid), Signal::SIGTERM);
        if poll_until(STOP_WAIT, dead) {
            return Ok(());
        }
        let _ = killpg(Pid::from_raw(pane.pid), Signal::SIGKILL);
        if poll_until(KILL_WAIT, dead) {
            return Ok(());
        }
        Err(ManagerError::Refused(format!("{} did not stop, even after SIGKILL", pane.service)))
    }

    fn kill_window(&self, pane: &Pane) -> Result<()> {
        run_tool(self.tmux().args(["kill-window", "-t", &pane.window_id])).map(|_| ())
    }

    fn info(&self, name: &str, entry: &Entry, pane: Option<&Pane>) -> TaskInfo {
        let mut info = TaskInfo {
            name: name.to_owned(),
            command: shlex::try_join(entry.command.iter().map(String::as_str)).unwrap_or_default(),
            state: "stopped".to_owned(),
            ..TaskInfo::default()
        };
        if let Some(pane) = pane {
            if pane.dead {
                info.state = "finished".to_owned();
                info.last_status = pane.last_status;
                info.since_secs = pane.dead_time.map(|t| (unix_now() - t as f64).max(0.0));
            } else {
                info.state = "running".to_owned();
                info.pid = Some(pane.pid);
                info.since_secs = process_age(pane.pid);
            }
        }
        info
    }

    fn current(&self, name: &str, entry: &Entry) -> Result<TaskInfo> {
        Ok(self.info(name, entry, self.pane(name)?.as_ref()))
    }

    /// Makes `name` run `entry`: starts it when it does not run, restarts it when it runs
    /// something else. Whether it was started.
    fn apply(&self, name: &str, entry: &Entry) -> Result<bool> {
        match self.pane(name)? {
            Some(pane) if !pane.dead && pane.tag == entry.tag() => Ok(false),
            Some(pane) => {
                if !pane.dead {
                    self.terminate(&pane)?;
                }
                self.launch(name, entry, Some(&pane))?;
                Ok(true)
            }
            None => {
                self.launch(name, entry, None)?;
                Ok(true)
            }
        }
    }
}

impl Manager for Tmux {
    fn kind(&self) -> &'static str {
        "tmux"
    }

    fn list(&mut self) -> Result<Vec<TaskInfo>> {
        let registry = self.load()?;
        let panes = self.panes()?;
        Ok(registry
            .iter()
            .map(|(name, entry)| self.info(name, entry, panes.iter().find(|p| &p.service == name)))
            .collect())
    }

    fn status(&mut self, name: &str) -> Result<TaskInfo> {
        let entry = self.entry(name)?;
        self.current(name, &entry)
    }

    fn start(&mut self, name: &str) -> Result<TaskInfo> {
        let _lock = self.lock()?;
        let entry = self.entry(name)?;
        match self.pane(name)? {
            Some(pane) if !pane.dead => {}
            pane => self.launch(name, &entry, pane.as_ref())?,
        }
        self.current(name, &entry)
    }

    fn stop(&mut self, name: &str) -> Result<TaskInfo> {
        let _lock = self.lock()?;
        let entry = self.entry(name)?;
        if let Some(pane) = self.pane(name)? {
            if !pane.dead {
                self.terminate(&pane)?;
            }
            self.kill_window(&pane)?;
        }
        self.current(name, &entry)
    }

    fn restart(&mut self, name: &str) -> Result<TaskInfo> {
        let _lock = self.lock()?;
        let entry = self.entry(name)?;
        let pane = self.pane(name)?;
        if let Some(pane) = pane.as_ref().filter(|p| !p.dead) {
            self.terminate(pane)?;
        }
        self.launch(name, &entry, pane.as_ref())?;
        self.current(name, &entry)
    }

    fn signal(&mut self, name: &str, signal: Signal) -> Result<()> {
        self.entry(name)?;
        match self.pane(name)? {
            Some(pane) if !pane.dead => killpg(Pid::from_raw(pane.pid), signal)
                .map_err(|e| ManagerError::Refused(format!("kill -{signal} -{} ({name}): {e}", pane.pid))),
            _ => Err(ManagerError::Refused(format!("{name} is not running"))),
        }
    }

    fn ensure(&mut self, spec: &EnsureSpec) -> Result<(Ensured, TaskInfo)> {
        check_task_name(&spec.name)?;
        let name = spec.name.as_str();
        let _lock = self.lock()?;
        if spec.command.is_empty() {
            let entry = self.entry(name)?;
            if self.pane(name)?.is_none_or(|p| p.dead) {
                self.apply(name, &entry)?;
            }
            return Ok((Ensured::Unchanged, self.current(name, &entry)?));
        }
        let defaults = TaskSettings { restart: Restart::Never, ..TaskSettings::default() };
        let settings = directive_settings(&spec.directives, defaults, &["restart"], "tmux")?;
        if settings.restart != Restart::Never {
            return Err(ManagerError::Refused(
                "tmux restarts nothing: the only restart directive it takes is \"restart: never\"".to_owned(),
            ));
        }
        let spec = absolute_cwd(spec)?;
        shell_body(&spec)?; // refuses what the shell cannot be given
        let entry = Entry {
            command: spec.command.clone(),
            cwd: spec.cwd.clone(),
            env: spec.env.iter().cloned().collect(),
        };
        let mut registry = self.load()?;
        let ensured = match registry.get(name) {
            None => Ensured::Created,
            Some(old) if *old == entry => Ensured::Unchanged,
            Some(_) => Ensured::Updated,
        };
        if ensured != Ensured::Unchanged {
            registry.insert(name.to_owned(), entry.clone());
            self.save(&registry)?;
        }
        self.apply(name, &entry)?;
        Ok((ensured, self.current(name, &entry)?))
    }

    fn start_all(&mut self) -> Result<Vec<String>> {
        let _lock = self.lock()?;
        let panes = self.panes()?;
        let mut started = Vec::new();
        for (name, entry) in self.load()? {
            let pane = panes.iter().find(|p| p.service == name);
            if pane.is_none_or(|p| p.dead) {
                self.launch(&name, &entry, pane)?;
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
        self.entry(name)?;
        let file = self.log_file(name);
        let unreadable = |e: std::io::Error| ManagerError::Refused(format!("{}: {e}", file.display()));
        // The pane is a terminal: lines end in \r\n.
        let mut give = |raw: &[u8]| {
            let text = String::from_utf8_lossy(raw.strip_suffix(b"\r").unwrap_or(raw)).into_owned();
            sink(LogLine { stream: "stdout".to_owned(), text })
        };
        let (last, end) = tail::last_lines(&file, lines).map_err(unreadable)?;
        for raw in &last {
            if give(raw).is_err() {
                return Ok(());
            }
        }
        if follow {
            let mut registered = || self.load().is_ok_and(|r| r.contains_key(name));
            tail::follow(&file, end, &mut registered, &mut give).map_err(unreadable)?;
        }
        Ok(())
    }

    /// Reads the registry again: starts registered services that do not run ("added"),
    /// restarts those whose window runs an older entry ("restarted"), and removes the windows
    /// of services no longer registered ("removed").
    fn reload(&mut self) -> Result<ReloadReport> {
        let _lock = self.lock()?;
        let registry = self.load()?;
        let mut report = ReloadReport::default();
        for pane in self.panes()? {
            if !registry.contains_key(&pane.service) {
                if !pane.dead {
                    self.terminate(&pane)?;
                }
                self.kill_window(&pane)?;
                report.removed.push(pane.service);
            }
        }
        for (name, entry) in &registry {
            let was_running = self.pane(name)?.is_some_and(|p| !p.dead);
            match (self.apply(name, entry)?, was_running) {
                (false, _) => report.unchanged.push(name.clone()),
                (true, true) => report.restarted.push(name.clone()),
                (true, false) => report.added.push(name.clone()),
            }
        }
        Ok(report)
    }
}

/// The shell command `pipe-pane` runs to append the pane's output to `log`. tmux expands
/// formats (`#{...}`, `#(...)`, `#S`...) in it, so every `#` of the path is doubled (`##` is a
/// literal `#`).
fn pipe_command(log: &Path) -> Result<String> {
    let path = shlex::try_quote(&log.to_string_lossy())
        .map(|q| q.into_owned())
        .map_err(|_| ManagerError::Refused(format!("cannot quote {} for the shell", log.display())))?;
    Ok(format!("exec cat >> {}", path.replace('#', "##")))
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64()
}

/// Seconds since process `pid` started: its start time in /proc/PID/stat (clock ticks after
/// boot) against /proc/uptime.
fn process_age(pid: i32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 22; counted after the command name, which ends at the last ')'.
    let start_ticks: f64 = stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()?;
    let uptime: f64 = fs::read_to_string("/proc/uptime").ok()?.split_whitespace().next()?.parse().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then(|| (uptime - start_ticks / ticks as f64).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pane_lines() {
        let pane = Pane::parse("web\t@1\t%3\t4242\t1\t\t15\t1795587474\t{\"command\":[\"a\\tb\"]}").unwrap();
        assert_eq!((pane.service.as_str(), pane.pid, pane.dead), ("web", 4242, true));
        assert_eq!(pane.last_status, Some(143));
        assert_eq!(pane.tag, "{\"command\":[\"a\\tb\"]}");
        let alive = Pane::parse("web\t@1\t%3\t4242\t0\t\t\t\t").unwrap();
        assert_eq!((alive.dead, alive.last_status, alive.dead_time), (false, None, None));
        // Windows that are not services have no tag.
        assert!(Pane::parse("\t@0\t%0\t1\t0\t\t\t\t").is_none());
    }

    #[test]
    fn registry_names_are_checked_on_load() {
        let dir = tempfile::tempdir().unwrap();
        let tmux = Tmux::new("test".into(), dir.path().join("registry.json"));
        fs::write(tmux.registry_path(), r#"{"web":{"command":["sleep","9"]}}"#).unwrap();
        assert_eq!(tmux.load().unwrap().keys().collect::<Vec<_>>(), ["web"]);
        for bad in ["../../escape", "/etc/x", "a\nb", "#{pane_pid}", ""] {
            let text = serde_json::to_string(&Registry::from([(
                bad.to_owned(),
                Entry { command: vec!["true".into()], cwd: None, env: BTreeMap::new() },
            )]))
            .unwrap();
            fs::write(tmux.registry_path(), text).unwrap();
            let err = tmux.load().unwrap_err().to_string();
            assert!(err.contains("registry.json: bad task name"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn pipe_pane_commands_escape_formats() {
        assert_eq!(pipe_command(Path::new("/var/log/web.log")).unwrap(), "exec cat >> /var/log/web.log");
        assert_eq!(
            pipe_command(Path::new("/home/a#{pane_pid}#(id)/x.log")).unwrap(),
            "exec cat >> '/home/a##{pane_pid}##(id)/x.log'"
        );
    }

    #[test]
    fn registry_format() {
        let mut registry = Registry::new();
        registry.insert(
            "web".into(),
            Entry { command: vec!["sleep".into(), "9".into()], cwd: None, env: BTreeMap::new() },
        );
        let text = serde_json::to_string(&registry).unwrap();
        assert_eq!(text, r#"{"web":{"command":["sleep","9"]}}"#);
        assert_eq!(serde_json::from_str::<Registry>(&text).unwrap(), registry);
    }
}
