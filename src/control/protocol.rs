//! The control protocol between `trcctl` (or any client) and trc: JSON lines over the Unix
//! socket `control.sock` in trc's runtime dir. One request line, one reply line; a connection
//! may carry several requests in turn. `logs` with `"follow": true` is the one exception: after
//! its reply, trc goes on sending one `{"v":1,"line":...}` message per new line of the task
//! until the client closes the connection.
//!
//! ```text
//! > {"v":1,"cmd":"status","task":"web"}
//! < {"v":1,"ok":true,"task":{"name":"web","stage":"async","state":"running","pid":42,...}}
//! > {"v":1,"cmd":"nope"}
//! < {"v":1,"ok":false,"error":"unknown variant `nope`, expected one of ..."}
//! ```
//! A request longer than [`MAX_REQUEST`] bytes gets an error reply and the connection is closed.
//! So does a connection that has not sent a complete request within 10 s (from its start or
//! from the previous reply), or has not read a reply within 10 s; and trc keeps at most 64
//! connections besides 64 followers: one more takes the place of the one that has waited
//! longest for a request. The limits are in [`super::server`].

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The protocol's version: the `v` field of every message.
pub const VERSION: u32 = 1;
/// The longest request line trc reads.
pub const MAX_REQUEST: usize = 64 * 1024;
/// How many lines `logs` returns when the request does not say.
pub const DEFAULT_LOG_LINES: usize = 50;

/// A request: `{"v":1,"cmd":...,...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub v: u32,
    #[serde(flatten)]
    pub command: Command,
}

impl Request {
    pub fn new(command: Command) -> Request {
        Request { v: VERSION, command }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum Command {
    /// The instance: name, pid, work dir, version.
    Info,
    List,
    Status {
        task: String,
    },
    /// Starts a task that is not running (and lifts a hold from `stop`).
    Start {
        task: String,
    },
    /// Stops a task and holds it down (no restart) until `start`. The reply comes when the
    /// task has exited.
    Stop {
        task: String,
    },
    /// Stops the task (if it runs) and starts it again. The reply comes when it has started.
    Restart {
        task: String,
    },
    /// Sends a signal (a name such as `HUP` or a number) to the task's process group.
    Signal {
        task: String,
        signal: String,
    },
    /// Registers an async task as `trc.d/async.NAME` (written atomically) the first time, or
    /// rewrites it when the command differs; then makes sure it runs.
    Ensure {
        task: String,
        /// The program and its arguments; empty: the task must exist already.
        #[serde(default)]
        command: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cwd: Option<String>,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        env: BTreeMap<String, String>,
        /// Header directives for the file (`restart`, `restart-delay`, ...).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        directives: BTreeMap<String, String>,
    },
    /// Starts every async task that is not running.
    StartAll,
    Logs {
        task: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lines: Option<usize>,
        #[serde(default)]
        follow: bool,
    },
    /// Reads the work dir again: starts new async tasks, stops removed ones, restarts changed
    /// ones.
    Reload,
    /// A probe: which of `tasks` (default: every async task) are unhealthy, and which are not
    /// ready. Answered in every phase.
    Check {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tasks: Vec<String>,
    },
}

/// A reply. `ok: false` comes with `error`; the other fields depend on the request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub v: u32,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<InstanceInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<Vec<TaskInfo>>,
    /// `ensure`: `created`, `updated` or `unchanged`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ensured: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload: Option<ReloadReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<Vec<LogLine>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckReport>,
}

/// `check`'s answer: each problem as "NAME: why".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    /// The tasks that are unhealthy (a liveness probe fails on these).
    pub unhealthy: Vec<String>,
    /// The tasks that are not ready, and the group itself while it boots or stops (a
    /// readiness probe fails on these and on the unhealthy ones).
    pub not_ready: Vec<String>,
}

impl Reply {
    pub fn ok() -> Reply {
        Reply { v: VERSION, ok: true, ..Reply::default() }
    }

    pub fn error(message: impl Into<String>) -> Reply {
        Reply { v: VERSION, ok: false, error: Some(message.into()), ..Reply::default() }
    }
}

/// One more line of a followed log: `{"v":1,"line":{...}}`, or `{"v":1,"dropped":N}` when the
/// client read too slowly and N lines were skipped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogMessage {
    pub v: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<LogLine>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// `stdout` or `stderr`.
    pub stream: String,
    /// The line without its newline (bytes that are not UTF-8 replaced).
    pub text: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InstanceInfo {
    pub name: String,
    pub pid: i32,
    pub work_dir: String,
    pub version: String,
    pub wait_policy: String,
}

/// One task as trc (or another manager) sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskInfo {
    pub name: String,
    /// `boot`, `async`, `sync` or `halt` (trc); empty for other managers.
    #[serde(default)]
    pub stage: String,
    /// `running`, `stopping`, `waiting` (to restart), `stopped` (held down by `stop`),
    /// `finished`, `pending` (not started yet), or a manager's own word.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// Seconds since it started (running) or since it exited (otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_secs: Option<f64>,
    /// How many times it has started.
    #[serde(default)]
    pub starts: u64,
    /// The status of its last exit (128+N for a signal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<i32>,
    /// Its file, or its command.
    #[serde(default)]
    pub command: String,
    /// It is ready (`running`): its `ready:` probe passed (at once without one).
    #[serde(default)]
    pub ready: bool,
    /// `healthy` or `unhealthy` with a health check or a watchdog; `null` without.
    #[serde(default)]
    pub health: Option<String>,
    /// Why trc counted its last run as failed: `ready-timeout`, `unhealthy`, `watchdog`,
    /// `dependency`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The task's own `STATUS=` (sd_notify).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_status: Option<String>,
    /// The tasks of its `after:` it waits for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting_for: Vec<String>,
    /// Why its last probe attempt failed (a readiness or health check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_problem: Option<String>,
}

/// What `reload` changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReloadReport {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub restarted: Vec<String>,
    pub unchanged: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let text = r#"{"v":1,"cmd":"signal","task":"web","signal":"HUP"}"#;
        let req: Request = serde_json::from_str(text).unwrap();
        assert_eq!(req.command, Command::Signal { task: "web".into(), signal: "HUP".into() });
        assert_eq!(serde_json::to_string(&req).unwrap(), text);
        let text = r#"{"v":1,"cmd":"start-all"}"#;
        assert_eq!(serde_json::from_str::<Request>(text).unwrap().command, Command::StartAll);
        let ensure: Request =
            serde_json::from_str(r#"{"v":1,"cmd":"ensure","task":"x","command":["sleep","1"]}"#).unwrap();
        assert!(matches!(ensure.command, Command::Ensure { ref command, .. } if command.len() == 2));
    }

    #[test]
    fn bad_requests_are_errors() {
        for bad in [
            r#"{"v":1,"cmd":"nope"}"#,
            r#"{"v":1}"#,
            r#"{"cmd":"list"}"#,
            r#"{"v":1,"cmd":"status"}"#,
            "not json",
        ] {
            assert!(serde_json::from_str::<Request>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn replies_omit_what_they_do_not_carry() {
        assert_eq!(serde_json::to_string(&Reply::ok()).unwrap(), r#"{"v":1,"ok":true}"#);
        assert_eq!(
            serde_json::to_string(&Reply::error("unknown task \"x\"")).unwrap(),
            r#"{"v":1,"ok":false,"error":"unknown task \"x\""}"#
        );
    }
}
