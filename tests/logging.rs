//! Task output through trc's named pipes (SPEC §8): every line of a task prefixed with its name,
//! on the stream it was written to, in order, never mixed with another task's, nothing lost at a
//! task's exit or at teardown; partial, long and binary lines; untouched output on request;
//! colours on a terminal; the FIFOs themselves; the trailing command's output left alone.

mod common;

use common::{
    collect, process_alive, runtime_base, skip, sleeper, trc_bin, wait_sleeping, wait_until, Spawned, Trc,
    DEADLINE,
};
use std::io::Read;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Instant;

// ----- helpers ---------------------------------------------------------------------------------

/// A finished run with its output as bytes (the harness's `Output` is text, lossily decoded).
struct Raw {
    status: i32,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Raw {
    fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

impl std::fmt::Debug for Raw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let clip = |b: &[u8]| {
            if b.len() > 4000 {
                format!("{}... ({} bytes)", String::from_utf8_lossy(&b[..4000]), b.len())
            } else {
                String::from_utf8_lossy(b).into_owned()
            }
        };
        write!(f, "status {}\nstdout:\n{}\nstderr:\n{}", self.status, clip(&self.stdout), clip(&self.stderr))
    }
}

/// A running trc whose output is collected as bytes.
struct RawRunning {
    child: Spawned,
    out: Receiver<Vec<u8>>,
    err: Receiver<Vec<u8>>,
}

fn spawn_raw(mut trc: Trc) -> RawRunning {
    let cmd = trc.command();
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    // NO_COLOR of the developer's shell must not matter (output to pipes is never coloured).
    cmd.env_remove("NO_COLOR");
    let mut child = Spawned::spawn(cmd);
    let out = collect(child.stdout.take().unwrap());
    let err = collect(child.stderr.take().unwrap());
    RawRunning { child, out, err }
}

impl RawRunning {
    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child, not reaped yet.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    fn wait(mut self) -> Raw {
        let status = wait_child(&mut self.child);
        let stdout = self.out.recv_timeout(DEADLINE).expect("trc's stdout closed");
        let stderr = self.err.recv_timeout(DEADLINE).expect("trc's stderr closed");
        Raw { status, stdout, stderr }
    }
}

/// Waits for a child (failing the test after the deadline); its status as a shell gives it.
fn wait_child(child: &mut Spawned) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    let status = child.wait_deadline(DEADLINE);
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

fn run_raw(trc: Trc) -> Raw {
    spawn_raw(trc).wait()
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Writes a task file `trc.d/<stage>.<name>` in `dir`.
fn task_file(dir: &Path, file: &str, body: &str) {
    std::fs::create_dir_all(dir.join("trc.d")).unwrap();
    std::fs::write(dir.join("trc.d").join(file), body).unwrap();
}

/// Splits output into lines (without their newline); a missing final newline is an error.
fn lines(bytes: &[u8]) -> Vec<&[u8]> {
    if bytes.is_empty() {
        return Vec::new();
    }
    assert_eq!(bytes.last(), Some(&b'\n'), "output does not end with a newline");
    bytes[..bytes.len() - 1].split(|&b| b == b'\n').collect()
}

/// A TrivialRC-format log line of trc (`YYYY-MM-DD HH:MM:SS trc [ns/pid]: ...`).
fn is_trc_log_line(line: &str) -> bool {
    regex::Regex::new(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d trc \[\w+/\d+\]: ").unwrap().is_match(line)
}

/// Deterministic bytes of every value (a small LCG), for binary-exactness checks.
fn pseudo_random(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as u8
        })
        .collect()
}

/// Waits until `path` exists.
fn wait_for_file(path: &Path) {
    wait_until(&format!("{} to exist", path.display()), || path.exists());
}

// ----- prefixes, streams and order -------------------------------------------------------------

#[test]
fn stdout_and_stderr_lines_are_prefixed_on_their_own_stream_in_order() {
    let dir = tmp();
    let out = run_raw(Trc::new(
        dir.path(),
        ["-D", "echo one; echo two >&2; echo three; echo four >&2; echo; echo '  spaced  '; exit 0"],
    ));
    assert_eq!(out.status, 0, "{out:?}");
    assert_eq!(
        out.stdout_text(),
        "async-1: one\nasync-1: three\nasync-1: \nasync-1:   spaced  \n",
        "{out:?}"
    );
    assert_eq!(out.stderr_text(), "async-1: two\nasync-1: four\n", "{out:?}");
}

#[test]
fn every_stage_has_its_task_names() {
    let dir = tmp();
    task_file(dir.path(), "sync.web", "echo from-web\n");
    task_file(dir.path(), "boot.prep", "echo from-prep\n");
    std::fs::write(dir.path().join("trc.halt.bye"), "echo from-bye\n").unwrap();
    let out = run_raw(
        Trc::new(
            dir.path(),
            [
                "-B",
                "echo from-B",
                "-H",
                "echo from-H",
                "-D",
                "echo from-D1",
                "-D",
                "echo from-D2 >&2",
                "-F",
                "echo from-F",
                "echo",
                "from-cmd",
            ],
        )
        .env("RC_WAIT_POLICY", "wait_all"),
    );
    assert_eq!(out.status, 0, "{out:?}");
    let stdout = out.stdout_text();
    let got: Vec<&str> = stdout.lines().collect();
    // Boot, then sync one by one, then halt, in order; the async line somewhere among them.
    let ordered: Vec<&str> = got.iter().copied().filter(|l| !l.starts_with("async-1: ")).collect();
    assert_eq!(
        ordered,
        [
            "prep: from-prep",
            "boot-1: from-B",
            "web: from-web",
            "sync-1: from-F",
            "from-cmd",
            "bye: from-bye",
            "halt-1: from-H"
        ],
        "{out:?}"
    );
    assert_eq!(got.iter().filter(|l| **l == "async-1: from-D1").count(), 1, "{out:?}");
    assert_eq!(out.stderr_text(), "async-2: from-D2\n", "{out:?}");
}

#[test]
fn a_million_lines_arrive_in_order_before_the_exit_status() {
    let dir = tmp();
    let started = Instant::now();
    let out = run_raw(Trc::new(dir.path(), ["-D", "seq 1000000; exit 7"]).env("RC_VERBOSE", "true"));
    let took = started.elapsed();
    assert_eq!(out.status, 7, "wait_any gives the task's own status\n{:?}", out.stderr_text());
    let mut next = 1u32;
    let mut launched = false;
    let mut exiting_seen_at = None;
    for (i, line) in lines(&out.stdout).into_iter().enumerate() {
        if let Some(number) = line.strip_prefix(b"async-1: ") {
            assert!(launched, "a task line before trc said it launched the task: line {i}");
            let want = next.to_string();
            assert!(
                number == want.as_bytes(),
                "line {i}: expected `async-1: {want}`, got {:?}",
                String::from_utf8_lossy(line)
            );
            assert!(exiting_seen_at.is_none(), "a task line after trc reported the exit: line {i}");
            next += 1;
        } else {
            let text = String::from_utf8_lossy(line);
            assert!(is_trc_log_line(&text), "unexpected line {i}: {text:?}");
            launched |= text.contains("Launching in the background: seq 1000000");
            if text.contains("Exiting in the background (exitcode=7)") {
                exiting_seen_at = Some(i);
            }
        }
    }
    assert_eq!(next, 1_000_001, "lines lost: the last one seen was {}", next - 1);
    assert!(exiting_seen_at.is_some(), "no Exiting line");
    assert!(out.stderr.is_empty(), "{}", out.stderr_text());
    eprintln!("1,000,000 lines through trc in {took:?}");
}

#[test]
fn teardown_by_sigterm_drains_every_line() {
    let dir = tmp();
    // Once the task sleeps, up to a pipe buffer of lines may still wait in the FIFO (the test
    // does not read trc's output to decide when to stop it), and the teardown must drain them.
    // The task's TERM trap writes one more line while it is being stopped.
    let script = format!(
        "trap 'echo bye-from-trap; exit 0' TERM; seq 300000; seq 300001 300100 >&2; {}",
        sleeper(dir.path(), "task")
    );
    let running = spawn_raw(Trc::new(dir.path(), ["-D", &script]));
    wait_sleeping(dir.path(), "task");
    running.signal(libc::SIGTERM);
    let out = running.wait();
    assert_eq!(out.status, 143, "{:?}", out.stderr_text());
    let stdout = lines(&out.stdout);
    let (last, numbers) = stdout.split_last().expect("no output");
    assert_eq!(numbers.len(), 300000, "lines lost at teardown");
    for (i, line) in numbers.iter().enumerate() {
        assert_eq!(*line, format!("async-1: {}", i + 1).as_bytes(), "line {i}");
    }
    assert_eq!(*last, b"async-1: bye-from-trap", "the trap's line, written while stopping");
    let stderr: Vec<String> = (300001..=300100).map(|n| format!("async-1: {n}\n")).collect();
    assert_eq!(out.stderr_text(), stderr.concat());
}

#[test]
fn a_partial_last_line_is_flushed_before_the_exit_is_reported() {
    let dir = tmp();
    let out = run_raw(
        Trc::new(dir.path(), ["-D", "echo whole; printf partial; printf err-partial >&2; exit 3"])
            .env("RC_VERBOSE", "true"),
    );
    assert_eq!(out.status, 3, "{out:?}");
    let stdout = out.stdout_text();
    let lines: Vec<&str> = stdout.lines().collect();
    let at = |needle: &str| {
        lines.iter().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("no {needle:?}\n{out:?}"))
    };
    assert_eq!(lines[at("async-1: whole")], "async-1: whole");
    assert_eq!(lines[at("async-1: partial")], "async-1: partial");
    assert!(at("async-1: partial") < at("Exiting in the background (exitcode=3)"), "{out:?}");
    assert_eq!(out.stderr_text(), "async-1: err-partial\n");
}

#[test]
fn a_prompt_without_newline_shows_while_the_task_still_runs() {
    let dir = tmp();
    let pid_file = dir.path().join("pid");
    let script =
        format!("echo $$ > {}; printf 'prompt> '; {}", pid_file.display(), sleeper(dir.path(), "task"));
    let mut running = Trc::new(dir.path(), ["-D", &script]).spawn();
    let line = running.wait_for_line("prompt>");
    assert_eq!(line, "async-1: prompt> \n");
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    assert!(process_alive(pid), "the idle flush must not wait for the task's end");
    wait_sleeping(dir.path(), "task");
    running.signal(libc::SIGTERM);
    let out = running.wait();
    assert_eq!(out.code(), 143);
    assert_eq!(out.stdout, "async-1: prompt> \n", "flushed once, not again at the exit");
}

#[test]
fn a_closed_stdout_does_not_stop_trc() {
    // trc's stdout is a pipe whose reader goes away after one line: trc keeps reading the
    // task's pipe (dropping what cannot be written), is not killed by SIGPIPE, still writes
    // its other stream, and exits with the task's status.
    let dir = tmp();
    let mut trc = Trc::new(dir.path(), ["-D", "seq 300000; echo done >&2; exit 5"]);
    let cmd = trc.command();
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = Spawned::spawn(cmd);
    let mut first = [0u8; 11];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    assert_eq!(&first, b"async-1: 1\n");
    // The read end is closed here.
    let err = collect(child.stderr.take().unwrap());
    assert_eq!(wait_child(&mut child), 5);
    assert_eq!(err.recv_timeout(DEADLINE).unwrap(), b"async-1: done\n");
}

// ----- long and binary lines -------------------------------------------------------------------

/// Runs a task that `cat`s `content`, and returns its stdout lines.
fn cat_through_trc(content: &[u8]) -> (Raw, tempfile::TempDir) {
    let dir = tmp();
    let file = dir.path().join("content");
    std::fs::write(&file, content).unwrap();
    let out = run_raw(Trc::new(dir.path(), ["-D", &format!("cat {}", file.display())]));
    assert_eq!(out.status, 0);
    (out, dir)
}

/// A line of `len` bytes (no newline in it) of varied printable content.
fn long_line(len: usize) -> Vec<u8> {
    pseudo_random(len, 7).into_iter().map(|b| b'!' + b % 90).collect()
}

#[test]
fn a_line_longer_than_64k_is_split_into_prefixed_pieces() {
    let body = long_line(1024 * 1024 + 100);
    let mut content = body.clone();
    content.extend_from_slice(b"\nnext\n");
    let (out, _dir) = cat_through_trc(&content);
    let got = lines(&out.stdout);
    assert_eq!(got.len(), 18, "16 full pieces, the 100-byte rest, `next`");
    let mut joined = Vec::new();
    for (i, piece) in got[..17].iter().enumerate() {
        let data = piece.strip_prefix(b"async-1: ").unwrap_or_else(|| panic!("piece {i} has no prefix"));
        assert_eq!(data.len(), if i < 16 { 65536 } else { 100 }, "piece {i}");
        joined.extend_from_slice(data);
    }
    assert!(joined == body, "the pieces put together are not the line");
    assert_eq!(got[17], b"async-1: next");
}

#[test]
fn a_megabyte_line_is_exactly_16_pieces_and_64k_is_one_line() {
    let body = long_line(1024 * 1024);
    let mut content = body.clone();
    content.extend_from_slice(b"\nnext\n");
    let (out, _dir) = cat_through_trc(&content);
    let got = lines(&out.stdout);
    let lens: Vec<usize> = got.iter().map(|l| l.len()).collect();
    assert_eq!(got.len(), 17, "16 pieces of 65536 bytes, then `next`; lengths with prefix: {lens:?}");
    let mut joined = Vec::new();
    for (i, piece) in got[..16].iter().enumerate() {
        let data = piece.strip_prefix(b"async-1: ").unwrap_or_else(|| panic!("piece {i} has no prefix"));
        assert_eq!(data.len(), 65536, "piece {i}");
        joined.extend_from_slice(data);
    }
    assert!(joined == body);
    assert_eq!(got[16], b"async-1: next");

    // A line of exactly the bound is not longer than it: one line.
    let body = long_line(65536);
    let mut content = body.clone();
    content.extend_from_slice(b"\nnext\n");
    let (out, _dir) = cat_through_trc(&content);
    let mut want = b"async-1: ".to_vec();
    want.extend_from_slice(&body);
    want.extend_from_slice(b"\nasync-1: next\n");
    let got: Vec<usize> = lines(&out.stdout).iter().map(|l| l.len()).collect();
    assert!(out.stdout == want, "line lengths (with prefix): {got:?}");
}

#[test]
fn binary_bytes_pass_unchanged_after_the_prefix() {
    let dir = tmp();
    let out = run_raw(Trc::new(
        dir.path(),
        ["-D", r"printf '\xff\xfe\x00x\n'; printf 'caf\xc3\xa9 \x1b[31mred\x1b[0m\r\n'; printf '\xc3\n' >&2"],
    ));
    assert_eq!(out.status, 0);
    assert_eq!(out.stdout, b"async-1: \xff\xfe\x00x\nasync-1: caf\xc3\xa9 \x1b[31mred\x1b[0m\r\n".to_vec());
    assert_eq!(out.stderr, b"async-1: \xc3\n".to_vec());
}

// ----- two tasks at once -----------------------------------------------------------------------

#[test]
fn lines_of_two_chatty_tasks_never_mix() {
    let dir = tmp();
    // `head` writes what it read in blocks, so lines are cut across writes (101 and 38 bytes
    // do not divide a block): trc must join them before writing.
    task_file(dir.path(), "async.a", "yes \"$(printf '%0100d' 0 | tr 0 A)\" | head -n 200000\n");
    task_file(dir.path(), "async.b", "yes \"$(printf '%037d' 0 | tr 0 B)\" | head -n 200000\n");
    let out = run_raw(Trc::new(dir.path(), Vec::<String>::new()).env("RC_WAIT_POLICY", "wait_all"));
    assert_eq!(out.status, 0, "{:?}", out.stderr_text());
    let a = format!("a: {}", "A".repeat(100));
    let b = format!("b: {}", "B".repeat(37));
    let (mut na, mut nb) = (0, 0);
    for (i, line) in lines(&out.stdout).into_iter().enumerate() {
        if line == a.as_bytes() {
            na += 1;
        } else if line == b.as_bytes() {
            nb += 1;
        } else {
            panic!("line {i} is mixed or cut: {:?}", String::from_utf8_lossy(line));
        }
    }
    assert_eq!((na, nb), (200000, 200000));
}

// ----- untouched output ------------------------------------------------------------------------

#[test]
fn rc_log_prefix_false_passes_bytes_untouched() {
    let dir = tmp();
    let out = run_raw(
        Trc::new(
            dir.path(),
            ["-D", r"printf 'a\nb\xff\n\x00 2026-01-01 00:00:00 x [y/1]: z\npartial'; printf 'e1\ne2' >&2"],
        )
        .env("RC_LOG_PREFIX", "false"),
    );
    assert_eq!(out.status, 0);
    assert_eq!(out.stdout, b"a\nb\xff\n\x00 2026-01-01 00:00:00 x [y/1]: z\npartial".to_vec());
    assert_eq!(out.stderr, b"e1\ne2".to_vec());
}

#[test]
fn log_prefix_no_directive_applies_to_its_task_only() {
    let dir = tmp();
    task_file(
        dir.path(),
        "sync.1raw",
        "### BEGIN TRC\n# log-prefix: no\n### END TRC\nprintf 'r1\\n\\xff\\xfe raw\\r\\n'\nprintf 'r-err\\n' >&2\n",
    );
    task_file(dir.path(), "sync.2plain", "echo p1\necho p-err >&2\n");
    let out = run_raw(Trc::new(dir.path(), Vec::<String>::new()).env("RC_WAIT_POLICY", "wait_all"));
    assert_eq!(out.status, 0, "{out:?}");
    assert_eq!(out.stdout, b"r1\n\xff\xfe raw\r\n2plain: p1\n".to_vec(), "{out:?}");
    assert_eq!(out.stderr_text(), "r-err\n2plain: p-err\n");
}

#[test]
fn lines_of_the_log_function_are_not_prefixed() {
    let dir = tmp();
    let out =
        run_raw(Trc::new(dir.path(), ["-D", "log hello from log; echo plain"]).env("RC_VERBOSE", "true"));
    assert_eq!(out.status, 0);
    let stdout = out.stdout_text();
    let logged: Vec<&str> = stdout.lines().filter(|l| l.ends_with("hello from log")).collect();
    assert_eq!(logged.len(), 1, "{stdout}");
    let re =
        regex::Regex::new(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d trc \[async/\d+\]: hello from log$").unwrap();
    assert!(re.is_match(logged[0]), "not passed as it was written: {:?}", logged[0]);
    assert!(stdout.lines().any(|l| l == "async-1: plain"), "{stdout}");
}

// ----- TRC_LOG_PIPE and the FIFOs --------------------------------------------------------------

#[test]
fn a_helper_logs_through_trc_log_pipe_with_the_task_name() {
    let dir = tmp();
    task_file(
        dir.path(),
        "async.web",
        // The helper's own stdout and stderr go nowhere: only the pipe named in TRC_LOG_PIPE.
        "( exec >/dev/null 2>&1; for i in 1 2 3; do echo \"helper $i\"; done > \"$TRC_LOG_PIPE\" ) &\n\
         wait\necho task-done\n",
    );
    let out = run_raw(Trc::new(dir.path(), Vec::<String>::new()));
    assert_eq!(out.status, 0, "{out:?}");
    assert_eq!(out.stdout_text(), "web: helper 1\nweb: helper 2\nweb: helper 3\nweb: task-done\n");
}

/// The runtime dir that holds a FIFO: `<base>/<instance>/`, with trc's pid in its `pid` file,
/// where `<base>` is what the README says for this user and environment (`$XDG_RUNTIME_DIR/trc`,
/// `/run/trc` for root, else `$TMPDIR/trc-<uid>`).
fn check_fifo_path(path: &Path, trc_pid: i32, file: &str) {
    assert_eq!(path.file_name().unwrap().to_str().unwrap(), file);
    let parent = path.parent().unwrap();
    let pid = std::fs::read_to_string(parent.join("pid")).unwrap();
    assert_eq!(pid.trim(), trc_pid.to_string(), "{}", path.display());
    assert_eq!(parent.parent().unwrap(), runtime_base(), "{}", path.display());
}

#[test]
fn the_fifos_exist_during_the_run_and_are_gone_after() {
    let dir = tmp();
    let script =
        format!("test -p \"$TRC_LOG_PIPE\" && echo \"fifo $TRC_LOG_PIPE\"; {}", sleeper(dir.path(), "task"));
    let mut running = Trc::new(dir.path(), ["-D", &script]).spawn();
    let line = running.wait_for_line("fifo ");
    wait_sleeping(dir.path(), "task");
    let path = PathBuf::from(line.trim_end().strip_prefix("async-1: fifo ").expect(&line));
    check_fifo_path(&path, running.pid(), "async.async-1.stdout");
    assert!(std::fs::metadata(&path).unwrap().file_type().is_fifo());
    let stderr_fifo = path.with_file_name("async.async-1.stderr");
    assert!(std::fs::metadata(&stderr_fifo).unwrap().file_type().is_fifo());
    running.signal(libc::SIGTERM);
    let out = running.wait();
    assert_eq!(out.code(), 143);
    assert!(!path.exists() && !stderr_fifo.exists(), "FIFOs left behind");
    assert!(!path.parent().unwrap().exists(), "runtime dir left behind");
}

#[test]
fn the_fifos_are_gone_after_a_task_crashes() {
    let dir = tmp();
    let out = Trc::new(dir.path(), ["-D", "ulimit -c 0; echo \"fifo $TRC_LOG_PIPE\"; kill -SEGV $$"]).run();
    assert_eq!(out.code(), 139, "{out:?}");
    let path = out.stdout.lines().find_map(|l| l.strip_prefix("async-1: fifo ")).expect(&out.stdout);
    assert!(!Path::new(path).exists(), "{path} left behind");
    assert!(!Path::new(path).parent().unwrap().exists(), "runtime dir left behind");
}

#[test]
fn the_fifos_are_gone_after_a_task_is_killed_from_outside() {
    let dir = tmp();
    let pid_file = dir.path().join("pid");
    let script = format!(
        "echo \"fifo $TRC_LOG_PIPE\"; echo $$ > {}.tmp; mv {0}.tmp {0}; exec sleep 1000",
        s(&pid_file)
    );
    let mut running = Trc::new(dir.path(), ["-D", &script]).spawn();
    let line = running.wait_for_line("fifo ");
    let path = PathBuf::from(line.trim_end().strip_prefix("async-1: fifo ").unwrap());
    wait_for_file(&pid_file);
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    // SAFETY: kill(2) on the task's pid, which trc has not reaped (it is still running).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let out = running.wait();
    assert_eq!(out.code(), 137, "{out:?}");
    assert!(!path.exists(), "{} left behind", path.display());
    assert!(!path.parent().unwrap().exists(), "runtime dir left behind");
}

// ----- colours ---------------------------------------------------------------------------------

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Runs `trc ARGS` under a pseudo-terminal (util-linux `script`), with `extra` appended to the
/// shell command line (e.g. a redirection); returns what the terminal showed, `\r\n` made `\n`.
fn on_terminal(args: &[&str], extra: &str, env: &[(&str, &str)]) -> Option<String> {
    if Command::new("script").arg("--version").output().map(|o| !o.status.success()).unwrap_or(true) {
        skip(std::thread::current().name().unwrap_or("a terminal test"), "script(1) from util-linux");
        return None;
    }
    let dir = tmp();
    let mut line = shell_quote(s(&trc_bin()));
    for arg in args {
        line.push(' ');
        line.push_str(&shell_quote(arg));
    }
    line.push_str(extra);
    let mut script = Command::new("script");
    script.args(["-qfc", &line, "/dev/null"]).current_dir(dir.path());
    // The harness's cleaning of the environment, and NO_COLOR only when the test sets it.
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("RC_") || k.starts_with("TRC_") || k == "NOTIFY_SOCKET" || k == "NO_COLOR" {
            script.env_remove(&key);
        }
    }
    script.envs(env.iter().copied());
    script.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = Spawned::spawn(&mut script);
    let shown = collect(child.stdout.take().unwrap());
    let status = wait_child(&mut child);
    let shown = shown.recv_timeout(DEADLINE).expect("script's output did not end");
    assert_eq!(status, 0, "script(1) or trc failed: {}", String::from_utf8_lossy(&shown));
    Some(String::from_utf8_lossy(&shown).replace("\r\n", "\n"))
}

#[test]
fn prefixes_are_coloured_on_a_terminal() {
    let Some(shown) =
        on_terminal(&["--wait-policy", "wait_all", "-D", "echo hi", "-F", "echo oops >&2"], "", &[])
    else {
        return;
    };
    let re = regex::Regex::new(r"^\x1b\[(\d+)m(async-1|sync-1)\x1b\[0m: (hi|oops)$").unwrap();
    let got: Vec<&str> = shown.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(got.len(), 2, "{shown:?}");
    for line in &got {
        assert!(re.is_match(line), "not a coloured prefix: {line:?}");
    }
    // Stable: the same name gets the same colour in another run.
    let again = on_terminal(&["-D", "echo hi"], "", &[]).unwrap();
    let first = got.iter().find(|l| l.ends_with(": hi")).unwrap();
    assert_eq!(again.trim_end(), *first, "a task's colour changed between runs");
}

#[test]
fn no_color_and_pipes_get_plain_prefixes() {
    let Some(shown) = on_terminal(&["-D", "echo hi"], "", &[("NO_COLOR", "1")]) else { return };
    assert_eq!(shown, "async-1: hi\n", "NO_COLOR=1 must turn colours off");
    // An empty NO_COLOR does not count (no-color.org).
    let shown = on_terminal(&["-D", "echo hi"], "", &[("NO_COLOR", "")]).unwrap();
    assert!(shown.contains("\x1b["), "NO_COLOR= (empty) should keep colours: {shown:?}");
    // stdout on the terminal, stderr to a pipe: only the terminal's lines are coloured.
    let shown = on_terminal(
        &["--wait-policy", "wait_all", "-D", "echo hi", "-F", "echo oops >&2"],
        " 2>&1 | cat",
        &[],
    )
    .unwrap();
    assert!(!shown.contains('\x1b'), "colours into a pipe: {shown:?}");
    let shown = on_terminal(
        &["--wait-policy", "wait_all", "-D", "echo hi", "-F", "echo oops >&2"],
        " 2>/dev/null",
        &[],
    )
    .unwrap();
    assert!(shown.contains("\x1b["), "{shown:?}");
    // And a plain pipe (no terminal at all).
    let dir = tmp();
    let out = run_raw(Trc::new(dir.path(), ["-D", "echo hi; echo err >&2"]));
    assert_eq!((out.stdout_text().as_str(), out.stderr_text().as_str()), ("async-1: hi\n", "async-1: err\n"));
}

// ----- the trailing command --------------------------------------------------------------------

#[test]
fn the_trailing_command_output_is_unprefixed_and_byte_exact() {
    let dir = tmp();
    let file = dir.path().join("blob");
    let mut blob = pseudo_random(300_000, 42);
    blob.extend_from_slice(b"\nno newline at the end");
    std::fs::write(&file, &blob).unwrap();
    let out = run_raw(Trc::new(
        dir.path(),
        [
            "--wait-policy",
            "wait_all",
            "-F",
            "echo before",
            "--",
            "sh",
            "-c",
            "cat \"$0\"; printf 'err-raw' >&2",
            s(&file),
        ],
    ));
    assert_eq!(out.status, 0, "{}", out.stderr_text());
    let mut want = b"sync-1: before\n".to_vec();
    want.extend_from_slice(&blob);
    assert!(out.stdout == want, "the trailing command's bytes were changed ({} bytes)", out.stdout.len());
    assert_eq!(out.stderr, b"err-raw".to_vec());
}

// ----- documentation ---------------------------------------------------------------------------

#[test]
fn help_documents_rc_log_prefix() {
    let dir = tmp();
    let out = Trc::new(dir.path(), ["--help"]).run();
    assert_eq!(out.code(), 0);
    assert!(out.stdout.contains("RC_LOG_PREFIX"), "{}", out.stdout);
}
