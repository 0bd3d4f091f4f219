//! The trc backend of the process-manager interface: a client of a running trc's control
//! socket, and how to find that trc.

use super::follow::{self, Wake};
use super::manager::{EnsureSpec, Ensured, Manager, ManagerError, Result};
use super::protocol::{Command, InstanceInfo, LogLine, LogMessage, ReloadReport, Reply, Request, TaskInfo};
use crate::runtime_dir::{self, SOCKET_FILE};
use nix::sys::signal::Signal;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long trcctl waits for trc's answer by default (`--timeout`): trc answers in
/// milliseconds, also under load; one that does not answer in this time is stuck (stopped,
/// or its loop blocked) and counts as not reachable (69).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A running trc, reached through its control socket.
pub struct Trc {
    socket: PathBuf,
    timeout: Duration,
}

/// A running instance found in the runtime base dir.
#[derive(Debug, Clone)]
pub struct Instance {
    pub dir: PathBuf,
    pub info: InstanceInfo,
}

impl Trc {
    /// The trc whose runtime dir is `dir`.
    pub fn at(dir: &Path) -> Trc {
        Trc { socket: dir.join(SOCKET_FILE), timeout: DEFAULT_TIMEOUT }
    }

    /// Waits this long for its answers (none: the default).
    pub fn timeout(mut self, timeout: Option<Duration>) -> Trc {
        self.timeout = timeout.unwrap_or(DEFAULT_TIMEOUT);
        self
    }

    /// The instance `name` (a name in the runtime base dir, or a path to a runtime dir or to
    /// its socket).
    pub fn named(name: &str) -> Result<Trc> {
        let path = if name.contains('/') {
            PathBuf::from(name)
        } else {
            // The place trc takes (the first it can make).
            let places = runtime_dir::lookup_dirs();
            let found = places.iter().map(|base| base.join(name)).find(|dir| dir.is_dir());
            found.unwrap_or_else(|| runtime_dir::base_dir().join(name))
        };
        // A dir this user may not open is said as such, not as "not running".
        let denied = |dir: &Path, e: std::io::Error| {
            ManagerError::Unavailable(format!(
                "trc instance \"{name}\": permission denied: cannot open its runtime dir {} ({e})",
                dir.display()
            ))
        };
        let dir = match std::fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => path,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Err(denied(&path, e)),
            _ => path.parent().map(Path::to_path_buf).unwrap_or_default(),
        };
        match runtime_dir::probe(&dir) {
            Ok(true) => Ok(Trc::at(&dir)),
            Ok(false) => Err(ManagerError::Unavailable(format!(
                "no trc instance \"{name}\" is running (looked in {})",
                dir.display()
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(denied(&dir, e)),
            Err(e) => Err(ManagerError::Unavailable(format!(
                "trc instance \"{name}\": cannot open its runtime dir {}: {e}",
                dir.display()
            ))),
        }
    }

    /// Sends one request and reads its reply; an `ok: false` reply is `Refused`.
    pub fn call(&self, command: Command) -> Result<Reply> {
        let (_, reply) = self.open(command)?;
        Ok(reply)
    }

    /// Sends one request; returns the connection (for what follows the reply) and the reply.
    fn open(&self, command: Command) -> Result<(BufReader<UnixStream>, Reply)> {
        let unavailable = |e: std::io::Error| {
            ManagerError::Unavailable(format!("cannot reach trc at {}: {e}", self.socket.display()))
        };
        let mut stream = UnixStream::connect(&self.socket).map_err(unavailable)?;
        // A trc that is stopped (SIGSTOP) or stuck accepts the connection (the kernel does)
        // but never answers: a probe must not hang on it.
        stream.set_read_timeout(Some(self.timeout)).map_err(unavailable)?;
        stream.set_write_timeout(Some(self.timeout)).map_err(unavailable)?;
        let timed_out = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                ManagerError::Unavailable(format!(
                    "trc at {} did not answer within {} (--timeout)",
                    self.socket.display(),
                    humantime::format_duration(self.timeout)
                ))
            }
            _ => unavailable(e),
        };
        let mut line =
            serde_json::to_vec(&Request::new(command)).map_err(|e| ManagerError::Refused(e.to_string()))?;
        line.push(b'\n');
        // A write that fails may still have a reply waiting (trc refused us early): read it.
        let written = stream.write_all(&line);
        let mut reader = BufReader::new(stream);
        let mut text = String::new();
        match (reader.read_line(&mut text), written) {
            (Ok(n), _) if n > 0 => {}
            (_, Err(e)) | (Err(e), _) => return Err(timed_out(e)),
            (Ok(_), Ok(())) => {}
        }
        if text.is_empty() {
            return Err(ManagerError::Unavailable("trc closed the connection without a reply".to_owned()));
        }
        let reply: Reply = serde_json::from_str(&text).map_err(|e| {
            ManagerError::Unavailable(format!("unreadable reply from trc ({e}): {}", text.trim()))
        })?;
        if !reply.ok {
            return Err(ManagerError::Refused(reply.error.unwrap_or_else(|| "refused".to_owned())));
        }
        // What follows the reply (`logs -f`) comes when it comes.
        reader.get_ref().set_read_timeout(None).map_err(unavailable)?;
        Ok((reader, reply))
    }

    pub fn info(&self) -> Result<InstanceInfo> {
        self.call(Command::Info)?.instance.ok_or_else(|| missing("instance"))
    }

    fn task(&self, command: Command) -> Result<TaskInfo> {
        self.call(command)?.task.ok_or_else(|| missing("task"))
    }
}

fn missing(field: &str) -> ManagerError {
    ManagerError::Unavailable(format!("trc's reply has no \"{field}\""))
}

/// Every running instance of this user (root: the system's), with what it says about itself
/// (one that does not answer within `timeout` is left out).
pub fn instances(timeout: Option<Duration>) -> Vec<Instance> {
    let mut found: Vec<Instance> = running_dirs()
        .into_iter()
        .filter_map(|dir| Trc::at(&dir).timeout(timeout).info().ok().map(|info| Instance { dir, info }))
        .collect();
    found.sort_by(|a, b| a.info.name.cmp(&b.info.name));
    found
}

/// The runtime dirs of the instances that run (answering or not).
pub fn running_dirs() -> Vec<PathBuf> {
    runtime_dir::lookup_dirs()
        .into_iter()
        .filter_map(|base| std::fs::read_dir(base).ok())
        .flat_map(|entries| entries.flatten().map(|e| e.path()))
        .filter(|dir| runtime_dir::is_running(dir))
        .collect()
}

impl Manager for Trc {
    fn kind(&self) -> &'static str {
        "trc"
    }

    fn list(&mut self) -> Result<Vec<TaskInfo>> {
        self.call(Command::List)?.tasks.ok_or_else(|| missing("tasks"))
    }

    fn status(&mut self, name: &str) -> Result<TaskInfo> {
        self.task(Command::Status { task: name.to_owned() })
    }

    fn start(&mut self, name: &str) -> Result<TaskInfo> {
        self.task(Command::Start { task: name.to_owned() })
    }

    fn stop(&mut self, name: &str) -> Result<TaskInfo> {
        self.task(Command::Stop { task: name.to_owned() })
    }

    fn restart(&mut self, name: &str) -> Result<TaskInfo> {
        self.task(Command::Restart { task: name.to_owned() })
    }

    fn signal(&mut self, name: &str, signal: Signal) -> Result<()> {
        self.call(Command::Signal { task: name.to_owned(), signal: signal.as_str().to_owned() }).map(|_| ())
    }

    fn ensure(&mut self, spec: &EnsureSpec) -> Result<(Ensured, TaskInfo)> {
        // A relative --cwd means the caller's directory, not trc's.
        let spec = &super::backend::absolute_cwd(spec)?;
        let reply = self.call(Command::Ensure {
            task: spec.name.clone(),
            command: spec.command.clone(),
            cwd: spec.cwd.as_ref().map(|p| p.to_string_lossy().into_owned()),
            env: spec.env.iter().cloned().collect(),
            directives: spec.directives.iter().cloned().collect(),
        })?;
        let ensured = reply.ensured.as_deref().and_then(Ensured::parse).ok_or_else(|| missing("ensured"))?;
        Ok((ensured, reply.task.ok_or_else(|| missing("task"))?))
    }

    fn start_all(&mut self) -> Result<Vec<String>> {
        let tasks = self.call(Command::StartAll)?.tasks.ok_or_else(|| missing("tasks"))?;
        Ok(tasks.into_iter().map(|t| t.name).collect())
    }

    fn logs(
        &mut self,
        name: &str,
        lines: usize,
        follow: bool,
        sink: &mut dyn FnMut(LogLine) -> std::io::Result<()>,
    ) -> Result<()> {
        let gone = |e: std::io::Error| ManagerError::Unavailable(format!("trc went away: {e}"));
        let (mut reader, reply) =
            self.open(Command::Logs { task: name.to_owned(), lines: Some(lines), follow })?;
        for line in reply.lines.unwrap_or_default() {
            if sink(line).is_err() {
                return Ok(());
            }
        }
        if !follow {
            return Ok(());
        }
        let mut text = String::new();
        loop {
            text.clear();
            // Blocked in a read, this follower would notice that its reader went away only
            // at the task's next line (src/control/follow.rs): wait for either. What is
            // buffered already is read first.
            if reader.buffer().is_empty()
                && follow::wait(reader.get_ref().as_fd()).map_err(gone)? == Wake::OutputGone
            {
                return Ok(());
            }
            if reader.read_line(&mut text).map_err(gone)? == 0 {
                return Ok(());
            }
            let message: LogMessage = serde_json::from_str(&text)
                .map_err(|e| ManagerError::Unavailable(format!("unreadable message from trc ({e})")))?;
            let line = match (message.line, message.dropped) {
                (Some(line), _) => line,
                (None, Some(n)) => LogLine {
                    stream: "trcctl".to_owned(),
                    text: format!("... {n} lines skipped (read too slowly)"),
                },
                (None, None) => continue,
            };
            if sink(line).is_err() {
                return Ok(());
            }
        }
    }

    fn reload(&mut self) -> Result<ReloadReport> {
        self.call(Command::Reload)?.reload.ok_or_else(|| missing("reload"))
    }
}
