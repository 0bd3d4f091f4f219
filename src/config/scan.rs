//! The work-dir scan: which files are tasks, in which order, under which names, and whether each
//! is a shell fragment (sourced by bash) or a program executed directly.

use super::directives::{apply, read_directives, Directive, TaskSettings};
use super::{ConfigError, Stage};
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// How a task file runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// Sourced by bash inside a function, as TrivialRC does with every file.
    Fragment,
    /// Executable and not a shell script (an ELF binary, or a `#!` line naming an interpreter
    /// other than sh or bash): run directly.
    Executable,
}

/// One task file found in the work dir.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskFile {
    pub stage: Stage,
    /// The task's name: the part of the file name after `<stage>.`.
    pub name: String,
    /// The path to open (relative to trc's cwd when the work dir is relative).
    pub path: PathBuf,
    pub run: RunMode,
    /// The `BEGIN TRC` header's directives (checked against the defaults at scan time).
    pub directives: Vec<Directive>,
    /// What identifies this version of the file: a hash of its content and of how it runs
    /// (`reload` restarts a task whose fingerprint changed).
    pub fingerprint: Option<u64>,
}

/// Every task file of the work dir, per stage, in run order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskFiles {
    pub boot: Vec<TaskFile>,
    pub async_: Vec<TaskFile>,
    pub sync: Vec<TaskFile>,
    pub halt: Vec<TaskFile>,
}

impl TaskFiles {
    /// Checks that no file task has the name of a command-line task of its stage: `counts` are
    /// the numbers of `-B`, `-D`, `-F`, `-H` tasks, and `trailing` tells whether there is a
    /// trailing command (named `cmd`).
    pub fn check_cli_names(&self, counts: [(Stage, usize); 4], trailing: bool) -> Result<(), ConfigError> {
        for (stage, count) in counts {
            let option = match stage {
                Stage::Boot => "-B",
                Stage::Async => "-D",
                Stage::Sync => "-F",
                Stage::Halt => "-H",
            };
            for file in self.stage(stage) {
                let numbered = (1..=count).find(|i| file.name == format!("{stage}-{i}"));
                let option = match numbered {
                    Some(i) => Some(format!("{option} #{i}")),
                    None if stage == Stage::Sync && trailing && file.name == "cmd" => {
                        Some("COMMAND (the trailing command)".to_owned())
                    }
                    None => None,
                };
                if let Some(option) = option {
                    return Err(ConfigError::NameTakenByCommandLine {
                        stage,
                        name: file.name.clone(),
                        path: file.path.clone(),
                        option,
                    });
                }
            }
        }
        Ok(())
    }

    pub fn stage(&self, stage: Stage) -> &[TaskFile] {
        match stage {
            Stage::Boot => &self.boot,
            Stage::Async => &self.async_,
            Stage::Sync => &self.sync,
            Stage::Halt => &self.halt,
        }
    }

    fn stage_mut(&mut self, stage: Stage) -> &mut Vec<TaskFile> {
        match stage {
            Stage::Boot => &mut self.boot,
            Stage::Async => &mut self.async_,
            Stage::Sync => &mut self.sync,
            Stage::Halt => &mut self.halt,
        }
    }
}

/// Scans `work_dir`: per stage, `WORKDIR/trc.<stage>.*` then `WORKDIR/trc.d/<stage>.*`, each
/// sorted by bytes. A missing `trc.d/` is fine; an unreadable work dir or task file, or a bad
/// directive (checked on top of `defaults`), is an error.
pub fn scan_work_dir(work_dir: &Path, defaults: &TaskSettings) -> Result<TaskFiles, ConfigError> {
    let top = list_dir(work_dir, true)?;
    let sub_dir = work_dir.join("trc.d");
    let sub = list_dir(&sub_dir, false)?;
    let mut files = TaskFiles::default();
    for stage in Stage::ALL {
        let top_prefix = format!("trc.{stage}.");
        let sub_prefix = format!("{stage}.");
        let candidates = matching(&top, &top_prefix, work_dir).chain(matching(&sub, &sub_prefix, &sub_dir));
        let mut seen: HashMap<String, PathBuf> = HashMap::new();
        for (name, path) in candidates {
            let Some(task) = inspect(stage, name, path, defaults)? else {
                continue;
            };
            if let Some(first) = seen.get(&task.name) {
                return Err(ConfigError::DuplicateName {
                    stage,
                    name: task.name,
                    first: first.clone(),
                    second: task.path,
                });
            }
            seen.insert(task.name.clone(), task.path.clone());
            files.stage_mut(stage).push(task);
        }
    }
    Ok(files)
}

/// The entry names of `dir`, sorted by bytes. A missing directory is empty unless `required`.
fn list_dir(dir: &Path, required: bool) -> Result<Vec<OsString>, ConfigError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(ConfigError::WorkDir { path: dir.to_owned(), source }),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ConfigError::WorkDir { path: dir.to_owned(), source })?;
        names.push(entry.file_name());
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// The `(task name, path)` of every entry of `names` that starts with `prefix`.
fn matching<'a>(
    names: &'a [OsString],
    prefix: &'a str,
    dir: &'a Path,
) -> impl Iterator<Item = (&'a OsStr, PathBuf)> + 'a {
    names.iter().filter_map(move |file_name| {
        let rest = file_name.as_bytes().strip_prefix(prefix.as_bytes())?;
        Some((OsStr::from_bytes(rest), dir.join(file_name)))
    })
}

/// Whether a task name is one of the backup or package-manager leftovers that run-parts skips.
pub fn is_ignored_name(name: &[u8]) -> bool {
    const SUFFIXES: [&[u8]; 6] = [b"~", b".bak", b".swp", b".tmp", b".disabled", b".orig"];
    if name.starts_with(b".") || SUFFIXES.iter().any(|s| name.ends_with(s)) {
        return true;
    }
    match name.iter().rposition(|&b| b == b'.') {
        Some(dot) => {
            let ext = &name[dot + 1..];
            ext.starts_with(b"dpkg-") || ext.starts_with(b"rpm") || ext.starts_with(b"ucf-")
        }
        None => false,
    }
}

/// Looks at one candidate: `None` when it is ignored (by name, or a directory).
fn inspect(
    stage: Stage,
    name: &OsStr,
    path: PathBuf,
    defaults: &TaskSettings,
) -> Result<Option<TaskFile>, ConfigError> {
    if is_ignored_name(name.as_bytes()) {
        return Ok(None);
    }
    let meta =
        std::fs::metadata(&path).map_err(|source| ConfigError::Unreadable { path: path.clone(), source })?;
    if meta.is_dir() {
        return Ok(None);
    }
    if !meta.is_file() {
        return Err(ConfigError::NotAFile { path });
    }
    if name.is_empty() {
        return Err(ConfigError::EmptyName { path, stage });
    }
    let name = check_name(name).map_err(|problem| ConfigError::BadName {
        path: escape_controls(&path.to_string_lossy()).into_owned(),
        name: escape_controls(&name.to_string_lossy()).into_owned(),
        problem,
    })?;
    let mut head = [0u8; 512];
    let len = std::fs::File::open(&path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|source| ConfigError::Unreadable { path: path.clone(), source })?;
    let executable = meta.permissions().mode() & 0o111 != 0;
    let direct = is_foreign_shebang(&head[..len]) || head[..len].starts_with(ELF_MAGIC);
    let run = if executable && direct { RunMode::Executable } else { RunMode::Fragment };
    let unreadable = |source| ConfigError::Unreadable { path: path.clone(), source };
    let bad = |e: super::DirectiveError| ConfigError::Directive {
        path: path.clone(),
        line: e.line,
        problem: e.problem,
    };
    let directives = read_directives(&path).map_err(unreadable)?.map_err(bad)?;
    apply(defaults, &directives).map_err(bad)?;
    let fingerprint = fingerprint(&path, run);
    Ok(Some(TaskFile { stage, name: name.to_owned(), path, run, directives, fingerprint }))
}

/// A task name is shown at the head of each of its output lines (`web: ...`) and in log lines:
/// it must be UTF-8 (no two files may map to one lossy name) and hold no control character, C0
/// (newline, tab, ESC...), DEL or C1 (U+0080..U+009F, which some terminals take as ESC
/// sequences), which would break the line framing or let a task pass for another.
fn check_name(name: &OsStr) -> Result<&str, &'static str> {
    let name = name.to_str().ok_or("not valid UTF-8 (a task name must be UTF-8 text)")?;
    if name.chars().any(char::is_control) {
        return Err("control characters (newline, tab, ESC, any of U+0000..U+001F, DEL, U+0080..U+009F) are not allowed in task names");
    }
    Ok(name)
}

/// `text` with its control characters escaped (`\n`, `\t`, `\u{1b}`), for messages and
/// prefixes that must stay on one line and not drive the terminal.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out.into()
}

/// A hash of a file's content and of how it runs.
pub fn fingerprint(path: &Path, run: RunMode) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let bytes = std::fs::read(path).ok()?;
    let mut hasher = std::hash::DefaultHasher::new();
    bytes.hash(&mut hasher);
    (run == RunMode::Executable).hash(&mut hasher);
    Some(hasher.finish())
}

/// The first bytes of an ELF binary.
const ELF_MAGIC: &[u8] = b"\x7fELF";

/// Whether `head` starts with a `#!` line naming an interpreter other than sh or bash
/// (looking through `/usr/bin/env [-S] [VAR=value]...`).
pub fn is_foreign_shebang(head: &[u8]) -> bool {
    let Some(line) = head.strip_prefix(b"#!") else {
        return false;
    };
    let line = line.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace();
    let Some(first) = words.next() else {
        return false;
    };
    let mut interpreter = basename(first);
    if interpreter == "env" {
        match words.find(|w| !w.starts_with('-') && !w.contains('=')) {
            Some(program) => interpreter = basename(program),
            None => return false,
        }
    }
    !matches!(interpreter, "sh" | "bash")
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn touch(path: &Path, content: &str, mode: u32) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn names(files: &[TaskFile]) -> Vec<&str> {
        files.iter().map(|f| f.name.as_str()).collect()
    }

    #[test]
    fn order_is_top_level_then_trc_d_each_by_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for n in ["sync.1", "sync.10", "sync.2", "sync.B", "sync._x", "sync.a"] {
            touch(&d.join("trc.d").join(n), "true\n", 0o644);
        }
        touch(&d.join("trc.sync.top"), "true\n", 0o644);
        touch(&d.join("trc.boot.b"), "true\n", 0o644);
        let files = scan_work_dir(d, &TaskSettings::default()).unwrap();
        assert_eq!(names(&files.sync), ["top", "1", "10", "2", "B", "_x", "a"]);
        assert_eq!(names(&files.boot), ["b"]);
        assert_eq!(files.sync[0].path, d.join("trc.sync.top"));
        assert!(files.async_.is_empty() && files.halt.is_empty());
    }

    #[test]
    fn ignored_names_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("trc.d");
        for n in [
            "async.a~",
            "async.b.bak",
            "async.c.swp",
            "async.d.tmp",
            "async.e.disabled",
            "async.f.dpkg-old",
            "async.g.rpmnew",
            "async..hidden",
            "async.ok",
            "async.rpmbuild",
        ] {
            touch(&t.join(n), "true\n", 0o644);
        }
        fs::create_dir_all(t.join("async.dir")).unwrap();
        let files = scan_work_dir(dir.path(), &TaskSettings::default()).unwrap();
        assert_eq!(names(&files.async_), ["ok", "rpmbuild"]);
    }

    #[test]
    fn shebangs_decide_how_a_file_runs() {
        assert!(is_foreign_shebang(b"#!/usr/bin/python3\nprint(1)\n"));
        assert!(is_foreign_shebang(b"#!/usr/bin/env -S python3 -u\n"));
        assert!(!is_foreign_shebang(b"#!/bin/bash\n"));
        assert!(!is_foreign_shebang(b"#! /bin/sh -e\n"));
        assert!(!is_foreign_shebang(b"#!/usr/bin/env bash\n"));
        assert!(!is_foreign_shebang(b"echo hi\n"));
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("trc.d");
        touch(&t.join("async.py"), "#!/usr/bin/env python3\n", 0o755);
        touch(&t.join("async.py-noexec"), "#!/usr/bin/env python3\n", 0o644);
        touch(&t.join("async.sh"), "#!/bin/bash\necho\n", 0o755);
        let files = scan_work_dir(dir.path(), &TaskSettings::default()).unwrap();
        let modes: Vec<_> = files.async_.iter().map(|f| (f.name.as_str(), f.run)).collect();
        assert_eq!(
            modes,
            [("py", RunMode::Executable), ("py-noexec", RunMode::Fragment), ("sh", RunMode::Fragment)]
        );
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        touch(&d.join("trc.async.web"), "true\n", 0o644);
        touch(&d.join("trc.d/async.web"), "true\n", 0o644);
        let err = scan_work_dir(d, &TaskSettings::default()).unwrap_err().to_string();
        assert!(err.contains("trc.d/async.web: async task name \"web\" is already used by"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/nonexistent", dir.path().join("trc.sync.gone")).unwrap();
        let err = scan_work_dir(dir.path(), &TaskSettings::default()).unwrap_err().to_string();
        assert!(err.contains("trc.sync.gone: cannot read task file"), "{err}");

        let err =
            scan_work_dir(&dir.path().join("missing"), &TaskSettings::default()).unwrap_err().to_string();
        assert!(err.starts_with("work dir ") && err.contains("missing"), "{err}");
    }

    #[test]
    fn bad_directives_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let body = "echo hi\n### BEGIN TRC\n# restart: always\n# restart-delay: later\n### END TRC\n";
        touch(&dir.path().join("trc.d/async.web"), body, 0o644);
        let err = scan_work_dir(dir.path(), &TaskSettings::default()).unwrap_err().to_string();
        assert!(err.contains("trc.d/async.web:4: \"later\" is not a duration"), "{err}");
    }

    #[test]
    fn control_characters_in_names_are_refused() {
        for (file, shown) in [
            ("async.x\nweb", "async.x\\nweb"),
            ("async.x\tweb", "async.x\\tweb"),
            ("async.x\x1b[31mweb", "async.x\\u{1b}[31mweb"),
            ("async.x\x7f", "async.x\\u{7f}"),
            ("async.x\u{9b}1m", "async.x\\u{9b}1m"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            touch(&dir.path().join("trc.d").join(file), "true\n", 0o644);
            let err = scan_work_dir(dir.path(), &TaskSettings::default()).unwrap_err().to_string();
            assert!(err.contains(&format!("trc.d/{shown}: bad task name")), "{err}");
            assert!(err.contains("control characters"), "{err}");
            assert!(!err.chars().any(char::is_control), "{err:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        let file = OsStr::from_bytes(b"async.caf\xe9");
        touch(&dir.path().join("trc.d").join(file), "true\n", 0o644);
        let err = scan_work_dir(dir.path(), &TaskSettings::default()).unwrap_err().to_string();
        assert!(err.contains("not valid UTF-8"), "{err}");
        // Other Unicode is fine.
        let dir = tempfile::tempdir().unwrap();
        touch(&dir.path().join("trc.d/async.café-☕"), "true\n", 0o644);
        let files = scan_work_dir(dir.path(), &TaskSettings::default()).unwrap();
        assert_eq!(names(&files.async_), ["café-☕"]);
    }

    #[test]
    fn same_name_in_two_stages_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        touch(&dir.path().join("trc.d/boot.app"), "true\n", 0o644);
        touch(&dir.path().join("trc.d/async.app"), "true\n", 0o644);
        let files = scan_work_dir(dir.path(), &TaskSettings::default()).unwrap();
        assert_eq!(names(&files.boot), ["app"]);
        assert_eq!(names(&files.async_), ["app"]);
    }
}
