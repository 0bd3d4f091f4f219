//! One interface to process managers: trc itself (over its control socket), systemd, runit
//! and tmux, here or on a target machine reached through ssh (`remote.rs`). `trcctl` is a thin
//! front end to it; other Rust programs can use it too.

use super::protocol::{LogLine, ReloadReport, TaskInfo};
use nix::sys::signal::Signal;
use std::path::PathBuf;

/// Why a manager could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// The manager is not there or does not answer (exit status 69, `EX_UNAVAILABLE`).
    #[error("{0}")]
    Unavailable(String),
    /// It answered and said no: an unknown task, a task that cannot be started... (exit 1).
    #[error("{0}")]
    Refused(String),
    /// A remote trcctl (`trcctl --host`) ran and failed with this exit status (1, 2, 69...);
    /// `message` is what it said on stderr, its own `trcctl: ...` lines, to be shown as they
    /// are.
    #[error("{message}")]
    Remote { status: i32, message: String },
}

impl ManagerError {
    /// `trcctl`'s exit status for this error.
    pub fn exit_status(&self) -> i32 {
        match self {
            ManagerError::Unavailable(_) => 69,
            ManagerError::Refused(_) => 1,
            ManagerError::Remote { status, .. } => *status,
        }
    }
}

pub type Result<T> = std::result::Result<T, ManagerError>;

/// What `ensure` registers: a long-running program with its working directory and
/// environment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EnsureSpec {
    pub name: String,
    /// The program and its arguments; empty means "already registered: make sure it runs".
    pub command: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    /// trc header directives (`restart`, `restart-delay`, ...). Other managers map what they
    /// can (`restart` and `restart-delay`) and refuse the rest.
    pub directives: Vec<(String, String)>,
}

/// What `ensure` did to the registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ensured {
    Created,
    Updated,
    Unchanged,
}

impl Ensured {
    pub fn as_str(self) -> &'static str {
        match self {
            Ensured::Created => "created",
            Ensured::Updated => "updated",
            Ensured::Unchanged => "unchanged",
        }
    }

    pub fn parse(text: &str) -> Option<Ensured> {
        match text {
            "created" => Some(Ensured::Created),
            "updated" => Some(Ensured::Updated),
            "unchanged" => Some(Ensured::Unchanged),
            _ => None,
        }
    }
}

/// The process-manager API: the verbs of `trcctl`.
pub trait Manager {
    /// `trc`, `systemd`, `runit` or `tmux`.
    fn kind(&self) -> &'static str;
    fn list(&mut self) -> Result<Vec<TaskInfo>>;
    fn status(&mut self, name: &str) -> Result<TaskInfo>;
    /// Starts a task that is not running; returns it as it is then.
    fn start(&mut self, name: &str) -> Result<TaskInfo>;
    /// Stops a task and keeps it down until `start`; returns once it has exited.
    fn stop(&mut self, name: &str) -> Result<TaskInfo>;
    fn restart(&mut self, name: &str) -> Result<TaskInfo>;
    fn signal(&mut self, name: &str, signal: Signal) -> Result<()>;
    /// Registers (or updates) a task and makes sure it runs.
    fn ensure(&mut self, spec: &EnsureSpec) -> Result<(Ensured, TaskInfo)>;
    /// Starts every registered task that is not running; returns the names it started.
    fn start_all(&mut self) -> Result<Vec<String>>;
    /// The last `lines` lines of a task's output, given to `sink` one by one; with `follow`,
    /// then every new line until `sink` fails (the reader went away) or the manager ends. The
    /// trc backend and `--host` also end as soon as this process's stdout has no reader, while
    /// the task is quiet (src/control/follow.rs): their `sink` is expected to write there.
    fn logs(
        &mut self,
        name: &str,
        lines: usize,
        follow: bool,
        sink: &mut dyn FnMut(LogLine) -> std::io::Result<()>,
    ) -> Result<()>;
    /// Reads the registrations again and applies them.
    fn reload(&mut self) -> Result<ReloadReport>;
}

/// A task name other managers can take as a service name too: letters, digits, `.`, `_`, `-`
/// and `@`, not starting with `.` or `-`, at most 64 bytes.
pub fn check_task_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ManagerError::Refused(format!(
            "bad task name \"{name}\": use letters, digits, '.', '_', '-' or '@' (at most 64, not starting with '.' or '-')"
        )))
    }
}

/// The body of a shell script that runs `spec`: cd, exports, `exec` of the command (every
/// word quoted). trc's `async.NAME` files and runit's `run` scripts share it.
pub fn shell_body(spec: &EnsureSpec) -> Result<String> {
    let quote = |word: &str| {
        shlex::try_quote(word)
            .map(|q| q.into_owned())
            .map_err(|_| ManagerError::Refused(format!("cannot quote {word:?} for the shell (NUL byte)")))
    };
    let mut body = String::new();
    if let Some(cwd) = &spec.cwd {
        body.push_str(&format!("cd -- {} || exit 1\n", quote(&cwd.to_string_lossy())?));
    }
    for (key, value) in &spec.env {
        if key.is_empty()
            || key.starts_with(|c: char| c.is_ascii_digit())
            || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(ManagerError::Refused(format!("bad variable name \"{key}\"")));
        }
        body.push_str(&format!("export {key}={}\n", quote(value)?));
    }
    let words: Vec<String> = spec.command.iter().map(|w| quote(w)).collect::<Result<_>>()?;
    body.push_str(&format!("exec {}\n", words.join(" ")));
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_bodies_quote_every_word() {
        let spec = EnsureSpec {
            name: "web".into(),
            command: vec!["printf".into(), "%s\\n".into(), "it's $HOME".into()],
            cwd: Some("/srv/my app".into()),
            env: vec![("GREETING".into(), "a b".into())],
            directives: vec![],
        };
        assert_eq!(
            shell_body(&spec).unwrap(),
            "cd -- '/srv/my app' || exit 1\nexport GREETING='a b'\nexec printf \"%s\\\\n\" \"it's \"'$HOME'\n"
        );
        let bad = EnsureSpec { env: vec![("A-B".into(), "x".into())], ..spec };
        assert!(shell_body(&bad).is_err());
    }

    #[test]
    fn task_names() {
        assert!(check_task_name("web-1").is_ok());
        for bad in ["", ".x", "-x", "a b", "a/b", &"x".repeat(65)] {
            assert!(check_task_name(bad).is_err(), "{bad}");
        }
    }
}
