//! What clients of the control socket may hold, against the real `trc` and `trcctl`: idle
//! connections beyond the cap are closed to make room and time out, so trc's fds stay bounded
//! and `trcctl` keeps working; requests over 64 KiB and a bad protocol version get clear
//! errors; a client that never reads its replies is closed; `logs -f` followers are capped,
//! leave no memory behind when they go, and a slow one is told how many lines it lost.
//!
//! The limits themselves are trc's (`src/control/server.rs`): 64 connections, 64 followers,
//! 10 s to send a request or to take a reply. Every wait is on an event with a generous
//! deadline; none depends on a fixed pause.

mod common;

use common::sandbox::{read_reply, request, run, TRCCTL};
use common::{wait_until, Running, Trc, DEADLINE};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// trc's limits (see the module's comment).
const MAX_CONNECTIONS: usize = 64;
const MAX_FOLLOWERS: usize = 64;

// ----- helpers ------------------------------------------------------------------------------

/// A test's own world: a temp dir holding the runtime base (`xdg/`) and the work dir, and the
/// trc started on it (SIGKILLed with its task when dropped, also when the test fails).
struct World {
    root: tempfile::TempDir,
    trc: Option<Running>,
    /// trc's instance name.
    name: String,
}

impl World {
    /// trc (wait_forever) on a work dir with `tasks` as `trc.d/async.NAME`, with at most
    /// `nofile` fds when given; returns once trcctl sees it.
    fn start(tasks: &[(&str, &str)], nofile: Option<u64>) -> World {
        let root = tempfile::tempdir().unwrap();
        let xdg = root.path().join("xdg");
        std::fs::create_dir(&xdg).unwrap();
        std::fs::set_permissions(&xdg, std::fs::Permissions::from_mode(0o700)).unwrap();
        let work = root.path().join("app");
        std::fs::create_dir_all(work.join("trc.d")).unwrap();
        for (name, body) in tasks {
            std::fs::write(work.join("trc.d").join(format!("async.{name}")), body).unwrap();
        }
        let mut trc = Trc::new(root.path(), ["-w", work.to_str().unwrap()])
            .env("XDG_RUNTIME_DIR", xdg.to_str().unwrap())
            .env("DIR", root.path().to_str().unwrap())
            .env("RC_WAIT_POLICY", "wait_forever");
        if let Some(limit) = nofile {
            let limit = libc::rlimit { rlim_cur: limit, rlim_max: limit };
            // SAFETY: setrlimit is async-signal-safe; `limit` is copied into the closure.
            unsafe {
                trc.command().pre_exec(move || match libc::setrlimit(libc::RLIMIT_NOFILE, &limit) {
                    0 => Ok(()),
                    _ => Err(std::io::Error::last_os_error()),
                });
            }
        }
        let mut world = World { root, trc: Some(trc.spawn()), name: String::new() };
        let pid = world.pid();
        wait_until(&format!("trcctl instances to list trc {pid}"), || {
            let trc = world.trc.as_mut().unwrap();
            assert!(trc.child.try_wait().unwrap().is_none(), "trc exited early: {:?}", trc.stderr);
            let out = world.ctl(&["--json", "instances"]);
            let found: Value = serde_json::from_str(&out.1).unwrap_or(Value::Null);
            let name = found.as_array().and_then(|all| all.iter().find(|i| i["pid"] == pid).cloned());
            name.map(|i| world.name = i["name"].as_str().unwrap().to_owned()).is_some()
        });
        world
    }

    fn pid(&self) -> i32 {
        self.trc.as_ref().unwrap().pid()
    }

    fn alive(&mut self) -> bool {
        self.trc.as_mut().unwrap().child.try_wait().unwrap().is_none()
    }

    fn xdg(&self) -> PathBuf {
        self.root.path().join("xdg")
    }

    fn socket(&self) -> PathBuf {
        self.xdg().join("trc").join(&self.name).join("control.sock")
    }

    fn trcctl(&self) -> Command {
        let mut cmd = Command::new(TRCCTL);
        cmd.env_remove("TRC_INSTANCE")
            .env_remove("TRCCTL_MANAGER")
            .env("XDG_RUNTIME_DIR", self.xdg())
            .current_dir(self.root.path())
            .stdin(Stdio::null());
        cmd
    }

    /// `trcctl --manager trc ARGS...`, to its end: (exit code, stdout, stderr).
    fn ctl(&self, args: &[&str]) -> (i32, String, String) {
        let mut cmd = self.trcctl();
        cmd.args(["--manager", "trc"]).args(args);
        let out = run(cmd);
        (out.code, out.stdout, out.stderr)
    }

    /// The pid of a running task, once it runs.
    fn task_pid(&self, task: &str) -> i64 {
        let mut pid = None;
        wait_until(&format!("task {task} to run"), || {
            let (code, stdout, _) = self.ctl(&["--json", "status", task]);
            let status: Value = serde_json::from_str(&stdout).unwrap_or(Value::Null);
            pid = (code == 0 && status["state"] == "running").then(|| status["pid"].as_i64()).flatten();
            pid.is_some()
        });
        pid.unwrap()
    }

    /// How many fds trc has open.
    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).unwrap().count()
    }

    /// trc's resident memory in KiB.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    fn connect(&self) -> UnixStream {
        let stream = UnixStream::connect(self.socket()).expect("connect to trc");
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        stream.set_write_timeout(Some(DEADLINE)).unwrap();
        stream
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(mut trc) = self.trc.take() {
            // SAFETY: kill(2) on our own child, not reaped yet: SIGTERM stops its tasks.
            unsafe { libc::kill(trc.pid(), libc::SIGTERM) };
            let until = Instant::now() + DEADLINE;
            while trc.child.try_wait().unwrap().is_none() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = trc.child.kill();
            let _ = trc.child.wait();
        }
    }
}

/// The error of a refusal, cut to 200 characters (some quote a whole request).
fn error_of(reply: &Value) -> String {
    assert_eq!(reply["ok"], false, "{}", short(reply));
    let error = reply["error"].as_str().unwrap_or_else(|| panic!("no error: {}", short(reply)));
    error.chars().take(200).collect()
}

fn short(reply: &Value) -> String {
    reply.to_string().chars().take(200).collect()
}

/// Whether the other end has closed (end of file, possibly after some lines).
fn closed_by_trc(stream: &UnixStream) -> bool {
    let mut rest = Vec::new();
    let mut reader = stream;
    match reader.read_to_end(&mut rest) {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

// ----- connections ----------------------------------------------------------------------------

/// The reported case: more idle connections than trc may have fds (here 300 under a limit of
/// 256) used to take every fd, so that `trcctl list` hung and restarts failed with EMFILE.
#[test]
fn idle_connections_beyond_the_cap_keep_trc_answering_with_bounded_fds() {
    let mut w = World::start(&[("web", "exec sleep 1000\n")], Some(256));
    let first_pid = w.task_pid("web");
    let baseline = w.fds();
    let idle: Vec<UnixStream> = (0..300).map(|_| w.connect()).collect();
    // Every connection has been taken in (connect returns before trc accepts): the last one
    // is answered.
    let mut last = w.connect();
    assert_eq!(request(&mut last, b"{\"v\":1,\"cmd\":\"list\"}\n")["ok"], true);
    drop(last);
    let (code, stdout, stderr) = w.ctl(&["list"]);
    assert_eq!(code, 0, "trcctl list with 300 idle connections: {stdout}{stderr}");
    let fds = w.fds();
    assert!(fds <= baseline + MAX_CONNECTIONS + 2, "trc has {fds} fds open (baseline {baseline})");
    // A restart needs fds for the new process' log pipes.
    let (code, stdout, stderr) = w.ctl(&["restart", "web"]);
    assert_eq!(code, 0, "trcctl restart: {stdout}{stderr}");
    assert_ne!(w.task_pid("web"), first_pid);
    // The connections that made room were told why.
    let first = read_reply(&idle[0]);
    assert!(error_of(&first).contains("make room"), "{first}");
    // The rest time out (10 s without a request): trc is back to its own fds.
    wait_until("the idle connections to time out", || w.fds() <= baseline);
    let last = idle.last().unwrap();
    let reply = read_reply(last);
    assert!(error_of(&reply).contains("no complete request within"), "{}", short(&reply));
    assert!(closed_by_trc(last));
    assert!(w.alive());
}

#[test]
fn a_request_over_64_kib_is_refused_and_one_of_64_kib_is_read() {
    let mut w = World::start(&[("web", "exec sleep 1000\n")], None);
    let line = |len: usize| {
        let head = br#"{"v":1,"cmd":"status","task":""#;
        let tail = b"\"}";
        let mut line = head.to_vec();
        line.resize(len - tail.len(), b'x');
        line.extend_from_slice(tail);
        assert_eq!(line.len(), len);
        line.push(b'\n');
        line
    };
    // Exactly 64 KiB (newline apart): read and answered (no such task).
    let mut conn = w.connect();
    let reply = request(&mut conn, &line(64 * 1024));
    let error = error_of(&reply);
    assert!(error.starts_with("unknown task \"xxxx"), "{error}");
    // 70,000 bytes, newline included in one write: refused, and the connection closed.
    let mut big = w.connect();
    let reply = request(&mut big, &line(70_000));
    let error = error_of(&reply);
    assert!(error.contains("request too long (more than 65536 bytes)"), "{error}");
    assert!(closed_by_trc(&big));
    // The other connection and trc go on.
    assert_eq!(request(&mut conn, b"{\"v\":1,\"cmd\":\"list\"}\n")["ok"], true);
    assert!(w.alive());
}

#[test]
fn a_bad_protocol_version_is_a_clear_error() {
    let w = World::start(&[], None);
    let mut conn = w.connect();
    let reply = request(&mut conn, b"{\"v\":-1,\"cmd\":\"list\"}\n");
    assert!(
        error_of(&reply).contains("unsupported protocol version -1 (this trc speaks 1)"),
        "{}",
        short(&reply)
    );
    let reply = request(&mut conn, b"{\"v\":\"1\",\"cmd\":\"list\"}\n");
    assert!(error_of(&reply).contains("\"v\" must be a number"), "{}", short(&reply));
    let reply = request(&mut conn, b"{\"cmd\":\"list\"}\n");
    assert!(error_of(&reply).contains("no \"v\""), "{}", short(&reply));
    assert_eq!(request(&mut conn, b"{\"v\":1,\"cmd\":\"list\"}\n")["ok"], true);
}

/// A client that sends requests and never reads the replies is closed once a reply has waited
/// 10 s; meanwhile trc answers others.
#[test]
fn a_client_that_never_reads_its_replies_is_closed() {
    let w = World::start(&[], None);
    let baseline = w.fds();
    let stuck = w.connect();
    stuck.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut writer = stuck.try_clone().unwrap();
    // Some 100,000 replies of 200 bytes: far more than the socket buffers hold. trc stops
    // reading when it cannot write: the writer then stops too (timeout, or EPIPE once closed).
    let flood = std::thread::spawn(move || {
        let requests = b"{\"v\":1,\"cmd\":\"info\"}\n".repeat(1000);
        for _ in 0..100 {
            if writer.write_all(&requests).is_err() {
                break;
            }
        }
    });
    assert_eq!(w.ctl(&["list"]).0, 0, "trcctl list while a client does not read");
    wait_until("trc to close the client that does not read", || w.fds() <= baseline);
    flood.join().unwrap();
    assert!(closed_by_trc(&stuck));
}

// ----- followers ------------------------------------------------------------------------------

/// `{"v":1,"cmd":"logs","task":TASK,"lines":0,"follow":true}`
fn follow_request(task: &str) -> Vec<u8> {
    format!("{{\"v\":1,\"cmd\":\"logs\",\"task\":\"{task}\",\"lines\":0,\"follow\":true}}\n").into_bytes()
}

#[test]
fn followers_beyond_the_cap_are_refused_and_requests_still_answered() {
    let w = World::start(&[("quiet", "echo hi\nexec sleep 1000\n")], None);
    w.task_pid("quiet");
    let mut followers: Vec<UnixStream> = (0..MAX_FOLLOWERS)
        .map(|_| {
            let mut conn = w.connect();
            assert_eq!(request(&mut conn, &follow_request("quiet"))["ok"], true);
            conn
        })
        .collect();
    let mut more = w.connect();
    let reply = request(&mut more, &follow_request("quiet"));
    assert!(error_of(&reply).contains("too many followers"), "{}", short(&reply));
    // Followers take no place from other requests.
    assert_eq!(request(&mut more, b"{\"v\":1,\"cmd\":\"list\"}\n")["ok"], true);
    assert_eq!(w.ctl(&["list"]).0, 0);
    // One goes: another may follow (once trc has seen it go).
    drop(followers.pop());
    wait_until("a follower's place to be free", || {
        let mut conn = w.connect();
        request(&mut conn, &follow_request("quiet"))["ok"] == true
    });
}

/// The reported case: every `logs -f` that left a quiet task stayed in memory until the task
/// wrote again (about 2 KiB each: 50,000 of them took 107 MB). 2,000 now leave trc's resident
/// memory within 1 MiB of where it was (it was some 4 MiB more before).
#[test]
fn followers_that_leave_a_quiet_task_leave_no_memory_behind() {
    let w = World::start(&[("quiet", "echo hi\nexec sleep 1000\n")], None);
    w.task_pid("quiet");
    let request = follow_request("quiet");
    let follow_and_leave = |n: usize| {
        // In batches of 32 at once.
        for _ in 0..n / 32 {
            let conns: Vec<UnixStream> = (0..32)
                .map(|_| {
                    let mut conn = w.connect();
                    conn.write_all(&request).unwrap();
                    conn
                })
                .collect();
            for conn in &conns {
                assert_eq!(read_reply(conn)["ok"], true);
            }
        }
    };
    // Warm up (allocator arenas, buffers), then measure.
    follow_and_leave(320);
    let before = w.rss_kib();
    follow_and_leave(2000);
    // The last ones have gone by the time trc answers something else.
    assert_eq!(w.ctl(&["list"]).0, 0);
    let after = w.rss_kib();
    eprintln!("trc's VmRSS: {before} KiB before 2,000 followers came and went, {after} KiB after");
    assert!(after <= before + 1024, "trc grew from {before} KiB to {after} KiB");
}

/// A follower that does not read while the task writes 20,000 lines is told how many it lost:
/// every line is either received or counted, also when the loss is at the end (the task has
/// gone quiet since).
#[test]
fn a_slow_follower_is_told_how_many_lines_it_lost() {
    let body = "echo ready\n\
                until [ -e \"$DIR/go\" ]; do sleep 0.02; done\n\
                i=0; pad=$(printf '%0100d' 0)\n\
                while [ $i -lt 20000 ]; do echo \"line $i $pad\"; i=$((i+1)); done\n\
                echo last-line\n\
                exec sleep 1000\n";
    let w = World::start(&[("talk", body)], None);
    wait_until("ready in the task's log", || w.ctl(&["logs", "talk"]).1.contains("ready"));
    let mut conn = w.connect();
    assert_eq!(request(&mut conn, &follow_request("talk"))["ok"], true);
    // Not read until the task has written everything.
    std::fs::write(w.root.path().join("go"), "").unwrap();
    wait_until("the task's last line", || w.ctl(&["logs", "-n", "1", "talk"]).1.contains("last-line"));
    let (mut lines, mut lost, mut told) = (0u64, 0u64, 0);
    let mut reader = BufReader::new(&conn);
    let mut text = String::new();
    while lines + lost < 20_001 {
        text.clear();
        let n = reader.read_line(&mut text).unwrap();
        assert!(n > 0, "trc closed the follower after {lines} lines and {lost} lost");
        let message: Value = serde_json::from_str(&text).unwrap();
        if let Some(n) = message["dropped"].as_u64() {
            lost += n;
            told += 1;
        } else {
            assert!(message["line"]["text"].is_string(), "{message}");
            lines += 1;
        }
    }
    assert_eq!(lines + lost, 20_001);
    assert!(lost > 0 && told > 0, "{lines} lines received, none lost: the test did not fill the queue");
    eprintln!("{lines} lines received, {lost} lost in {told} gaps");
}

/// Lines of 64 KiB and more used to be left out of `trcctl logs`: they are shown cut, with a
/// marker, and a follower gets them whole.
#[test]
fn long_lines_are_shown_cut() {
    let body = "echo ready\n\
                until [ -e \"$DIR/go\" ]; do sleep 0.02; done\n\
                head -c 70000 /dev/zero | tr '\\0' x; echo\n\
                echo after\n\
                exec sleep 1000\n";
    let w = World::start(&[("long", body)], None);
    wait_until("ready in the task's log", || w.ctl(&["logs", "long"]).1.contains("ready"));
    let mut conn = w.connect();
    assert_eq!(request(&mut conn, &follow_request("long"))["ok"], true);
    std::fs::write(w.root.path().join("go"), "").unwrap();
    wait_until("the line after", || w.ctl(&["logs", "-n", "1", "long"]).1.contains("after"));
    let (code, stdout, _) = w.ctl(&["logs", "long"]);
    assert_eq!(code, 0);
    let shown: Vec<&str> = stdout.lines().collect();
    assert_eq!(shown.len(), 4, "{:?}", shown.iter().map(|l| l.len()).collect::<Vec<_>>());
    // trc reads lines of at most 64 KiB: the 70,000 bytes are two lines, the first one cut.
    assert!(shown[1].starts_with("xxxx") && shown[1].ends_with(" bytes cut]"), "{}", shown[1].len());
    assert_eq!(shown[2], "x".repeat(70_000 - 65_536));
    let mut reader = BufReader::new(&conn);
    let mut text = String::new();
    reader.read_line(&mut text).unwrap();
    let message: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(message["line"]["text"].as_str().map(str::len), Some(65_536));
}
