//! systemd's notify protocol (SPEC §8): with NOTIFY_SOCKET, trc says READY=1 once boot is done
//! and every async task is ready (started, for tasks without a `ready:` probe; tests/ready.rs
//! has those), STATUS= as tasks change, STOPPING=1 at teardown, and WATCHDOG=1 every
//! WATCHDOG_USEC/2 when the watchdog is trc's. Tasks do not get the socket.

mod common;

use common::{sleeper, trc_bin, wait_sleeping, Running, Trc, DEADLINE};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A socket standing in for systemd's notify socket.
struct Manager {
    socket: UnixDatagram,
    /// Where trc is told to send (a path, or `@name`).
    address: String,
    _dir: tempfile::TempDir,
    /// Every message so far, in order.
    seen: Vec<String>,
}

impl Manager {
    fn at_path() -> Manager {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        Manager::with(socket, path.to_str().unwrap().to_owned(), dir)
    }

    fn abstract_name() -> Manager {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!("trc-test-notify-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
        let socket =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
        Manager::with(socket, format!("@{name}"), tempfile::tempdir().unwrap())
    }

    fn with(socket: UnixDatagram, address: String, dir: tempfile::TempDir) -> Manager {
        Manager { socket, address, _dir: dir, seen: Vec::new() }
    }

    /// Receives one message, waiting at most `wait`.
    fn recv(&mut self, wait: Duration) -> Option<String> {
        self.socket.set_read_timeout(Some(wait.max(Duration::from_millis(1)))).unwrap();
        let mut buf = vec![0u8; 65536];
        match self.socket.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8(buf[..n].to_vec()).expect("a notify message that is not text");
                self.seen.push(msg.clone());
                Some(msg)
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                None
            }
            Err(e) => panic!("recv: {e}"),
        }
    }

    /// Waits for a message with a line `line` (`READY=1`) or, if `line` ends with `=`, one
    /// starting so; returns the whole message.
    fn wait_for(&mut self, line: &str) -> String {
        let matches = |msg: &str| {
            msg.lines().any(|l| if line.ends_with('=') { l.starts_with(line) } else { l == line })
        };
        if let Some(msg) = self.seen.iter().find(|m| matches(m)) {
            return msg.clone();
        }
        let until = Instant::now() + DEADLINE;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no {line:?} within {DEADLINE:?}; got {:?}", self.seen);
            if let Some(msg) = self.recv(left) {
                if matches(&msg) {
                    return msg;
                }
            }
        }
    }

    /// Every message still queued, once trc has exited (all its sends are queued by then).
    fn drain(&mut self) -> Vec<String> {
        while self.recv(Duration::from_millis(1)).is_some() {}
        self.seen.clone()
    }
}

/// The position of the first message with a line `line`.
fn index_of(messages: &[String], line: &str) -> usize {
    messages
        .iter()
        .position(|m| m.lines().any(|l| l == line))
        .unwrap_or_else(|| panic!("no {line:?} in {messages:?}"))
}

fn count(messages: &[String], line: &str) -> usize {
    messages.iter().filter(|m| m.lines().any(|l| l == line)).count()
}

fn trc(cwd: &Path, manager: &Manager, args: &[&str]) -> Trc {
    let mut trc = Trc::new(cwd, args).env("NOTIFY_SOCKET", &manager.address);
    trc.command().env_remove("WATCHDOG_USEC").env_remove("WATCHDOG_PID");
    trc
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn ready_after_boot_and_async_starts_then_stopping_at_teardown() {
    let work = tmp();
    let mut manager = Manager::at_path();
    let booted = work.path().join("booted");
    let (one, two) = (sleeper(work.path(), "one"), format!("echo second; {}", sleeper(work.path(), "two")));
    let mut running = trc(
        work.path(),
        &manager,
        &["-B", &format!("echo boot-ran; touch {}", booted.display()), "-D", &one, "-D", &two],
    )
    .spawn();
    let ready = manager.wait_for("READY=1");
    assert!(booted.exists(), "READY=1 before boot was done");
    // READY says every async task has started: its STATUS names them.
    let status = ready.lines().find_map(|l| l.strip_prefix("STATUS=")).unwrap_or_else(|| panic!("{ready:?}"));
    assert_eq!(status, "2 running: async-1, async-2; 2 ready", "{ready:?}");
    assert_eq!(count(&manager.seen, "STOPPING=1"), 0);
    running.wait_for_line("async-2: second");
    wait_sleeping(work.path(), "one");
    wait_sleeping(work.path(), "two");
    running.signal(libc::SIGTERM);
    let stopping = manager.wait_for("STOPPING=1");
    let out = running.wait();
    assert_eq!(out.code(), 143, "{out:?}");
    let all = manager.drain();
    assert!(index_of(&all, "READY=1") < index_of(&all, "STOPPING=1"), "{all:?}");
    assert_eq!(count(&all, "READY=1"), 1, "{all:?}");
    assert_eq!(count(&all, "STOPPING=1"), 1, "{all:?}");
    assert!(stopping.lines().any(|l| l.starts_with("STATUS=")), "STOPPING with a status: {stopping:?}");
    assert!(all.iter().all(|m| !m.contains("WATCHDOG")), "no watchdog asked for: {all:?}");
}

#[test]
fn status_lines_name_the_running_tasks_as_they_change() {
    let work = tmp();
    let mut manager = Manager::at_path();
    let go = work.path().join("go");
    std::fs::create_dir_all(work.path().join("trc.d")).unwrap();
    std::fs::write(work.path().join("trc.d/async.web"), sleeper(work.path(), "web")).unwrap();
    std::fs::write(
        work.path().join("trc.d/async.quick"),
        format!("while [ ! -e {} ]; do sleep 0.01; done\n", go.display()),
    )
    .unwrap();
    let running = trc(work.path(), &manager, &["--wait-policy", "wait_all"]).spawn();
    let ready = manager.wait_for("READY=1");
    assert!(ready.contains("STATUS=2 running: quick, web"), "{ready:?}");
    std::fs::write(&go, "").unwrap();
    // quick has exited: web alone.
    let msg = manager.wait_for("STATUS=1 running: web; 1 ready");
    assert!(!msg.contains("quick"));
    wait_sleeping(work.path(), "web");
    running.signal(libc::SIGTERM);
    let out = running.wait();
    assert_eq!(out.code(), 143);
    let all = manager.drain();
    let statuses: Vec<&str> =
        all.iter().flat_map(|m| m.lines()).filter_map(|l| l.strip_prefix("STATUS=")).collect();
    assert!(statuses.iter().any(|s| s.starts_with("0 running")), "nothing runs at the end: {statuses:?}");
}

#[test]
fn watchdog_pings_every_half_of_watchdog_usec() {
    let work = tmp();
    let mut manager = Manager::at_path();
    let started = Instant::now();
    let running = trc(work.path(), &manager, &["-D", &sleeper(work.path(), "task")])
        .env("WATCHDOG_USEC", "200000")
        .spawn();
    manager.wait_for("READY=1");
    // Pings every 100 ms: at least three, whatever the load (the deadline is generous).
    let until = Instant::now() + DEADLINE;
    while count(&manager.seen, "WATCHDOG=1") < 3 {
        assert!(Instant::now() < until, "fewer than 3 WATCHDOG=1: {:?}", manager.seen);
        manager.recv(until.saturating_duration_since(Instant::now()));
    }
    let took = started.elapsed();
    eprintln!("3 pings after {took:?}");
    wait_sleeping(work.path(), "task");
    running.signal(libc::SIGTERM);
    assert_eq!(running.wait().code(), 143);
    let all = manager.drain();
    assert!(all.iter().filter(|m| m.contains("WATCHDOG")).all(|m| m == "WATCHDOG=1"), "{all:?}");
}

/// `trc ARGS` started through `sh -c 'WATCHDOG_PID=$$ exec trc ...'`, so that WATCHDOG_PID is
/// trc's own pid, as systemd sets it.
fn trc_with_its_own_watchdog_pid(cwd: &Path, manager: &Manager, args: &[&str]) -> Running {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg("WATCHDOG_PID=$$; export WATCHDOG_PID; exec \"$0\" \"$@\"").arg(trc_bin()).args(args);
    cmd.current_dir(cwd).env("PWD", cwd).stdin(Stdio::null());
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("RC_") || k.starts_with("TRC_") || k == "WATCHDOG_PID" {
            cmd.env_remove(&key);
        }
    }
    cmd.env("NOTIFY_SOCKET", &manager.address).env("WATCHDOG_USEC", "200000");
    Running::start(cmd)
}

#[test]
fn watchdog_pid_naming_trc_gets_pings() {
    let work = tmp();
    let mut manager = Manager::at_path();
    let running =
        trc_with_its_own_watchdog_pid(work.path(), &manager, &["-D", &sleeper(work.path(), "task")]);
    manager.wait_for("READY=1");
    let until = Instant::now() + DEADLINE;
    while count(&manager.seen, "WATCHDOG=1") < 2 {
        assert!(Instant::now() < until, "no WATCHDOG=1: {:?}", manager.seen);
        manager.recv(until.saturating_duration_since(Instant::now()));
    }
    wait_sleeping(work.path(), "task");
    running.signal(libc::SIGTERM);
    assert_eq!(running.wait().code(), 143);
}

#[test]
fn no_watchdog_pings_when_watchdog_pid_is_another_process() {
    let work = tmp();
    let mut manager = Manager::at_path();
    let mut running =
        trc(work.path(), &manager, &["-D", &format!("echo up; {}", sleeper(work.path(), "task"))])
            .env("WATCHDOG_USEC", "200000")
            .env("WATCHDOG_PID", "1")
            .spawn();
    manager.wait_for("READY=1");
    running.wait_for_line("async-1: up");
    // Let trc run for many intervals (100 ms each), measured by a clock the test keeps: the
    // outcome does not depend on a timing guess, only the strength of the check does.
    let until = Instant::now() + Duration::from_millis(800);
    while Instant::now() < until {
        manager.recv(until.saturating_duration_since(Instant::now()));
    }
    wait_sleeping(work.path(), "task");
    running.signal(libc::SIGTERM);
    assert_eq!(running.wait().code(), 143);
    let all = manager.drain();
    assert!(all.iter().all(|m| !m.contains("WATCHDOG")), "pings for another process's watchdog: {all:?}");
    assert_eq!(count(&all, "STOPPING=1"), 1, "{all:?}");
}

#[test]
fn tasks_do_not_see_the_notify_variables() {
    let work = tmp();
    let manager = Manager::at_path();
    let out = trc(
        work.path(),
        &manager,
        &[
            "-D",
            "echo \"[${NOTIFY_SOCKET-unset}|${WATCHDOG_USEC-unset}|${WATCHDOG_PID-unset}]\"; \
             env | grep -c -e '^NOTIFY_SOCKET=' -e '^WATCHDOG_' || true",
        ],
    )
    .env("WATCHDOG_USEC", "200000")
    .env("WATCHDOG_PID", "1")
    .run();
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout, "async-1: [unset|unset|unset]\nasync-1: 0\n");
}

#[test]
fn an_abstract_notify_socket() {
    let work = tmp();
    let mut manager = Manager::abstract_name();
    let out = trc(work.path(), &manager, &["-D", "echo hi"]).run();
    assert_eq!(out.code(), 0, "{out:?}");
    let all = manager.drain();
    assert!(index_of(&all, "READY=1") < index_of(&all, "STOPPING=1"), "{all:?}");
}

#[test]
fn a_notify_socket_nobody_listens_on_does_not_matter() {
    let work = tmp();
    let dir = tmp();
    let gone = dir.path().join("nobody");
    let out = Trc::new(work.path(), ["-D", "echo hi"]).env("NOTIFY_SOCKET", gone.to_str().unwrap()).run();
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!((out.stdout.as_str(), out.stderr.as_str()), ("async-1: hi\n", ""));
}

/// 30 tasks with non-ASCII names (3 bytes a character): the STATUS line that names them is
/// cut at its bound on a character boundary (a cut inside one panicked trc, which then killed
/// every task and exited 70), and stays valid UTF-8.
#[test]
fn status_lines_with_many_non_ascii_names_are_cut_on_a_character() {
    let work = tmp();
    let trc_d = work.path().join("trc.d");
    std::fs::create_dir(&trc_d).unwrap();
    for i in 0..30 {
        std::fs::write(trc_d.join(format!("async.数据库{i}")), "exec sleep 1000\n").unwrap();
    }
    std::fs::write(trc_d.join("sync.wait"), "until [ -e \"$DIR/go\" ]; do sleep 0.05; done; exit 7\n")
        .unwrap();
    let mut manager = Manager::at_path();
    let running = trc(work.path(), &manager, &[]).env("DIR", work.path().to_str().unwrap()).spawn();
    // recv() fails the test on a message that is not UTF-8.
    manager.wait_for("READY=1");
    let all_running = |m: &String| m.lines().any(|l| l.starts_with("STATUS=31 running: "));
    while !manager.seen.iter().any(all_running) {
        manager.recv(DEADLINE).expect("a STATUS line naming all 31 tasks");
    }
    std::fs::write(work.path().join("go"), "").unwrap();
    let out = running.wait();
    assert_eq!(out.code(), 7, "{out:?}");
    assert!(!out.stderr.contains("internal error"), "{out:?}");
    let status = manager.seen.iter().find(|m| all_running(m)).unwrap();
    let line = status.lines().find(|l| l.starts_with("STATUS=")).unwrap();
    assert!(line.contains("数据库") && line.ends_with("...; 31 ready"), "{line}");
    assert!(line.len() < 300, "the names are cut at 200 bytes: {line}");
}
