//! trcctl on a target machine: each verb is run there by the target's own `trcctl --json`,
//! through the system's `ssh` client, and its JSON is read back, so that the caller prints it
//! as it prints a local answer.
//!
//! ```text
//! ssh [TRCCTL_SSH words] -o BatchMode=yes -T [-p PORT] [-l USER] -- HOST 'trcctl' '--json' ... VERB ARGS...
//! ```
//!
//! Authentication is ssh's own (its config, keys, agent); `BatchMode=yes` makes it fail rather
//! than ask for a password or a host key's confirmation. The remote command is one string for
//! the remote user's (POSIX) shell, every word quoted. Exit statuses: the remote trcctl's when it
//! ran ([`ManagerError::Remote`], whose text is its stderr), 69 when ssh itself failed (status
//! 255: the host cannot be reached, refused the key, ...) or the remote shell could not run
//! trcctl (126, 127), with ssh's or the shell's words.

use super::follow::{self, Wake};
use super::manager::{check_task_name, EnsureSpec, Ensured, Manager, ManagerError, Result};
use super::protocol::{CheckReport, InstanceInfo, LogLine, ReloadReport, TaskInfo};
use nix::sys::signal::Signal;
use serde::de::DeserializeOwned;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;

/// The ssh client when `TRCCTL_SSH` does not name another command line.
pub const DEFAULT_SSH: &str = "ssh";
/// The trcctl run on the target when `--remote-trcctl` does not name another.
pub const DEFAULT_TRCCTL: &str = "trcctl";
/// At most this much of ssh's stderr is kept (the rest of a long stream is dropped).
const MAX_STDERR: usize = 64 * 1024;

/// `[USER@]HOST[:PORT]`; an IPv6 address with a port is written `[ADDR]:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

impl Target {
    pub fn parse(text: &str) -> std::result::Result<Target, String> {
        let bad = |why: &str| format!("bad host \"{text}\": {why} (expected [USER@]HOST[:PORT])");
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("no spaces or control characters"));
        }
        let (user, rest) = match text.rsplit_once('@') {
            Some((user, rest)) => {
                if user.is_empty() || user.starts_with('-') {
                    return Err(bad("a bad user name"));
                }
                (Some(user.to_owned()), rest)
            }
            None => (None, text),
        };
        let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            let (host, after) = bracketed.split_once(']').ok_or_else(|| bad("no closing ]"))?;
            match after {
                "" => (host, None),
                _ => (host, Some(after.strip_prefix(':').ok_or_else(|| bad("text after ]"))?)),
            }
        } else {
            match rest.split_once(':') {
                // One colon: HOST:PORT. More: an IPv6 address without a port.
                Some((host, port)) if !port.contains(':') => (host, Some(port)),
                _ => (rest, None),
            }
        };
        if host.is_empty() || host.starts_with('-') {
            return Err(bad("no host name"));
        }
        let port = match port {
            None => None,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => Some(n),
                _ => return Err(bad(&format!("\"{p}\" is not a port"))),
            },
        };
        Ok(Target { user, host: host.to_owned(), port })
    }
}

/// What a [`Remote`] runs, and the options it passes to the remote trcctl.
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// The ssh command line: the program and its first words (`TRCCTL_SSH`, split as the
    /// shell would).
    pub ssh: Vec<String>,
    /// The trcctl to run on the target (a name looked up in the remote PATH, or a path).
    pub trcctl: String,
    /// `--manager` for the remote trcctl (none: its own default).
    pub manager: Option<String>,
    /// `--instance` for the remote trcctl.
    pub instance: Option<String>,
    /// `--user` for the remote trcctl.
    pub user: bool,
    /// `--timeout` for the remote trcctl (none: its own default).
    pub timeout: Option<String>,
}

impl Default for RemoteOptions {
    fn default() -> RemoteOptions {
        RemoteOptions {
            ssh: vec![DEFAULT_SSH.to_owned()],
            trcctl: DEFAULT_TRCCTL.to_owned(),
            manager: None,
            instance: None,
            user: false,
            timeout: None,
        }
    }
}

impl RemoteOptions {
    /// Sets `ssh` from a command line such as `ssh -F /dev/null -i key`.
    pub fn ssh_command_line(&mut self, line: &str) -> std::result::Result<(), String> {
        match shlex::split(line) {
            Some(words) if !words.is_empty() => {
                self.ssh = words;
                Ok(())
            }
            _ => Err(format!("TRCCTL_SSH=\"{line}\" is not a command line (empty, or unbalanced quotes)")),
        }
    }
}

/// A target machine's process manager, reached through ssh and its trcctl.
#[derive(Debug)]
pub struct Remote {
    /// The target as written (for messages).
    text: String,
    target: Target,
    options: RemoteOptions,
}

/// A running `ssh` whose stderr is being collected.
struct Session {
    child: Child,
    stdout: ChildStdout,
    stderr: JoinHandle<String>,
}

impl Remote {
    /// `[USER@]HOST[:PORT]` with these options; a bad target is an `Err` with the reason
    /// (trcctl: a usage error).
    pub fn new(target: &str, options: RemoteOptions) -> std::result::Result<Remote, String> {
        if options.ssh.is_empty() || options.trcctl.is_empty() {
            return Err("empty ssh command or remote trcctl".to_owned());
        }
        Ok(Remote { text: target.to_owned(), target: Target::parse(target)?, options })
    }

    /// The ssh command that runs the remote `trcctl --json [GLOBAL OPTIONS] ARGS...`.
    pub fn command(&self, args: &[String]) -> Result<Command> {
        let mut words = vec![self.options.trcctl.clone(), "--json".to_owned()];
        if let Some(manager) = &self.options.manager {
            words.push(format!("--manager={manager}"));
        }
        if let Some(instance) = &self.options.instance {
            words.push(format!("--instance={instance}"));
        }
        if self.options.user {
            words.push("--user".to_owned());
        }
        if let Some(timeout) = &self.options.timeout {
            words.push(format!("--timeout={timeout}"));
        }
        words.extend(args.iter().cloned());
        let quoted: Vec<String> = words
            .iter()
            .map(|word| {
                shlex::try_quote(word).map(|q| q.into_owned()).map_err(|_| {
                    ManagerError::Refused(format!("cannot pass {word:?} to the remote shell (NUL byte)"))
                })
            })
            .collect::<Result<_>>()?;
        let mut cmd = Command::new(&self.options.ssh[0]);
        // The caller's words first: for -o options ssh takes the first value, so TRCCTL_SSH may
        // override these.
        cmd.args(&self.options.ssh[1..]).args(["-o", "BatchMode=yes", "-T"]);
        if let Some(port) = self.target.port {
            cmd.arg("-p").arg(port.to_string());
        }
        if let Some(user) = &self.target.user {
            cmd.arg("-l").arg(user);
        }
        cmd.arg("--").arg(&self.target.host).arg(quoted.join(" "));
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        end_with_this_process(&mut cmd);
        Ok(cmd)
    }

    fn open_session(&self, args: &[String]) -> Result<Session> {
        let mut cmd = self.command(args)?;
        let mut child = cmd.spawn().map_err(|e| {
            ManagerError::Unavailable(format!("{}: cannot run {}: {e}", self.text, self.options.ssh[0]))
        })?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut err = child.stderr.take().expect("piped stderr");
        let stderr = std::thread::spawn(move || {
            let mut kept = Vec::new();
            let mut buf = [0u8; 8192];
            loop {
                match err.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let room = MAX_STDERR.saturating_sub(kept.len());
                        kept.extend_from_slice(&buf[..n.min(room)]);
                    }
                }
            }
            String::from_utf8_lossy(&kept).into_owned()
        });
        Ok(Session { child, stdout, stderr })
    }

    /// Waits for ssh; its status and stderr. ssh's own failure (255) and a remote trcctl that
    /// could not be run (126, 127) are `Unavailable`.
    fn end(&self, mut session: Session) -> Result<(i32, String)> {
        let status = session.child.wait();
        let stderr = session.stderr.join().unwrap_or_default();
        let status: ExitStatus =
            status.map_err(|e| ManagerError::Unavailable(format!("{}: waiting for ssh: {e}", self.text)))?;
        let said = |what: &str| -> String {
            let text = stderr.trim();
            match text.lines().count() {
                0 => what.to_owned(),
                1 => format!("{what}: {text}"),
                _ => format!("{what}:\n{text}"),
            }
        };
        match status.code() {
            Some(255) => Err(ManagerError::Unavailable(said(&format!(
                "{}: cannot be reached through ssh (ssh exited with status 255)",
                self.text
            )))),
            Some(code @ (126 | 127)) => Err(ManagerError::Unavailable(said(&format!(
                "{}: cannot run {:?} there (status {code}; name it with --remote-trcctl or TRCCTL_REMOTE)",
                self.text, self.options.trcctl
            )))),
            Some(code) => Ok((code, stderr)),
            None => {
                use std::os::unix::process::ExitStatusExt;
                Err(ManagerError::Unavailable(format!(
                    "{}: ssh was killed by signal {}",
                    self.text,
                    status.signal().unwrap_or(0)
                )))
            }
        }
    }

    /// Runs the remote trcctl to its end: its status, stdout and stderr.
    fn run_raw(&self, args: &[String]) -> Result<(i32, String, String)> {
        let mut session = self.open_session(args)?;
        let mut stdout = Vec::new();
        let read = session.stdout.read_to_end(&mut stdout);
        let (code, stderr) = self.end(session)?;
        read.map_err(|e| ManagerError::Unavailable(format!("{}: reading from ssh: {e}", self.text)))?;
        Ok((code, String::from_utf8_lossy(&stdout).into_owned(), stderr))
    }

    /// Runs the remote trcctl; its stdout when it succeeded (what it said on stderr is passed
    /// on to ours), else its status and stderr as [`ManagerError::Remote`].
    fn run(&self, args: &[String]) -> Result<String> {
        let (code, stdout, stderr) = self.run_raw(args)?;
        if code == 0 {
            pass_on(&stderr);
            return Ok(stdout);
        }
        Err(self.failed(code, stderr))
    }

    fn failed(&self, status: i32, stderr: String) -> ManagerError {
        let message = if stderr.trim().is_empty() {
            format!("trcctl: {}: the remote trcctl exited with status {status}\n", self.text)
        } else {
            stderr
        };
        ManagerError::Remote { status, message }
    }

    fn call<T: DeserializeOwned>(&self, args: &[&str]) -> Result<T> {
        let args: Vec<String> = args.iter().map(|&a| a.to_owned()).collect();
        let stdout = self.run(&args)?;
        self.parse(&stdout)
    }

    fn parse<T: DeserializeOwned>(&self, text: &str) -> Result<T> {
        serde_json::from_str(text).map_err(|e| {
            let start: String = text.chars().take(200).collect();
            ManagerError::Unavailable(format!(
                "{}: the remote trcctl's answer is not what this trcctl reads ({e}): {start:?}",
                self.text
            ))
        })
    }

    /// `trcctl instances` on the target.
    pub fn instances(&self) -> Result<Vec<InstanceInfo>> {
        self.call(&["instances"])
    }

    /// `trcctl check` on the target: its report, whether it passed or not (the caller judges
    /// it as for a local check). A remote status other than 0 and 1 is an error.
    pub fn check(&self, ready: bool, alive: bool, names: &[String]) -> Result<CheckReport> {
        let mut args = vec!["check".to_owned()];
        if ready {
            args.push("--ready".to_owned());
        }
        if alive {
            args.push("--alive".to_owned());
        }
        args.push("--".to_owned());
        args.extend(names.iter().cloned());
        let (code, stdout, stderr) = self.run_raw(&args)?;
        match code {
            0 | 1 if !stdout.trim().is_empty() => {
                if code == 0 {
                    pass_on(&stderr);
                }
                self.parse(&stdout)
            }
            _ => Err(self.failed(code, stderr)),
        }
    }
}

/// ssh must not outlive trcctl: killed (SIGKILL, or SIGTERM, which trcctl does not catch),
/// trcctl would leave an orphaned ssh holding the connection, and on the target a `logs -f`
/// holding one of trc's follower slots. The kernel sends ssh SIGTERM when its parent dies
/// (`PR_SET_PDEATHSIG`; ssh then closes the connection, and the remote trcctl sees its stdout
/// gone). The signal follows the *thread* that forked: trcctl runs ssh from its main thread,
/// which lives as long as trcctl.
fn end_with_this_process(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the child between fork and exec; it makes two syscalls
    // (prctl, getppid), both async-signal-safe, allocates nothing, and reads only `parent`,
    // copied in before the fork.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGTERM)?;
            // trcctl died between the fork and the prctl: the signal will never come.
            if nix::unistd::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Passes what the remote trcctl (or ssh) said on stderr on to ours.
fn pass_on(stderr: &str) {
    if !stderr.is_empty() {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(stderr.as_bytes());
        let _ = err.flush();
    }
}

#[derive(serde::Deserialize)]
struct EnsureAnswer {
    ensured: String,
    task: TaskInfo,
}

impl Manager for Remote {
    fn kind(&self) -> &'static str {
        "remote"
    }

    fn list(&mut self) -> Result<Vec<TaskInfo>> {
        self.call(&["list"])
    }

    fn status(&mut self, name: &str) -> Result<TaskInfo> {
        self.call(&["status", "--", name])
    }

    fn start(&mut self, name: &str) -> Result<TaskInfo> {
        self.call(&["start", "--", name])
    }

    fn stop(&mut self, name: &str) -> Result<TaskInfo> {
        self.call(&["stop", "--", name])
    }

    fn restart(&mut self, name: &str) -> Result<TaskInfo> {
        self.call(&["restart", "--", name])
    }

    fn signal(&mut self, name: &str, signal: Signal) -> Result<()> {
        self.call::<serde_json::Value>(&["signal", "--", name, signal.as_str()]).map(drop)
    }

    fn ensure(&mut self, spec: &EnsureSpec) -> Result<(Ensured, TaskInfo)> {
        // The name is a positional word before the command's `--`: refuse one that the remote
        // trcctl would take for an option (no manager takes such a name).
        check_task_name(&spec.name)?;
        let mut args = vec!["ensure".to_owned()];
        if let Some(cwd) = &spec.cwd {
            args.push(format!("--cwd={}", cwd.to_string_lossy()));
        }
        for (key, value) in &spec.env {
            args.push(format!("--env={key}={value}"));
        }
        for (key, value) in &spec.directives {
            args.push(format!("--{key}={value}"));
        }
        args.push(spec.name.clone());
        if !spec.command.is_empty() {
            args.push("--".to_owned());
            args.extend(spec.command.iter().cloned());
        }
        let answer: EnsureAnswer = self.parse(&self.run(&args)?)?;
        let outcome = Ensured::parse(&answer.ensured).ok_or_else(|| {
            ManagerError::Unavailable(format!("{}: unknown ensure outcome \"{}\"", self.text, answer.ensured))
        })?;
        Ok((outcome, answer.task))
    }

    fn start_all(&mut self) -> Result<Vec<String>> {
        self.call(&["start-all"])
    }

    /// The remote `trcctl --json logs` prints one line object per line, as it gets them: each
    /// is given to `sink` as it arrives. When `sink` fails or (following) our stdout's reader
    /// goes away, ssh is ended.
    fn logs(
        &mut self,
        name: &str,
        lines: usize,
        follow: bool,
        sink: &mut dyn FnMut(LogLine) -> std::io::Result<()>,
    ) -> Result<()> {
        let mut args = vec!["logs".to_owned(), format!("--lines={lines}")];
        if follow {
            args.push("--follow".to_owned());
        }
        args.extend(["--".to_owned(), name.to_owned()]);
        let mut session = self.open_session(&args)?;
        let mut reader = BufReader::new(&mut session.stdout);
        let mut text = String::new();
        let mut problem = None;
        loop {
            text.clear();
            // As the trc backend does (src/control/follow.rs): a follower whose reader went
            // away ends now, not at the task's next line.
            if follow && reader.buffer().is_empty() {
                match follow::wait(reader.get_ref().as_fd()) {
                    Ok(Wake::Input) => {}
                    Ok(Wake::OutputGone) => {
                        drop(reader);
                        let _ = session.child.kill();
                        let _ = self.end(session);
                        return Ok(());
                    }
                    Err(e) => {
                        problem =
                            Some(ManagerError::Unavailable(format!("{}: waiting for ssh: {e}", self.text)));
                        break;
                    }
                }
            }
            match reader.read_line(&mut text) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    problem =
                        Some(ManagerError::Unavailable(format!("{}: reading from ssh: {e}", self.text)));
                    break;
                }
            }
            if text.trim().is_empty() {
                continue;
            }
            let line = match self.parse::<LogLine>(&text) {
                Ok(line) => line,
                Err(e) => {
                    problem = Some(e);
                    break;
                }
            };
            if sink(line).is_err() {
                let _ = session.child.kill();
                let _ = self.end(session);
                return Ok(());
            }
        }
        drop(reader);
        if let Some(problem) = problem {
            let _ = session.child.kill();
            let _ = self.end(session);
            return Err(problem);
        }
        match self.end(session)? {
            (0, stderr) => {
                pass_on(&stderr);
                Ok(())
            }
            (code, stderr) => Err(self.failed(code, stderr)),
        }
    }

    fn reload(&mut self) -> Result<ReloadReport> {
        self.call(&["reload"])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = |user: Option<&str>, host: &str, port: Option<u16>| Target {
            user: user.map(str::to_owned),
            host: host.to_owned(),
            port,
        };
        assert_eq!(Target::parse("web1").unwrap(), t(None, "web1", None));
        assert_eq!(Target::parse("root@web1:2222").unwrap(), t(Some("root"), "web1", Some(2222)));
        assert_eq!(Target::parse("a@b@10.0.0.1").unwrap(), t(Some("a@b"), "10.0.0.1", None));
        assert_eq!(Target::parse("::1").unwrap(), t(None, "::1", None));
        assert_eq!(Target::parse("me@[::1]:22").unwrap(), t(Some("me"), "::1", Some(22)));
        assert_eq!(Target::parse("[fe80::1]").unwrap(), t(None, "fe80::1", None));
        for bad in
            ["", "@h", "u@", "-oProxyCommand=x", "h:0", "h:99999", "h:x", "[::1", "[::1]x", "a b", ":22"]
        {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_ssh_command_line_quotes_every_word() {
        let mut options = RemoteOptions {
            instance: Some("my app".into()),
            manager: Some("trc".into()),
            trcctl: "/opt/trc/bin/trcctl".into(),
            ..RemoteOptions::default()
        };
        options.ssh_command_line("ssh -F '/tmp/my config'").unwrap();
        let remote = Remote::new("deploy@host:2200", options).unwrap();
        let cmd = remote.command(&["status".into(), "--".into(), "it's $HOME".into()]).unwrap();
        assert_eq!(cmd.get_program(), "ssh");
        let args: Vec<_> = cmd.get_args().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            args,
            [
                "-F",
                "/tmp/my config",
                "-o",
                "BatchMode=yes",
                "-T",
                "-p",
                "2200",
                "-l",
                "deploy",
                "--",
                "host",
                "/opt/trc/bin/trcctl --json '--manager=trc' '--instance=my app' status -- \"it's \"'$HOME'"
            ]
        );
        assert!(RemoteOptions::default().ssh_command_line("ssh 'x").is_err());
        assert!(RemoteOptions::default().ssh_command_line("  ").is_err());
    }
}
