//! The argv re-parse after a boot task rewrites `"$@"`: `CommandLine::parse_args` and
//! `reparse_tasks` on arbitrary words (NUL-separated, not necessarily UTF-8). Never panics, and
//! the argv trc hands to boot tasks (`task_argv`) parses back to the same tasks, except for the
//! known case written up in fuzz/crashes.md (a trailing command whose first word starts with
//! `-`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use trc::cli::CommandLine;

fuzz_target!(|data: &[u8]| {
    let words: Vec<OsString> = data.split(|&b| b == 0).map(|w| OsString::from_vec(w.to_vec())).collect();
    let _ = CommandLine::parse_args(words.clone());
    let Ok(cli) = CommandLine::default().reparse_tasks(words) else { return };
    let hyphen_command = cli.command.first().is_some_and(|w| w.as_bytes().starts_with(b"-"));
    if hyphen_command {
        return;
    }
    let again = cli.reparse_tasks(cli.task_argv()).expect("task_argv parses back");
    assert_eq!(again, cli);
});
