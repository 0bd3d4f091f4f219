//! Records to journald in its native protocol (SPEC §8): trc is started in a private mount
//! namespace where /run/systemd/journal is a directory of the test's, whose `socket` the test
//! binds and reads (decoding the protocol itself, memfds passed with SCM_RIGHTS included). Then
//! the same against the real systemd-journald, when it is installed. Needs root (namespaces),
//! except the errors that end trc before it looks for journald (they only need stderr to be
//! the journal stream: `JOURNAL_STREAM` naming a file).

mod common;

use common::{can_use_namespaces, skip, trc_bin, Spawned, Trc, DEADLINE};
use std::io::{Read, Seek};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

// ----- a fake journald -------------------------------------------------------------------------

/// One native record as received.
#[derive(Clone)]
struct Record {
    fields: Vec<(String, Vec<u8>)>,
    /// It came in a memfd (SCM_RIGHTS), not in the datagram.
    memfd: bool,
}

impl Record {
    fn get(&self, key: &str) -> Option<String> {
        let mut values = self.fields.iter().filter(|(k, _)| k == key);
        let value = values.next().map(|(_, v)| String::from_utf8_lossy(v).into_owned());
        assert!(values.next().is_none(), "field {key} twice in {self:?}");
        value
    }

    fn field(&self, key: &str) -> String {
        self.get(key).unwrap_or_else(|| panic!("no {key} in {self:?}"))
    }

    fn message(&self) -> String {
        self.field("MESSAGE")
    }
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut list = f.debug_map();
        for (k, v) in &self.fields {
            let text = String::from_utf8_lossy(&v[..v.len().min(200)]).into_owned();
            list.entry(k, &if v.len() > 200 { format!("{text}... ({} bytes)", v.len()) } else { text });
        }
        list.finish()?;
        if self.memfd {
            f.write_str(" (memfd)")?;
        }
        Ok(())
    }
}

/// Decodes journald's native protocol: `KEY=value\n`, or `KEY\n<u64 LE length><value>\n`.
fn decode(mut data: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut fields = Vec::new();
    while !data.is_empty() {
        let end = data.iter().position(|&b| b == b'\n' || b == b'=').expect("a field without its end");
        let key = String::from_utf8(data[..end].to_vec()).expect("a key that is not text");
        assert!(
            !key.is_empty() && key.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'),
            "a key journald rejects: {key:?}"
        );
        let rest = &data[end + 1..];
        if data[end] == b'=' {
            let nl = rest.iter().position(|&b| b == b'\n').expect("a value without its newline");
            fields.push((key, rest[..nl].to_vec()));
            data = &rest[nl + 1..];
        } else {
            let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            fields.push((key, rest[8..8 + len].to_vec()));
            assert_eq!(rest[8 + len], b'\n', "a binary value not followed by a newline");
            data = &rest[8 + len + 1..];
        }
    }
    fields
}

/// A socket standing in for journald's, in a directory that is bind-mounted on
/// /run/systemd/journal for trc. A thread receives and decodes every record.
struct FakeJournal {
    dir: tempfile::TempDir,
    records: Receiver<Record>,
    stop: Arc<AtomicBool>,
    seen: Vec<Record>,
}

impl FakeJournal {
    fn new() -> FakeJournal {
        let dir = tempfile::tempdir().unwrap();
        let socket = UnixDatagram::bind(dir.path().join("socket")).unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let (tx, rx) = channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || loop {
            match receive(&socket) {
                // Ends when the test is over (its receiver is gone).
                Some(record) => {
                    let Ok(()) = tx.send(record) else { return };
                }
                // Nothing came within the read timeout: stop once asked (trc has exited then,
                // so every record it sent was queued before).
                None if stopped.load(Ordering::SeqCst) => return,
                None => {}
            }
        });
        FakeJournal { dir, records: rx, stop, seen: Vec::new() }
    }

    /// A directory to bind on /run/systemd/journal that has no socket at all.
    fn empty_dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    /// Waits for a record that satisfies `pred`.
    fn wait_for(&mut self, what: &str, pred: impl Fn(&Record) -> bool) -> Record {
        if let Some(r) = self.seen.iter().find(|r| pred(r)) {
            return r.clone();
        }
        let until = Instant::now() + DEADLINE;
        loop {
            match self.records.recv_timeout(until.saturating_duration_since(Instant::now())) {
                Ok(record) => {
                    self.seen.push(record.clone());
                    if pred(&record) {
                        return record;
                    }
                }
                Err(e) => panic!("no record {what} ({e:?}); got:\n{:#?}", self.seen),
            }
        }
    }

    /// Every record, after trc has exited.
    fn all(mut self) -> Vec<Record> {
        self.stop.store(true, Ordering::SeqCst);
        loop {
            match self.records.recv_timeout(DEADLINE) {
                Ok(record) => self.seen.push(record),
                Err(RecvTimeoutError::Disconnected) => return self.seen,
                Err(RecvTimeoutError::Timeout) => panic!("the receiver did not stop"),
            }
        }
    }
}

/// Receives one record (reading a passed memfd from its start); None on the read timeout.
fn receive(socket: &UnixDatagram) -> Option<Record> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = vec![0u8; 512 * 1024];
    let mut cmsg = nix::cmsg_space!([RawFd; 4]);
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let msg = match recvmsg::<()>(socket.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC) {
        Ok(msg) => msg,
        Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => return None,
        Err(e) => panic!("recvmsg: {e}"),
    };
    assert!(!msg.flags.contains(MsgFlags::MSG_TRUNC), "a datagram was truncated");
    let mut fds = Vec::new();
    for c in msg.cmsgs().unwrap() {
        if let ControlMessageOwned::ScmRights(passed) = c {
            fds.extend(passed);
        }
    }
    let n = msg.bytes;
    if fds.is_empty() {
        return Some(Record { fields: decode(&buf[..n]), memfd: false });
    }
    assert_eq!(fds.len(), 1, "more than one fd passed");
    assert_eq!(n, 0, "a memfd record with data in the datagram too");
    // SAFETY: the fd was just received with SCM_RIGHTS and is ours alone.
    let mut file = unsafe { std::fs::File::from_raw_fd(fds[0]) };
    // journald requires the memfd to be sealed; its offset is shared with the sender's.
    let seals = nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_GET_SEALS).expect("F_GET_SEALS on the fd");
    assert_ne!(seals & libc::F_SEAL_WRITE, 0, "the memfd is not sealed against writes");
    file.rewind().unwrap();
    let mut data = Vec::new();
    file.read_to_end(&mut data).unwrap();
    Some(Record { fields: decode(&data), memfd: true })
}

/// `trc ARGS` in the namespace with `journal`'s directory (or an empty one).
fn trc(cwd: &Path, journal_dir: &Path, args: &[&str]) -> Trc {
    let mut trc = Trc::new(cwd, args);
    trc.command().env_remove("JOURNAL_STREAM").env_remove("NO_COLOR");
    common::in_journal_namespace(trc.command(), journal_dir);
    trc
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn task_file(dir: &Path, file: &str, body: &str) {
    std::fs::create_dir_all(dir.join("trc.d")).unwrap();
    std::fs::write(dir.join("trc.d").join(file), body).unwrap();
}

fn log_line_re() -> regex::Regex {
    regex::Regex::new(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d trc \[(\w+)/(\d+)\]: (?s)(.*)$").unwrap()
}

/// Task-line records (those with TRC_STREAM) of one task.
fn lines_of<'a>(records: &'a [Record], task: &str) -> Vec<&'a Record> {
    records
        .iter()
        .filter(|r| r.get("TRC_STREAM").is_some() && r.get("TRC_TASK").as_deref() == Some(task))
        .collect()
}

fn read_pid(path: &Path) -> String {
    common::wait_until(&format!("{}", path.display()), || {
        std::fs::read_to_string(path).map(|t| t.ends_with('\n')).unwrap_or(false)
    });
    std::fs::read_to_string(path).unwrap().trim().to_owned()
}

// ----- task lines ------------------------------------------------------------------------------

#[test]
fn task_lines_become_records_with_their_fields() {
    if !can_use_namespaces("task_lines_become_records_with_their_fields") {
        return;
    }
    let work = tmp();
    let fake = FakeJournal::new();
    let pids = work.path().to_str().unwrap().to_owned();
    task_file(
        work.path(),
        "sync.web",
        &format!("echo $$ > {pids}/web.pid\necho 'web says hi'\necho '<3>web failed' >&2\necho '<7>dbg'\nprintf partial\n"),
    );
    task_file(work.path(), "async.raw", "### BEGIN TRC\n# log-prefix: no\n### END TRC\necho raw-line\n");
    let out = trc(
        work.path(),
        fake.dir.path(),
        &["--log", "journal", "--wait-policy", "wait_all", "-D", "echo \"<4>warned $$\"", "echo", "cmd-out"],
    )
    .run();
    assert_eq!(out.code(), 0, "{out:?}");
    // The trailing command keeps trc's stdio: its output is not a record.
    assert_eq!(
        (out.stdout.as_str(), out.stderr.as_str()),
        ("cmd-out\n", ""),
        "only the command on the console"
    );
    let records = fake.all();
    let web_pid = read_pid(&work.path().join("web.pid"));

    let web = lines_of(&records, "web");
    let got: Vec<(String, String, String)> =
        web.iter().map(|r| (r.message(), r.field("PRIORITY"), r.field("TRC_STREAM"))).collect();
    // Order within a stream is kept; the two streams are independent. `<7>dbg` has a valid
    // syslog prefix: priority 7, stripped from the message.
    let mut sorted = got.clone();
    sorted.sort_by_key(|(_, _, stream)| stream.clone());
    let want: Vec<(String, String, String)> = [
        ("web: web failed", "3", "stderr"),
        ("web: web says hi", "6", "stdout"),
        ("web: dbg", "7", "stdout"),
        ("web: partial", "6", "stdout"),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    assert_eq!(sorted, want, "{records:#?}");
    for r in &web {
        assert_eq!(r.field("SYSLOG_IDENTIFIER"), "trc");
        assert_eq!(r.field("TRC_STAGE"), "sync");
        assert_eq!(r.field("TRC_TASK_PID"), web_pid, "TRC_TASK_PID is the task's $$");
    }

    let cli = lines_of(&records, "async-1");
    assert_eq!(cli.len(), 1, "{records:#?}");
    let pid = cli[0].field("TRC_TASK_PID");
    assert_eq!(cli[0].message(), format!("async-1: warned {pid}"));
    assert_eq!(cli[0].field("PRIORITY"), "4");
    assert_eq!(cli[0].field("TRC_STAGE"), "async");
    assert_eq!(cli[0].field("TRC_STREAM"), "stdout");

    let raw = lines_of(&records, "raw");
    assert_eq!(raw.len(), 1, "{records:#?}");
    assert_eq!(raw[0].message(), "raw-line", "log-prefix: no gives the line without the name");
    assert!(records.iter().all(|r| !r.memfd), "small records came in memfds");
    assert!(records.iter().all(|r| !r.message().contains("cmd-out")), "{records:#?}");
}

#[test]
fn long_task_lines_are_split_into_records() {
    if !can_use_namespaces("long_task_lines_are_split_into_records") {
        return;
    }
    let work = tmp();
    let fake = FakeJournal::new();
    let out = trc(
        work.path(),
        fake.dir.path(),
        &["--log", "journal", "-D", "head -c 200000 /dev/zero | tr '\\0' x; echo; echo after"],
    )
    .run();
    assert_eq!(out.code(), 0, "{out:?}");
    let records = fake.all();
    let lines: Vec<String> = lines_of(&records, "async-1").iter().map(|r| r.message()).collect();
    let lens: Vec<usize> = lines.iter().map(String::len).collect();
    let prefix = "async-1: ".len();
    assert_eq!(lens, [prefix + 65536, prefix + 65536, prefix + 65536, prefix + 3392, prefix + 5], "{lens:?}");
    assert!(lines[..4]
        .iter()
        .all(|l| l.starts_with("async-1: xxx") && l.bytes().skip(prefix).all(|b| b == b'x')));
    assert_eq!(lines[4], "async-1: after");
}

// ----- trc's own records -----------------------------------------------------------------------

#[test]
fn own_records_are_the_console_lines_with_priorities() {
    if !can_use_namespaces("own_records_are_the_console_lines_with_priorities") {
        return;
    }
    let work = tmp();
    // Cannot start: its interpreter is missing. That error is always logged.
    std::fs::write(work.path().join("trc.async.broken"), "#!/nonexistent/interpreter\n").unwrap();
    std::fs::set_permissions(
        work.path().join("trc.async.broken"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let fake = FakeJournal::new();
    let out = trc(
        work.path(),
        fake.dir.path(),
        &["--log", "journal", "--wait-policy", "wait_all", "-D", "echo hi"],
    )
    .env("RC_VERBOSE", "true")
    .env("RC_VERBOSE_EXTRA", "true")
    .run();
    assert_ne!(out.code(), 0, "{out:?}");
    assert_eq!((out.stdout.as_str(), out.stderr.as_str()), ("", ""), "nothing on the console");
    let records = fake.all();
    let own: Vec<&Record> = records.iter().filter(|r| r.get("TRC_STREAM").is_none()).collect();
    let re = log_line_re();
    for r in &own {
        assert_eq!(r.field("SYSLOG_IDENTIFIER"), "trc");
        assert!(re.is_match(&r.message()), "not a console line: {r:?}");
        assert!(!r.message().ends_with('\n'));
    }
    let find = |text: &str| {
        own.iter()
            .find(|r| r.message().contains(text))
            .unwrap_or_else(|| panic!("no record with {text:?} in {own:#?}"))
    };
    let policy = find("The wait policy: wait_all");
    assert_eq!(policy.field("PRIORITY"), "6");
    assert_eq!(&re.captures(&policy.message()).unwrap()[1], "main");
    assert!(policy.get("TRC_TASK").is_none(), "not a task event: {policy:?}");
    assert_eq!(find("Launching in the background: echo hi").field("PRIORITY"), "6");
    assert_eq!(find("Exiting in the background (exitcode=0): echo hi").field("PRIORITY"), "6");
    assert_eq!(find("Looking for `async` scripts").field("PRIORITY"), "7", "debug");
    assert!(find("Looking for `async` scripts").message().contains("]:  - Looking"), "debug lines' ` - `");
    let error = find("cannot start");
    assert_eq!(error.field("PRIORITY"), "3", "{error:?}");
    assert!(error.message().contains("trc.async.broken"));
    assert_eq!(find("Exited (exitcode=").field("PRIORITY"), "6");
    // And the task's own line is there too.
    assert_eq!(lines_of(&records, "async-1")[0].message(), "async-1: hi");
}

#[test]
fn a_warning_record_has_priority_4() {
    if !can_use_namespaces("a_warning_record_has_priority_4") {
        return;
    }
    let work = tmp();
    let fake = FakeJournal::new();
    let ready = work.path().join("ready");
    // The task ignores TERM: trc warns when asked again (insistently, >= 1 s into teardown).
    let script = format!("trap '' TERM; touch {}; while :; do sleep 0.05; done", ready.display());
    let mut journal = fake;
    let running =
        trc(work.path(), journal.dir.path(), &["--log", "journal", "--stop-timeout", "60s", "-D", &script])
            .env("RC_VERBOSE", "true")
            .spawn();
    common::wait_until("the task to start", || ready.exists());
    running.signal(libc::SIGTERM);
    journal
        .wait_for("of the teardown", |r| r.get("MESSAGE").is_some_and(|m| m.contains("Trying to terminate")));
    // Repeat the signal until trc takes it as insistent: an event, not a timed guess.
    let until = Instant::now() + DEADLINE;
    let warning = loop {
        running.signal(libc::SIGTERM);
        match journal.records.recv_timeout(Duration::from_millis(100)) {
            Ok(r) if r.get("MESSAGE").is_some_and(|m| m.contains("again while stopping")) => break r,
            Ok(r) => journal.seen.push(r),
            Err(_) => assert!(Instant::now() < until, "no warning record"),
        }
    };
    assert_eq!(warning.field("PRIORITY"), "4", "{warning:?}");
    assert!(log_line_re().is_match(&warning.message()));
    let out = running.wait();
    assert_eq!(out.code(), 143);
    assert_eq!((out.stdout.as_str(), out.stderr.as_str()), ("", ""));
}

#[test]
fn console_formats_leave_the_records_unchanged() {
    if !can_use_namespaces("console_formats_leave_the_records_unchanged") {
        return;
    }
    let work = tmp();
    let fake = FakeJournal::new();
    // The async task stays, and the trailing command ends the group (wait_any) only once the
    // async task has said its line.
    let said = work.path().join("said-hi");
    let async_task = format!("echo hi; touch '{}'; exec sleep 30", said.display());
    let command = format!("until [ -e '{}' ]; do sleep 0.01; done; echo cmd-out", said.display());
    let out = trc(
        work.path(),
        fake.dir.path(),
        &[
            "--log",
            "journal",
            "--log-format",
            "json",
            "--log-timestamps",
            "-D",
            &async_task,
            "sh",
            "-c",
            &command,
        ],
    )
    .env("RC_VERBOSE", "true")
    .run();
    assert_eq!(out.code(), 0, "{out:?}");
    // The trailing command keeps trc's stdio, as in text.
    assert_eq!((out.stdout.as_str(), out.stderr.as_str()), ("cmd-out\n", ""), "{out:?}");
    let records = fake.all();
    assert_eq!(lines_of(&records, "async-1")[0].message(), "async-1: hi", "{records:#?}");
    let re = log_line_re();
    let own: Vec<&Record> = records.iter().filter(|r| r.get("TRC_STREAM").is_none()).collect();
    assert!(own.iter().any(|r| r.message().contains("Launching in the background: echo hi")), "{own:#?}");
    for r in own {
        assert!(re.is_match(&r.message()), "not a TrivialRC line: {r:?}");
    }
}

#[test]
fn own_records_follow_the_verbosity_of_the_console() {
    if !can_use_namespaces("own_records_follow_the_verbosity_of_the_console") {
        return;
    }
    let work = tmp();
    let fake = FakeJournal::new();
    let out = trc(work.path(), fake.dir.path(), &["--log", "journal", "-D", "echo hi"]).run();
    assert_eq!(out.code(), 0);
    let records = fake.all();
    let messages: Vec<String> = records.iter().map(Record::message).collect();
    assert_eq!(messages, ["async-1: hi"], "only the task's line without RC_VERBOSE");

    // RC_VERBOSE without EXTRA: info records, no debug ones (and RC_LOG as --log).
    let fake = FakeJournal::new();
    let out = trc(work.path(), fake.dir.path(), &["-D", "echo hi"])
        .env("RC_LOG", "journal")
        .env("RC_VERBOSE", "true")
        .run();
    assert_eq!((out.code(), out.stdout.as_str(), out.stderr.as_str()), (0, "", ""));
    let records = fake.all();
    assert!(records.iter().any(|r| r.message().contains("Launching")), "{records:#?}");
    assert!(records.iter().any(|r| r.message() == "async-1: hi"), "{records:#?}");
    assert!(records.iter().all(|r| r.field("PRIORITY") != "7"), "debug records without EXTRA: {records:#?}");
}

#[test]
fn a_multiline_value_uses_the_binary_safe_encoding() {
    if !can_use_namespaces("a_multiline_value_uses_the_binary_safe_encoding") {
        return;
    }
    let work = tmp();
    let fake = FakeJournal::new();
    let out = trc(work.path(), fake.dir.path(), &["--log", "journal", "-D", "echo one\necho two"])
        .env("RC_VERBOSE", "true")
        .run();
    assert_eq!(out.code(), 0);
    let records = fake.all();
    let launching =
        records.iter().find(|r| r.message().contains("Launching")).unwrap_or_else(|| panic!("{records:#?}"));
    assert!(
        launching.message().ends_with("Launching in the background: echo one\necho two"),
        "{launching:?}"
    );
    let lines: Vec<String> = lines_of(&records, "async-1").iter().map(|r| r.message()).collect();
    assert_eq!(lines, ["async-1: one", "async-1: two"]);
}

#[test]
fn task_event_records_carry_the_task_fields() {
    if !can_use_namespaces("task_event_records_carry_the_task_fields") {
        return;
    }
    let work = tmp();
    task_file(
        work.path(),
        "async.flaky",
        "### BEGIN TRC\n# restart: on-failure\n# restart-delay: 10ms\n# restart-max-delay: 10ms\n\
         # start-limit: 2 in 60s\n### END TRC\necho $$ >> \"$RC_WORK_DIR/flaky.pids\"\nexit 3\n",
    );
    task_file(work.path(), "sync.web", "echo $$ > \"$RC_WORK_DIR/web.pid\"\n");
    task_file(work.path(), "halt.bye", "echo $$ > \"$RC_WORK_DIR/bye.pid\"\n");
    let fake = FakeJournal::new();
    let out = trc(work.path(), fake.dir.path(), &["--log", "journal", "--wait-policy", "wait_all"])
        .env("RC_VERBOSE", "true")
        .run();
    assert_eq!(out.code(), 0, "the last halt task's status\n{out:?}");
    let records = fake.all();
    let flaky: Vec<String> =
        std::fs::read_to_string(work.path().join("flaky.pids")).unwrap().lines().map(str::to_owned).collect();
    assert_eq!(flaky.len(), 2, "started twice, then gave up");
    let web = read_pid(&work.path().join("web.pid"));
    let bye = read_pid(&work.path().join("bye.pid"));
    let mut problems = Vec::new();
    // Each record names the run it is about: one of `pids`.
    let mut check = |text: &str, task: &str, stage: &str, pids: &[&str]| {
        let found: Vec<&Record> = records.iter().filter(|r| r.message().contains(text)).collect();
        if found.is_empty() {
            problems.push(format!("no record {text:?}"));
        }
        for r in found {
            let got = (r.get("TRC_TASK"), r.get("TRC_STAGE"), r.get("TRC_TASK_PID"));
            let ok = got.0.as_deref() == Some(task)
                && got.1.as_deref() == Some(stage)
                && got.2.as_deref().is_some_and(|p| pids.contains(&p));
            if !ok {
                problems.push(format!("{text:?}: got {got:?}, want ({task}, {stage}, one of {pids:?})"));
            }
        }
    };
    let both = [flaky[0].as_str(), flaky[1].as_str()];
    check("Launching in the background: ", "flaky", "async", &both);
    check("Exiting in the background (exitcode=3)", "flaky", "async", &both);
    check("Restarting in the background", "flaky", "async", &[&flaky[0]]);
    check("giving up", "flaky", "async", &[&flaky[1]]);
    check("Launching in the foreground: ", "web", "sync", &[&web]);
    check("Exiting in the foreground (exitcode=0)", "web", "sync", &[&web]);
    check("Running the shutdown script", "bye", "halt", &[&bye]);
    check("Exiting from the shutdown script", "bye", "halt", &[&bye]);
    assert!(problems.is_empty(), "{}\n{records:#?}", problems.join("\n"));
}

// ----- large records ---------------------------------------------------------------------------

#[test]
fn a_record_too_large_for_a_datagram_goes_in_a_memfd() {
    if !can_use_namespaces("a_record_too_large_for_a_datagram_goes_in_a_memfd") {
        return;
    }
    // Task lines are split at 64 KiB, well under the datagram limit (net.core.wmem_default,
    // ~208 KiB); a task's label is not: a boot task gives the command line an async task of
    // 300,000 bytes (too long for execve, so it cannot start, and trc logs that error).
    let work = tmp();
    task_file(work.path(), "boot.big", "set -- -D \": $(head -c 300000 /dev/zero | tr '\\0' x)\"\n");
    let fake = FakeJournal::new();
    let out = trc(work.path(), fake.dir.path(), &["--log", "journal"]).env("RC_VERBOSE", "true").run();
    assert_ne!(out.code(), 0, "{out:?}");
    let records = fake.all();
    let big: Vec<&Record> = records.iter().filter(|r| r.message().len() > 300_000).collect();
    assert!(!big.is_empty(), "no large record: {records:#?}");
    for r in &big {
        assert!(r.memfd, "a {}-byte record not sent in a memfd", r.message().len());
        assert!(r.message().contains(&format!(": {}", "x".repeat(300_000))), "{r:?}");
        assert_eq!(r.field("SYSLOG_IDENTIFIER"), "trc");
    }
    assert!(big.iter().any(|r| r.message().contains("Launching in the background")), "{big:#?}");
    assert!(records.iter().filter(|r| !r.memfd).count() > 2, "small records still come as datagrams");
}

// ----- choosing the journal --------------------------------------------------------------------

/// Runs trc with stderr to a file and JOURNAL_STREAM as given (from the file's dev:ino when
/// `matching`); returns trc's status, stdout, what it wrote on stderr, and the records.
fn run_with_journal_stream(matching: bool) -> (i32, String, String, Vec<Record>) {
    let work = tmp();
    let fake = FakeJournal::new();
    let err_path = work.path().join("stderr");
    let err_file = std::fs::File::create(&err_path).unwrap();
    let meta = err_file.metadata().unwrap();
    let ino = if matching { meta.ino() } else { meta.ino() + 1 };
    let mut trc = trc(work.path(), fake.dir.path(), &["-D", "echo to-out; echo to-err >&2"]);
    let cmd = trc.command();
    cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), ino));
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(err_file);
    let mut child = Spawned::spawn(cmd);
    let mut stdout = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    let status = wait_child(&mut child);
    let stderr = std::fs::read_to_string(&err_path).unwrap();
    (status, stdout, stderr, fake.all())
}

fn wait_child(child: &mut Spawned) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    let status = child.wait_deadline(DEADLINE);
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

#[test]
fn journal_stream_of_stderr_selects_the_journal() {
    if !can_use_namespaces("journal_stream_of_stderr_selects_the_journal") {
        return;
    }
    let (status, stdout, stderr, records) = run_with_journal_stream(true);
    assert_eq!(status, 0);
    assert_eq!((stdout.as_str(), stderr.as_str()), ("", ""), "records go to journald, not the console");
    let mut got: Vec<(String, String)> =
        records.iter().map(|r| (r.message(), r.field("TRC_STREAM"))).collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("async-1: to-err".to_owned(), "stderr".to_owned()),
            ("async-1: to-out".to_owned(), "stdout".to_owned())
        ]
    );

    // Another file's dev:ino (stderr was redirected away from the journal): the console.
    let (status, stdout, stderr, records) = run_with_journal_stream(false);
    assert_eq!(status, 0);
    assert_eq!((stdout.as_str(), stderr.as_str()), ("async-1: to-out\n", "async-1: to-err\n"));
    assert!(records.is_empty(), "{records:#?}");
}

/// trc (no namespace, no journal: it ends before it looks for one) with stderr to a file, and
/// `JOURNAL_STREAM` naming that file when `journal`: status, stdout, stderr.
fn run_before_the_journal(args: &[&str], journal: bool) -> (i32, String, String) {
    let work = tmp();
    let err_path = work.path().join("stderr");
    let err_file = std::fs::File::create(&err_path).unwrap();
    let meta = err_file.metadata().unwrap();
    let mut trc = Trc::new(work.path(), args);
    let cmd = trc.command();
    cmd.env_remove("JOURNAL_STREAM").env_remove("NO_COLOR");
    if journal {
        cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(err_file);
    let mut child = Spawned::spawn(cmd);
    let mut stdout = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    let status = wait_child(&mut child);
    (status, stdout, std::fs::read_to_string(&err_path).unwrap())
}

/// A usage error (2), like a configuration error (78), is written at priority 3 when stderr is
/// the journal (`<3>` on every line, which journald takes off): `journalctl -p err` shows why
/// a unit failed. Help and version still go to stdout; elsewhere the error is clap's own.
#[test]
fn usage_and_config_errors_reach_the_journal_as_errors() {
    let (status, stdout, stderr) = run_before_the_journal(&["--no-such-option"], true);
    assert_eq!((status, stdout.as_str()), (2, ""), "{stderr}");
    assert!(stderr.starts_with("<3>error: unexpected argument '--no-such-option' found\n"), "{stderr:?}");
    assert!(stderr.lines().count() > 2, "{stderr:?}");
    for line in stderr.lines() {
        assert!(line.starts_with("<3>"), "a line not at priority 3: {line:?}\n{stderr}");
    }
    assert!(stderr.lines().any(|l| l.starts_with("<3>Usage: trc ")), "{stderr:?}");
    assert!(!stderr.contains('\x1b'), "colour codes: {stderr:?}");

    let (status, stdout, stderr) = run_before_the_journal(&["-w", "/nonexistent/app"], true);
    assert_eq!((status, stdout.as_str()), (78, ""), "{stderr}");
    assert!(stderr.starts_with("<3>trc: work dir /nonexistent/app: "), "{stderr:?}");
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");

    // Not the journal: clap's own words, no prefix.
    let (status, _, stderr) = run_before_the_journal(&["--no-such-option"], false);
    assert_eq!(status, 2, "{stderr}");
    assert!(stderr.starts_with("error: unexpected argument '--no-such-option' found\n"), "{stderr:?}");
    assert!(!stderr.contains("<3>"), "{stderr:?}");

    // Help and version: stdout, status 0, nothing on stderr, also with the journal.
    for journal in [true, false] {
        let (status, stdout, stderr) = run_before_the_journal(&["--help"], journal);
        assert_eq!((status, stderr.as_str()), (0, ""), "{stdout}");
        assert!(stdout.contains("Usage: trc ") && !stdout.contains("<3>"), "{stdout}");
        let (status, stdout, stderr) = run_before_the_journal(&["--version"], journal);
        assert_eq!((status, stderr.as_str()), (0, ""), "{stdout}");
        assert_eq!(stdout, format!("trc {}\n", env!("CARGO_PKG_VERSION")));
    }
}

#[test]
fn log_console_wins_over_journal_stream() {
    if !can_use_namespaces("log_console_wins_over_journal_stream") {
        return;
    }
    let work = tmp();
    let fake = FakeJournal::new();
    let err_path = work.path().join("stderr");
    let err_file = std::fs::File::create(&err_path).unwrap();
    let meta = err_file.metadata().unwrap();
    let mut trc = trc(work.path(), fake.dir.path(), &["--log", "console", "-D", "echo hi >&2"]);
    let cmd = trc.command();
    cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(err_file);
    let mut child = Spawned::spawn(cmd);
    assert_eq!(wait_child(&mut child), 0);
    assert_eq!(std::fs::read_to_string(&err_path).unwrap(), "async-1: hi\n");
    assert!(fake.all().is_empty());
}

#[test]
fn an_unreachable_journal_falls_back_to_the_console_with_one_warning() {
    if !can_use_namespaces("an_unreachable_journal_falls_back_to_the_console_with_one_warning") {
        return;
    }
    let work = tmp();
    let empty = FakeJournal::empty_dir();
    let out = trc(work.path(), empty.path(), &["--log", "journal", "-D", "echo hi; echo err >&2"])
        .env("RC_VERBOSE", "true")
        .run();
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(out.stdout.lines().any(|l| l == "async-1: hi"), "{out:?}");
    let warnings: Vec<&str> = out.stderr.lines().filter(|l| l.contains("journal")).collect();
    assert_eq!(warnings.len(), 1, "{out:?}");
    assert!(warnings[0].contains("/run/systemd/journal/socket"), "{out:?}");
    assert!(out.stderr.lines().any(|l| l == "async-1: err"), "{out:?}");
}

#[test]
fn an_unreachable_journal_is_reported_without_verbose_too() {
    if !can_use_namespaces("an_unreachable_journal_is_reported_without_verbose_too") {
        return;
    }
    let work = tmp();
    let empty = FakeJournal::empty_dir();
    let out = trc(work.path(), empty.path(), &["--log", "journal", "-D", "echo hi"]).run();
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout, "async-1: hi\n");
    let warnings: Vec<&str> = out.stderr.lines().filter(|l| l.contains("journal")).collect();
    assert_eq!(warnings.len(), 1, "one warning on stderr: {out:?}");
}

#[test]
fn no_colours_in_the_journal_even_on_a_terminal() {
    if !can_use_namespaces("no_colours_in_the_journal_even_on_a_terminal") {
        return;
    }
    if Command::new("script").arg("--version").output().map(|o| !o.status.success()).unwrap_or(true) {
        skip("no_colours_in_the_journal_even_on_a_terminal", "script(1) from util-linux");
        return;
    }
    let work = tmp();
    let fake = FakeJournal::new();
    let line = format!("'{}' --log journal -D 'echo hi; echo err >&2'", trc_bin().display());
    let mut script = Command::new("script");
    script.args(["-qfc", &line, "/dev/null"]).current_dir(work.path());
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("RC_") || k.starts_with("TRC_") || k == "NOTIFY_SOCKET" || k == "NO_COLOR" {
            script.env_remove(&key);
        }
    }
    script.env_remove("JOURNAL_STREAM");
    common::in_journal_namespace(&mut script, fake.dir.path());
    script.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = Spawned::spawn(&mut script);
    let mut shown = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut shown).unwrap();
    assert_eq!(wait_child(&mut child), 0);
    assert!(shown.is_empty(), "{:?}", String::from_utf8_lossy(&shown));
    let mut got: Vec<String> = fake.all().iter().map(Record::message).collect();
    got.sort();
    assert_eq!(got, ["async-1: err", "async-1: hi"]);
}

// ----- the real systemd-journald ---------------------------------------------------------------

fn journald_binary() -> Option<PathBuf> {
    ["/lib/systemd/systemd-journald", "/usr/lib/systemd/systemd-journald"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Parses `journalctl -o export` output (text fields only; binary ones are skipped).
fn parse_export(text: &str) -> Vec<Vec<(String, String)>> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|entry| {
            entry
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .collect()
}

#[test]
fn the_real_journald_stores_the_records() {
    if !can_use_namespaces("the_real_journald_stores_the_records") {
        return;
    }
    let Some(journald) = journald_binary() else {
        skip("the_real_journald_stores_the_records", "systemd-journald (Debian package systemd)");
        return;
    };
    let work = tmp();
    task_file(
        work.path(),
        "sync.web",
        "echo $$ > \"$RC_WORK_DIR/web.pid\"\necho hello from web\necho '<3>web broke' >&2\n",
    );
    // In a private mount namespace: a fresh /run/systemd/journal and /run/log for journald,
    // which makes its own sockets there; trc logs to it; journalctl reads the runtime journal.
    let script = r#"
set -eu
mount --make-rprivate /
mount -t tmpfs tmpfs /run/systemd/journal
mkdir -p /run/log
mount -t tmpfs tmpfs /run/log
"$JOURNALD" &
journald=$!
trap 'kill $journald 2>/dev/null || true' EXIT
for _ in $(seq 3000); do [ -S /run/systemd/journal/socket ] && break; sleep 0.01; done
[ -S /run/systemd/journal/socket ] || { echo "journald did not start" >&2; exit 90; }
status=0
"$TRC" --log journal --wait-policy wait_all -D 'echo cli line' || status=$?
echo "trc status $status" >&2
# journald has the records once it has read them from its socket: wait until it has the last.
for _ in $(seq 3000); do
    journalctl -D /run/log/journal -o cat TRC_TASK=async-1 2>/dev/null | grep -q 'cli line' &&
        journalctl -D /run/log/journal -o cat TRC_TASK=web 2>/dev/null | grep -q 'web broke' && break
    sleep 0.01
done
echo "=== web cat"
journalctl -D /run/log/journal -o cat TRC_TASK=web
echo "=== web export"
journalctl -D /run/log/journal -o export TRC_TASK=web
echo "=== cli"
journalctl -D /run/log/journal -o export TRC_TASK=async-1
"#;
    let script_path = work.path().join("journald.sh");
    std::fs::write(&script_path, script).unwrap();
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "bash"]).arg(&script_path).current_dir(work.path());
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("RC_") || k.starts_with("TRC_") || k == "NOTIFY_SOCKET" || k == "JOURNAL_STREAM" {
            cmd.env_remove(&key);
        }
    }
    cmd.env("JOURNALD", &journald).env("TRC", trc_bin()).env("PWD", work.path());
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = Spawned::spawn(&mut cmd);
    let mut stdout = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let status = wait_child(&mut child);
    assert_eq!(status, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("trc status 0"), "{stderr}");
    let section = |name: &str| {
        let start = stdout.find(&format!("=== {name}\n")).unwrap() + name.len() + 5;
        let end = stdout[start..].find("\n=== ").map_or(stdout.len(), |e| start + e + 1);
        &stdout[start..end]
    };
    // `journalctl -o cat TRC_TASK=web` reads like the console.
    let mut cat: Vec<&str> = section("web cat").lines().collect();
    cat.sort();
    assert_eq!(cat, ["web: hello from web", "web: web broke"], "{stdout}");
    let web_pid = std::fs::read_to_string(work.path().join("web.pid")).unwrap().trim().to_owned();
    let entries = parse_export(section("web export"));
    assert_eq!(entries.len(), 2, "{stdout}");
    for entry in &entries {
        let get = |k: &str| entry.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        assert_eq!(get("SYSLOG_IDENTIFIER"), Some("trc"));
        assert_eq!(get("TRC_STAGE"), Some("sync"));
        assert_eq!(get("TRC_TASK_PID"), Some(web_pid.as_str()));
        assert_eq!(get("_TRANSPORT"), Some("journal"), "sent natively");
        match get("MESSAGE") {
            Some("web: hello from web") => {
                assert_eq!((get("PRIORITY"), get("TRC_STREAM")), (Some("6"), Some("stdout")))
            }
            Some("web: web broke") => {
                assert_eq!((get("PRIORITY"), get("TRC_STREAM")), (Some("3"), Some("stderr")))
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let cli = parse_export(section("cli"));
    assert_eq!(cli.len(), 1, "{stdout}");
    assert!(cli[0].contains(&("MESSAGE".to_owned(), "async-1: cli line".to_owned())), "{stdout}");
    assert!(cli[0].contains(&("TRC_STAGE".to_owned(), "async".to_owned())), "{stdout}");
}
