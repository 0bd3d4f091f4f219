//! Configuration: where tasks come from (the work-dir scan) and the `RC_*` settings.
//! Pure apart from reading directories and the first bytes of task files.

pub mod context;
mod deps;
mod directives;
pub mod probe;
mod scan;
mod settings;

pub use directives::{
    apply, header_directives, parse_duration, parse_forwardable, parse_header, parse_signal, read_directives,
    Directive, DirectiveError, Restart, StartLimit, TaskSettings, KEYS as DIRECTIVE_KEYS,
};
pub use scan::{escape_controls, scan_work_dir, RunMode, TaskFile, TaskFiles};
pub use settings::{log_style, Settings, WaitPolicy};

use std::fmt;
use std::path::PathBuf;

/// The four stages of a group, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    Boot,
    Async,
    Sync,
    Halt,
}

impl Stage {
    pub const ALL: [Stage; 4] = [Stage::Boot, Stage::Async, Stage::Sync, Stage::Halt];

    /// The word used in file names (`trc.d/async.web`) and in `TRC_STAGE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Boot => "boot",
            Stage::Async => "async",
            Stage::Sync => "sync",
            Stage::Halt => "halt",
        }
    }

    /// TrivialRC's "name space" shown in log lines: boot runs in the main shell there.
    pub fn ns(self) -> &'static str {
        match self {
            Stage::Boot => "main",
            other => other.as_str(),
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A problem with the configuration, found before anything starts.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("work dir {}: {source}", path.display())]
    WorkDir { path: PathBuf, source: std::io::Error },
    #[error("{}: cannot read task file: {source}", path.display())]
    Unreadable { path: PathBuf, source: std::io::Error },
    #[error("{}: not a regular file (a task file must be a file; directories are ignored)", path.display())]
    NotAFile { path: PathBuf },
    #[error("{}: empty task name (nothing after \"{stage}.\")", path.display())]
    EmptyName { path: PathBuf, stage: Stage },
    /// `path` is shown escaped (`\n`, `\u{1b}`): the message must not break a line itself.
    #[error("{path}: bad task name \"{name}\": {problem}")]
    BadName { path: String, name: String, problem: &'static str },
    #[error("{}: {stage} task name \"{name}\" is already used by {}", second.display(), first.display())]
    DuplicateName { stage: Stage, name: String, first: PathBuf, second: PathBuf },
    #[error("{}: {stage} task name \"{name}\" is also the name of the command-line task {option}", path.display())]
    NameTakenByCommandLine { stage: Stage, name: String, path: PathBuf, option: String },
    #[error("{name}={value:?}: {problem}")]
    BadVariable { name: &'static str, value: String, problem: String },
    #[error("{}:{line}: {problem}", path.display())]
    Directive { path: PathBuf, line: usize, problem: String },
    #[error("{0}")]
    Variable(String),
}
