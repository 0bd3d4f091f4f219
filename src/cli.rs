//! The command line, TrivialRC-compatible: `trc [-w DIR] [-B CMDS]... [-H CMDS]... [-D CMDS]...
//! [-F CMDS]... [COMMAND [ARGS...]]`, plus long options that each mirror an `RC_*` variable.
//!
//! Unlike TrivialRC, the stage options may come in any order (each stage keeps its own order) and
//! an unknown option is a usage error instead of becoming the trailing command.

use clap::{ArgAction, Parser};
use std::ffi::OsString;

const AFTER_HELP: &str = "\
Tasks come from WORKDIR/trc.<stage>.* and WORKDIR/trc.d/<stage>.* (stage: boot, async, sync, halt),
then from the -B/-D/-F/-H options, then the trailing COMMAND (the last sync task, run as an argv).

Environment (each long option sets the variable of the same meaning; the option wins):
  RC_WORK_DIR=DIR         work dir when -w is not given (default: the current directory)
  RC_WAIT_POLICY=POLICY   wait_any (default) | wait_all | wait_err | wait_forever
  RC_VERBOSE=true         log what trc does, in TrivialRC's format, on stdout
  RC_VERBOSE_EXTRA=true   also log debug lines (needs RC_VERBOSE=true)
  RC_DEBUG=true           run shell tasks with `set -x`
  RC_LOG_PREFIX=false     pass task output through untouched (no name prefix)
  RC_LOG=SINK             auto (default: journald when stderr is the journal) | journal | console
  RC_LOG_FORMAT=FORMAT    console lines as text (default) or json (one object per line)
  RC_LOG_TIMESTAMPS=true  text lines of tasks start with a UTC time (2026-12-07T06:30:01.123Z)
  RC_STOP_TIMEOUT=DUR     how long a task may take to stop before SIGKILL (default 5s)
  RC_STOP_SIGNAL=SIG      the signal that asks a task to stop (default TERM)
  RC_RESTART=POLICY       never (default) | on-failure | always, for async and sync tasks
  RC_RESTART_DELAY=DUR    first restart delay, doubling on each restart (default 1s)
  RC_RESTART_MAX_DELAY=D  cap of the delay; a run this long resets the doubling (default 30s)
  RC_START_LIMIT=LIMIT    N in DURATION: more starts in the window and the task gives up
                          (default 5 in 60s; none for no limit)
  RC_READY_TIMEOUT=DUR    a task with a ready: probe not ready by then fails (default 90s)
  RC_READY_INTERVAL=DUR   how often a polled readiness probe runs (default 1s)
  RC_HEALTH_INTERVAL=DUR  how often a health check runs (default 10s)
  RC_HEALTH_TIMEOUT=DUR   one probe is given up after this (default 5s)
  RC_HEALTH_RETRIES=N     failed health checks in a row that make a task unhealthy (default 3)
  RC_FORWARD_SIGNALS=LIST pass these signals (HUP,USR2) on to the tasks instead of ending trc
  RC_STOP_DELAY=DUR       on the first terminating signal, report not ready for this long first
  RC_RUNTIME_DIR=DIR      make the runtime dir below DIR (DIR/trc/NAME); trcctl looks there too
  RC_INSTANCE=NAME        the instance name trcctl knows this trc by (default: the work
                          dir's name; taken names get -2, -3...). Not passed on to tasks.
A task file may set its own values in a header block (see README.md), with also
ready:, after:, health: and watchdog: for that task alone:
  ### BEGIN TRC
  # restart: on-failure
  # ready: tcp 127.0.0.1:5432
  ### END TRC

Exit status: the group's status decided by the wait policy; 128+N when a signal N ended trc;
the last halt task's status when a halt task ran; 2 for a usage error; 78 for a config error.
See README.md for the wait policies and every rule.";

/// The parsed command line. Stage strings are shell code (run by bash); `command` is an argv.
#[derive(Parser, Debug, Clone, Default, PartialEq)]
#[command(
    name = "trc",
    version,
    disable_version_flag = true,
    about = "Run a trc.d group of programs as one unit (TrivialRC-compatible)",
    after_help = AFTER_HELP
)]
pub struct CommandLine {
    /// Print the version and exit
    #[arg(short = 'v', long = "version", action = ArgAction::Version)]
    version: Option<bool>,

    /// Work dir holding trc.d/ and trc.<stage>.* files [env: RC_WORK_DIR]
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<OsString>,

    /// A boot task: shell commands run before everything else, one by one, with `set -e`
    #[arg(short = 'B', value_name = "CMDS", action = ArgAction::Append, allow_hyphen_values = true)]
    pub boot: Vec<OsString>,

    /// A halt task: shell commands run at teardown, one by one
    #[arg(short = 'H', value_name = "CMDS", action = ArgAction::Append, allow_hyphen_values = true)]
    pub halt: Vec<OsString>,

    /// An async task: shell commands started in the background, concurrently
    #[arg(short = 'D', value_name = "CMDS", action = ArgAction::Append, allow_hyphen_values = true)]
    pub async_: Vec<OsString>,

    /// A sync task: shell commands run in the foreground, one at a time
    #[arg(short = 'F', value_name = "CMDS", action = ArgAction::Append, allow_hyphen_values = true)]
    pub sync: Vec<OsString>,

    /// When the group is finished: wait_any, wait_all, wait_err or wait_forever [env: RC_WAIT_POLICY]
    #[arg(long, value_name = "POLICY", value_parser = ["wait_any", "wait_all", "wait_err", "wait_forever"])]
    pub wait_policy: Option<String>,

    /// Log what trc does on stdout, in TrivialRC's format [env: RC_VERBOSE=true]
    #[arg(long)]
    pub verbose: bool,

    /// Also log debug lines [env: RC_VERBOSE_EXTRA=true]
    #[arg(long)]
    pub verbose_extra: bool,

    /// Run shell tasks with `set -x` [env: RC_DEBUG=true]
    #[arg(long)]
    pub debug: bool,

    /// Time a task gets to stop after its stop signal before SIGKILL, e.g. 5s, 500ms [env: RC_STOP_TIMEOUT]
    #[arg(long, value_name = "DURATION", value_parser = directive("stop-timeout"))]
    pub stop_timeout: Option<String>,

    /// The signal that asks a task to stop (default TERM) [env: RC_STOP_SIGNAL]
    #[arg(long, value_name = "SIGNAL", value_parser = directive("stop-signal"))]
    pub stop_signal: Option<String>,

    /// Default restart policy of async and sync tasks: never, on-failure, always [env: RC_RESTART]
    #[arg(long, value_name = "POLICY", value_parser = directive("restart"))]
    pub restart: Option<String>,

    /// First restart delay, doubling on each restart (default 1s) [env: RC_RESTART_DELAY]
    #[arg(long, value_name = "DURATION", value_parser = directive("restart-delay"))]
    pub restart_delay: Option<String>,

    /// Cap of the restart delay, and how long a run resets the doubling (default 30s) [env: RC_RESTART_MAX_DELAY]
    #[arg(long, value_name = "DURATION", value_parser = directive("restart-max-delay"))]
    pub restart_max_delay: Option<String>,

    /// Give up after more starts than N within DURATION: "N in DURATION" or "none" (default "5 in 60s") [env: RC_START_LIMIT]
    #[arg(long, value_name = "LIMIT", value_parser = directive("start-limit"))]
    pub start_limit: Option<String>,

    /// Default time a task with a ready: probe has to be ready, or "none" (default 90s) [env: RC_READY_TIMEOUT]
    #[arg(long, value_name = "DURATION", value_parser = directive("ready-timeout"))]
    pub ready_timeout: Option<String>,

    /// Default interval of polled readiness probes (default 1s) [env: RC_READY_INTERVAL]
    #[arg(long, value_name = "DURATION", value_parser = directive("ready-interval"))]
    pub ready_interval: Option<String>,

    /// Default interval of health checks (default 10s) [env: RC_HEALTH_INTERVAL]
    #[arg(long, value_name = "DURATION", value_parser = directive("health-interval"))]
    pub health_interval: Option<String>,

    /// Default time one probe may take (default 5s) [env: RC_HEALTH_TIMEOUT]
    #[arg(long, value_name = "DURATION", value_parser = directive("health-timeout"))]
    pub health_timeout: Option<String>,

    /// Default number of failed health checks in a row that make a task unhealthy (default 3) [env: RC_HEALTH_RETRIES]
    #[arg(long, value_name = "N", value_parser = directive("health-retries"))]
    pub health_retries: Option<String>,

    /// Where records go: auto (journald when stderr is the journal), journal, console [env: RC_LOG]
    #[arg(long, value_name = "SINK", value_parser = ["auto", "journal", "console"])]
    pub log: Option<String>,

    /// Console lines as text (default) or json: one JSON object per line, for log collectors [env: RC_LOG_FORMAT]
    #[arg(long, value_name = "FORMAT", value_parser = ["text", "json"])]
    pub log_format: Option<String>,

    /// Put an RFC 3339 UTC time (2026-12-07T06:30:01.123Z) in front of the text lines of tasks [env: RC_LOG_TIMESTAMPS=true]
    #[arg(long)]
    pub log_timestamps: bool,

    /// Signals passed to the process group of every running async task and of the trailing
    /// command (or of the async tasks whose forward-signals: names them) instead of ending trc,
    /// e.g. HUP,USR2 [env: RC_FORWARD_SIGNALS]
    #[arg(long, value_name = "LIST")]
    pub forward_signals: Option<String>,

    /// On the first terminating signal, report not ready and wait this long before stopping the tasks (a drain delay) [env: RC_STOP_DELAY]
    #[arg(long, value_name = "DURATION")]
    pub stop_delay: Option<String>,

    /// Where trc makes its runtime dir (DIR/trc/NAME; a relative DIR is taken from trc's cwd), instead of $XDG_RUNTIME_DIR, /run or $TMPDIR: e.g. an emptyDir or tmpfs under a read-only root [env: RC_RUNTIME_DIR]
    #[arg(long, value_name = "DIR")]
    pub runtime_dir: Option<std::path::PathBuf>,

    /// This instance's name: its runtime dir and what `trcctl --instance` takes (default: the
    /// work dir's name, or the next free `NAME-N`) [env: RC_INSTANCE]
    #[arg(long, value_name = "NAME")]
    pub instance: Option<String>,

    /// The last sync task, run as an argv with trc's stdin, stdout and stderr untouched
    #[arg(trailing_var_arg = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

impl CommandLine {
    /// Parses `args` (without the program name). Help, version and usage errors come back as
    /// clap errors; the caller prints them with `Error::exit`.
    pub fn parse_args<I>(args: I) -> Result<CommandLine, clap::Error>
    where
        I: IntoIterator<Item = OsString>,
    {
        CommandLine::try_parse_from(std::iter::once(OsString::from("trc")).chain(args))
    }

    /// The `RC_*` variables the long options stand for, to be set for every task.
    pub fn rc_overrides(&self) -> Vec<(&'static str, String)> {
        let mut vars = Vec::new();
        if let Some(policy) = &self.wait_policy {
            vars.push(("RC_WAIT_POLICY", policy.clone()));
        }
        if self.verbose {
            vars.push(("RC_VERBOSE", "true".to_owned()));
        }
        if self.verbose_extra {
            vars.push(("RC_VERBOSE_EXTRA", "true".to_owned()));
        }
        if self.debug {
            vars.push(("RC_DEBUG", "true".to_owned()));
        }
        if self.log_timestamps {
            vars.push(("RC_LOG_TIMESTAMPS", "true".to_owned()));
        }
        for (var, value) in [
            ("RC_STOP_TIMEOUT", &self.stop_timeout),
            ("RC_STOP_SIGNAL", &self.stop_signal),
            ("RC_RESTART", &self.restart),
            ("RC_RESTART_DELAY", &self.restart_delay),
            ("RC_RESTART_MAX_DELAY", &self.restart_max_delay),
            ("RC_START_LIMIT", &self.start_limit),
            ("RC_READY_TIMEOUT", &self.ready_timeout),
            ("RC_READY_INTERVAL", &self.ready_interval),
            ("RC_HEALTH_INTERVAL", &self.health_interval),
            ("RC_HEALTH_TIMEOUT", &self.health_timeout),
            ("RC_HEALTH_RETRIES", &self.health_retries),
            ("RC_LOG", &self.log),
            ("RC_LOG_FORMAT", &self.log_format),
            ("RC_FORWARD_SIGNALS", &self.forward_signals),
            ("RC_STOP_DELAY", &self.stop_delay),
        ] {
            if let Some(value) = value {
                vars.push((var, value.clone()));
            }
        }
        // For trcctl in a task: it finds this trc where trc made its runtime dir.
        if let Some(dir) = &self.runtime_dir {
            let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
            vars.push(("RC_RUNTIME_DIR", dir.to_string_lossy().into_owned()));
        }
        vars
    }

    /// How many command-line tasks each stage has.
    pub fn stage_counts(&self) -> [(crate::config::Stage, usize); 4] {
        use crate::config::Stage;
        [
            (Stage::Boot, self.boot.len()),
            (Stage::Async, self.async_.len()),
            (Stage::Sync, self.sync.len()),
            (Stage::Halt, self.halt.len()),
        ]
    }

    /// The argv that boot files see as `"$@"` (and may rewrite with `set --`): the stage options
    /// in TrivialRC's order B, H, D, F, then the trailing command. The work dir and the long
    /// options are trc's own and are left out, as TrivialRC leaves out `-w DIR`.
    pub fn task_argv(&self) -> Vec<OsString> {
        let mut argv = Vec::new();
        for (flag, items) in
            [("-B", &self.boot), ("-H", &self.halt), ("-D", &self.async_), ("-F", &self.sync)]
        {
            for item in items {
                argv.push(OsString::from(flag));
                argv.push(item.clone());
            }
        }
        argv.extend(self.command.iter().cloned());
        argv
    }

    /// Re-parses an argv rewritten by a boot file. Only the stage options and the trailing
    /// command are taken from it; trc's own options keep the values they had at start.
    pub fn reparse_tasks(&self, argv: Vec<OsString>) -> Result<CommandLine, clap::Error> {
        let new = CommandLine::parse_args(argv)?;
        Ok(CommandLine {
            boot: new.boot,
            halt: new.halt,
            async_: new.async_,
            sync: new.sync,
            command: new.command,
            ..self.clone()
        })
    }
}

/// A value parser that checks an option's value as the directive `key` would.
fn directive(key: &'static str) -> impl Fn(&str) -> Result<String, String> + Clone + Send + Sync + 'static {
    move |text: &str| crate::config::TaskSettings::default().set(key, text).map(|()| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> CommandLine {
        CommandLine::parse_args(args.iter().map(OsString::from)).unwrap()
    }

    fn os(items: &[&str]) -> Vec<OsString> {
        items.iter().map(OsString::from).collect()
    }

    #[test]
    fn trivialrc_order_and_trailing_command_with_its_own_flags() {
        let cli = parse(&[
            "-w", "/opt/app", "-B", "b1", "-B", "b2", "-H", "h", "-D", "d", "-F", "f", "sleep", "-x", "5",
        ]);
        assert_eq!(cli.workdir, Some(OsString::from("/opt/app")));
        assert_eq!(cli.boot, os(&["b1", "b2"]));
        assert_eq!(cli.halt, os(&["h"]));
        assert_eq!(cli.async_, os(&["d"]));
        assert_eq!(cli.sync, os(&["f"]));
        assert_eq!(cli.command, os(&["sleep", "-x", "5"]));
    }

    #[test]
    fn any_order_keeps_each_stage_order() {
        let cli = parse(&["-F", "f1", "-B", "b", "-F", "f2", "-D", "-x"]);
        assert_eq!(cli.sync, os(&["f1", "f2"]));
        assert_eq!(cli.boot, os(&["b"]));
        assert_eq!(cli.async_, os(&["-x"]));
        assert!(cli.command.is_empty());
    }

    #[test]
    fn trailing_command_keeps_trc_like_flags() {
        let cli = parse(&["cmd", "--verbose", "-w", "x", "--", "y"]);
        assert!(!cli.verbose);
        assert_eq!(cli.command, os(&["cmd", "--verbose", "-w", "x", "--", "y"]));
        let cli = parse(&["--", "-x"]);
        assert_eq!(cli.command, os(&["-x"]));
    }

    #[test]
    fn unknown_option_and_missing_value_are_usage_errors() {
        for args in [&["-x"][..], &["-F"][..], &["--wait-policy"][..]] {
            let err = CommandLine::parse_args(args.iter().map(OsString::from)).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn long_options_become_rc_variables() {
        let cli = parse(&["--wait-policy", "wait_all", "--verbose", "--stop-timeout", "1s"]);
        assert_eq!(
            cli.rc_overrides(),
            vec![
                ("RC_WAIT_POLICY", "wait_all".to_owned()),
                ("RC_VERBOSE", "true".to_owned()),
                ("RC_STOP_TIMEOUT", "1s".to_owned())
            ]
        );
    }

    #[test]
    fn log_format_options_become_rc_variables_and_bad_values_are_usage_errors() {
        let cli = parse(&["--log-format", "json", "--log-timestamps"]);
        assert_eq!(
            cli.rc_overrides(),
            vec![("RC_LOG_TIMESTAMPS", "true".to_owned()), ("RC_LOG_FORMAT", "json".to_owned())]
        );
        for bad in ["JSON", "logfmt", ""] {
            let err = CommandLine::parse_args(["--log-format", bad].map(OsString::from)).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn task_argv_round_trips_through_reparse() {
        let cli = parse(&["--verbose", "-w", "d", "-F", "f", "-B", "b", "echo", "hi"]);
        let argv = cli.task_argv();
        assert_eq!(argv, os(&["-B", "b", "-F", "f", "echo", "hi"]));
        let mut rewritten = argv.clone();
        rewritten.extend(os(&["-F", "more"]));
        // A boot file appending `-F more` after the trailing command makes it part of that
        // command, exactly as TrivialRC would see it.
        let again = cli.reparse_tasks(rewritten).unwrap();
        assert_eq!(again.command, os(&["echo", "hi", "-F", "more"]));
        assert!(again.verbose);
        assert_eq!(again.workdir, Some(OsString::from("d")));
    }
}
