//! trcctl's command line (clap derive), in the library so that the man page and shell
//! completions can be generated from it (`examples/gen-docs.rs`).

use super::protocol::DEFAULT_LOG_LINES;
use super::ManagerKind;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

// The whole command line of trcctl (no doc comment here: clap would take it as the long help).
#[derive(Parser, Debug)]
#[command(
    name = "trcctl",
    version,
    about = "Control a running trc, or systemd, runit or tmux, with one set of verbs",
    after_help = "Exit status: 0 done, 1 refused (unknown task...), 2 usage, 69 no manager reachable \
                  (with --host: the host or its trcctl).\n\
                  TRCCTL_SSH: the ssh command line --host uses (default: ssh).\n\
                  See README.md, \"trc as a process manager\", for the protocol and examples."
)]
pub struct Cli {
    /// Which process manager: auto picks trc when its socket answers, then systemd when it is
    /// PID 1, then runit when runsvdir runs, else tmux
    #[arg(long, value_enum, default_value = "auto", env = "TRCCTL_MANAGER")]
    pub manager: ManagerKind,

    /// The trc instance (its name, or the path of its runtime dir) when several run
    #[arg(long, env = "TRC_INSTANCE", value_name = "NAME")]
    pub instance: Option<String>,

    /// systemd: user units (`systemctl --user`) instead of system ones
    #[arg(long)]
    pub user: bool,

    /// Print JSON (one document per verb; `logs` prints one object per line)
    #[arg(long)]
    pub json: bool,

    /// Run the verb on a target machine, through ssh (BatchMode: keys or an agent, never a
    /// prompt) and the trcctl there; --manager, --instance and --user given here are passed on
    #[arg(long, env = "TRCCTL_HOST", value_name = "[USER@]HOST[:PORT]")]
    pub host: Option<String>,

    /// With --host: the trcctl to run there (a name in the remote PATH, or a path; a relative
    /// path is from the remote user's home)
    #[arg(long, env = "TRCCTL_REMOTE", value_name = "PATH", default_value = super::remote::DEFAULT_TRCCTL)]
    pub remote_trcctl: String,

    /// How long to wait for a trc's answer (then: 69); humantime, e.g. 500ms, 10s
    #[arg(long, env = "TRCCTL_TIMEOUT", value_name = "DURATION", default_value = "10s", value_parser = parse_timeout)]
    pub timeout: std::time::Duration,

    #[command(subcommand)]
    pub verb: Verb,
}

#[derive(Subcommand, Debug)]
pub enum Verb {
    /// Every task with its state
    List,
    /// One task
    Status { name: String },
    /// Start a task that is not running (and lift a `stop`)
    Start { name: String },
    /// Stop a task and keep it down until `start`
    Stop { name: String },
    /// Stop a task if it runs, then start it again
    Restart { name: String },
    /// Send a signal (HUP, USR1, 15...) to a task
    Signal { name: String, signal: String },
    /// Register a task the first time (or update its command), then make sure it runs
    Ensure(EnsureArgs),
    /// Start every registered task that is not running
    StartAll,
    /// A task's recent output, and with -f what follows
    Logs {
        name: String,
        /// Keep printing new lines until interrupted
        #[arg(short, long)]
        follow: bool,
        /// How many recent lines
        #[arg(short = 'n', long, default_value_t = DEFAULT_LOG_LINES)]
        lines: usize,
    },
    /// Read the registrations again: start new tasks, stop removed ones, restart changed ones
    Reload,
    /// The trc instances that run (name, pid, work dir)
    Instances,
    /// A probe for Kubernetes or Docker: exit 0 when trc answers and none of the tasks is
    /// unhealthy (with --ready: and each is ready), 1 when not (why on stderr), 69 when no
    /// trc answers (within --timeout)
    Check {
        /// Also require every task to be ready (a readiness probe)
        #[arg(long, conflicts_with = "alive")]
        ready: bool,
        /// Only require that trc answers, whatever its tasks do (a liveness probe: trc
        /// restarts its tasks itself)
        #[arg(long, conflicts_with = "names")]
        alive: bool,
        /// The tasks to check (default: every async task)
        names: Vec<String>,
    },
}

#[derive(clap::Args, Debug)]
pub struct EnsureArgs {
    pub name: String,
    /// Working directory of the command
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    /// An environment variable for the command (repeatable)
    #[arg(long = "env", value_name = "K=V", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// never | on-failure | always (default for ensured tasks: always)
    #[arg(long, value_name = "POLICY")]
    pub restart: Option<String>,
    #[arg(long, value_name = "DURATION")]
    pub restart_delay: Option<String>,
    #[arg(long, value_name = "DURATION")]
    pub restart_max_delay: Option<String>,
    /// "N in DURATION" or none
    #[arg(long, value_name = "LIMIT")]
    pub start_limit: Option<String>,
    #[arg(long, value_name = "DURATION")]
    pub stop_timeout: Option<String>,
    #[arg(long, value_name = "SIGNAL")]
    pub stop_signal: Option<String>,
    /// The command and its arguments (the first time, or to change it)
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// `--env K=V`.
pub fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("\"{text}\" is not K=V")),
    }
}

/// `--timeout`: a humantime duration above zero.
pub fn parse_timeout(text: &str) -> Result<std::time::Duration, String> {
    match humantime::parse_duration(text.trim()) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("must be above zero".to_owned()),
        Err(e) => Err(format!("\"{text}\": {e}")),
    }
}
