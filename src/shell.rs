//! The bash bridge. Shell tasks run as `bash -c '. PRELUDE_FILE'` (the prelude written once into
//! the runtime dir; inline with `-c PRELUDE` when it could not be), with an argv[0] that names
//! the task (`trc: async web`, what `ps`, `pgrep -f` and `systemctl status` show), which
//! defines TrivialRC's integrated
//! functions (`say`, `log`, `warn`, `err`, `debug`, `run`), restores what boot set, and then
//! sources the task file inside a function (so `local` works) or evals the command string.
//!
//! TrivialRC runs boot in its main shell, so what boot sets is seen by everything after it. trc
//! runs each boot task in its own bash, which saves its variables, functions, options, umask,
//! cwd and rewritten argv when it completes; every later shell task restores that state first.

use crate::config::Stage;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The signals a shell task traps to exit with 128+N, as TrivialRC's task subshells do.
const TRAPPED: [(&str, i32); 12] = [
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ABRT", libc::SIGABRT),
    ("USR1", libc::SIGUSR1),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
];

/// Stop signals that a shell task leaves at their default action instead of trapping them.
///
/// bash runs a trap only at its next safe point: a signal that comes while bash is starting a
/// program (looking it up, forking, exec'ing) is taken by the trap's handler and then lost
/// when bash execs (the program never sees it) or waits for the child it just forked (which
/// never got it, so the trap never runs). The program then runs on until the stop-timeout's
/// SIGKILL. With its default action the signal cannot be lost: it ends bash at once, stays
/// pending across exec, and reaches a child forked before it. The status is the same 128+N
/// and bash still runs the task's own EXIT trap (with bash's own handler, race-free).
///
/// Not in the list, so trapped as TrivialRC does even as stop signals: INT (without a trap,
/// bash would let the script go on after a foreground program that handled it), and QUIT,
/// ABRT, XCPU and XFSZ (whose default action dumps core).
const DEFAULT_WHEN_STOP_SIGNAL: [i32; 7] = [
    libc::SIGHUP,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGPIPE,
    libc::SIGALRM,
    libc::SIGTERM,
    libc::SIGVTALRM,
];

/// The prelude with its trap lines filled in: each one is skipped when its signal is the one
/// the prelude is told to leave alone (`_trc_untrapped`).
pub fn prelude() -> &'static str {
    static PRELUDE: OnceLock<String> = OnceLock::new();
    PRELUDE.get_or_init(|| {
        let traps: Vec<String> = TRAPPED
            .iter()
            .map(|(name, num)| format!("[[ $_trc_untrapped == {num} ]] || trap 'exit {}' {name}", 128 + num))
            .collect();
        include_str!("prelude.bash").replace("@TRAPS@", &traps.join("\n    "))
    })
}

/// What a shell task runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShellKind {
    /// A task file, sourced.
    File,
    /// A `-B/-H/-D/-F` string, evaluated.
    Command,
    /// A program run through bash only to get boot's exported state (`exec` at once).
    Exec,
    /// The trailing command, an argv: exec'd if it is a program, else run (builtin, function).
    Argv,
}

/// Builds the bash command for one shell task. `args` become `"$@"`; `state` is the file a
/// boot task saved; `save_to` (boot only) is where this boot task saves its own.
pub struct ShellTask<'a> {
    pub stage: Stage,
    pub kind: ShellKind,
    pub src: &'a OsStr,
    pub args: &'a [OsString],
    pub state: Option<&'a Path>,
    pub save_to: Option<&'a Path>,
    /// `$0` inside the task (TrivialRC's is the path of its script).
    pub arg0: &'a OsStr,
    /// The signal trc stops the task with (see [`DEFAULT_WHEN_STOP_SIGNAL`]).
    pub stop_signal: nix::sys::signal::Signal,
    /// Bash code run right after the boot state is restored: the task's own settings that
    /// must win over it (its `cwd:`, `umask:`, variables).
    pub after_state: Option<&'a str>,
    /// The prelude written as a file (see [`write_prelude`]); inline when `None`.
    pub prelude_file: Option<&'a Path>,
    /// The task's name, for its process title.
    pub name: &'a str,
}

/// Writes the prelude into `dir` (mode 0600: the files of trc's runtime dir are its own; a
/// task of another user gets its own copy, see `supervisor/access.rs`) and returns its path.
pub fn write_prelude(dir: &Path) -> std::io::Result<PathBuf> {
    let path = dir.join("prelude.bash");
    crate::fsutil::write_atomically(&path, prelude().as_bytes(), 0o600)?;
    Ok(path)
}

impl ShellTask<'_> {
    pub fn command(&self) -> ShellCommand {
        let kind = match (self.kind, self.stage) {
            (ShellKind::Exec, _) => "exec",
            (ShellKind::Argv, _) => "argv",
            (ShellKind::File, Stage::Boot) => "boot-file",
            (ShellKind::Command, Stage::Boot) => "boot-cmd",
            (ShellKind::File, Stage::Halt) => "halt-file",
            (ShellKind::Command, Stage::Halt) => "halt-cmd",
            (ShellKind::File, _) => "task-file",
            (ShellKind::Command, _) => "task-cmd",
        };
        let script = match self.prelude_file {
            Some(path) => {
                let mut dot = OsString::from(". ");
                dot.push(shlex::try_quote(&path.to_string_lossy()).unwrap_or_default().as_ref());
                dot
            }
            None => OsString::from(prelude()),
        };
        let mut args: Vec<OsString> =
            ["--noprofile", "--norc", "-c"].into_iter().map(OsString::from).collect();
        args.push(script);
        args.push(self.arg0.to_owned());
        // The task's arguments go in a variable, quoted for bash, so that its command line
        // (what `ps`, `pgrep -f` and `systemctl status` show) names the task and nothing of
        // the others: trc's own argv holds every -D/-F string. (One that would not fit in a
        // variable, over 100 KiB, stays on the command line.)
        let quoted = quote_words(self.args);
        let mut args_env = None;
        if quoted.len() <= MAX_QUOTED_ARGS {
            args_env = Some(("_TRC_ARGS".into(), quoted));
        } else {
            args.extend(self.args.iter().cloned());
        }
        let path = |p: Option<&Path>| p.map(|p| p.as_os_str().to_owned()).unwrap_or_default();
        let stop = self.stop_signal as i32;
        let untrapped =
            if DEFAULT_WHEN_STOP_SIGNAL.contains(&stop) { stop.to_string() } else { String::new() };
        let stage = self.stage.as_str();
        let mut env: Vec<(OsString, OsString)> = args_env.into_iter().collect();
        env.extend([
            ("_TRC_COMM".into(), comm_name(self.name).into()),
            ("_TRC_KIND".into(), kind.into()),
            ("_TRC_SRC".into(), self.src.to_owned()),
            ("_TRC_NS".into(), self.stage.ns().into()),
            ("_TRC_STATE".into(), path(self.state)),
            ("_TRC_SAVE".into(), path(self.save_to)),
            ("_TRC_UNTRAPPED".into(), untrapped.into()),
            ("_TRC_AFTER".into(), self.after_state.unwrap_or_default().into()),
        ]);
        ShellCommand {
            program: OsString::from("bash"),
            title: OsString::from(format!("trc: {stage} {}", self.name)),
            args,
            env,
        }
    }
}

/// Above this, a task's arguments stay on bash's command line (a variable's text must fit in
/// the kernel's 128 KiB per string).
const MAX_QUOTED_ARGS: usize = 100 * 1024;

/// `words` as bash words: each in single quotes (a `'` inside as `'\''`), any byte kept.
fn quote_words(words: &[OsString]) -> OsString {
    let mut out = Vec::new();
    for word in words {
        out.push(b'\'');
        for &b in word.as_bytes() {
            if b == b'\'' {
                out.extend_from_slice(b"'\\''");
            } else {
                out.push(b);
            }
        }
        out.extend_from_slice(b"' ");
    }
    OsString::from_vec(out)
}

/// The kernel's short name for the task's bash (`top`, `ps -e`, `pgrep`): `trc:NAME`, cut to
/// the 15 bytes it keeps (at a character boundary).
fn comm_name(name: &str) -> String {
    let mut comm = format!("trc:{name}");
    let mut end = comm.len().min(15);
    while !comm.is_char_boundary(end) {
        end -= 1;
    }
    comm.truncate(end);
    comm
}

/// The bash command that runs a shell task: program, arguments, and variables on top of
/// trc's environment.
#[derive(Debug, Clone, PartialEq)]
pub struct ShellCommand {
    pub program: OsString,
    /// argv[0]: the process title.
    pub title: OsString,
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
}

/// What a completed boot task left for trc: the state file later shell tasks restore, the
/// argv it may have rewritten, and the `RC_*` variables as they are now.
#[derive(Debug, Clone, PartialEq)]
pub struct BootSave {
    pub state: PathBuf,
    pub argv: Vec<OsString>,
    pub rc_vars: Vec<(String, String)>,
}

/// Reads what the boot task that saved to `base` left. `Ok(None)` when it did not complete
/// (it ended with `exit` before the end of the file).
pub fn read_boot_save(base: &Path) -> std::io::Result<Option<BootSave>> {
    let nul = with_suffix(base, ".nul");
    let data = match std::fs::read(&nul) {
        Ok(data) => data,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let bad =
        || std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: malformed", nul.display()));
    let mut fields = data.split(|&b| b == 0);
    let argc: usize =
        fields.next().and_then(|f| std::str::from_utf8(f).ok()?.parse().ok()).ok_or_else(bad)?;
    let mut argv = Vec::with_capacity(argc);
    for _ in 0..argc {
        argv.push(OsString::from_vec(fields.next().ok_or_else(bad)?.to_vec()));
    }
    let mut rc_vars = Vec::new();
    for field in fields.filter(|f| !f.is_empty()) {
        let text = String::from_utf8_lossy(field);
        let (name, value) = text.split_once('=').ok_or_else(bad)?;
        rc_vars.push((name.to_owned(), value.to_owned()));
    }
    Ok(Some(BootSave { state: with_suffix(base, ".sh"), argv, rc_vars }))
}

/// Why the boot task that saved to `base` could not save its state (a full runtime dir, say),
/// when it could not: the prelude writes the reason to `<base>.failed` instead of a line of
/// bash noise per variable.
pub fn boot_save_failure(base: &Path) -> Option<String> {
    let reason = std::fs::read_to_string(with_suffix(base, ".failed")).ok()?;
    let reason = reason.trim();
    Some(if reason.is_empty() { "write error".to_owned() } else { reason.to_owned() })
}

fn with_suffix(base: &Path, suffix: &str) -> PathBuf {
    let mut bytes = base.as_os_str().as_bytes().to_vec();
    bytes.extend_from_slice(suffix.as_bytes());
    PathBuf::from(OsString::from_vec(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prelude_has_every_trap() {
        let p = prelude();
        assert!(p.contains("[[ $_trc_untrapped == 15 ]] || trap 'exit 143' TERM"));
        assert!(p.contains("trap 'exit 138' USR1"));
        assert!(!p.contains("@TRAPS@"));
    }

    fn untrapped(stop_signal: nix::sys::signal::Signal) -> OsString {
        let task = ShellTask {
            stage: Stage::Async,
            kind: ShellKind::Command,
            src: OsStr::new("true"),
            args: &[],
            state: None,
            save_to: None,
            arg0: OsStr::new("trc"),
            stop_signal,
            after_state: None,
            prelude_file: None,
            name: "t",
        };
        let spec = task.command();
        spec.env.into_iter().find(|(k, _)| k == "_TRC_UNTRAPPED").map(|(_, v)| v).unwrap()
    }

    #[test]
    fn the_stop_signal_is_left_untrapped_when_its_default_action_is_a_clean_end() {
        use nix::sys::signal::Signal;
        assert_eq!(untrapped(Signal::SIGTERM), "15");
        assert_eq!(untrapped(Signal::SIGHUP), "1");
        assert_eq!(untrapped(Signal::SIGUSR2), "12");
        for trapped in [Signal::SIGINT, Signal::SIGQUIT, Signal::SIGABRT, Signal::SIGXCPU, Signal::SIGKILL] {
            assert_eq!(untrapped(trapped), "", "{trapped}");
        }
    }

    #[test]
    fn reads_a_boot_save() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("boot-0");
        assert_eq!(read_boot_save(&base).unwrap(), None);
        std::fs::write(with_suffix(&base, ".nul"), b"2\0-F\0echo a b\0RC_VERBOSE=true\0RC_X=a=b\0").unwrap();
        let save = read_boot_save(&base).unwrap().unwrap();
        assert_eq!(save.argv, vec![OsString::from("-F"), OsString::from("echo a b")]);
        assert_eq!(save.rc_vars, vec![("RC_VERBOSE".into(), "true".into()), ("RC_X".into(), "a=b".into())]);
        assert_eq!(save.state, dir.path().join("boot-0.sh"));
        std::fs::write(with_suffix(&base, ".nul"), b"3\0-F\0").unwrap();
        assert!(read_boot_save(&base).is_err());
    }

    #[test]
    fn reads_why_a_boot_save_failed() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("boot-0");
        assert_eq!(boot_save_failure(&base), None);
        std::fs::write(with_suffix(&base, ".failed"), "No space left on device\n").unwrap();
        assert_eq!(boot_save_failure(&base).as_deref(), Some("No space left on device"));
    }
}
