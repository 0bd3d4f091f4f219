//! `trcctl --host`: the verbs run on a target machine through the system's ssh client and the
//! target's trcctl, against a real sshd started by the test on a free loopback port, with a
//! throw-away host key and client key (ssh-keygen), and a trc started by the test.
//!
//! The sshd (`/usr/sbin/sshd -D -f CONFIG`) lets in only the test's own user, by that key
//! (`StrictModes no`, `UsePAM no`, `PermitRootLogin prohibit-password`), and gives sessions the
//! sandbox's runtime base (`SetEnv XDG_RUNTIME_DIR=... RC_RUNTIME_DIR=...`: the latter alone
//! is looked in, so trcs of other tests in /run/trc are not seen), so that the remote trcctl
//! finds the test's trc and no other. The
//! client is the test's ssh with no config of the user's (`TRCCTL_SSH`: `-F /dev/null`, the key,
//! a known_hosts file holding the host key, `StrictHostKeyChecking=yes`); the remote trcctl is
//! the freshly built one, named by its absolute path (`TRCCTL_REMOTE`). Locally, trcctl sees an
//! empty runtime base: whatever it reports came from the other side.
//!
//! The sshd, its sessions and its files are gone when a test ends, passed or failed (the
//! harness' process tree, a temp dir). Without sshd, ssh or ssh-keygen the tests are skipped,
//! said on stderr; under `CI=true` that is a failure (`.ci/run` installs openssh-server and
//! openssh-client).

mod common;

use common::sandbox::*;
use common::{process_alive, skip, wait_until, Running, Spawned, DEADLINE};
use serde_json::Value;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SSHD: &str = "/usr/sbin/sshd";

/// A port on 127.0.0.1 that nothing listens on (the kernel's pick, released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// ssh and ssh-keygen (and sshd for a server), or the test is skipped.
fn can_ssh(test: &str, server: bool) -> bool {
    if have("ssh") && have("ssh-keygen") && (!server || Path::new(SSHD).exists()) {
        return true;
    }
    skip(test, "ssh, ssh-keygen and /usr/sbin/sshd (Debian: openssh-client, openssh-server)");
    false
}

fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "trc-test", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("run ssh-keygen");
    assert!(out.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
}

/// An sshd on 127.0.0.1 for the test's own user. Dropped (also when the test fails): it and
/// everything below it (sessions, remote commands) are killed, then its files removed.
struct Sshd {
    process: Spawned,
    dir: tempfile::TempDir,
    port: u16,
}

impl Sshd {
    /// Starts sshd; its sessions get `XDG_RUNTIME_DIR=xdg`.
    fn start(xdg: &Path) -> Sshd {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        keygen(&d.join("host_key"));
        keygen(&d.join("client_key"));
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
        // sshd's privilege separation needs its empty dir (Debian's service makes it at start).
        if nix::unistd::geteuid().is_root() && !Path::new("/run/sshd").exists() {
            std::fs::create_dir_all("/run/sshd").unwrap();
        }
        let user =
            nix::unistd::User::from_uid(nix::unistd::geteuid()).unwrap().expect("the test's user").name;
        // A port another process takes between our pick and sshd's bind: pick again.
        let mut tries = 0;
        loop {
            tries += 1;
            let port = free_port();
            let config = d.join("sshd_config");
            std::fs::write(
                &config,
                format!(
                    "ListenAddress 127.0.0.1:{port}\n\
                     HostKey {d}/host_key\n\
                     PidFile none\n\
                     AuthorizedKeysFile {d}/authorized_keys\n\
                     AuthenticationMethods publickey\n\
                     PubkeyAuthentication yes\n\
                     PasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\n\
                     StrictModes no\n\
                     UsePAM no\n\
                     PermitRootLogin prohibit-password\n\
                     AllowUsers {user}\n\
                     PrintMotd no\n\
                     SetEnv XDG_RUNTIME_DIR={xdg} RC_RUNTIME_DIR={xdg}\n\
                     LogLevel VERBOSE\n",
                    d = d.display(),
                    xdg = xdg.display(),
                ),
            )
            .unwrap();
            let log = d.join("sshd.log");
            let _ = std::fs::remove_file(&log);
            let mut cmd = Command::new(SSHD);
            cmd.arg("-D").arg("-f").arg(&config).arg("-E").arg(&log);
            cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
            let mut process = Spawned::spawn(&mut cmd);
            let until = Instant::now() + DEADLINE;
            loop {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Sshd { process, dir, port };
                }
                if let Some(status) = process.try_wait().unwrap() {
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    if text.contains("Address already in use") && tries < 5 {
                        break;
                    }
                    panic!("sshd exited ({status}) before it listened:\n{text}");
                }
                assert!(Instant::now() < until, "sshd did not listen on port {port} within {DEADLINE:?}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `USER@127.0.0.1:PORT`
    fn host(&self) -> String {
        let user = nix::unistd::User::from_uid(nix::unistd::geteuid()).unwrap().unwrap().name;
        format!("{user}@127.0.0.1:{}", self.port)
    }

    /// The client's known_hosts: the host key under `[127.0.0.1]:PORT`.
    fn known_hosts(&self) -> PathBuf {
        let path = self.dir().join("known_hosts");
        if !path.exists() {
            let key = std::fs::read_to_string(self.dir().join("host_key.pub")).unwrap();
            std::fs::write(&path, format!("[127.0.0.1]:{} {key}", self.port)).unwrap();
        }
        path
    }

    /// `TRCCTL_SSH`: ssh with none of the user's config, the test's key, and this known_hosts.
    fn ssh_command_line(&self, known_hosts: &Path) -> String {
        format!(
            "ssh -F /dev/null -i {key} -o IdentitiesOnly=yes -o IdentityAgent=none \
             -o UserKnownHostsFile={known_hosts} -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes",
            key = self.dir().join("client_key").display(),
            known_hosts = known_hosts.display(),
        )
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("sshd.log")).unwrap_or_default()
    }

    /// Whether sshd still runs.
    fn alive(&mut self) -> bool {
        self.process.try_wait().unwrap().is_none()
    }
}

/// trcctl run here with `--host` on the sshd: a local runtime base with nothing in it (so
/// nothing can be answered locally), none of the caller's trcctl variables.
fn remote_ctl(sshd: &Sshd, local_xdg: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(TRCCTL);
    for var in ["TRC_INSTANCE", "TRCCTL_MANAGER", "TRCCTL_HOST", "TRCCTL_SSH", "TRCCTL_REMOTE"] {
        cmd.env_remove(var);
    }
    cmd.env("XDG_RUNTIME_DIR", local_xdg)
        .env("TRCCTL_SSH", sshd.ssh_command_line(&sshd.known_hosts()))
        .env("TRCCTL_REMOTE", TRCCTL)
        .arg("--host")
        .arg(sshd.host())
        .args(args)
        .stdin(Stdio::null());
    cmd
}

/// trcctl run here on the sandbox's trc (`--manager trc`), looking in the sandbox's runtime
/// base only.
fn local_ctl(s: &Sandbox, args: &[&str]) -> Out {
    let mut cmd = s.trcctl();
    cmd.env("RC_RUNTIME_DIR", s.xdg()).env_remove("TRCCTL_HOST").args(["--manager", "trc"]).args(args);
    run(cmd)
}

fn local_status(s: &Sandbox, task: &str) -> Option<Value> {
    let out = local_ctl(s, &["--json", "status", task]);
    (out.code == 0).then(|| out.json())
}

/// Waits until `task` runs `sleep` (exec'd); its pid.
fn local_wait_sleeping(s: &Sandbox, task: &str) -> i32 {
    let mut pid = 0;
    wait_until(&format!("task {task} to run sleep"), || {
        match local_status(s, task) {
            Some(st) if st["state"] == "running" => pid = int_of(&st["pid"]),
            _ => return false,
        }
        comm(pid).as_deref() == Some("sleep")
    });
    pid
}

/// The JSON of a successful run, or a failure that shows sshd's log too.
fn json_of(out: &Out, sshd: &Sshd) -> Value {
    assert_eq!(out.code, 0, "{out:?}\nsshd log:\n{}", sshd.log());
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {out:?}"))
}

#[test]
fn verbs_run_on_the_target_through_ssh() {
    if !can_ssh("verbs_run_on_the_target_through_ssh", true) {
        return;
    }
    let s = Sandbox::new();
    let local_xdg = s.root().join("local-xdg");
    std::fs::create_dir(&local_xdg).unwrap();
    let mut sshd = Sshd::start(&s.xdg());
    let ctl = |args: &[&str]| run(remote_ctl(&sshd, &local_xdg, args));

    let work = s.work("app");
    task(&work, "web", "exec sleep 1000\n");
    task(
        &work,
        "talk",
        "echo line1\necho ready\nuntil [ -e \"$DIR/go\" ]; do sleep 0.05; done\necho after-go\nexec sleep 1000\n",
    );
    let trc = s.start(&work);
    let web = local_wait_sleeping(&s, "web");

    // list: the table as trcctl prints it locally, and the JSON.
    let out = ctl(&["list"]);
    assert_eq!(out.code, 0, "{out:?}\nsshd log:\n{}", sshd.log());
    let header = |line: Option<&str>| line.map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "));
    let local = local_ctl(&s, &["list"]);
    assert_eq!(
        header(local.stdout.lines().next()).as_deref(),
        Some("NAME STAGE STATE PID SINCE STARTS LAST")
    );
    assert_eq!(out.stdout.lines().next(), local.stdout.lines().next(), "{out:?}");
    assert!(out.stdout.lines().any(|l| l.starts_with("web ") && l.contains(" running ")), "{out:?}");
    assert!(out.stdout.lines().any(|l| l.starts_with("talk ")), "{out:?}");
    let Value::Array(tasks) = json_of(&ctl(&["--json", "list"]), &sshd) else { panic!("list: not an array") };
    let mut names: Vec<String> = tasks.iter().map(|t| str_of(&t["name"])).collect();
    names.sort();
    assert_eq!(names, ["talk", "web"], "{tasks:?}");
    let w = tasks.iter().find(|t| t["name"] == "web").unwrap();
    assert_eq!((w["state"].as_str(), int_of(&w["pid"])), (Some("running"), web), "{w}");

    // ensure: created, then unchanged; every word arrives whole through the remote shell.
    // --manager and --instance are passed on.
    let script = "echo \"it's  two  spaces\" '$NOPE' \"$0\"; exec sleep 1000";
    let ensure =
        ["--manager", "trc", "--instance", &trc.name, "ensure", "extra", "--", "sh", "-c", script, "a b;c"];
    let out = ctl(&ensure);
    assert_eq!(out.code, 0, "{out:?}\nsshd log:\n{}", sshd.log());
    let mut lines = out.stdout.lines();
    assert_eq!(lines.next(), Some("extra: created"), "{out:?}");
    assert_eq!(header(lines.next()), header(local.stdout.lines().next()), "{out:?}");
    assert!(lines.next().is_some_and(|l| l.starts_with("extra ") && l.contains("async")), "{out:?}");
    assert!(work.join("trc.d/async.extra").exists());
    let mut again = vec!["--json"];
    again.extend_from_slice(&ensure);
    let answer = json_of(&ctl(&again), &sshd);
    assert_eq!(answer["ensured"], "unchanged", "{answer}");
    assert_eq!(answer["task"]["starts"], 1, "{answer}");
    let extra = local_wait_sleeping(&s, "extra");
    let logged = local_ctl(&s, &["logs", "extra"]);
    assert_eq!(logged.stdout, "it's  two  spaces $NOPE a b;c\n", "{logged:?}");

    // stop: the table, the task held down here.
    let out = ctl(&["stop", "extra"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.lines().any(|l| l.starts_with("extra ") && l.contains(" stopped ")), "{out:?}");
    assert!(!process_alive(extra), "the task (pid {extra}) still runs after a remote stop");
    assert_eq!(local_status(&s, "extra").unwrap()["state"], "stopped");
    let st = json_of(&ctl(&["--json", "status", "extra"]), &sshd);
    assert_eq!(st["state"], "stopped", "{st}");

    // The remote trcctl's refusal: its status and its words.
    let out = ctl(&["status", "nope"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(out.stderr, "trcctl: unknown task \"nope\"\n", "{out:?}");
    assert_eq!(out.stdout, "", "{out:?}");

    // logs, and logs -f printing lines as they come.
    wait_until("ready in talk's log", || local_ctl(&s, &["logs", "talk"]).stdout.contains("ready"));
    let out = ctl(&["logs", "talk"]);
    assert_eq!((out.code, out.stdout.as_str()), (0, "line1\nready\n"), "{out:?}");
    let out = ctl(&["--json", "logs", "-n", "1", "talk"]);
    let line: Value = serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    assert_eq!((line["stream"].as_str(), line["text"].as_str()), (Some("stdout"), Some("ready")), "{out:?}");
    let mut follower = Running::start(remote_ctl(&sshd, &local_xdg, &["logs", "-f", "talk"]));
    follower.wait_for_line("ready");
    assert!(!follower.stdout.contains("after-go"));
    std::fs::write(s.root().join("go"), "").unwrap();
    assert_eq!(follower.wait_for_line("after-go"), "after-go\n");
    assert!(follower.child.try_wait().unwrap().is_none(), "trcctl --host logs -f exited");
    drop(follower); // kills trcctl and its ssh

    // check and instances.
    let out = ctl(&["check", "web"]);
    assert_eq!(out.code, 0, "{out:?}");
    let Value::Array(found) = json_of(&ctl(&["--json", "instances"]), &sshd) else { panic!("not an array") };
    assert!(found.iter().any(|i| i["name"] == trc.name.as_str() && i["pid"] == trc.pid()), "{found:?}");

    // Several instances there and none chosen: the remote trcctl's usage status, 2.
    let other = s.work("other");
    let _second = s.start(&other);
    let out = ctl(&["list"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("several trc instances"), "{out:?}");
    let out = ctl(&["--instance", &trc.name, "status", "web"]);
    assert_eq!(out.code, 0, "{out:?}");

    // No such trcctl there: 69, with the remote shell's words.
    let mut cmd = remote_ctl(&sshd, &local_xdg, &["list"]);
    cmd.env("TRCCTL_REMOTE", "/nonexistent/trcctl");
    let out = run(cmd);
    assert_eq!(out.code, 69, "{out:?}");
    assert!(out.stderr.contains("/nonexistent/trcctl") && out.stderr.contains("No such file"), "{out:?}");

    // A host key the client does not know: ssh refuses (never asks), 69 with ssh's words.
    let empty = sshd.dir().join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let mut cmd = remote_ctl(&sshd, &local_xdg, &["list"]);
    cmd.env("TRCCTL_SSH", sshd.ssh_command_line(&empty));
    let out = run(cmd);
    assert_eq!(out.code, 69, "{out:?}");
    assert!(out.stderr.contains("Host key verification failed"), "{out:?}");
    assert!(out.stderr.contains("cannot be reached through ssh"), "{out:?}");

    assert!(sshd.alive(), "sshd exited:\n{}", sshd.log());
}

#[test]
fn an_unreachable_host_is_69_with_sshs_words() {
    if !can_ssh("an_unreachable_host_is_69_with_sshs_words", false) {
        return;
    }
    let s = Sandbox::new();
    let port = free_port();
    let trcctl = |host: &str, ssh: &str| {
        let mut cmd = s.trcctl();
        cmd.env_remove("TRCCTL_HOST").env("TRCCTL_SSH", ssh).arg(format!("--host={host}")).arg("list");
        run(cmd)
    };
    let ssh = "ssh -F /dev/null -o UserKnownHostsFile=/dev/null -o GlobalKnownHostsFile=/dev/null";

    let out = trcctl(&format!("127.0.0.1:{port}"), ssh);
    assert_eq!(out.code, 69, "{out:?}");
    assert!(out.stderr.contains(&format!("port {port}: Connection refused")), "{out:?}");
    assert!(
        out.stderr.starts_with(&format!("trcctl: 127.0.0.1:{port}: cannot be reached through ssh")),
        "{out:?}"
    );
    assert_eq!(out.stdout, "", "{out:?}");

    // TRCCTL_HOST does what --host does.
    let mut cmd = s.trcctl();
    cmd.env("TRCCTL_HOST", format!("127.0.0.1:{port}")).env("TRCCTL_SSH", ssh).args(["--json", "list"]);
    let out = run(cmd);
    assert_eq!(out.code, 69, "{out:?}");
    assert!(out.stderr.contains("Connection refused"), "{out:?}");

    // No ssh to run: 69 too.
    let out = trcctl("127.0.0.1", "/nonexistent/ssh");
    assert_eq!(out.code, 69, "{out:?}");
    assert!(out.stderr.contains("cannot run /nonexistent/ssh"), "{out:?}");

    // A host that would be an option of ssh's, a bad port, a bad TRCCTL_SSH: usage errors.
    for (host, ssh) in [("-oProxyCommand=x", "ssh"), ("h:0", "ssh"), ("h", "ssh 'x")] {
        let out = trcctl(host, ssh);
        assert_eq!(out.code, 2, "{host} {ssh}: {out:?}");
    }
}

/// How a test's `trcctl --host ... logs -f` is ended.
#[derive(Debug, Clone, Copy)]
enum Ending {
    /// SIGTERM to the local trcctl (timeout(1), systemctl stop, kill).
    Term,
    /// SIGKILL to the local trcctl: it can do nothing about it.
    Kill,
    /// Its reader goes away (`| head -1`).
    ReaderGone,
}

/// The pids of the remote followers of `task` started through the sandbox's sshd: every
/// process on this machine (the target is this machine: the remote one is visible, also once
/// orphaned) running the test's trcctl with `logs`, `--follow` and `task`, whose environment
/// has the sandbox's `RC_RUNTIME_DIR` (which only this sandbox's sshd sets).
fn remote_followers(task: &str, xdg: &Path) -> Vec<i32> {
    let marker = format!("RC_RUNTIME_DIR={}", xdg.display());
    let words = |bytes: Vec<u8>| -> Vec<String> {
        bytes.split(|&b| b == 0).map(|w| String::from_utf8_lossy(w).into_owned()).collect()
    };
    let Ok(procs) = std::fs::read_dir("/proc") else { return Vec::new() };
    procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            let argv = words(std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default());
            let env = words(std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default());
            argv.first().is_some_and(|a| a == TRCCTL)
                && ["logs", "--follow", task].iter().all(|w| argv.iter().any(|a| a == w))
                && env.contains(&marker)
                && process_alive(pid)
        })
        .collect()
}

/// The children of `pid` running `comm`.
fn children_running(pid: i32, comm_name: &str) -> Vec<i32> {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    children
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .filter(|&c| comm(c).as_deref() == Some(comm_name))
        .collect()
}

/// `trcctl --host H logs -f quiet` of a task quiet after its first line, ended by SIGTERM, by
/// SIGKILL, or by its reader going away: its ssh does not outlive it (the kernel's parent-death
/// signal), and neither does the remote `trcctl logs --follow`, which holds one of trc's
/// follower slots (its stdout, to sshd, is gone, which it notices with no line to write).
#[test]
fn a_remote_follower_ends_with_the_local_trcctl() {
    use std::io::BufRead;
    if !can_ssh("a_remote_follower_ends_with_the_local_trcctl", true) {
        return;
    }
    let s = Sandbox::new();
    let local_xdg = s.root().join("local-xdg");
    std::fs::create_dir(&local_xdg).unwrap();
    let mut sshd = Sshd::start(&s.xdg());
    let work = s.work("app");
    task(&work, "quiet", "echo first\nexec sleep 1000\n");
    let _trc = s.start(&work);
    local_wait_sleeping(&s, "quiet");

    for ending in [Ending::Term, Ending::Kill, Ending::ReaderGone] {
        let mut cmd = remote_ctl(&sshd, &local_xdg, &["logs", "-f", "quiet"]);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut local = Spawned::spawn(&mut cmd);
        let stderr = common::collect(local.stderr.take().unwrap());
        let mut out = std::io::BufReader::new(local.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line, "first\n", "{ending:?}\nsshd log:\n{}", sshd.log());
        // The line came through ssh and the remote follower: both run.
        let ssh = children_running(local.id() as i32, "ssh");
        assert_eq!(ssh.len(), 1, "{ending:?}: the ssh of trcctl: {ssh:?}");
        let remote = remote_followers("quiet", &s.xdg());
        assert_eq!(remote.len(), 1, "{ending:?}: the remote follower: {remote:?}");

        match ending {
            Ending::Term => nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(local.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            )
            .unwrap(),
            Ending::Kill => local.kill().unwrap(),
            Ending::ReaderGone => drop(out),
        }
        let status = local.wait_deadline(DEADLINE);
        if let Ending::ReaderGone = ending {
            let said =
                String::from_utf8_lossy(&stderr.recv_timeout(DEADLINE).unwrap_or_default()).into_owned();
            assert!(status.success(), "{ending:?}: {status}: {said}");
        }
        wait_until(&format!("{ending:?}: the ssh ({}) of the ended trcctl to exit", ssh[0]), || {
            !process_alive(ssh[0])
        });
        wait_until(&format!("{ending:?}: the remote follower ({}) to exit", remote[0]), || {
            remote_followers("quiet", &s.xdg()).is_empty()
        });
    }
    assert!(sshd.alive(), "sshd exited:\n{}", sshd.log());
}
