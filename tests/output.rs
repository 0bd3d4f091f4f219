//! A reader that does not read never freezes trc (SPEC §7, §8): with its stdout a pipe nobody
//! reads, trc still answers trcctl and ends on SIGTERM within the stop-timeout plus its exit
//! grace, leaving nothing running; a reader that is slow at first gets every line, once, in
//! order, because the tasks are held back rather than their lines dropped; a journald that never
//! reads is the same, and trc says how many records it could not send.

mod common;

use common::{can_use_namespaces, collect, process_alive, wait_until, Trc, DEADLINE};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// `RC_STOP_TIMEOUT` in these tests.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);
/// What a test allows from SIGTERM to trc's exit: the stop-timeout plus trc's exit grace (2 s)
/// is the real bound; the rest is slack for a loaded CI box.
const EXIT_BOUND: Duration = Duration::from_secs(20);

// ----- helpers ---------------------------------------------------------------------------------

/// A trc started by a test, and the pids of its tasks: all killed if the test fails midway.
struct Started {
    trc: Child,
    tasks: Vec<i32>,
}

impl Started {
    fn pid(&self) -> i32 {
        self.trc.id() as i32
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child, not reaped yet.
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0);
    }

    /// Waits for trc to exit, `bound` at most; returns its status and how long it took.
    fn wait_exit(&mut self, bound: Duration) -> (ExitStatus, Duration) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.trc.try_wait().unwrap() {
                return (status, start.elapsed());
            }
            assert!(start.elapsed() < bound, "trc did not exit within {bound:?}");
            // The polling interval of this wait, not a sleep the outcome depends on.
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if self.trc.try_wait().ok().flatten().is_none() {
            let _ = self.trc.kill();
            let _ = self.trc.wait();
        }
        for &pid in &self.tasks {
            // SAFETY: kill(2) on a task's process group (trc makes each task a group leader)
            // and on the pid itself; no memory is involved.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// A pipe for trc's stdout: the write end for trc, the read end for the test.
fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap()
}

/// How many bytes a pipe holds.
fn pipe_fill(read_end: &OwnedFd) -> usize {
    let mut queued: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int to the pointer, which points at a live local.
    assert_eq!(unsafe { libc::ioctl(read_end.as_raw_fd(), libc::FIONREAD, &mut queued) }, 0);
    queued as usize
}

/// The id of process `pid`'s thread named `name`, once there is one.
fn thread_named(pid: i32, name: &str) -> i32 {
    let find = || {
        std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten().find_map(|t| {
            let comm = std::fs::read_to_string(t.path().join("comm")).ok()?;
            (comm.trim_end() == name).then(|| t.file_name().to_str()?.parse::<i32>().ok()).flatten()
        })
    };
    wait_until(&format!("trc {pid} to have a thread {name}"), || find().is_some());
    find().unwrap()
}

/// The pid a task wrote to `path`, once it is there.
fn read_pid(path: &Path) -> i32 {
    wait_until(&format!("{} to hold a pid", path.display()), || {
        std::fs::read_to_string(path).is_ok_and(|t| t.ends_with('\n') && t.trim().parse::<i32>().is_ok())
    });
    std::fs::read_to_string(path).unwrap().trim().parse().unwrap()
}

/// Whether process `pid` sleeps in a write to a full pipe. Where the kernel does not show
/// where a process sleeps, a sleeping process whose written bytes (`wchar`) stay the same.
fn blocked_writing(pid: i32, last_wchar: &mut Option<u64>) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let sleeping = stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('S'));
    let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
    if wchan != "0" && !wchan.is_empty() {
        return sleeping && wchan.contains("pipe_write");
    }
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    let wchar = io.lines().find_map(|l| l.strip_prefix("wchar: ")).and_then(|v| v.parse::<u64>().ok());
    let same = wchar.is_some() && *last_wchar == wchar;
    *last_wchar = wchar;
    sleeping && same
}

/// Waits until `pid` has been blocked writing for `polls` checks in a row.
fn wait_blocked_for_a_while(pid: i32, polls: usize) {
    let mut in_a_row = 0;
    let mut wchar = None;
    wait_until(&format!("process {pid} to stay blocked in a write"), || {
        assert!(process_alive(pid), "process {pid} ended: it was never held back");
        in_a_row = if blocked_writing(pid, &mut wchar) { in_a_row + 1 } else { 0 };
        in_a_row >= polls
    });
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// A private runtime base (`XDG_RUNTIME_DIR`) in `dir`, so that the test knows trc's runtime dir.
fn runtime_base(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let xdg = dir.join("xdg");
    std::fs::create_dir(&xdg).unwrap();
    std::fs::set_permissions(&xdg, std::fs::Permissions::from_mode(0o700)).unwrap();
    xdg
}

// ----- a blocked stdout ------------------------------------------------------------------------

#[test]
fn a_blocked_stdout_does_not_stop_trc_from_answering_and_ending() {
    let dir = tmp();
    let xdg = runtime_base(dir.path());
    let yes_pid = dir.path().join("yes.pid");
    let (read_end, write_end) = pipe();
    let mut trc = Trc::new(
        dir.path(),
        ["--instance", "blocked", "-D", &format!("echo $$ > {}; exec yes", yes_pid.display())],
    )
    .env("XDG_RUNTIME_DIR", xdg.to_str().unwrap())
    .env("RC_STOP_TIMEOUT", &format!("{}s", STOP_TIMEOUT.as_secs()))
    .env("RC_VERBOSE", "true");
    let cmd = trc.command();
    cmd.stdin(Stdio::null()).stdout(Stdio::from(write_end)).stderr(Stdio::piped());
    let mut started = Started { trc: cmd.spawn().expect("start trc"), tasks: Vec::new() };
    drop(trc);
    let stderr = collect(started.trc.stderr.take().unwrap());
    let yes = read_pid(&yes_pid);
    started.tasks.push(yes);
    let runtime_dir = xdg.join("trc").join("blocked");

    // trc's stdout is full: its writer thread waits in a write, and so, once trc's queue is
    // full, does `yes`.
    let writer = thread_named(started.pid(), "trc-stdout");
    wait_blocked_for_a_while(writer, 5);
    assert!(pipe_fill(&read_end) > 0);
    wait_blocked_for_a_while(yes, 20);

    // The loop still answers.
    let asked = Instant::now();
    let mut ctl = Command::new(env!("CARGO_BIN_EXE_trcctl"));
    ctl.args(["--instance", "blocked", "list"])
        .env("XDG_RUNTIME_DIR", &xdg)
        .env_remove("TRC_INSTANCE")
        .env_remove("TRCCTL_MANAGER")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut ctl = ctl.spawn().unwrap();
    let answer = collect(ctl.stdout.take().unwrap());
    let status = loop {
        if let Some(status) = ctl.try_wait().unwrap() {
            break status;
        }
        if asked.elapsed() > Duration::from_secs(10) {
            let _ = ctl.kill();
            let _ = ctl.wait();
            panic!("trcctl list got no answer within 10 s while trc's stdout was blocked");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let answer = String::from_utf8_lossy(&answer.recv_timeout(DEADLINE).unwrap()).into_owned();
    assert!(status.success(), "trcctl list: {status:?}\n{answer}");
    assert!(answer.contains("async-1"), "trcctl list:\n{answer}");

    // SIGTERM ends it: within the stop-timeout plus the exit grace, with the status of a
    // teardown by TERM, its runtime dir removed and nothing it started left running.
    started.signal(libc::SIGTERM);
    let (status, took) = started.wait_exit(EXIT_BOUND);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.code(), Some(143), "{status:?} (signal {:?})", status.signal());
    assert!(!runtime_dir.exists(), "trc left its runtime dir {}", runtime_dir.display());
    assert!(!process_alive(yes), "the task outlived trc");
    let stderr = stderr.recv_timeout(DEADLINE).expect("trc's stderr closed");
    assert!(stderr.is_empty(), "{}", String::from_utf8_lossy(&stderr));
    eprintln!("SIGTERM to exit with a blocked stdout: {took:?}");
}

// ----- backpressure ----------------------------------------------------------------------------

#[test]
fn a_reader_slow_at_first_gets_every_line_once_in_order() {
    const N: usize = 200_000;
    let dir = tmp();
    let seq_pid = dir.path().join("seq.pid");
    let (read_end, write_end) = pipe();
    let mut trc = Trc::new(dir.path(), ["-D", &format!("echo $$ > {}; exec seq {N}", seq_pid.display())])
        .env("RC_VERBOSE", "true");
    let cmd = trc.command();
    cmd.stdin(Stdio::null()).stdout(Stdio::from(write_end)).stderr(Stdio::piped());
    let mut started = Started { trc: cmd.spawn().expect("start trc"), tasks: Vec::new() };
    drop(trc);
    let stderr = collect(started.trc.stderr.take().unwrap());
    let seq = read_pid(&seq_pid);
    started.tasks.push(seq);

    // Nothing is read until the task has been held back for a while: trc keeps what it took
    // from the task's pipe in a bounded queue and reads no more.
    wait_blocked_for_a_while(seq, 30);
    let stdout = collect(std::fs::File::from(read_end));
    let (status, _) = started.wait_exit(DEADLINE);
    assert_eq!(status.code(), Some(0), "{status:?}");
    let stdout = stdout.recv_timeout(DEADLINE).expect("trc's stdout closed");
    let stderr = stderr.recv_timeout(DEADLINE).expect("trc's stderr closed");
    assert!(stderr.is_empty(), "{}", String::from_utf8_lossy(&stderr));

    let text = String::from_utf8(stdout).unwrap();
    let mut next = 1;
    let (mut launched, mut exited) = (false, false);
    for (i, line) in text.lines().enumerate() {
        match line.strip_prefix("async-1: ") {
            Some(number) => {
                assert!(launched && !exited, "line {i} outside Launching..Exiting: {line:?}");
                assert_eq!(number, next.to_string(), "line {i}");
                next += 1;
            }
            None => {
                launched |= line.contains("Launching in the background");
                exited |= line.contains("Exiting in the background (exitcode=0)");
            }
        }
    }
    assert_eq!(next, N + 1, "lines lost: the last one was {}", next - 1);
    assert!(exited, "no Exiting line:\n{}", &text[text.len().saturating_sub(2000)..]);
}

// ----- journald that never reads ---------------------------------------------------------------

#[test]
fn a_journald_that_never_reads_does_not_stop_trc_and_the_loss_is_reported() {
    if !can_use_namespaces("a_journald_that_never_reads_does_not_stop_trc_and_the_loss_is_reported") {
        return;
    }
    const N: usize = 5000;
    let work = tmp();
    let journal = tmp();
    // Bound and never read: once its queue is full, every send finds it full.
    let _socket = UnixDatagram::bind(journal.path().join("socket")).unwrap();
    let (pid_file, done) = (work.path().join("task.pid"), work.path().join("done"));
    let script = format!(
        "echo $$ > {pid}; seq {N}; touch {done}; exec sleep 1000",
        pid = pid_file.display(),
        done = done.display()
    );
    let mut trc = Trc::new(work.path(), ["--log", "journal", "-D", &script])
        .env("RC_STOP_TIMEOUT", &format!("{}s", STOP_TIMEOUT.as_secs()))
        .env("RC_VERBOSE", "true");
    let cmd = trc.command();
    cmd.env_remove("JOURNAL_STREAM");
    common::in_journal_namespace(cmd, journal.path());
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut started = Started { trc: cmd.spawn().expect("start trc"), tasks: Vec::new() };
    drop(trc);
    let stdout = collect(started.trc.stdout.take().unwrap());
    let stderr = collect(started.trc.stderr.take().unwrap());
    let task = read_pid(&pid_file);
    started.tasks.push(task);
    // The task got all its lines out: trc kept reading its pipe although journald did not.
    wait_until("the task to have written its lines", || done.exists());

    started.signal(libc::SIGTERM);
    let (status, took) = started.wait_exit(EXIT_BOUND);
    assert_eq!(status.code(), Some(143), "{status:?}");
    assert!(!process_alive(task), "the task outlived trc");
    let stdout = String::from_utf8_lossy(&stdout.recv_timeout(DEADLINE).unwrap()).into_owned();
    let stderr = String::from_utf8_lossy(&stderr.recv_timeout(DEADLINE).unwrap()).into_owned();
    assert_eq!(stdout, "", "records are not written to the console instead");
    let re = regex::Regex::new(r"(?m)^trc: (\d+) records could not be sent to journald$").unwrap();
    let lost: usize = match re.captures(&stderr) {
        Some(c) => c[1].parse().unwrap(),
        None => panic!("no report of the lost records on stderr:\n{stderr}"),
    };
    // journald's socket took a few records (its queue length, 10 by default), the rest of the
    // task's lines and trc's own records were lost.
    assert!((N - 100..N + 100).contains(&lost), "{lost} records reported lost of about {N}\n{stderr}");
    eprintln!("SIGTERM to exit with a journald that never reads: {took:?}; {lost} records lost");
}
