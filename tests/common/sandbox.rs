//! A sandbox for tests that drive trc through trcctl and its control socket: its own
//! `XDG_RUNTIME_DIR`, work dirs, a trc that is stopped when dropped, trcctl runs, and raw
//! protocol requests.

use super::{skip, wait_until, Running, Spawned, Trc, DEADLINE};
use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const TRCCTL: &str = env!("CARGO_BIN_EXE_trcctl");

/// A test's own world: a temp dir holding the runtime base (`xdg/`) and the work dirs.
pub struct Sandbox {
    pub root: tempfile::TempDir,
}

/// A finished trcctl run.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// stdout as JSON, after checking trcctl succeeded.
    pub fn json(&self) -> Value {
        assert_eq!(self.code, 0, "trcctl failed: {self:?}");
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

/// A trc started by a test: SIGTERMed and waited for when dropped (also when the test fails).
pub struct Sup {
    pub running: Option<Running>,
    /// Its instance name, once known.
    pub name: String,
}

impl Sup {
    pub fn pid(&self) -> i32 {
        self.running.as_ref().expect("trc handle").pid()
    }

    /// Whether trc still runs (not exited).
    pub fn alive(&mut self) -> bool {
        let running = self.running.as_mut().expect("trc handle");
        running.child.try_wait().expect("try_wait trc").is_none()
    }

    /// SIGKILL, and reap it.
    pub fn kill9(&mut self) {
        let running = self.running.as_mut().expect("trc handle");
        let _ = running.child.kill();
        let _ = running.child.wait();
    }

    /// SIGTERM (if it still runs) and wait for it; SIGKILL after the deadline.
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        let mut running = self.running.take()?;
        if let Ok(Some(status)) = running.child.try_wait() {
            return Some(status);
        }
        // SAFETY: kill(2) on our own child, which has not been reaped yet.
        unsafe { libc::kill(running.pid(), libc::SIGTERM) };
        let until = Instant::now() + DEADLINE;
        while Instant::now() < until {
            if let Ok(Some(status)) = running.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = running.child.kill();
        running.child.wait().ok()
    }
}

impl Drop for Sup {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// Process groups SIGKILLed when dropped: the tasks of a trc that was killed with -9.
pub struct KillGroups(pub Vec<i32>);

impl Drop for KillGroups {
    fn drop(&mut self) {
        for &pgid in &self.0 {
            // SAFETY: kill(2) with a negative pid signals that process group; no memory is
            // involved.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
    }
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let root = tempfile::tempdir().unwrap();
        let xdg = root.path().join("xdg");
        std::fs::create_dir(&xdg).unwrap();
        std::fs::set_permissions(&xdg, std::fs::Permissions::from_mode(0o700)).unwrap();
        Sandbox { root }
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn xdg(&self) -> PathBuf {
        self.root().join("xdg")
    }

    /// The runtime dir of instance `name`.
    pub fn runtime_dir(&self, name: &str) -> PathBuf {
        self.xdg().join("trc").join(name)
    }

    /// A work dir `root/rel` with an empty `trc.d`.
    pub fn work(&self, rel: &str) -> PathBuf {
        let dir = self.root().join(rel);
        std::fs::create_dir_all(dir.join("trc.d")).unwrap();
        dir
    }

    /// `trc -w WORK` with this sandbox's runtime base; tasks find the sandbox as `$DIR`.
    pub fn trc(&self, work: &Path, extra: &[&str]) -> Trc {
        let mut args = vec!["-w", work.to_str().unwrap()];
        args.extend_from_slice(extra);
        Trc::new(self.root(), args)
            .env("XDG_RUNTIME_DIR", self.xdg().to_str().unwrap())
            .env("DIR", self.root().to_str().unwrap())
    }

    /// Starts a manager-style trc (wait_forever) on `work` and waits until trcctl sees it.
    pub fn start(&self, work: &Path) -> Sup {
        self.start_trc(self.trc(work, &[]).env("RC_WAIT_POLICY", "wait_forever"))
    }

    /// Starts `trc` and waits until `trcctl instances` lists it; learns its instance name.
    pub fn start_trc(&self, trc: Trc) -> Sup {
        let mut sup = Sup { running: Some(trc.spawn()), name: String::new() };
        sup.name = self.wait_instance(&mut sup);
        sup
    }

    pub fn wait_instance(&self, sup: &mut Sup) -> String {
        let pid = sup.pid();
        let mut name = None;
        wait_until(&format!("trcctl instances to list trc {pid}"), || {
            assert!(sup.alive(), "trc {pid} exited before its control socket answered");
            name = self.instances().into_iter().find(|i| i["pid"] == pid).map(|i| str_of(&i["name"]));
            name.is_some()
        });
        name.unwrap()
    }

    /// `trcctl instances --json`.
    pub fn instances(&self) -> Vec<Value> {
        match self.ctl(&["--json", "instances"]).json() {
            Value::Array(found) => found,
            other => panic!("instances: not an array: {other}"),
        }
    }

    /// trcctl with this sandbox's runtime base and none of the caller's trcctl variables;
    /// stdin is not a terminal.
    pub fn trcctl(&self) -> Command {
        let mut cmd = Command::new(TRCCTL);
        cmd.env_remove("TRC_INSTANCE")
            .env_remove("TRCCTL_MANAGER")
            .env("XDG_RUNTIME_DIR", self.xdg())
            .current_dir(self.root())
            .stdin(Stdio::null());
        cmd
    }

    /// `trcctl --manager trc ARGS...`, to its end.
    pub fn ctl(&self, args: &[&str]) -> Out {
        let mut cmd = self.trcctl();
        cmd.args(["--manager", "trc"]).args(args);
        run(cmd)
    }

    /// `trcctl --json status TASK` (the JSON, or `None` when refused).
    pub fn status(&self, task: &str) -> Option<Value> {
        let out = self.ctl(&["--json", "status", task]);
        (out.code == 0).then(|| out.json())
    }

    /// Waits until `task` runs and has exec'd `sleep` (a stop signal sent while bash execs can
    /// be lost, see tests/common); returns its pid.
    pub fn wait_sleeping(&self, task: &str) -> i32 {
        let mut pid = 0;
        wait_until(&format!("task {task} to run sleep"), || {
            match self.status(task) {
                Some(s) if s["state"] == "running" => pid = int_of(&s["pid"]),
                _ => return false,
            }
            comm(pid).as_deref() == Some("sleep")
        });
        pid
    }

    /// The (name, pid) of every task `list` shows, sorted by name.
    pub fn list(&self, prefix: &[&str]) -> Vec<(String, Option<i64>)> {
        let mut args = prefix.to_vec();
        args.extend(["--json", "list"]);
        let Value::Array(tasks) = self.ctl(&args).json() else { panic!("list: not an array") };
        let mut rows: Vec<_> = tasks.iter().map(|t| (str_of(&t["name"]), t["pid"].as_i64())).collect();
        rows.sort();
        rows
    }
}

/// Runs a command to its end (failing the test after the deadline), output captured.
pub fn run(mut cmd: Command) -> Out {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = Spawned::spawn(&mut cmd);
    let readers: Vec<_> = [
        Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ]
    .into_iter()
    .map(|mut r| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = r.read_to_string(&mut text);
            text
        })
    })
    .collect();
    let until = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        // On a panic, the drop of `child` kills it and what it started.
        assert!(Instant::now() < until, "{cmd:?} did not exit within {DEADLINE:?}");
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut texts = readers.into_iter().map(|r| r.join().unwrap());
    let (stdout, stderr) = (texts.next().unwrap(), texts.next().unwrap());
    use std::os::unix::process::ExitStatusExt;
    let code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    Out { code, stdout, stderr }
}

pub fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}")).to_owned()
}

pub fn int_of(v: &Value) -> i32 {
    v.as_i64().unwrap_or_else(|| panic!("not an integer: {v}")) as i32
}

/// Writes `trc.d/async.NAME` in `work`.
pub fn task(work: &Path, name: &str, body: &str) {
    std::fs::write(work.join("trc.d").join(format!("async.{name}")), body).unwrap();
}

pub fn comm(pid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).ok().map(|c| c.trim_end().to_owned())
}

/// The content of `path` once it exists (tasks write files by rename, so never a part).
pub fn wait_file(path: &Path) -> String {
    wait_until(&format!("{} to exist", path.display()), || path.exists());
    std::fs::read_to_string(path).unwrap()
}

/// Shell code writing `text` to `$DIR/name` atomically.
pub fn write_file(name: &str, text: &str) -> String {
    format!("echo \"{text}\" > \"$DIR/{name}.tmp\"; mv \"$DIR/{name}.tmp\" \"$DIR/{name}\"")
}

/// One request on a connection, and its reply line as JSON.
pub fn request(stream: &mut UnixStream, line: &[u8]) -> Value {
    stream.write_all(line).unwrap();
    read_reply(stream)
}

pub fn read_reply(stream: &UnixStream) -> Value {
    // One byte at a time, so nothing after the reply's newline is taken from the stream.
    let mut bytes = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match (&*stream).read(&mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => bytes.push(byte[0]),
            Err(e) => panic!("reading a reply: {e} (so far: {:?})", String::from_utf8_lossy(&bytes)),
        }
    }
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("reply is not JSON ({e}): {:?}", String::from_utf8_lossy(&bytes)))
}

pub fn connect(sock: &Path) -> UnixStream {
    let stream = UnixStream::connect(sock).unwrap_or_else(|e| panic!("connect {}: {e}", sock.display()));
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.set_write_timeout(Some(DEADLINE)).unwrap();
    stream
}

/// Whether the test may switch to another uid with setpriv (needs root). Under `CI=true` it
/// must: a skip there is a failure. Elsewhere the skip is said in the output.
pub fn can_switch_uid(test: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    let setpriv =
        Command::new("setpriv").arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
    if root && setpriv && python().is_some() {
        return true;
    }
    skip(test, "root, setpriv(1) and python3 (run the tests as root to include it)");
    false
}

/// A python3 that another uid can run (not a shim under /root).
pub fn python() -> Option<&'static str> {
    ["/usr/bin/python3", "/usr/local/bin/python3", "/bin/python3"].into_iter().find(|p| Path::new(p).exists())
}
