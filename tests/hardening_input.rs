//! Bad input that must never get past trc's checks, against the real `trc` and `trcctl`
//! binaries: an `ensure` that would write a broken task file, header blocks far into a file
//! (an END past 64 KiB, a BEGIN past the bound) and task file names with control characters.
//!
//! Every wait is on an event (trcctl answers, trc exits) with the harness' generous deadline.

mod common;

use common::sandbox::*;
use common::{Output, Trc};
use std::path::Path;

/// `trc -w DIR` in DIR (the default wait policy), which tasks find as `$DIR`.
fn trc(dir: &Path) -> Trc {
    Trc::new(dir, ["-w", dir.to_str().unwrap()]).env("DIR", dir.to_str().unwrap())
}

fn write(dir: &Path, file: &str, text: &str) {
    std::fs::create_dir_all(dir.join("trc.d")).unwrap();
    std::fs::write(dir.join("trc.d").join(file), text).unwrap();
}

/// The entries of `trc.d`, sorted.
fn trc_d(work: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(work.join("trc.d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Expects status 78, an error on stderr that contains `at` and `needle`, and no task run.
fn config_error(out: &Output, at: &str, needle: &str) {
    assert_eq!(out.code(), 78, "{out:?}");
    let error = out.stderr.lines().find(|l| l.contains(at));
    let error = error.unwrap_or_else(|| panic!("no error naming {at:?}\n{out:?}"));
    assert!(error.contains(needle), "{error:?} does not say {needle:?}");
    assert!(!out.stdout.contains("ran"), "a task ran\n{out:?}");
}

// ----- ensure ---------------------------------------------------------------------------------

#[test]
fn an_ensure_that_would_poison_the_work_dir_is_refused_and_changes_nothing() {
    let s = Sandbox::new();
    let work = s.work("app");
    task(&work, "web", "exec sleep 1000\n");
    let mut sup = s.start(&work);
    s.wait_sleeping("web");
    let before = trc_d(&work);

    let attempts: [&[&str]; 5] = [
        &["ensure", "x", "--restart", "\nalways", "--", "sleep", "1000"],
        &["ensure", "x", "--restart", "always\n# stop-signal: KILL", "--", "sleep", "1000"],
        &["ensure", "x", "--stop-signal", "TERM\x1b", "--", "sleep", "1000"],
        // Valid alone, not with the group's restart-max-delay (30s).
        &["ensure", "x", "--restart-delay", "1m", "--", "sleep", "1000"],
        // A command that holds a header line.
        &["ensure", "x", "--", "echo", "\n### BEGIN TRC\n"],
    ];
    for args in attempts {
        let out = s.ctl(args);
        assert_eq!(out.code, 1, "{args:?}: {out:?}");
        assert!(!out.stderr.is_empty(), "{args:?}: {out:?}");
        assert_eq!(trc_d(&work), before, "{args:?}: trc.d changed (or a temp file was left)");
        assert!(s.status("x").is_none(), "{args:?}: task x exists");
    }
    // Updating a task with a bad value changes nothing either.
    let out = s.ctl(&["ensure", "y", "--", "sleep", "1000"]);
    assert_eq!(out.code, 0, "{out:?}");
    let y = std::fs::read(work.join("trc.d/async.y")).unwrap();
    let out = s.ctl(&["ensure", "y", "--restart", "\nnever", "--", "sleep", "999"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(std::fs::read(work.join("trc.d/async.y")).unwrap(), y);

    let out = s.ctl(&["reload"]);
    assert_eq!(out.code, 0, "reload after the refused ensures: {out:?}");
    assert!(!trc_d(&work).iter().any(|n| n.contains(".tmp")), "{:?}", trc_d(&work));
    sup.terminate();

    // A fresh trc takes the work dir as it is.
    let _again = s.start(&work);
    s.wait_sleeping("web");
    s.wait_sleeping("y");
}

// ----- the header block's bounds --------------------------------------------------------------

#[test]
fn a_header_whose_end_is_past_64_kib_works() {
    let dir = tempfile::tempdir().unwrap();
    let long = format!("# {}\n", "x".repeat(70 * 1024));
    // Fails once, then succeeds: exit 0 only when the restart directive was read.
    let text = format!(
        "{long}### BEGIN TRC\n# restart: on-failure\n# restart-delay: 0\n### END TRC\n\
         if [ -e \"$DIR/once\" ]; then echo second-run; exit 0; fi\ntouch \"$DIR/once\"\nexit 3\n"
    );
    write(dir.path(), "sync.long", &text);
    let out = trc(dir.path()).run();
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(out.stdout.contains("second-run"), "{out:?}");
}

#[test]
fn a_header_past_the_bound_is_an_error_naming_file_and_line() {
    let block = "### BEGIN TRC\n# restart: sometimes\n### END TRC\necho ran\n";
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "async.late", &format!("{}{block}", "true\n".repeat(25)));
    let out = trc(dir.path()).run();
    let at = format!("{}:26: ", dir.path().join("trc.d/async.late").display());
    config_error(&out, &at, "must start within the first 20 lines");

    // Past 64 KiB, where it used to be ignored.
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "async.far", &format!("# {}\n{block}", "x".repeat(70 * 1024)));
    let out = trc(dir.path()).run();
    let at = format!("{}:3: ", dir.path().join("trc.d/async.far").display());
    // Line 2 is inside the bound: the block is read, and its bad value is the error.
    config_error(&out, &at, "unknown restart policy");
    let dir = tempfile::tempdir().unwrap();
    let far = format!("# {}\n{}{block}", "x".repeat(70 * 1024), "true\n".repeat(30));
    write(dir.path(), "async.far", &far);
    let out = trc(dir.path()).run();
    let at = format!("{}:32: ", dir.path().join("trc.d/async.far").display());
    config_error(&out, &at, "BEGIN TRC\" past line 20");
}

// ----- task names -----------------------------------------------------------------------------

#[test]
fn control_characters_in_task_names_are_a_configuration_error() {
    for (file, shown) in [
        ("async.x\nweb", "async.x\\nweb"),
        ("async.x\tweb", "async.x\\tweb"),
        ("async.x\x1b[31mweb", "async.x\\u{1b}[31mweb"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), file, "echo ran-forged\n");
        write(dir.path(), "async.web", "echo ran-web\n");
        let out = trc(dir.path()).run();
        let at = format!("{}: bad task name", dir.path().join("trc.d").join(shown).display());
        config_error(&out, &at, "control characters");
        assert!(!out.stdout.contains("web: "), "{file:?}: a line carries web's prefix\n{out:?}");
    }
}
