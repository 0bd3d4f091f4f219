//! Health checks and the per-task watchdog, against the real `trc` and `trcctl` binaries: a
//! `health: check`, `tcp` or `http` that starts failing gets its task stopped and restarted
//! (`restart: on-failure`) with the warning on stderr without `--verbose` and in the journal
//! with PRIORITY 4; a task that stops sending `WATCHDOG=1` (or sends `WATCHDOG=trigger`) too;
//! `trcctl check [--ready] [NAME...]` exit codes; the `ready` and `health` fields of `--json`.
//!
//! Real processes and sockets: the servers are small python3 scripts listening on a port the
//! test picked free. Every wait is on an event (a line, a file, a status) with the harness'
//! generous deadline; tasks that must "stay up" are watched for a number of passed checks or
//! pings they count themselves, not for a fixed time.

mod common;

use common::sandbox::*;
use common::{can_use_namespaces, wait_until, Running, Trc, DEADLINE};
use serde_json::Value;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

/// A task file: the header block with `directives`, then `body`.
fn task_file(work: &Path, name: &str, directives: &[&str], body: &str) {
    let header: String = directives.iter().map(|d| format!("# {d}\n")).collect();
    task(work, name, &format!("### BEGIN TRC\n{header}### END TRC\n{body}\n"));
}

/// `trcctl --json status TASK` once it satisfies `pred` (a task not known yet is "not yet").
fn wait_status(s: &Sandbox, task: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let until = Instant::now() + DEADLINE;
    loop {
        let last = s.status(task).unwrap_or(Value::Null);
        if pred(&last) {
            return last;
        }
        assert!(Instant::now() < until, "timed out waiting for {task} to be {what}; last status: {last}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A running task's status once it is running (ready) with a pid.
fn wait_running(s: &Sandbox, task: &str) -> Value {
    wait_status(s, task, "running", |st| st["state"] == "running" && st["pid"].is_i64())
}

/// The trc handle of a `Sup`, to wait for its lines.
fn lines_of(sup: &mut Sup) -> &mut Running {
    sup.running.as_mut().expect("trc handle")
}

/// A port nothing listens on (bound once and let go: the kernel does not hand it out again
/// at once).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn python3() -> &'static str {
    python().expect("python3 (in /usr/bin, /usr/local/bin or /bin)")
}

/// Writes the python3 script `name` in the sandbox; returns the shell code that runs it.
fn script(s: &Sandbox, name: &str, code: &str, args: &str) -> String {
    std::fs::write(s.root().join(name), code).unwrap();
    format!("exec {} \"$DIR/{name}\" {args}", python3())
}

/// Lines in `$DIR/<name>` (0 when it does not exist).
fn count(dir: &Path, name: &str) -> usize {
    std::fs::read_to_string(dir.join(name)).map(|t| t.lines().count()).unwrap_or(0)
}

fn touch(path: &Path) {
    std::fs::write(path, "").unwrap();
}

// ----- health: check ------------------------------------------------------------------------

#[test]
fn a_failing_health_check_restarts_the_task_until_it_passes_again() {
    let s = Sandbox::new();
    let work = s.work("app");
    let healthy = s.root().join("healthy");
    touch(&healthy);
    // Each passed check leaves a line in $DIR/checks: "stays healthy" is counted in checks.
    task_file(
        &work,
        "web",
        &[
            "restart: on-failure",
            "restart-delay: 100ms",
            "start-limit: none",
            "health: check test -e \"$DIR/healthy\" && echo >> \"$DIR/checks\"",
            "health-interval: 200ms",
            "health-timeout: 10s",
            "health-retries: 2",
        ],
        "exec sleep 1000",
    );
    let mut trc = s.start(&work);
    let first = wait_running(&s, "web");
    assert_eq!(
        (first["ready"].as_bool(), first["health"].as_str()),
        (Some(true), Some("healthy")),
        "{first}"
    );
    wait_until("a passed health check", || count(s.root(), "checks") >= 1);

    std::fs::remove_file(&healthy).unwrap();
    let line = lines_of(&mut trc).wait_for_line("web is unhealthy: 2 health checks failed in a row");
    assert!(line.contains("(check test -e \"$DIR/healthy\""), "{line}");
    assert!(line.trim_end().ends_with(": stopping it"), "{line}");
    assert!(lines_of(&mut trc).stderr.contains(&line), "the warning is not on stderr without --verbose");

    // Back to healthy: it runs again, and then keeps passing its checks, undisturbed.
    touch(&healthy);
    let st = wait_status(&s, "web", "restarted", |st| {
        st["starts"].as_u64() >= Some(2) && st["state"] == "running"
    });
    assert_ne!(st["pid"], first["pid"], "{st}");
    let passed = count(s.root(), "checks");
    wait_until("3 more passed checks", || count(s.root(), "checks") >= passed + 3);
    let steady = wait_running(&s, "web");
    let passed = count(s.root(), "checks");
    wait_until("5 more passed checks", || count(s.root(), "checks") >= passed + 5);
    let st = wait_running(&s, "web");
    assert_eq!(
        (&st["pid"], &st["starts"]),
        (&steady["pid"], &steady["starts"]),
        "restarted while healthy: {st}"
    );
    assert_eq!(st["health"], "healthy", "{st}");
    assert!(st["probe_problem"].is_null(), "{st}");
    assert!(common::process_alive(int_of(&st["pid"])));
}

// ----- health: tcp --------------------------------------------------------------------------

/// Listens on 127.0.0.1:argv[1] until $DIR/close appears (taken: the next run listens), then
/// holds on without listening.
const TCP_SERVER: &str = r#"
import os, socket, sys, time
d = os.environ["DIR"]
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(16)
s.settimeout(0.05)
while not os.path.exists(d + "/close"):
    try:
        s.accept()[0].close()
    except socket.timeout:
        pass
os.rename(d + "/close", d + "/closed")
s.close()
while True:
    time.sleep(1)
"#;

#[test]
fn a_tcp_health_check_fails_when_the_task_stops_listening() {
    let s = Sandbox::new();
    let work = s.work("app");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let run = script(&s, "server.py", TCP_SERVER, &port.to_string());
    task_file(
        &work,
        "web",
        &[
            "restart: on-failure",
            "restart-delay: 100ms",
            &format!("ready: tcp {addr}"),
            "ready-interval: 100ms",
            &format!("health: tcp {addr}"),
            "health-interval: 200ms",
            "health-timeout: 10s",
            "health-retries: 2",
        ],
        &run,
    );
    let mut trc = s.start(&work);
    let first = wait_running(&s, "web");
    assert_eq!(
        (first["ready"].as_bool(), first["health"].as_str()),
        (Some(true), Some("healthy")),
        "{first}"
    );
    assert_eq!(first["starts"], 1, "{first}");

    touch(&s.root().join("close"));
    let line = lines_of(&mut trc).wait_for_line("web is unhealthy: 2 health checks failed in a row");
    assert!(line.contains(&format!("(tcp {addr}: connect to {addr}")), "{line}");
    assert!(lines_of(&mut trc).stderr.contains(&line), "the warning is not on stderr");
    assert!(s.root().join("closed").exists());
    // The next run listens again: ready, healthy.
    let st = wait_status(&s, "web", "running again", |st| {
        st["starts"].as_u64() >= Some(2) && st["state"] == "running"
    });
    assert_ne!(st["pid"], first["pid"], "{st}");
    assert_eq!((st["ready"].as_bool(), st["health"].as_str()), (Some(true), Some("healthy")), "{st}");
}

// ----- health: http -------------------------------------------------------------------------

/// Answers GET with 200, or 500 while $DIR/broken exists.
const HTTP_SERVER: &str = r#"
import http.server, os, sys
d = os.environ["DIR"]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(500 if os.path.exists(d + "/broken") else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"#;

#[test]
fn an_http_health_check_fails_on_a_500_and_says_unhealthy() {
    let s = Sandbox::new();
    let work = s.work("app");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/healthz");
    let run = script(&s, "server.py", HTTP_SERVER, &port.to_string());
    // The restart delay is the window in which the test reads the reason (the next start
    // clears it).
    task_file(
        &work,
        "web",
        &[
            "restart: on-failure",
            "restart-delay: 3s",
            &format!("ready: http {url}"),
            "ready-interval: 100ms",
            &format!("health: http {url}"),
            "health-interval: 200ms",
            "health-timeout: 10s",
            "health-retries: 2",
        ],
        &run,
    );
    let mut trc = s.start(&work);
    let first = wait_running(&s, "web");
    assert_eq!(first["health"], "healthy", "{first}");
    assert!(first["reason"].is_null(), "{first}");

    let broken = s.root().join("broken");
    touch(&broken);
    let line = lines_of(&mut trc).wait_for_line("web is unhealthy: 2 health checks failed in a row");
    assert!(line.contains(&format!("(http {url}: {url} answered 500)")), "{line}");
    std::fs::remove_file(&broken).unwrap();
    let st = wait_status(&s, "web", "waiting to restart", |st| st["state"] == "waiting");
    assert_eq!(st["reason"], "unhealthy", "{st}");
    assert_eq!(st["ready"], false, "{st}");
    assert!(st["probe_problem"].as_str().is_some_and(|p| p.contains("answered 500")), "{st}");

    let st = wait_status(&s, "web", "running again", |st| {
        st["starts"].as_u64() >= Some(2) && st["state"] == "running"
    });
    assert_ne!(st["pid"], first["pid"], "{st}");
    assert_eq!(st["health"], "healthy", "{st}");
}

// ----- the journal --------------------------------------------------------------------------

/// Decodes journald's native protocol: `KEY=value\n`, or `KEY\n<u64 LE length><value>\n`.
fn decode(mut data: &[u8]) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    while let Some(end) = data.iter().position(|&b| b == b'\n' || b == b'=') {
        let key = String::from_utf8_lossy(&data[..end]).into_owned();
        let rest = &data[end + 1..];
        if data[end] == b'=' {
            let nl = rest.iter().position(|&b| b == b'\n').expect("a value without its newline");
            fields.push((key, String::from_utf8_lossy(&rest[..nl]).into_owned()));
            data = &rest[nl + 1..];
        } else {
            let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            fields.push((key, String::from_utf8_lossy(&rest[8..8 + len]).into_owned()));
            data = &rest[8 + len + 1..];
        }
    }
    fields
}

fn field<'a>(record: &'a [(String, String)], key: &str) -> Option<&'a str> {
    record.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

#[test]
fn the_unhealthy_record_has_priority_4_and_the_task_fields() {
    if !can_use_namespaces("the_unhealthy_record_has_priority_4_and_the_task_fields") {
        return;
    }
    // A socket standing in for journald's, bind-mounted on /run/systemd/journal for trc.
    let journal = tempfile::tempdir().unwrap();
    let socket = UnixDatagram::bind(journal.path().join("socket")).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir(work.path().join("trc.d")).unwrap();
    task_file(
        work.path(),
        "sick",
        &["health: check false", "health-interval: 100ms", "health-timeout: 10s", "health-retries: 2"],
        "echo $$ > \"$RC_WORK_DIR/sick.pid\"\nexec sleep 1000",
    );
    // A task that has no process yet: its records carry no TRC_TASK_PID (not trc's own).
    task_file(work.path(), "never", &["ready: file never-there"], "exec sleep 1000");
    task_file(work.path(), "waiter", &["after: never"], "exec sleep 1000");
    let mut trc = Trc::new(work.path(), ["--log", "journal", "--verbose"]);
    trc.command().env_remove("JOURNAL_STREAM").env_remove("NO_COLOR");
    common::in_journal_namespace(trc.command(), journal.path());
    let _running = trc.spawn();

    let mut seen = Vec::new();
    let until = Instant::now() + DEADLINE;
    let (mut unhealthy, mut waiting) = (None, None);
    let record = loop {
        let mut buf = vec![0u8; 256 * 1024];
        if let Ok(n) = socket.recv(&mut buf) {
            let record = decode(&buf[..n]);
            let message = field(&record, "MESSAGE").unwrap_or_default();
            if message.contains("sick is unhealthy") && unhealthy.is_none() {
                unhealthy = Some(record);
            } else if message.contains("Waiting for never to be ready") {
                waiting = Some(record);
            } else {
                seen.push(record);
            }
            if let (Some(record), Some(_)) = (&unhealthy, &waiting) {
                break record.clone();
            }
        }
        assert!(
            Instant::now() < until,
            "no unhealthy and waiting records within {DEADLINE:?}; got:\n{unhealthy:#?}\n{waiting:#?}\n{seen:#?}"
        );
    };
    let waiting = waiting.unwrap();
    assert_eq!(field(&waiting, "TRC_TASK"), Some("waiter"), "{waiting:?}");
    assert_eq!(field(&waiting, "TRC_TASK_PID"), None, "{waiting:?}");
    let message = field(&record, "MESSAGE").unwrap();
    assert!(
        message.contains(
            "sick is unhealthy: 2 health checks failed in a row (check false: exit status 1): stopping it"
        ),
        "{record:?}"
    );
    assert_eq!(field(&record, "PRIORITY"), Some("4"), "{record:?}");
    assert_eq!(field(&record, "TRC_TASK"), Some("sick"), "{record:?}");
    assert_eq!(field(&record, "TRC_STAGE"), Some("async"), "{record:?}");
    assert_eq!(field(&record, "SYSLOG_IDENTIFIER"), Some("trc"), "{record:?}");
    let pid = std::fs::read_to_string(work.path().join("sick.pid")).unwrap();
    assert_eq!(field(&record, "TRC_TASK_PID"), Some(pid.trim()), "{record:?}");
}

// ----- the watchdog -------------------------------------------------------------------------

/// Says READY=1, then WATCHDOG=1 every 100 ms (counted in $DIR/pings) while $DIR/quiet does
/// not exist; WATCHDOG=trigger once when $DIR/trigger appears (taken).
const WATCHDOG_TASK: &str = r#"
import os, socket, time
d = os.environ["DIR"]
with open(d + "/usec", "w") as f:
    f.write(os.environ.get("WATCHDOG_USEC", ""))
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
send = lambda text: s.sendto(text.encode(), os.environ["NOTIFY_SOCKET"])
send("READY=1")
pings = 0
while True:
    if os.path.exists(d + "/trigger"):
        os.rename(d + "/trigger", d + "/triggered")
        send("WATCHDOG=trigger")
    elif not os.path.exists(d + "/quiet"):
        send("WATCHDOG=1")
        pings += 1
        with open(d + "/pings.tmp", "w") as f:
            f.write("\n" * pings)
        os.replace(d + "/pings.tmp", d + "/pings")
    time.sleep(0.1)
"#;

fn watchdog_task(s: &Sandbox, work: &Path, every: &str) {
    let run = script(s, "dog.py", WATCHDOG_TASK, "");
    task_file(
        work,
        "dog",
        &["restart: on-failure", "restart-delay: 3s", "ready: notify", &format!("watchdog: {every}")],
        &run,
    );
}

#[test]
fn a_task_that_stops_pinging_the_watchdog_is_restarted() {
    let s = Sandbox::new();
    let work = s.work("app");
    watchdog_task(&s, &work, "1s");
    let mut trc = s.start(&work);
    let first = wait_running(&s, "dog");
    assert_eq!(
        (first["ready"].as_bool(), first["health"].as_str()),
        (Some(true), Some("healthy")),
        "{first}"
    );
    assert_eq!(std::fs::read_to_string(s.root().join("usec")).unwrap(), "1000000");
    // 25 pings: 2.5 s, past two watchdog times.
    wait_until("25 pings", || count(s.root(), "pings") >= 25);
    let st = wait_running(&s, "dog");
    assert_eq!((&st["pid"], &st["starts"]), (&first["pid"], &first["starts"]), "{st}");

    let quiet = s.root().join("quiet");
    touch(&quiet);
    let line = lines_of(&mut trc).wait_for_line("dog is unhealthy: no WATCHDOG=1 within 1.000s: stopping it");
    assert!(lines_of(&mut trc).stderr.contains(&line), "the warning is not on stderr");
    std::fs::remove_file(&quiet).unwrap();
    let st = wait_status(&s, "dog", "waiting to restart", |st| st["state"] == "waiting");
    assert_eq!(st["reason"], "watchdog", "{st}");
    let st = wait_status(&s, "dog", "running again", |st| {
        st["starts"].as_u64() >= Some(2) && st["state"] == "running"
    });
    assert_ne!(st["pid"], first["pid"], "{st}");
    assert_eq!(st["health"], "healthy", "{st}");
}

#[test]
fn watchdog_trigger_fails_the_task_at_once() {
    let s = Sandbox::new();
    let work = s.work("app");
    // A watchdog time longer than the test's deadline: only the trigger can fail it.
    watchdog_task(&s, &work, "10min");
    let mut trc = s.start(&work);
    let first = wait_running(&s, "dog");
    wait_until("a ping", || count(s.root(), "pings") >= 1);

    touch(&s.root().join("trigger"));
    lines_of(&mut trc).wait_for_line("dog is unhealthy: WATCHDOG=trigger: stopping it");
    assert!(s.root().join("triggered").exists());
    let st = wait_status(&s, "dog", "waiting to restart", |st| st["state"] == "waiting");
    assert_eq!(st["reason"], "watchdog", "{st}");
    let st = wait_status(&s, "dog", "running again", |st| {
        st["starts"].as_u64() >= Some(2) && st["state"] == "running"
    });
    assert_ne!(st["pid"], first["pid"], "{st}");
}

// ----- trcctl check -------------------------------------------------------------------------

#[test]
fn trcctl_check_exit_codes() {
    let s = Sandbox::new();
    // No trc: 69, with or without --ready.
    for args in [&["check"][..], &["check", "--ready"]] {
        let out = s.ctl(args);
        assert_eq!(out.code, 69, "{args:?}: {out:?}");
    }

    let work = s.work("app");
    task_file(&work, "web", &["health: check true", "health-interval: 200ms"], "exec sleep 1000");
    let ready = format!("ready: file {}", s.root().join("ready").display());
    task_file(&work, "slow", &[&ready, "ready-interval: 100ms"], "exec sleep 1000");
    // Unhealthy once $DIR/sick appears; then it takes its time to stop (TERM is trapped, and
    // the `sleep` it kills is no failure) and stays `unhealthy` until $DIR/release appears.
    task_file(
        &work,
        "sick",
        &[
            "health: check test ! -e \"$DIR/sick\"",
            "health-interval: 200ms",
            "health-timeout: 10s",
            "health-retries: 1",
            "stop-timeout: 10min",
        ],
        "trap 'touch \"$DIR/termed\"' TERM\nwhile [ ! -e \"$DIR/release\" ]; do sleep 0.05 || :; done",
    );
    let _trc = s.start(&work);
    // Declared after trc: dropped first, so that sick stops at teardown even when a check fails.
    let _release = Release(s.root().join("release"));
    wait_running(&s, "web");
    wait_running(&s, "sick");
    let st = wait_status(&s, "slow", "starting", |st| st["state"] == "starting");
    assert_eq!(st["ready"], false, "{st}");

    // Starting: alive, not ready.
    let out = s.ctl(&["check"]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = s.ctl(&["check", "--ready"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.lines().any(|l| l.contains("slow: starting")), "{out:?}");
    assert!(
        !out.stderr.lines().any(|l| l.starts_with("trcctl: web") || l.starts_with("trcctl: sick")),
        "{out:?}"
    );
    let out = s.ctl(&["check", "--ready", "web"]);
    assert_eq!(out.code, 0, "only web: {out:?}");

    touch(&s.root().join("ready"));
    wait_until("check --ready to pass", || s.ctl(&["check", "--ready"]).code == 0);
    for args in [&["check", "slow"][..], &["check", "--ready", "slow", "web"]] {
        let out = s.ctl(args);
        assert_eq!(out.code, 0, "{args:?}: {out:?}");
    }
    let out = s.ctl(&["check", "nope"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("unknown task \"nope\""), "{out:?}");

    // Unhealthy (while it is stopped for it): liveness fails, naming it.
    touch(&s.root().join("sick"));
    let st = wait_status(&s, "sick", "unhealthy", |st| st["state"] == "unhealthy");
    assert_eq!((st["health"].as_str(), st["ready"].as_bool()), (Some("unhealthy"), Some(false)), "{st}");
    wait_until("sick to get its stop signal", || s.root().join("termed").exists());
    for args in [&["check"][..], &["check", "sick"], &["check", "--ready"]] {
        let out = s.ctl(args);
        assert_eq!(out.code, 1, "{args:?}: {out:?}");
        assert!(out.stderr.lines().any(|l| l.contains("sick: unhealthy")), "{args:?}: {out:?}");
    }
    let out = s.ctl(&["check", "--ready", "web", "slow"]);
    assert_eq!(out.code, 0, "the others are fine: {out:?}");
    // A liveness probe asks only that trc answers.
    let out = s.ctl(&["check", "--alive"]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = s.ctl(&["check", "--alive", "--ready"]);
    assert_eq!(out.code, 2, "{out:?}");

    // Once trc has stopped it (it waits to restart, or is done for good), trc is dealing
    // with it: plain check passes, --ready does not.
    touch(&s.root().join("release"));
    wait_status(&s, "sick", "stopped", |st| st["state"] != "unhealthy" && st["pid"].is_null());
    let out = s.ctl(&["check"]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = s.ctl(&["check", "--ready", "sick"]);
    assert_eq!(out.code, 1, "{out:?}");
}

#[test]
fn trcctl_check_says_69_when_trc_does_not_answer() {
    let s = Sandbox::new();
    let work = s.work("app");
    task_file(&work, "web", &[], "exec sleep 1000");
    let sup = s.start(&work);
    wait_running(&s, "web");
    // Stopped: the kernel still accepts the connection, trc never answers.
    // SAFETY: kill(2) on our own child trc.
    assert_eq!(unsafe { libc::kill(sup.pid(), libc::SIGSTOP) }, 0);
    struct Cont(i32);
    impl Drop for Cont {
        fn drop(&mut self) {
            // SAFETY: kill(2) on our own child trc.
            unsafe { libc::kill(self.0, libc::SIGCONT) };
        }
    }
    let cont = Cont(sup.pid());
    let started = Instant::now();
    for args in [&["--timeout", "500ms", "check"][..], &["--timeout", "500ms", "check", "--alive"]] {
        let out = s.ctl(args);
        assert_eq!(out.code, 69, "{args:?}: {out:?}");
        assert!(out.stderr.contains("did not answer within 500ms (--timeout)"), "{out:?}");
    }
    assert!(started.elapsed() < DEADLINE, "trcctl hung");
    drop(cont);
    let out = s.ctl(&["check"]);
    assert_eq!(out.code, 0, "{out:?}");
    drop(sup);
}

// ----- probes: bounded in time, none during teardown ------------------------------------------

#[test]
fn a_check_command_is_killed_with_its_group_at_its_timeout() {
    let s = Sandbox::new();
    let work = s.work("app");
    // The check leaves a child of its own behind it, and never ends by itself. (Its timeout
    // leaves it time to write its pids, also on a loaded machine.)
    task_file(
        &work,
        "web",
        &[
            "health: check sh -c 'sleep 1000 & echo $! > \"$DIR/check.child\"; echo $$ > \"$DIR/check.pid\"; wait'",
            "health-interval: 100ms",
            "health-timeout: 2s",
            "health-retries: 1",
            "restart: never",
        ],
        "exec sleep 1000",
    );
    let mut trc = s.start_trc(s.trc(&work, &[]).env("RC_WAIT_POLICY", "wait_forever"));
    let line = lines_of(&mut trc).wait_for_line("web is unhealthy: 1 health check failed in a row");
    assert!(line.contains("no answer within 2.000s"), "{line}");
    let read =
        |name: &str| -> i32 { std::fs::read_to_string(s.root().join(name)).unwrap().trim().parse().unwrap() };
    let (check, child) = (read("check.pid"), read("check.child"));
    wait_until("the check command and its child to be killed", || {
        !common::process_alive(check) && !common::process_alive(child)
    });
}

#[test]
fn no_probe_runs_during_teardown() {
    let s = Sandbox::new();
    let work = s.work("app");
    // Each health check leaves a line as it begins; the task takes a while to stop.
    task_file(
        &work,
        "web",
        &["health: check sh -c 'echo >> \"$DIR/checks\"'", "health-interval: 50ms", "stop-timeout: 10s"],
        "trap 'touch \"$DIR/termed\"; sleep 1; exit 0' TERM\nsleep 1000 & wait",
    );
    let mut trc = s.start(&work);
    wait_until("3 health checks", || count(s.root(), "checks") >= 3);
    lines_of(&mut trc).signal(libc::SIGTERM);
    wait_until("web to get its stop signal", || s.root().join("termed").exists());
    let at_stop = count(s.root(), "checks");
    let status = trc.terminate();
    assert!(status.is_some(), "trc did not exit");
    // One check started before the teardown may still have left its line; no more.
    let after = count(s.root(), "checks");
    assert!(after <= at_stop + 1, "checks ran during teardown: {at_stop} then {after}");
}

#[test]
fn an_http_probe_gives_up_on_a_server_that_never_answers() {
    let s = Sandbox::new();
    let work = s.work("app");
    // Accepts connections (the kernel's backlog) and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let health = format!("health: http http://127.0.0.1:{port}/healthz");
    task_file(
        &work,
        "web",
        &[&health, "health-interval: 100ms", "health-timeout: 300ms", "health-retries: 1", "restart: never"],
        "exec sleep 1000",
    );
    let mut trc = s.start_trc(s.trc(&work, &[]).env("RC_WAIT_POLICY", "wait_forever"));
    let line = lines_of(&mut trc).wait_for_line("web is unhealthy: 1 health check failed in a row");
    assert!(
        line.contains(&format!("(http http://127.0.0.1:{port}/healthz: no answer within 300ms)")),
        "{line}"
    );
    drop(listener);
}

/// Creates its file when dropped.
struct Release(std::path::PathBuf);

impl Drop for Release {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.0, "");
    }
}

// ----- --json fields ------------------------------------------------------------------------

#[test]
fn json_status_has_ready_and_health() {
    let s = Sandbox::new();
    let work = s.work("app");
    task(&work, "plain", "exec sleep 1000\n");
    task_file(&work, "checked", &["health: check true", "health-interval: 200ms"], "exec sleep 1000");
    let ready = format!("ready: file {}", s.root().join("ready").display());
    task_file(&work, "slow", &[&ready, "ready-interval: 100ms"], "exec sleep 1000");
    let _trc = s.start(&work);

    let st = wait_running(&s, "plain");
    assert_eq!(st["ready"], true, "{st}");
    assert!(st.get("health").is_some_and(Value::is_null), "health null without a check: {st}");
    let st = wait_running(&s, "checked");
    assert_eq!((st["ready"].as_bool(), st["health"].as_str()), (Some(true), Some("healthy")), "{st}");
    let st = wait_status(&s, "slow", "starting", |st| st["state"] == "starting");
    assert_eq!(st["ready"], false, "{st}");
    assert!(st.get("health").is_some_and(Value::is_null), "{st}");
    assert!(st["reason"].is_null(), "{st}");

    touch(&s.root().join("ready"));
    let st = wait_running(&s, "slow");
    assert_eq!(st["ready"], true, "{st}");
    // `list` carries the same fields.
    let Value::Array(tasks) = s.ctl(&["--json", "list"]).json() else { panic!("list: not an array") };
    for t in &tasks {
        let want_health = if t["name"] == "checked" { Value::from("healthy") } else { Value::Null };
        assert_eq!((&t["ready"], &t["health"]), (&Value::Bool(true), &want_health), "{t}");
    }
}
