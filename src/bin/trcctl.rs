//! trcctl: the process-manager API (list, status, start, stop, restart, signal, ensure,
//! start-all, logs, reload) over a running trc, or over systemd, runit or tmux.
//!
//! Exit status: 0 done, 1 refused (unknown task, ...), 2 usage, 69 no manager reachable. With
//! `--host`, the verb runs on a target machine through ssh (src/control/remote.rs), with the
//! remote trcctl's exit status, and 69 when the host or its trcctl cannot be reached.

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use trc::control::cli::{Cli, EnsureArgs, Verb};
use trc::control::manager::{EnsureSpec, ManagerError};
use trc::control::protocol::{CheckReport, InstanceInfo, LogLine, TaskInfo};
use trc::control::remote::{Remote, RemoteOptions};
use trc::control::{self, ManagerKind};

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // What a remote trcctl is given: only what is on this command line (TRC_INSTANCE is set by
    // trc in its tasks for the local instance; the target's own variables apply there).
    let given = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    let remote = RemoteOptions {
        manager: given("manager").then(|| manager_name(cli.manager)),
        instance: cli.instance.clone().filter(|_| given("instance")),
        user: cli.user,
        timeout: given("timeout").then(|| humantime::format_duration(cli.timeout).to_string()),
        trcctl: cli.remote_trcctl.clone(),
        ..RemoteOptions::default()
    };
    match run(cli, remote) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Manager(ManagerError::Remote { status, message })) => {
            // The remote trcctl's own words.
            eprint!("{message}");
            if !message.ends_with('\n') {
                eprintln!();
            }
            ExitCode::from(status.clamp(1, 255) as u8)
        }
        Err(Failure::Manager(e)) => {
            eprintln!("trcctl: {e}");
            ExitCode::from(e.exit_status() as u8)
        }
        Err(Failure::Usage(e)) => {
            eprintln!("trcctl: {e}");
            ExitCode::from(2)
        }
    }
}

enum Failure {
    Manager(ManagerError),
    Usage(String),
}

impl From<ManagerError> for Failure {
    fn from(e: ManagerError) -> Failure {
        Failure::Manager(e)
    }
}

fn manager_name(kind: ManagerKind) -> String {
    use clap::ValueEnum;
    kind.to_possible_value().map(|v| v.get_name().to_owned()).unwrap_or_default()
}

fn run(cli: Cli, mut remote_options: RemoteOptions) -> Result<(), Failure> {
    let remote = match cli.host.as_deref().filter(|h| !h.is_empty()) {
        Some(host) => {
            if let Some(line) = std::env::var("TRCCTL_SSH").ok().filter(|l| !l.trim().is_empty()) {
                remote_options.ssh_command_line(&line).map_err(Failure::Usage)?;
            }
            Some(Remote::new(host, remote_options).map_err(Failure::Usage)?)
        }
        None => None,
    };
    if let Verb::Instances = cli.verb {
        let infos = match &remote {
            Some(remote) => remote.instances()?,
            None => control::client::instances(Some(cli.timeout)).into_iter().map(|i| i.info).collect(),
        };
        if cli.json {
            print_json(&infos);
        } else {
            print_instances(&infos);
        }
        return Ok(());
    }
    let mut manager: Box<dyn control::manager::Manager> = match remote {
        Some(remote) => {
            if let Verb::Check { ready, alive, names } = &cli.verb {
                let report = remote.check(*ready, *alive, names)?;
                return judge_check(report, *ready, *alive, cli.json);
            }
            Box::new(remote)
        }
        None => {
            let instance = match cli.instance.clone() {
                Some(name) => Some(name),
                None => choose_instance(cli.manager, cli.timeout)?,
            };
            if let Verb::Check { ready, alive, names } = &cli.verb {
                return check(instance.as_deref(), cli.timeout, (*ready, *alive), names, cli.json);
            }
            let options = control::Options { instance, user: cli.user, timeout: Some(cli.timeout) };
            let manager = control::open(cli.manager, &options)?;
            if cli.manager == ManagerKind::Auto && manager.kind() == "tmux" {
                // Say which manager `auto` picked when it is the fallback: an empty table is
                // not "nothing runs" on a machine whose manager was not found.
                eprintln!("trcctl: using tmux (no trc instance answers, systemd is not PID 1, no runsvdir runs); choose one with --manager");
            }
            manager
        }
    };
    let json = cli.json;
    match cli.verb {
        Verb::List => {
            let tasks = manager.list()?;
            if json {
                print_json(&tasks);
            } else {
                print_tasks(&tasks);
            }
        }
        Verb::Status { name } => show_task(&manager.status(&name)?, json),
        Verb::Start { name } => show_task(&manager.start(&name)?, json),
        Verb::Stop { name } => show_task(&manager.stop(&name)?, json),
        Verb::Restart { name } => show_task(&manager.restart(&name)?, json),
        Verb::Signal { name, signal } => {
            let sig = trc::config::parse_signal(&signal).map_err(Failure::Usage)?;
            manager.signal(&name, sig)?;
            if json {
                print_json(&serde_json::json!({ "task": name, "signal": sig.as_str() }));
            }
        }
        Verb::Ensure(args) => {
            let spec = ensure_spec(args, manager.kind());
            let (outcome, task) = manager.ensure(&spec)?;
            if json {
                print_json(&serde_json::json!({ "ensured": outcome.as_str(), "task": task }));
            } else {
                println!("{}: {}", task.name, outcome.as_str());
                print_tasks(std::slice::from_ref(&task));
            }
        }
        Verb::StartAll => {
            let started = manager.start_all()?;
            if json {
                print_json(&started);
            } else {
                for name in started {
                    println!("started {name}");
                }
            }
        }
        Verb::Logs { name, follow, lines } => {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            manager.logs(&name, lines, follow, &mut |line: LogLine| {
                if json {
                    writeln!(out, "{}", serde_json::to_string(&line).unwrap_or_default())?;
                } else {
                    writeln!(out, "{}", line.text)?;
                }
                out.flush()
            })?;
        }
        Verb::Reload => {
            let report = manager.reload()?;
            if json {
                print_json(&report);
            } else {
                for (what, names) in [
                    ("added", &report.added),
                    ("removed", &report.removed),
                    ("restarted", &report.restarted),
                    ("unchanged", &report.unchanged),
                ] {
                    if !names.is_empty() {
                        println!("{what}: {}", names.join(" "));
                    }
                }
            }
        }
        Verb::Instances | Verb::Check { .. } => unreachable!("handled above"),
    }
    Ok(())
}

/// `check`: always asks trc (whatever `--manager` says): 0 pass, 1 fail, 69 no trc (or none
/// that answers within `timeout`).
fn check(
    instance: Option<&str>,
    timeout: std::time::Duration,
    (ready, alive): (bool, bool),
    names: &[String],
    json: bool,
) -> Result<(), Failure> {
    use trc::control::protocol::Command;
    let Some(instance) = instance else {
        return Err(Failure::Manager(ManagerError::Unavailable(format!(
            "no trc instance is running (looked in {})",
            trc::runtime_dir::base_dirs_text()
        ))));
    };
    let trc = control::client::Trc::named(instance)?.timeout(Some(timeout));
    let reply = trc.call(Command::Check { tasks: names.to_vec() })?;
    judge_check(reply.check.unwrap_or_default(), ready, alive, json)
}

/// A check's report: 0 when it passes, else each problem on stderr and 1. With `alive`, trc
/// answered: that is all a liveness probe asks.
fn judge_check(report: CheckReport, ready: bool, alive: bool, json: bool) -> Result<(), Failure> {
    let mut problems = if alive { Vec::new() } else { report.unhealthy.clone() };
    if ready {
        problems.extend(report.not_ready.iter().filter(|p| !report.unhealthy.contains(p)).cloned());
    }
    if json {
        print_json(&serde_json::json!({
            "ok": problems.is_empty(),
            "unhealthy": report.unhealthy,
            "not_ready": report.not_ready,
        }));
    }
    if problems.is_empty() {
        return Ok(());
    }
    for problem in &problems {
        eprintln!("trcctl: {problem}");
    }
    Err(Failure::Manager(ManagerError::Refused(format!(
        "{} {}",
        problems.len(),
        if ready { "not ready" } else { "unhealthy" }
    ))))
}

/// Without `--instance`: the only running trc; when several run, ask (on a terminal) or say
/// which there are. `None` when none runs (then `auto` looks at the other managers).
fn choose_instance(kind: ManagerKind, timeout: std::time::Duration) -> Result<Option<String>, Failure> {
    if !matches!(kind, ManagerKind::Auto | ManagerKind::Trc) {
        return Ok(None);
    }
    // The only one that runs is taken without asking it anything: its verb asks (and says
    // when it does not answer: a stopped trc is not "none is running"), once.
    match &control::client::running_dirs()[..] {
        [] => return Ok(None),
        [dir] => return Ok(Some(dir.to_string_lossy().into_owned())),
        _ => {}
    }
    let found = control::client::instances(Some(timeout));
    if found.len() <= 1 {
        return Ok(found.into_iter().next().map(|i| i.dir.to_string_lossy().into_owned()));
    }
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    if !interactive {
        let names: Vec<&str> = found.iter().map(|i| i.info.name.as_str()).collect();
        return Err(Failure::Usage(format!(
            "several trc instances are running ({}): choose one with --instance NAME or TRC_INSTANCE",
            names.join(", ")
        )));
    }
    eprintln!("Several trc instances are running:");
    for (i, instance) in found.iter().enumerate() {
        eprintln!(
            "  {}) {} (pid {}, {})",
            i + 1,
            instance.info.name,
            instance.info.pid,
            instance.info.work_dir
        );
    }
    eprint!("Which one? [1-{}] ", found.len());
    let mut answer = String::new();
    let _ = std::io::stdin().read_line(&mut answer);
    match answer.trim().parse::<usize>() {
        Ok(n) if (1..=found.len()).contains(&n) => Ok(Some(found[n - 1].dir.to_string_lossy().into_owned())),
        _ => Err(Failure::Usage("no instance chosen".to_owned())),
    }
}

fn ensure_spec(args: EnsureArgs, kind: &str) -> EnsureSpec {
    let mut directives = Vec::new();
    let restart =
        args.restart.or_else(|| (!args.command.is_empty() && kind == "trc").then(|| "always".to_owned()));
    for (key, value) in [
        ("restart", restart),
        ("restart-delay", args.restart_delay),
        ("restart-max-delay", args.restart_max_delay),
        ("start-limit", args.start_limit),
        ("stop-timeout", args.stop_timeout),
        ("stop-signal", args.stop_signal),
    ] {
        if let Some(value) = value {
            directives.push((key.to_owned(), value));
        }
    }
    EnsureSpec { name: args.name, command: args.command, cwd: args.cwd, env: args.env, directives }
}

fn print_json<T: serde::Serialize + ?Sized>(value: &T) {
    println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
}

fn show_task(task: &TaskInfo, json: bool) {
    if json {
        print_json(task);
    } else {
        print_tasks(std::slice::from_ref(task));
        print_details(task);
    }
}

/// Below one task's row: what the table has no column for (readiness, health, why trc
/// stopped it, what it waits for, its own `STATUS=`), a line each, when there is something.
fn print_details(task: &TaskInfo) {
    let mut details: Vec<(&str, String)> = Vec::new();
    if !task.waiting_for.is_empty() {
        details.push(("waiting for", format!("{} to be ready", task.waiting_for.join(", "))));
    }
    if task.state == "starting" || task.state == "running" {
        details.push(("ready", if task.ready { "yes" } else { "no" }.to_owned()));
    }
    if let Some(health) = &task.health {
        details.push(("health", health.clone()));
    }
    if let Some(reason) = &task.reason {
        details.push(("reason", reason_text(reason).to_owned()));
    }
    if let Some(problem) = &task.probe_problem {
        details.push(("last probe", problem.clone()));
    }
    if let Some(status) = &task.notify_status {
        details.push(("status", status.clone()));
    }
    for (what, text) in details {
        println!("  {what}: {text}");
    }
}

/// The words for a task's `reason`.
fn reason_text(reason: &str) -> &str {
    match reason {
        "ready-timeout" => "ready-timeout (not ready in time)",
        "unhealthy" => "unhealthy (failed its health checks)",
        "watchdog" => "watchdog (no WATCHDOG=1 in time)",
        "dependency" => "dependency (never started: a task it starts after failed for good)",
        other => other,
    }
}

fn print_tasks(tasks: &[TaskInfo]) {
    let rows: Vec<[String; 7]> = tasks
        .iter()
        .map(|t| {
            [
                t.name.clone(),
                t.stage.clone(),
                t.state.clone(),
                t.pid.map_or("-".to_owned(), |p| p.to_string()),
                t.since_secs.map_or("-".to_owned(), |s| {
                    humantime::format_duration(std::time::Duration::from_secs(s as u64)).to_string()
                }),
                t.starts.to_string(),
                t.last_status.map_or("-".to_owned(), |s| s.to_string()),
            ]
        })
        .collect();
    print_table(&["NAME", "STAGE", "STATE", "PID", "SINCE", "STARTS", "LAST"], &rows);
}

fn print_instances(found: &[InstanceInfo]) {
    let rows: Vec<[String; 3]> =
        found.iter().map(|i| [i.name.clone(), i.pid.to_string(), i.work_dir.clone()]).collect();
    print_table(&["NAME", "PID", "WORKDIR"], &rows);
}

fn print_table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == N {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        println!("{}", text.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}
