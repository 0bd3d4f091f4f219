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

/// The sections clap_mangen renders, in its order, without its `EXTRA` section (the after-help
/// is rendered below, with its indented lines kept as they are).
fn head(man: &Man, out: &mut Vec<u8>) -> std::io::Result<()> {
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)
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

fn trc_page(cmd: clap::Command) -> std::io::Result<Vec<u8>> {
    let after_help = cmd.get_after_help().map(|h| h.to_string()).unwrap_or_default();
    let man = man(cmd);
    let mut out = Vec::new();
    head(&man, &mut out)?;
    let mut roff = Roff::new();
    roff.control("SH", ["NOTES"]);
    text_block(&mut roff, &after_help);
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
    let man = man(cmd.clone().subcommand_value_name("VERB"));
    let mut out = Vec::new();
    head(&man, &mut out)?;
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
