//! Shared harness for the black-box tests: run the real `trc` binary on real directories, wait
//! on events (a line appearing, a process exiting) with generous deadlines, never fixed sleeps.
//! Whatever a test starts is killed when it ends, passed or failed ([`process_tree`]).
#![allow(dead_code)]

pub mod process_tree;
pub mod sandbox;

pub use process_tree::Spawned;

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// How long any single wait may take before the test fails. Generous: CI is a loaded 2-core box.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub fn trc_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_trc"))
}

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A `trc` invocation being built.
pub struct Trc {
    cmd: Command,
}

/// A finished run. It holds the run's process tree: what trc left behind is killed when the
/// output is dropped, after the test's checks (which may look for such processes).
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    process: Spawned,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output")
            .field("status", &self.status)
            .field("stdout", &self.stdout)
            .field("stderr", &self.stderr)
            .finish()
    }
}

impl Output {
    /// The exit code, or 128+N when trc itself died of signal N (which it should never do).
    pub fn code(&self) -> i32 {
        use std::os::unix::process::ExitStatusExt;
        self.status.code().unwrap_or_else(|| 128 + self.status.signal().unwrap_or(0))
    }
}

impl Trc {
    /// `trc ARGS...`, run in `cwd`, with the `RC_*` variables of the outer environment removed
    /// so that a developer's shell cannot change the outcome.
    pub fn new<I, S>(cwd: &Path, args: I) -> Trc
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let mut cmd = Command::new(trc_bin());
        cmd.current_dir(cwd).args(args.into_iter().map(Into::into));
        for (key, _) in std::env::vars_os() {
            let key_str = key.to_string_lossy();
            if key_str.starts_with("RC_") || key_str.starts_with("TRC_") || key_str == "NOTIFY_SOCKET" {
                cmd.env_remove(&key);
            }
        }
        cmd.env("PWD", cwd);
        Trc { cmd }
    }

    pub fn env(mut self, key: &str, value: &str) -> Trc {
        self.cmd.env(key, value);
        self
    }

    pub fn command(&mut self) -> &mut Command {
        &mut self.cmd
    }

    /// Runs to the end with stdin from /dev/null; fails the test if trc has not exited by the
    /// deadline (and kills it).
    pub fn run(mut self) -> Output {
        self.cmd.stdin(Stdio::null());
        let running = Running::start(self.cmd);
        running.wait()
    }

    /// Starts trc and returns a handle that can wait for lines and send signals.
    pub fn spawn(mut self) -> Running {
        self.cmd.stdin(Stdio::null());
        Running::start(self.cmd)
    }
}

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// A running trc whose output lines arrive on a channel as they are written. Dropped (also when
/// the test fails), it kills trc and everything trc started ([`Spawned`]).
pub struct Running {
    pub child: Spawned,
    lines: Receiver<(Stream, String)>,
    pub stdout: String,
    pub stderr: String,
}

impl Running {
    pub fn start(mut cmd: Command) -> Running {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = Spawned::spawn(&mut cmd);
        let (tx, rx) = channel();
        for (stream, reader) in [
            (Stream::Stdout, Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>),
            (Stream::Stderr, Box::new(child.stderr.take().unwrap()) as Box<dyn Read + Send>),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(reader);
                let mut buf = Vec::new();
                while reader.read_until(b'\n', &mut buf).map(|n| n > 0).unwrap_or(false) {
                    let _ = tx.send((stream, String::from_utf8_lossy(&buf).into_owned()));
                    buf.clear();
                }
            });
        }
        Running { child, lines: rx, stdout: String::new(), stderr: String::new() }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits until a line containing `needle` appears on either stream; returns that line.
    pub fn wait_for_line(&mut self, needle: &str) -> String {
        let until = Instant::now() + DEADLINE;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((stream, line)) => {
                    self.keep(stream, &line);
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    // The drop of `self` kills the whole tree.
                    panic!(
                        "no line containing {needle:?} within {DEADLINE:?}\nstdout:\n{}\nstderr:\n{}",
                        self.stdout, self.stderr
                    );
                }
            }
        }
    }

    fn keep(&mut self, stream: Stream, line: &str) {
        match stream {
            Stream::Stdout => self.stdout.push_str(line),
            Stream::Stderr => self.stderr.push_str(line),
        }
    }

    /// Sends signal `sig` to trc.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the pid of our own child, which we have not reaped yet.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({}, {sig})", self.pid());
    }

    /// Waits for trc to exit (failing the test after the deadline) and collects all output.
    pub fn wait(mut self) -> Output {
        let until = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for trc") {
                break status;
            }
            if Instant::now() > until {
                // The drop of `self` kills the whole tree.
                panic!(
                    "trc did not exit within {DEADLINE:?}\nstdout:\n{}\nstderr:\n{}",
                    self.stdout, self.stderr
                );
            }
            // Collect output while waiting; the receive timeout is the polling interval of
            // this test-side wait, not a fixed sleep that the outcome depends on.
            if let Ok((stream, line)) = self.lines.recv_timeout(Duration::from_millis(20)) {
                self.keep(stream, &line);
            }
        };
        // The reader threads end when every writer of the pipes is gone.
        while let Ok((stream, line)) = self.lines.recv_timeout(DEADLINE) {
            self.keep(stream, &line);
        }
        Output { status, stdout: self.stdout, stderr: self.stderr, process: self.child }
    }
}

/// Replaces the time and pid of TrivialRC-format log lines so they can be compared:
/// `2026-11-24 06:58:41 trc [sync/5572]: text` becomes `TS trc [sync/PID]: text`.
pub fn normalize(text: &str) -> String {
    let re = regex::Regex::new(r"(?m)^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (\S+) \[(\w+)/\d+\]:").unwrap();
    let text = re.replace_all(text, "TS $1 [$2/PID]:");
    let pid = regex::Regex::new(r"<pid=\d+>").unwrap();
    pid.replace_all(&text, "<pid=N>").into_owned()
}

/// Whether the test may use namespaces (needs root). Under `CI=true` it must: a skip there is
/// a failure. Elsewhere the skip is said in the output.
pub fn can_use_namespaces(test: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    let unshare =
        Command::new("unshare").arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
    if root && unshare {
        return true;
    }
    skip(test, "root and unshare(1) (run the tests as root to include it)");
    false
}

/// Says that `test` is skipped, as it `needs` what this machine lacks, where it is seen without
/// `--nocapture`: straight to the test process's stderr, which the test runner does not capture
/// (it captures `eprintln!`). Under `CI=true` a skip is a failure: this panics.
pub fn skip(test: &str, needs: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: needs {needs}, and CI=true forbids skipping it");
    }
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: needs {needs}");
}

/// Where a trc started by the harness makes its runtime dirs (README, "Runtime dir"):
/// `$XDG_RUNTIME_DIR/trc`, else `/run/trc` for root, else `$TMPDIR/trc-<uid>`.
pub fn runtime_base() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        if Path::new(&xdg).is_dir() {
            return Path::new(&xdg).join("trc");
        }
    }
    let uid = nix::unistd::geteuid();
    if uid.is_root() && nix::unistd::access("/run", nix::unistd::AccessFlags::W_OK).is_ok() {
        return PathBuf::from("/run/trc");
    }
    std::env::temp_dir().join(format!("trc-{uid}"))
}

/// Waits until `cond` holds, checking every few milliseconds, failing after the deadline.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether a process with this pid exists and is not a zombie.
pub fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            stat.rsplit_once(')').map(|(_, rest)| !rest.trim_start().starts_with('Z')).unwrap_or(false)
        }
        Err(_) => false,
    }
}

/// Shell code that runs `sleep 1000` in the background and waits for it, writing the sleep's
/// pid to `<dir>/<name>.pid`. Tests signal trc only once that sleep really runs
/// ([`wait_sleeping`]), so that what a test sees does not depend on how far the task got. (A
/// stop signal bash traps, INT say, can still be lost while bash starts a program; TERM is not
/// trapped since the prelude leaves the stop signal at its default action.)
pub fn sleeper(dir: &Path, name: &str) -> String {
    let p = dir.join(format!("{name}.pid"));
    format!("sleep 1000 & echo $! > {p}.tmp; mv {p}.tmp {p}; wait", p = p.display())
}

/// Waits until the `sleep` of [`sleeper`] runs (has been exec'd).
pub fn wait_sleeping(dir: &Path, name: &str) {
    let p = dir.join(format!("{name}.pid"));
    wait_until(&format!("the sleep of {name}"), || {
        let pid = std::fs::read_to_string(&p).ok().and_then(|t| t.trim().parse::<i32>().ok());
        pid.is_some_and(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c == "sleep\n")
        })
    });
}

/// Waits for a line containing `needle`, which may already have arrived while waiting for
/// another one.
pub fn wait_for(running: &mut Running, needle: &str) {
    if !running.stdout.contains(needle) && !running.stderr.contains(needle) {
        running.wait_for_line(needle);
    }
}

/// The pid a task wrote to `dir/name`, once it is there.
pub fn read_pid(dir: &Path, name: &str) -> i32 {
    let path = dir.join(name);
    wait_until(&format!("{} to hold a pid", path.display()), || {
        std::fs::read_to_string(&path).map(|s| s.trim().parse::<i32>().is_ok()).unwrap_or(false)
    });
    std::fs::read_to_string(&path).unwrap().trim().parse().unwrap()
}

/// Waits until process `parent` has a child running `comm` (exec'd), so that what a test does
/// next finds the task past its start (a signal bash traps, INT say, sent to a task's group
/// while its bash forks and execs a child can still be lost in that child).
pub fn wait_child_runs(parent: i32, comm: &str) {
    wait_until(&format!("a child of {parent} to run {comm}"), || {
        let children =
            std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).unwrap_or_default();
        children.split_whitespace().any(|child| {
            std::fs::read_to_string(format!("/proc/{child}/comm")).is_ok_and(|c| c.trim_end() == comm)
        })
    });
}

/// Reads a stream to its end on a thread; the bytes come out of the receiver.
pub fn collect(reader: impl Read + Send + 'static) -> std::sync::mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let mut reader = reader;
        let mut buf = Vec::new();
        let _ = reader.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx
}

/// Runs `cmd` in a private mount namespace where `dir` is mounted on /run/systemd/journal.
pub fn in_journal_namespace(cmd: &mut std::process::Command, dir: &Path) {
    use std::ffi::CString;
    use std::os::unix::process::CommandExt;
    const JOURNAL_DIR: &str = "/run/systemd/journal";
    std::fs::create_dir_all(JOURNAL_DIR).unwrap();
    let source = CString::new(dir.to_str().unwrap()).unwrap();
    let target = CString::new(JOURNAL_DIR).unwrap();
    let fail = |what: &str| {
        let e = std::io::Error::last_os_error();
        Err(std::io::Error::new(e.kind(), format!("{what}: {e}")))
    };
    // SAFETY: between fork and exec only async-signal-safe syscalls run, on data prepared before.
    unsafe {
        cmd.pre_exec(move || {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return fail("unshare");
            }
            let none = c"none".as_ptr();
            if libc::mount(
                none,
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                return fail("make / private");
            }
            if libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            ) != 0
            {
                return fail("bind");
            }
            Ok(())
        });
    }
}
