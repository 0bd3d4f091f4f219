//! B1 (issue #15): a foreground task — boot, sync, halt — that reads the terminal gets the
//! terminal's foreground while it runs, as TrivialRC's tasks share its terminal; before, it got
//! SIGTTIN and stayed stopped for ever. Run under a pseudo-terminal (util-linux `script`), the
//! test answers the task's prompt once it shows.

mod common;

use common::{skip, trc_bin, Spawned, DEADLINE};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Runs trc on a work dir holding `file` (a task that prompts and reads a name) under a
/// pseudo-terminal, answers "Alice" once the prompt shows, and returns what the terminal showed.
fn answer_prompt(file: &str, extra_args: &[&str]) -> Option<String> {
    let dir = work_dir();
    // `read -t` only so that a broken trc cannot hang the test past its deadline.
    std::fs::write(dir.path().join("trc.d").join(file), "read -r -t 25 -p \"name? \" n; echo \"hi $n\"\n")
        .unwrap();
    let mut pty = Pty::start(&trc_line(dir.path(), extra_args), dir.path())?;
    pty.wait_for("name? ");
    pty.send(b"Alice\n");
    Some(pty.finish())
}

#[test]
fn a_sync_task_reads_the_terminal() {
    let Some(shown) = answer_prompt("sync.ask", &[]) else { return };
    assert!(shown.contains("ask: hi Alice"), "{shown:?}");
}

#[test]
fn a_boot_task_reads_the_terminal() {
    let Some(shown) = answer_prompt("boot.ask", &["-F", "echo after boot"]) else { return };
    assert!(shown.contains("ask: hi Alice"), "{shown:?}");
    assert!(shown.contains("sync-1: after boot"), "{shown:?}");
}

#[test]
fn a_halt_task_reads_the_terminal() {
    let Some(shown) = answer_prompt("halt.ask", &["-F", "echo running"]) else { return };
    assert!(shown.contains("sync-1: running"), "{shown:?}");
    assert!(shown.contains("ask: hi Alice"), "{shown:?}");
}

// ----- tasks stopped by the terminal: never left stopped silently ------------------------------

/// A program run under a pseudo-terminal (`script`): what the terminal shows, and keys typed.
struct Pty {
    child: Spawned,
    stdin: std::process::ChildStdin,
    shown: Arc<Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Pty {
    /// `line` (shell words) under `script`, in `dir`, without the caller's RC_/TRC_ variables.
    fn start(line: &str, dir: &std::path::Path) -> Option<Pty> {
        if Command::new("script").arg("--version").output().map(|o| !o.status.success()).unwrap_or(true) {
            skip(std::thread::current().name().unwrap_or("a terminal test"), "script(1) from util-linux");
            return None;
        }
        let mut script = Command::new("script");
        script.args(["-qfec", line, "/dev/null"]).current_dir(dir);
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if k.starts_with("RC_") || k.starts_with("TRC_") || k == "NOTIFY_SOCKET" {
                script.env_remove(&key);
            }
        }
        script.env("NO_COLOR", "1").env("PS1", "$ ").env("TERM", "dumb");
        script.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null());
        let mut child = Spawned::spawn(&mut script);
        let shown = Arc::new(Mutex::new(Vec::new()));
        let mut out = child.stdout.take().unwrap();
        let sink = shown.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let stdin = child.stdin.take().unwrap();
        Some(Pty { child, stdin, shown, reader: Some(reader) })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.shown.lock().unwrap()).replace("\r\n", "\n")
    }

    /// Waits until the terminal has shown `needle` `times` times in all.
    fn wait_for_n(&self, needle: &str, times: usize) {
        let until = Instant::now() + DEADLINE;
        while self.text().matches(needle).count() < times {
            assert!(
                Instant::now() < until,
                "no {needle:?} (x{times}) within {DEADLINE:?}: {:?}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn wait_for(&self, needle: &str) {
        self.wait_for_n(needle, 1)
    }

    fn send(&mut self, keys: &[u8]) {
        self.stdin.write_all(keys).unwrap();
        self.stdin.flush().unwrap();
    }

    /// Waits for `script` (and so what it runs) to end; the terminal's text.
    fn finish(mut self) -> String {
        let status = self.child.wait_deadline(DEADLINE);
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        assert!(status.success(), "script or what it ran failed ({status}): {:?}", self.text());
        self.text()
    }
}

fn work_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("trc.d")).unwrap();
    dir
}

fn trc_line(dir: &std::path::Path, args: &[&str]) -> String {
    let mut line =
        format!("{} -w {}", shell_quote(trc_bin().to_str().unwrap()), shell_quote(dir.to_str().unwrap()));
    for arg in args {
        line.push(' ');
        line.push_str(&shell_quote(arg));
    }
    line
}

/// An async task that reads the terminal (which it cannot have: trc keeps it) is stopped by
/// SIGTTIN: trc says so, and at teardown it stops at once with its stop signal (SIGCONT follows
/// it), not after its stop-timeout with SIGKILL.
#[test]
fn an_async_task_stopped_by_the_terminal_is_said_and_stops_at_teardown() {
    let dir = work_dir();
    std::fs::write(dir.path().join("trc.d/async.reader"), "read -r x < /dev/tty; echo \"read $x\"\n")
        .unwrap();
    let d = shell_quote(dir.path().to_str().unwrap());
    // The group ends when $DIR/end appears: long after the reader is stopped.
    let ender = format!("while [ ! -e {d}/end ]; do sleep 0.05; done");
    let line = format!(
        "RC_STOP_TIMEOUT=10min {} ; echo \"trc-status=$?\"",
        trc_line(dir.path(), &["--verbose", "-D", &ender, "--wait-policy", "wait_any"])
    );
    let Some(pty) = Pty::start(&line, dir.path()) else { return };
    pty.wait_for("reader <pid=");
    pty.wait_for("was stopped by SIGTTIN (it read the terminal, which another process group has)");
    std::fs::write(dir.path().join("end"), "").unwrap();
    let shown = pty.finish();
    assert!(shown.contains("trc-status=0"), "{shown:?}");
    assert!(
        shown
            .lines()
            .any(|l| l.contains("Exiting in the background (exitcode=143)") && l.contains("async.reader")),
        "the reader did not stop with its stop signal: {shown:?}"
    );
}

/// Ctrl-Z on a sync task, under a trc that nothing could continue (here it leads its session,
/// as PID 1 would): the task is continued at once and keeps the terminal.
#[test]
fn ctrl_z_on_a_foreground_task_without_job_control_continues_it() {
    let dir = work_dir();
    std::fs::write(
        dir.path().join("trc.d/sync.ask"),
        "echo ready; read -r -t 25 -p \"name? \" n; echo \"hi $n\"\n",
    )
    .unwrap();
    let Some(mut pty) = Pty::start(&trc_line(dir.path(), &[]), dir.path()) else { return };
    pty.wait_for("name? ");
    pty.send(b"\x1a");
    pty.wait_for("was stopped by SIGTSTP");
    pty.wait_for("trc cannot be suspended here (no job-control shell above it): continuing");
    pty.send(b"Alice\n");
    let shown = pty.finish();
    assert!(shown.contains("ask: hi Alice"), "{shown:?}");
}

/// Ctrl-Z on a sync task, trc run by an interactive shell: the shell's job (trc) stops, as
/// TrivialRC's one process group would, and `fg` continues trc and the task, which gets the
/// terminal back.
#[test]
fn ctrl_z_and_fg_suspend_and_continue_trc_with_its_foreground_task() {
    let dir = work_dir();
    std::fs::write(
        dir.path().join("trc.d/sync.ask"),
        "echo ready; read -r -t 25 -p \"name? \" n; echo \"hi $n\"\n",
    )
    .unwrap();
    let Some(mut pty) = Pty::start("bash --norc --noprofile -i", dir.path()) else { return };
    pty.send(format!("{}\n", trc_line(dir.path(), &[])).as_bytes());
    pty.wait_for("ask: ready");
    pty.wait_for("name? ");
    pty.send(b"\x1a");
    pty.wait_for("Stopped");
    pty.send(b"fg\n");
    // trc goes on (its warning, held while it was stopped, comes out); the task reads on.
    pty.wait_for("was stopped by SIGTSTP");
    pty.send(b"Alice\n");
    pty.wait_for("ask: hi Alice");
    pty.send(b"echo \"trc-status=$?\"\n");
    pty.wait_for("trc-status=0");
    pty.send(b"exit\n");
    pty.finish();
}
