//! Fixture scenarios: `tests/fixtures/<scenario>/` holds a work dir (`trc.d/`, `trc.<stage>.*`)
//! and the expectations of one run of the real `trc` binary, started in that directory:
//!
//! - `args`   (optional) trc's arguments, one per line;
//! - `env`    (optional) `KEY=VALUE` lines added to the environment;
//! - `status` the expected exit status;
//! - `stdout`, `stderr` (optional) the exact expected output after normalisation: log lines'
//!   time and pid become `TS` and `PID`, `<pid=N>` stays `<pid=N>`, and the fixture's own path
//!   becomes `WORKDIR`.
//!
//! With `TRC_BLESS=1` the runner writes the output it got into the existing `stdout`/`stderr`
//! files instead of comparing: for a deliberate change of output; review `git diff` after.
//!
//! - `about`  (optional, not read) what the scenario shows and how it differs from TrivialRC's.
//!
//! Each run gets an empty scratch directory in `$SCRATCH` for files its tasks write. Fixtures
//! that need an order between tasks use small shell functions defined by a boot file
//! (`mark`, `started NAME`, `gone NAME`, `idle`) instead of racing sleeps.

mod common;

use common::{fixtures_dir, normalize, Trc};
use std::fs;
use std::path::Path;

fn read_opt(dir: &Path, name: &str) -> Option<String> {
    fs::read_to_string(dir.join(name)).ok()
}

fn run_fixture(dir: &Path) -> Result<(), String> {
    let args: Vec<String> =
        read_opt(dir, "args").map(|a| a.lines().map(str::to_owned).collect()).unwrap_or_default();
    let scratch = tempfile::tempdir().unwrap();
    let mut trc = Trc::new(dir, &args).env("SCRATCH", scratch.path().to_str().unwrap());
    for line in read_opt(dir, "env").unwrap_or_default().lines().filter(|l| !l.trim().is_empty()) {
        let (k, v) = line.split_once('=').ok_or_else(|| format!("bad env line {line:?}"))?;
        trc = trc.env(k, v);
    }
    let out = trc.run();
    let clean = |text: &str| normalize(text).replace(dir.to_str().unwrap(), "WORKDIR");
    let (stdout, stderr) = (clean(&out.stdout), clean(&out.stderr));
    let mut problems = Vec::new();
    let want_status: i32 = read_opt(dir, "status")
        .ok_or("missing `status` file")?
        .trim()
        .parse()
        .map_err(|e| format!("bad `status` file: {e}"))?;
    if out.code() != want_status {
        problems.push(format!("exit status {} (expected {want_status})", out.code()));
    }
    for (name, got) in [("stdout", &stdout), ("stderr", &stderr)] {
        // TRC_BLESS=1 writes what trc printed as the new expectation (review the diff!).
        if std::env::var_os("TRC_BLESS").is_some() && dir.join(name).exists() {
            fs::write(dir.join(name), got).unwrap();
            continue;
        }
        if let Some(want) = read_opt(dir, name) {
            if &want != got {
                problems.push(format!("{name} differs\n--- expected\n{want}--- got\n{got}---"));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{}\nstdout:\n{stdout}\nstderr:\n{stderr}", problems.join("\n")))
    }
}

#[test]
fn fixtures() {
    let mut dirs: Vec<_> = fs::read_dir(fixtures_dir())
        .expect("tests/fixtures")
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no fixtures found");
    let mut failures = Vec::new();
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        match run_fixture(dir) {
            Ok(()) => eprintln!("fixture {name}: ok"),
            Err(why) => {
                eprintln!("fixture {name}: FAILED");
                failures.push(format!("=== {name}: {why}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixtures failed:\n{}",
        failures.len(),
        dirs.len(),
        failures.join("\n")
    );
}
