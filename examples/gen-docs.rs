//! Writes what the Debian package (and anyone who installs by hand) needs besides the binaries:
//! the man pages `trc(1)` and `trcctl(1)`, generated from the clap definitions, `trc.d(5)`
//! (hand-written, `man/trc.d.5`), shell completions for bash, zsh and fish, and the systemd unit
//! with the packaged binary's path.
//!
//! ```sh
//! cargo run --example gen-docs [-- DIR]     # then: cargo deb
//! ```
//!
//! DIR defaults to `target/docs` in the crate's directory (whatever `CARGO_TARGET_DIR` says),
//! where `cargo deb` takes the files from (`[package.metadata.deb]` in Cargo.toml; a path under
//! `target/release` would be taken for a build product, and not be gzipped). It gets:
//!
//! ```text
//! man/trc.1  man/trcctl.1  man/trc.d.5
//! completions/trc.bash  completions/trcctl.bash  completions/_trc  completions/_trcctl
//! completions/trc.fish  completions/trcctl.fish
//! systemd/trc@.service
//! ```
//!
//! The pages are clap_mangen's sections (title, name, description, options, version) with a
//! SYNOPSIS of our own (clap_mangen 0.3 leaves out the options' values: `[--manager]`), an
//! ENVIRONMENT section each (trc's from the environment block of its after-help, the
//! directives' group defaults and what systemd sets; trcctl's from its options' `env` and
//! what its backends read), and NOTES, FILES, SEE ALSO. Its unit tests (`cargo test`, the
//! `[[example]]` in Cargo.toml) check the synopses and that every variable the sources name
//! is in an ENVIRONMENT section; ci/package-test.sh checks the installed pages as `man` shows
//! them.
//!
//! An example rather than a binary: `cargo build` and `cargo install` never build it (`cargo
//! test` and `cargo clippy --all-targets` do), and `clap_mangen`/`clap_complete` are
//! dev-dependencies.

use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::roff::{bold, italic, roman, Roff};
use clap_mangen::Man;
use std::path::{Path, PathBuf};

/// The hand-written page, and the unit as the repository ships it (for `/usr/local/bin`).
const TRC_D_5: &str = include_str!("../man/trc.d.5");
const UNIT: &str = include_str!("../systemd/trc@.service");

fn main() {
    let dir = match std::env::args_os().nth(1) {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("docs"),
    };
    if let Err(e) = generate(&dir) {
        eprintln!("gen-docs: {}: {e}", dir.display());
        std::process::exit(1);
    }
    println!("{}", dir.display());
}

fn generate(dir: &Path) -> std::io::Result<()> {
    let man = dir.join("man");
    let completions = dir.join("completions");
    let systemd = dir.join("systemd");
    for d in [&man, &completions, &systemd] {
        std::fs::create_dir_all(d)?;
    }

    let trc = trc::cli::CommandLine::command();
    let trcctl = trc::control::cli::Cli::command();
    std::fs::write(man.join("trc.1"), trc_page(trc.clone())?)?;
    std::fs::write(man.join("trcctl.1"), trcctl_page(trcctl.clone())?)?;
    std::fs::write(man.join("trc.d.5"), TRC_D_5)?;

    for (mut cmd, name) in [(trc, "trc"), (trcctl, "trcctl")] {
        for (shell, file) in [
            (Shell::Bash, format!("{name}.bash")),
            (Shell::Zsh, format!("_{name}")),
            (Shell::Fish, format!("{name}.fish")),
        ] {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd, name, &mut out);
            std::fs::write(completions.join(file), out)?;
        }
    }

    std::fs::write(systemd.join("trc@.service"), packaged_unit()?)?;
    Ok(())
}

/// The unit as the package installs it: running `/usr/bin/trc`, naming its man pages, and
/// without the repository's install hint (a comment naming `/usr/local`).
fn packaged_unit() -> std::io::Result<String> {
    let mut unit = String::new();
    for line in UNIT.lines() {
        let line = if line.starts_with('#') && line.contains("/usr/local/") {
            "# Installed by the trc package (README.md, \"Installing\").".to_owned()
        } else if let Some(rest) = line.strip_prefix("ExecStart=/usr/local/bin/trc") {
            format!("ExecStart=/usr/bin/trc{rest}")
        } else if let Some(rest) = line.strip_prefix("Documentation=") {
            format!("Documentation=man:trc(1) man:trc.d(5) {rest}")
        } else {
            line.to_owned()
        };
        unit.push_str(&line);
        unit.push('\n');
    }
    if !unit.contains("\nExecStart=/usr/bin/trc ") {
        return Err(std::io::Error::other("systemd/trc@.service: no \"ExecStart=/usr/local/bin/trc \" line"));
    }
    if unit.contains("/usr/local/") {
        return Err(std::io::Error::other("systemd/trc@.service: /usr/local/ left in the packaged unit"));
    }
    Ok(unit)
}

/// The sections clap_mangen renders, in its order, with a synopsis of our own and without its
/// `EXTRA` section (the after-help is rendered below, with its indented lines kept as they are).
fn head(man: &Man, cmd: &clap::Command, out: &mut Vec<u8>) -> std::io::Result<()> {
    man.render_title(out)?;
    man.render_name_section(out)?;
    out.extend(synopsis(cmd).into_bytes());
    man.render_description_section(out)?;
    man.render_options_section(out)
}

/// Text for a roff text line: backslashes and hyphens escaped (a `-` is a hyphen to roff, and
/// an option's `--` must stay two minus signs).
fn escape(text: &str) -> String {
    text.replace('\\', "\\e").replace('-', "\\-")
}

/// SYNOPSIS as clap_mangen 0.3 does not write it: each option with the name of its value
/// (`[--manager MANAGER]`, where clap_mangen writes `[--manager]`, and `[-B  ]` for a short one),
/// `...` after one that repeats. The option and its value are kept on one line (`\~`, an
/// unbreakable space); `.SY`/`.YS` (groff's and mandoc's man) hang the lines after the name.
fn synopsis(cmd: &clap::Command) -> String {
    let mut out = format!(".SH SYNOPSIS\n.SY {}\n", escape(cmd.get_name()));
    for arg in cmd.get_arguments().filter(|a| !a.is_hide_set() && !a.is_positional()) {
        let names = match (arg.get_short(), arg.get_long()) {
            (Some(short), Some(long)) => {
                format!("\\fB{}\\fR|\\fB{}\\fR", escape(&format!("-{short}")), escape(&format!("--{long}")))
            }
            (Some(short), None) => format!("\\fB{}\\fR", escape(&format!("-{short}"))),
            (None, Some(long)) => format!("\\fB{}\\fR", escape(&format!("--{long}"))),
            (None, None) => continue,
        };
        let value = if arg.get_action().takes_values() {
            format!("\\~\\fI{}\\fR", escape(&value_name(arg)))
        } else {
            String::new()
        };
        let repeats = matches!(arg.get_action(), clap::ArgAction::Append | clap::ArgAction::Count);
        let item = format!("{names}{value}");
        let item = if arg.is_required_set() { item } else { format!("[{item}]") };
        out.push_str(&item);
        out.push_str(if repeats { "...\n" } else { "\n" });
    }
    for arg in cmd.get_positionals().filter(|a| !a.is_hide_set()) {
        let many = arg.get_num_args().is_some_and(|n| n.max_values() > 1);
        let item = format!("\\fI{}\\fR{}", escape(&value_name(arg)), if many { "..." } else { "" });
        out.push_str(&if arg.is_required_set() { item } else { format!("[{item}]") });
        out.push('\n');
    }
    if cmd.has_subcommands() {
        let verb = cmd.get_subcommand_value_name().unwrap_or("COMMAND");
        out.push_str(&format!("\\fI{}\\fR [\\fIARGS\\fR...]\n", escape(verb)));
    }
    out.push_str(".YS\n");
    out
}

/// What an argument's value is called: its value name, else its id in capitals (as clap's help
/// says it).
fn value_name(arg: &clap::Arg) -> String {
    match arg.get_value_names() {
        Some(names) if !names.is_empty() => names.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(" "),
        _ => arg.get_id().as_str().to_uppercase(),
    }
}

/// A page's `Man`: its title in capitals, a date (`SOURCE_DATE_EPOCH` when set, for a
/// reproducible build, else today) and the manual's name.
fn man(cmd: clap::Command) -> Man {
    let title = cmd.get_name().to_uppercase();
    let date = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
        .map_or_else(|| chrono::Local::now().date_naive(), |t| t.date_naive());
    Man::new(cmd).title(title).date(date.format("%Y-%m-%d").to_string()).manual("User Commands")
}

fn trc_page(mut cmd: clap::Command) -> std::io::Result<Vec<u8>> {
    cmd.build();
    let after_help = cmd.get_after_help().map(|h| h.to_string()).unwrap_or_default();
    let (notes, environment) = split_environment(&after_help)?;
    let man = man(cmd.clone());
    let mut out = Vec::new();
    head(&man, &cmd, &mut out)?;
    let mut roff = Roff::new();
    trc_environment(&mut roff, &environment);
    roff.control("SH", ["NOTES"]);
    text_block(&mut roff, &notes);
    roff.control("SH", ["FILES"]);
    for (path, what) in [
        (
            "/lib/systemd/system/trc@.service",
            "the unit (Debian package): systemctl start trc@NAME runs /opt/NAME/trc.d",
        ),
        (
            "/usr/share/doc/trc/examples/trc.d",
            "the demo app group (Debian package): trc -w /usr/share/doc/trc/examples",
        ),
    ] {
        roff.control("TP", []).text([italic(path)]).text([roman(what)]);
    }
    see_also(&mut roff, &[("trcctl", "1"), ("trc.d", "5"), ("systemd.service", "5"), ("journalctl", "1")]);
    roff.to_writer(&mut out)?;
    man.render_version_section(&mut out)?;
    Ok(out)
}

fn trcctl_page(mut cmd: clap::Command) -> std::io::Result<Vec<u8>> {
    cmd.build();
    let after_help = cmd.get_after_help().map(|h| h.to_string()).unwrap_or_default();
    let cmd = cmd.subcommand_value_name("VERB");
    let man = man(cmd.clone());
    let mut out = Vec::new();
    head(&man, &cmd, &mut out)?;
    let mut environment = Roff::new();
    trcctl_environment(&mut environment, &cmd);
    environment.to_writer(&mut out)?;
    // Each verb on this one page: its usage as clap prints it, what it does, its options.
    let mut roff = Roff::new();
    roff.control("SH", ["VERBS"]);
    for verb in cmd.get_subcommands().filter(|v| !v.is_hide_set() && v.get_name() != "help") {
        let mut verb = verb.clone();
        let usage = verb.render_usage().to_string();
        let usage = usage.trim_start_matches("Usage:").trim();
        roff.control("SS", [verb.get_name()]);
        roff.text([bold(usage)]);
        if let Some(about) = verb.get_long_about().or_else(|| verb.get_about()) {
            roff.control("PP", []).text([roman(about.to_string())]);
        }
        // The options with something to say: no --help, no bare <NAME> (the usage shows it).
        let silent: Vec<String> = verb
            .get_arguments()
            .filter(|a| a.get_id() == "help" || (a.is_positional() && a.get_help().is_none()))
            .map(|a| a.get_id().to_string())
            .collect();
        for id in silent {
            verb = verb.mut_arg(id, |a| a.hide(true));
        }
        if verb.get_arguments().any(|a| !a.is_hide_set()) {
            roff.to_writer(&mut out)?;
            roff = Roff::new();
            let mut options = Vec::new();
            Man::new(verb).render_options_section(&mut options)?;
            out.extend(without_heading(&options, ".SH OPTIONS"));
        }
    }
    roff.control("SH", ["NOTES"]);
    text_block(&mut roff, &after_help);
    see_also(&mut roff, &[("trc", "1"), ("trc.d", "5"), ("systemctl", "1"), ("sv", "8"), ("tmux", "1")]);
    roff.to_writer(&mut out)?;
    man.render_version_section(&mut out)?;
    Ok(out)
}

/// trc's after-help without its `Environment (...)` block (its heading, and the indented
/// lines below it), and that block's entries: (`RC_WORK_DIR=DIR`, what it does).
fn split_environment(after_help: &str) -> std::io::Result<(String, Vec<(String, String)>)> {
    let mut notes = String::new();
    let mut entries: Vec<(String, String)> = Vec::new();
    let mut inside = false;
    for line in after_help.lines() {
        if line.starts_with("Environment (") {
            inside = true;
            continue;
        }
        if inside && line.starts_with("  ") {
            let text = line.trim_start();
            if line.starts_with("   ") {
                // The next line of the entry above.
                let (_, what) = entries.last_mut().ok_or_else(|| {
                    std::io::Error::other("trc's after-help: an environment entry starts indented")
                })?;
                what.push(' ');
                what.push_str(text);
            } else {
                let (name, what) = text.split_once(' ').unwrap_or((text, ""));
                entries.push((name.to_owned(), what.trim().to_owned()));
            }
            continue;
        }
        inside = false;
        notes.push_str(line);
        notes.push('\n');
    }
    if entries.is_empty() {
        return Err(std::io::Error::other("trc's after-help has no \"Environment (\" block"));
    }
    Ok((notes, entries))
}

/// A `.TP` entry: `tag` (already roff), then `text`.
fn entry(roff: &mut Roff, tag: Vec<clap_mangen::roff::Inline>, text: &str) {
    roff.control("TP", []).text(tag).text([roman(text)]);
}

/// Variable names in bold, separated by commas.
fn names(vars: &[&str]) -> Vec<clap_mangen::roff::Inline> {
    let mut line = Vec::new();
    for (i, var) in vars.iter().enumerate() {
        if i > 0 {
            line.push(roman(", "));
        }
        line.push(bold(*var));
    }
    line
}

/// `NAME=VALUE` as roff: the name bold, a placeholder value (`DIR`, `DUR`) italic, a literal
/// one (`true`, `false`) bold.
fn assignment(text: &str) -> Vec<clap_mangen::roff::Inline> {
    match text.split_once('=') {
        Some((name, value)) if value.chars().any(|c| c.is_ascii_lowercase()) => {
            vec![bold(name), roman("="), bold(value)]
        }
        Some((name, value)) => vec![bold(name), roman("="), italic(value)],
        None => vec![bold(text)],
    }
}

/// trc(1)'s ENVIRONMENT: the variables of its after-help, the group defaults of the directives
/// (trc.d(5)) that have no option, what systemd sets, and what trc sets for its tasks.
fn trc_environment(roff: &mut Roff, listed: &[(String, String)]) {
    roff.control("SH", ["ENVIRONMENT"]);
    roff.text([roman(
        "Each long option sets the variable of the same meaning, for trc and every task; the option wins. \
         A boolean variable is on only when it is exactly true. A boot task may set any RC_* variable: \
         trc reads them again when boot completes.",
    )]);
    for (name, what) in listed {
        entry(roff, assignment(name), what);
    }
    // The group defaults of the directives that have no option: the execution context, then
    // the limits (one entry for all of them).
    let named = |var: &str| listed.iter().any(|(n, _)| n.split('=').next() == Some(var));
    let defaults: Vec<(&str, &str)> = trc::config::DIRECTIVE_KEYS
        .iter()
        .filter_map(|(key, var)| var.map(|v| (*key, v)))
        .filter(|(_, var)| !named(var))
        .collect();
    let (limits, context): (Vec<_>, Vec<_>) = defaults.iter().partition(|(key, _)| key.starts_with("limit-"));
    let keys = |list: &[&(&str, &str)]| list.iter().map(|(key, _)| format!("{key}:")).collect::<Vec<_>>();
    let context_keys = keys(&context);
    entry(
        roff,
        names(&context.iter().map(|(_, var)| *var).collect::<Vec<_>>()),
        &format!(
            "The group defaults of the trc.d(5) directives of the same names ({}); a task's own header wins.",
            context_keys.join(", ")
        ),
    );
    let limit_vars: Vec<&str> = limits.iter().map(|(_, var)| *var).collect();
    entry(
        roff,
        vec![bold("RC_LIMIT_"), italic("RESOURCE")],
        &format!(
            "The group default of the trc.d(5) directive limit-resource: (soft[:hard], setrlimit(2)): {}.",
            limit_vars.join(", ")
        ),
    );
    for (tag, what) in [
        (
            "NOTIFY_SOCKET, WATCHDOG_USEC",
            "Set by systemd for a Type=notify service: trc sends READY=1 once its tasks are ready, \
             STATUS= lines, STOPPING=1, and WATCHDOG=1 every half WATCHDOG_USEC. Not passed on to tasks.",
        ),
        (
            "JOURNAL_STREAM",
            "Set by systemd: when it names trc's stderr, records go to journald natively (RC_LOG=auto), \
             and a usage or configuration error is written with the prefix <3> (priority 3, \
             journalctl -p err).",
        ),
        ("NO_COLOR", "Set (not empty): no colours in the prefixes on a terminal."),
        (
            "XDG_RUNTIME_DIR, TMPDIR",
            "Where the runtime dir is made when RC_RUNTIME_DIR is not set: $XDG_RUNTIME_DIR/trc, \
             /run/trc (root), $TMPDIR/trc-UID.",
        ),
        (
            "TRC_INSTANCE, TRC_TASK, TRC_STAGE, TRC_LOG_PIPE",
            "Set by trc for every task: its instance's name (so trcctl in a task reaches its own trc), \
             the task's name and stage, its log pipe. Halt tasks also get TRC_EXIT_STATUS; probes \
             get TRC_TASK and TRC_TASK_PID.",
        ),
    ] {
        entry(roff, names(&tag.split(", ").collect::<Vec<_>>()), what);
    }
}

/// trcctl(1)'s ENVIRONMENT: the variables its options take their defaults from, and those its
/// backends read.
fn trcctl_environment(roff: &mut Roff, cmd: &clap::Command) {
    roff.control("SH", ["ENVIRONMENT"]);
    for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
        let (Some(var), Some(long)) = (arg.get_env(), arg.get_long()) else { continue };
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        let mut text = format!("The default of --{long}. {help}.");
        if var == "TRC_INSTANCE" {
            text.push_str(" trc sets it for its tasks, so that trcctl in a task reaches its own trc; --host does not pass it on.");
        }
        entry(roff, vec![bold(var.to_string_lossy().into_owned())], &text);
    }
    for (var, what) in [
        (
            "TRCCTL_SSH",
            "The ssh command line --host runs (default: ssh), split as the shell would but not expanded; \
             its words come before trcctl's, so its -o options win.",
        ),
        ("TRCCTL_TMUX_SOCKET", "tmux: the name of the server's socket (tmux -L; default: trcctl)."),
        (
            "TRCCTL_TMUX_REGISTRY",
            "tmux: the registry of commands (default: $XDG_STATE_HOME/trcctl/tmux-services.json, else \
             ~/.local/state/trcctl/tmux-services.json).",
        ),
        ("SVDIR", "runit: the service dir (default: the dir the running runsvdir watches, else /etc/service)."),
        (
            "XDG_CONFIG_HOME",
            "systemd with --user: units go to $XDG_CONFIG_HOME/systemd/user (default: ~/.config/systemd/user).",
        ),
        (
            "RC_RUNTIME_DIR, XDG_RUNTIME_DIR, TMPDIR",
            "Where running trc instances are looked for, as trc makes them: RC_RUNTIME_DIR/trc alone \
             when it is set, else $XDG_RUNTIME_DIR/trc, /run/trc (root), $TMPDIR/trc-UID.",
        ),
    ] {
        entry(roff, names(&var.split(", ").collect::<Vec<_>>()), what);
    }
}

/// A section rendered by clap_mangen without its `.SH` line.
fn without_heading(roff: &[u8], heading: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(roff);
    let mut out = String::new();
    for line in text.lines().filter(|line| *line != heading) {
        out.push_str(line);
        out.push('\n');
    }
    out.into_bytes()
}

/// Help text as roff: paragraphs are filled; indented lines (tables, examples) are kept as
/// they are.
fn text_block(roff: &mut Roff, text: &str) {
    let mut literal = false;
    for line in text.lines() {
        let indented = line.starts_with(' ');
        if line.trim().is_empty() {
            if literal {
                roff.control("fi", []);
                literal = false;
            }
            roff.control("PP", []);
            continue;
        }
        if indented != literal {
            roff.control(if indented { "nf" } else { "fi" }, []);
            literal = indented;
        }
        roff.text([roman(line)]);
    }
    if literal {
        roff.control("fi", []);
    }
}

fn see_also(roff: &mut Roff, pages: &[(&str, &str)]) {
    roff.control("SH", ["SEE ALSO"]);
    let mut line = Vec::new();
    for (i, (name, section)) in pages.iter().enumerate() {
        if i > 0 {
            line.push(roman(", "));
        }
        line.push(bold(*name));
        line.push(roman(format!("({section})")));
    }
    roff.text(line);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trc_man() -> String {
        String::from_utf8(trc_page(trc::cli::CommandLine::command()).unwrap()).unwrap()
    }

    fn trcctl_man() -> String {
        String::from_utf8(trcctl_page(trc::control::cli::Cli::command()).unwrap()).unwrap()
    }

    /// The roff of section `name`: from its `.SH` line to the next one.
    fn section<'a>(page: &'a str, name: &str) -> &'a str {
        let heading = format!(".SH {name}\n");
        let start = page.find(&heading).unwrap_or_else(|| panic!("no {name} section:\n{page}"));
        let rest = &page[start + heading.len()..];
        &rest[..rest.find("\n.SH ").map_or(rest.len(), |end| end + 1)]
    }

    #[test]
    fn synopses_name_the_values_of_options() {
        let trcctl = trcctl_man();
        let synopsis = section(&trcctl, "SYNOPSIS");
        for item in [
            r"[\fB\-\-manager\fR\~\fIMANAGER\fR]",
            r"[\fB\-\-host\fR\~\fI[USER@]HOST[:PORT]\fR]",
            r"[\fB\-\-timeout\fR\~\fIDURATION\fR]",
            r"[\fB\-\-json\fR]",
            r"[\fB\-h\fR|\fB\-\-help\fR]",
            r"\fIVERB\fR",
        ] {
            assert!(synopsis.lines().any(|l| l.starts_with(item)), "{item} not in:\n{synopsis}");
        }
        let trc = trc_man();
        let synopsis = section(&trc, "SYNOPSIS");
        for item in [
            r"[\fB\-w\fR|\fB\-\-workdir\fR\~\fIDIR\fR]",
            r"[\fB\-B\fR\~\fICMDS\fR]...",
            r"[\fB\-\-wait\-policy\fR\~\fIPOLICY\fR]",
            r"[\fICOMMAND\fR...]",
        ] {
            assert!(synopsis.lines().any(|l| l == item), "{item} not in:\n{synopsis}");
        }
        // Every option is there, none without its value.
        for cmd in [trc::cli::CommandLine::command(), trc::control::cli::Cli::command()] {
            let page = if cmd.get_name() == "trc" { &trc } else { &trcctl };
            let synopsis = section(page, "SYNOPSIS");
            for arg in cmd.get_arguments().filter(|a| !a.is_positional()) {
                let name = match (arg.get_long(), arg.get_short()) {
                    (Some(long), _) => escape(&format!("--{long}")),
                    (None, Some(short)) => escape(&format!("-{short}")),
                    (None, None) => continue,
                };
                let line = synopsis.lines().find(|l| l.contains(&format!(r"\fB{name}\fR")));
                let line = line.unwrap_or_else(|| panic!("{name} not in:\n{synopsis}"));
                assert_eq!(line.contains(r"\~\fI"), arg.get_action().takes_values(), "{line}");
            }
        }
    }

    /// The names of the variables the sources read: every `"PREFIX..."` string outside test
    /// modules (a file's `#[cfg(test)]` and what follows it) of src/.
    fn variables_in_sources(prefix: &str) -> std::collections::BTreeSet<String> {
        let re = regex::Regex::new(&format!(r#""({prefix}[A-Z0-9_]+)""#)).unwrap();
        let mut found = std::collections::BTreeSet::new();
        let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    let code = text.split("#[cfg(test)]").next().unwrap();
                    found.extend(re.captures_iter(code).map(|c| c[1].to_owned()));
                }
            }
        }
        found
    }

    /// Whether roff `text` names `var` (as a word: `RC_LOG` is not in `RC_LOG_FORMAT`).
    fn mentions(text: &str, var: &str) -> bool {
        let plain = text.replace(r"\fB", "").replace(r"\fI", "").replace(r"\fR", "");
        regex::Regex::new(&format!(r"\b{var}\b")).unwrap().is_match(&plain)
    }

    #[test]
    fn environment_sections_name_every_variable() {
        let trc = trc_man();
        let environment = section(&trc, "ENVIRONMENT");
        let rc = variables_in_sources("RC_");
        assert!(rc.contains("RC_WAIT_POLICY") && rc.contains("RC_LIMIT_NOFILE") && rc.len() > 40, "{rc:?}");
        for var in rc.iter().map(String::as_str).chain([
            "NOTIFY_SOCKET",
            "WATCHDOG_USEC",
            "JOURNAL_STREAM",
            "NO_COLOR",
        ]) {
            assert!(mentions(environment, var), "trc(1): no {var} in:\n{environment}");
        }
        let trcctl = trcctl_man();
        let environment = section(&trcctl, "ENVIRONMENT");
        let ctl = variables_in_sources("TRCCTL_");
        assert!(ctl.contains("TRCCTL_SSH"), "{ctl:?}");
        let options: Vec<String> = trc::control::cli::Cli::command()
            .get_arguments()
            .filter_map(|a| a.get_env().map(|v| v.to_string_lossy().into_owned()))
            .collect();
        assert!(options.len() >= 5, "{options:?}");
        for var in ctl.iter().chain(&options).map(String::as_str).chain(["TRC_INSTANCE", "SVDIR"]) {
            assert!(mentions(environment, var), "trcctl(1): no {var} in:\n{environment}");
        }
        // Each page's sections in the usual order.
        for page in [&trc, &trcctl] {
            let at = |name: &str| {
                let heading =
                    if name.contains(' ') { format!(".SH \"{name}\"") } else { format!(".SH {name}") };
                page.find(&heading).unwrap_or_else(|| panic!("no {heading}"))
            };
            assert!(at("SYNOPSIS") < at("DESCRIPTION") && at("OPTIONS") < at("ENVIRONMENT"));
            assert!(at("ENVIRONMENT") < at("NOTES") && at("NOTES") < at("SEE ALSO"));
        }
        // The after-help's environment block is the ENVIRONMENT section's, not a note's.
        assert!(!section(&trc, "NOTES").contains("RC_WORK_DIR"));
    }
}
