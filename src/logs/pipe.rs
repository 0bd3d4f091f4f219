//! Task output through named pipes. Each task gets two FIFOs in trc's runtime dir (stdout and
//! stderr, so the stream of every line stays known); its stdout FIFO's path is given to it as
//! `TRC_LOG_PIPE` so that its helpers can log through it too. trc opens each FIFO read-write:
//! holding a write end itself, it never sees end-of-file, so a restart of the task or a helper
//! closing its end never ends the stream.
//!
//! Lines are written as `name: line`, each read's complete lines with one write, so lines of two
//! tasks never mix. A partial line waits for its end; it is flushed when its task exits, and
//! after [`IDLE_FLUSH`] without more data (so a prompt without a newline still shows). A line
//! longer than [`MAX_LINE`] bytes is split into pieces of that size. Bytes that are not UTF-8
//! pass through unchanged. With `log-prefix: no` the bytes are copied as they come.

use std::cell::RefCell;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;
use tokio::net::unix::pipe;

/// The longest line written in one piece; longer lines are split at this many bytes.
pub const MAX_LINE: usize = 64 * 1024;
/// How long a partial line waits for its end before it is written anyway.
pub const IDLE_FLUSH: Duration = Duration::from_millis(250);
/// How much is read from a pipe at once.
const READ_SIZE: usize = 64 * 1024;

/// Which of trc's outputs a stream goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Stdout,
    Stderr,
}

impl Output {
    fn write_all(self, bytes: &[u8]) {
        // A closed or broken output must not stop the supervisor: errors are dropped.
        let _ = match self {
            Output::Stdout => io::stdout().lock().write_all(bytes),
            Output::Stderr => io::stderr().lock().write_all(bytes),
        };
    }

    fn is_terminal(self) -> bool {
        use std::io::IsTerminal;
        match self {
            Output::Stdout => io::stdout().is_terminal(),
            Output::Stderr => io::stderr().is_terminal(),
        }
    }
}

/// Splits a byte stream into lines and prefixes each one. Pure: the caller does the I/O.
#[derive(Debug, Clone)]
pub struct Prefixer {
    prefix: Vec<u8>,
    /// `log-prefix: no`: pass bytes through as they come.
    raw: bool,
    partial: Vec<u8>,
}

impl Prefixer {
    pub fn new(prefix: Vec<u8>, raw: bool) -> Prefixer {
        Prefixer { prefix, raw, partial: Vec::new() }
    }

    /// The prefix `name: `, coloured when `colour` (a stable colour per name).
    pub fn prefix_for(name: &str, colour: bool) -> Vec<u8> {
        if !colour {
            return format!("{name}: ").into_bytes();
        }
        // FNV-1a, so a task keeps its colour from run to run.
        let hash = name.bytes().fold(0x811c9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x01000193));
        const COLOURS: [u8; 10] = [32, 33, 34, 35, 36, 92, 93, 94, 95, 96];
        let code = COLOURS[hash as usize % COLOURS.len()];
        format!("\x1b[{code}m{name}\x1b[0m: ").into_bytes()
    }

    /// Whether a partial line is waiting for its end.
    pub fn has_partial(&self) -> bool {
        !self.partial.is_empty()
    }

    /// Takes `data` and appends every complete line, prefixed, to `out`.
    pub fn feed(&mut self, mut data: &[u8], out: &mut Vec<u8>) {
        if self.raw {
            out.extend_from_slice(data);
            return;
        }
        while !data.is_empty() {
            let room = MAX_LINE - self.partial.len();
            let window = &data[..data.len().min(room)];
            match window.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    self.emit(&data[..end], out);
                    data = &data[end + 1..];
                }
                None if window.len() == room => {
                    // A line of MAX_LINE bytes without its end: write this piece as a line.
                    self.emit(window, out);
                    data = &data[room..];
                }
                None => {
                    self.partial.extend_from_slice(window);
                    data = &[];
                }
            }
        }
    }

    /// Writes a waiting partial line, as a line.
    pub fn flush(&mut self, out: &mut Vec<u8>) {
        if !self.partial.is_empty() {
            self.emit(&[], out);
        }
    }

    fn emit(&mut self, tail: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(&self.partial);
        out.extend_from_slice(tail);
        out.push(b'\n');
        self.partial.clear();
    }
}

/// One FIFO of one task and the state of its line framing.
pub struct LogStream {
    path: PathBuf,
    rx: pipe::Receiver,
    output: Output,
    prefixer: RefCell<Prefixer>,
}

impl LogStream {
    /// Makes the FIFO at `path` (mode 0600) and opens it read-write.
    pub fn create(path: PathBuf, name: &str, output: Output, raw: bool) -> io::Result<Rc<LogStream>> {
        let _ = std::fs::remove_file(&path);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).map_err(|e| {
            io::Error::new(io::Error::from(e).kind(), format!("{}: mkfifo: {e}", path.display()))
        })?;
        let rx = pipe::OpenOptions::new().read_write(true).open_receiver(&path)?;
        let colour = output.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        let prefixer = Prefixer::new(Prefixer::prefix_for(name, colour), raw);
        Ok(Rc::new(LogStream { path, rx, output, prefixer: RefCell::new(prefixer) }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A blocking write end for the task (fd 1 or 2 after the fork).
    pub fn writer(&self) -> io::Result<OwnedFd> {
        Ok(std::fs::OpenOptions::new().write(true).open(&self.path)?.into())
    }

    /// Reads what is in the pipe now, without waiting, and writes its complete lines.
    /// Returns how many bytes were read.
    pub fn read_available(&self) -> usize {
        let mut buf = vec![0u8; READ_SIZE];
        let mut out = Vec::new();
        let mut total = 0;
        loop {
            match self.rx.try_read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    total += n;
                    self.prefixer.borrow_mut().feed(&buf[..n], &mut out);
                    if out.len() >= READ_SIZE {
                        self.output.write_all(&out);
                        out.clear();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        if !out.is_empty() {
            self.output.write_all(&out);
        }
        total
    }

    /// Reads everything the pipe holds and writes a waiting partial line too: called when the
    /// task has exited, before its exit is reported.
    pub fn drain(&self) {
        self.read_available();
        self.flush_partial();
    }

    fn flush_partial(&self) {
        let mut out = Vec::new();
        self.prefixer.borrow_mut().flush(&mut out);
        if !out.is_empty() {
            self.output.write_all(&out);
        }
    }

    /// Copies lines from the pipe as they come, until trc ends. Runs as a local task.
    pub async fn pump(self: Rc<LogStream>) {
        loop {
            let waiting = self.prefixer.borrow().has_partial();
            if waiting {
                tokio::select! {
                    ready = self.rx.readable() => if ready.is_err() { return },
                    () = tokio::time::sleep(IDLE_FLUSH) => {
                        self.flush_partial();
                        continue;
                    }
                }
            } else if self.rx.readable().await.is_err() {
                return;
            }
            self.read_available();
        }
    }
}

impl AsFd for LogStream {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.rx.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(p: &mut Prefixer, chunks: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, &mut out);
        }
        out
    }

    #[test]
    fn prefixes_whole_lines_across_reads() {
        let mut p = Prefixer::new(b"web: ".to_vec(), false);
        let out = run(&mut p, &[b"one\ntw", b"o\nthr", b"ee"]);
        assert_eq!(out, b"web: one\nweb: two\n");
        let mut out = Vec::new();
        p.flush(&mut out);
        assert_eq!(out, b"web: three\n");
        p.flush(&mut out);
        assert_eq!(out, b"web: three\n", "nothing more to flush");
    }

    #[test]
    fn empty_lines_and_binary_bytes_pass() {
        let mut p = Prefixer::new(b"x: ".to_vec(), false);
        let out = run(&mut p, &[b"\n\xff\xfe\x00bin\n"]);
        assert_eq!(out, b"x: \nx: \xff\xfe\x00bin\n");
    }

    #[test]
    fn long_lines_are_split_at_the_bound() {
        let mut p = Prefixer::new(b"x: ".to_vec(), false);
        let line = vec![b'a'; MAX_LINE * 2 + 10];
        let mut data = line.clone();
        data.push(b'\n');
        let out = run(&mut p, &[&data[..1000], &data[1000..]]);
        let lines: Vec<&[u8]> = out.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].len(), 3 + MAX_LINE);
        assert_eq!(lines[2].len(), 3 + 10);
        assert!(!p.has_partial());
    }

    #[test]
    fn raw_passes_bytes_as_they_come() {
        let mut p = Prefixer::new(b"x: ".to_vec(), true);
        assert_eq!(run(&mut p, &[b"a\nb", b"c"]), b"a\nbc");
    }

    #[test]
    fn colours_are_stable_and_optional() {
        assert_eq!(Prefixer::prefix_for("web", false), b"web: ");
        let c = Prefixer::prefix_for("web", true);
        assert!(c.starts_with(b"\x1b[") && c.ends_with(b"web\x1b[0m: "));
        assert_eq!(c, Prefixer::prefix_for("web", true));
    }
}
