//! `trc`: parse the command line and hand over to the supervisor.

use std::ffi::OsString;
use std::io::Write;
use trc::cli::CommandLine;
use trc::logs::{writer, Console};
use trc::supervisor::{self, Setup};

fn main() {
    open_missing_stdio();
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| OsString::from("trc"));
    let cli = CommandLine::parse_args(args).unwrap_or_else(|e| exit_on(e));
    let self_name = self_name(&arg0);
    let console = Console::new(&self_name, std::process::id());
    console.install();
    std::panic::set_hook(Box::new(|info| {
        tracing::error!("internal error (a bug in trc, please report it): {info}");
    }));
    let status = std::panic::catch_unwind(move || supervisor::run(Setup { cli, console, arg0, self_name }))
        .unwrap_or(70);
    // Output is written by threads of its own: give them a moment to finish, not longer (a
    // reader that stopped reading must not keep trc from exiting). What they could not write is
    // lost; there is no one left to tell.
    let _unwritten = writer::finish(writer::EXIT_GRACE);
    std::process::exit(status);
}

/// Help and version (0, on stdout) as clap prints them; a usage error (2, on stderr) too,
/// except when stderr is the journal (trc as a systemd service): then each line goes out at
/// priority 3 (the syslog prefix `<3>`), as a configuration error (78) does, so that
/// `journalctl -u trc@NAME -p err` says why the unit failed.
fn exit_on(e: clap::Error) -> ! {
    if e.use_stderr() && trc::logs::journal::stderr_is_journal() {
        // Rendered without styles (clap's Display), so no colour codes reach the journal.
        let text = trc::logs::journal::with_priority(3, &e.render().to_string());
        let mut stderr = std::io::stderr().lock();
        let _ = stderr.write_all(text.as_bytes());
        let _ = stderr.flush();
        std::process::exit(e.exit_code());
    }
    e.exit()
}

/// TrivialRC's `SELF_NAME`: `basename $0 .sh`.
fn self_name(arg0: &OsString) -> String {
    let name = std::path::Path::new(arg0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "trc".to_owned());
    name.strip_suffix(".sh").map(str::to_owned).unwrap_or(name)
}

/// A supervisor started with fd 0, 1 or 2 closed would hand that number out for its own files,
/// and a task would then write into them: such fds are opened on /dev/null first.
fn open_missing_stdio() {
    for fd in 0..3 {
        // SAFETY: F_GETFD only reads the fd's flags; a closed fd makes it fail with EBADF.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            // The lowest free fd is `fd` itself; it stays open for the life of trc.
            if let Ok(file) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
                std::mem::forget(file);
            }
        }
    }
}
