//! Task output through named pipes. Each task gets two FIFOs in trc's runtime dir (stdout and
//! stderr, so the stream of every line stays known); its stdout FIFO's path is given to it as
//! `TRC_LOG_PIPE` so that its helpers can log through it too. trc opens each FIFO read-write:
//! holding a write end itself, it never sees end-of-file, so a restart of the task or a helper
//! closing its end never ends the stream.
//!
//! Lines are written as `name: line`; the complete lines of each read are queued as one buffer
//! on the writer's lane ([`super::writer`]), whose thread writes whole buffers, so lines of two
//! tasks never mix and a reader that stalls never stalls trc. While the lane is full the pump
//! stops reading its pipe, and the task feels the backpressure in its own writes. A partial
//! line waits for its end; it is flushed when its task exits, and after [`IDLE_FLUSH`] without
//! more data (so a prompt without a newline still shows). A line longer than [`MAX_LINE`] bytes
//! is split into pieces of that size. Bytes that are not UTF-8 pass through unchanged. With
//! `log-prefix: no` the bytes are copied as they come (in text without timestamps; otherwise
//! they are framed into lines all the same, without the name). The shape of a console line
//! (text, a time in front, a JSON object) is the run's [`Style`].

use super::format::{self, Stamp, Style, TaskKeys};
use super::journal::{split_priority, Journal, PRIORITY_INFO};
use super::writer::{self, Item, Lane};
use crate::control::ring::LogRing;
use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
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
    fn is_terminal(self) -> bool {
        use std::io::IsTerminal;
        match self {
            Output::Stdout => io::stdout().is_terminal(),
            Output::Stderr => io::stderr().is_terminal(),
        }
    }
}

/// Splits a byte stream into lines. Pure: the caller does the I/O.
#[derive(Debug, Clone, Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
    /// The last piece was cut at MAX_LINE: a newline right after it belongs to it.
    split_at_bound: bool,
}

impl LineSplitter {
    /// Whether a partial line is waiting for its end.
    pub fn has_partial(&self) -> bool {
        !self.partial.is_empty()
    }

    /// Takes `data` and calls `emit` with every complete line (without its newline); a line
    /// of [`MAX_LINE`] bytes without its end is emitted as it is.
    pub fn feed(&mut self, mut data: &[u8], emit: &mut impl FnMut(&[u8])) {
        while !data.is_empty() {
            let room = MAX_LINE - self.partial.len();
            let window = &data[..data.len().min(room)];
            match memchr_newline(window) {
                Some(0) if std::mem::take(&mut self.split_at_bound) => data = &data[1..],
                Some(end) => {
                    self.split_at_bound = false;
                    self.emit(&data[..end], emit);
                    data = &data[end + 1..];
                }
                None if window.len() == room => {
                    self.emit(window, emit);
                    data = &data[room..];
                    // The newline that ends exactly this piece ends it: no empty line after it.
                    self.split_at_bound = true;
                }
                None => {
                    self.split_at_bound = false;
                    self.partial.extend_from_slice(window);
                    data = &[];
                }
            }
        }
    }

    /// Emits a waiting partial line, as a line.
    pub fn flush(&mut self, emit: &mut impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            self.emit(&[], emit);
        }
    }

    fn emit(&mut self, tail: &[u8], emit: &mut impl FnMut(&[u8])) {
        if self.partial.is_empty() {
            emit(tail);
        } else {
            self.partial.extend_from_slice(tail);
            emit(&self.partial);
            self.partial.clear();
        }
    }
}

/// Whether `line` is already a TrivialRC-format log line (`YYYY-MM-DD HH:MM:SS name [ns/pid]: `),
/// as the integrated `log`, `warn` and `debug` functions of shell tasks write them: such a line
/// names its source already and is passed without the task's prefix (as in TrivialRC's
/// process-manager transcript).
pub fn is_log_line(line: &[u8]) -> bool {
    const SHAPE: &[u8] = b"dddd-dd-dd dd:dd:dd ";
    if line.len() < SHAPE.len() + 8 {
        return false;
    }
    let stamp = SHAPE.iter().zip(line).all(|(&s, &c)| if s == b'd' { c.is_ascii_digit() } else { s == c });
    if !stamp {
        return false;
    }
    let rest = &line[SHAPE.len()..];
    let Some(open) = rest.iter().position(|&b| b == b'[') else { return false };
    let Some(close) = rest[open..].windows(3).position(|w| w == b"]: ") else { return false };
    let inside = &rest[open + 1..open + close];
    open > 1 && rest[open - 1] == b' ' && inside.contains(&b'/')
}

fn memchr_newline(data: &[u8]) -> Option<usize> {
    data.iter().position(|&b| b == b'\n')
}

/// The prefix `name: `, coloured when `colour` (a stable colour per name). Control characters
/// in the name are escaped (`\n`, `\u{1b}`): the scan refuses such names, and a prefix must
/// never break the line framing or let one task pass for another whatever it is given.
pub fn prefix_for(name: &str, colour: bool) -> Vec<u8> {
    let name = crate::config::escape_controls(name);
    if !colour {
        return format!("{name}: ").into_bytes();
    }
    // FNV-1a, so a task keeps its colour from run to run.
    let hash = name.bytes().fold(0x811c9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x01000193));
    const COLOURS: [u8; 10] = [32, 33, 34, 35, 36, 92, 93, 94, 95, 96];
    let code = COLOURS[hash as usize % COLOURS.len()];
    format!("\x1b[{code}m{name}\x1b[0m: ").into_bytes()
}

/// Where a task's lines go, and the fields that describe them there.
pub struct LineSink {
    pub output: Output,
    /// `name: ` (coloured on a terminal) for the console; empty for a `log-prefix: no` task.
    pub prefix: Vec<u8>,
    /// `log-prefix: no`: bytes pass through untouched (console, text without timestamps) or
    /// lines without the prefix.
    pub raw: bool,
    /// The shape of console lines.
    pub style: Style,
    pub journal: Option<Arc<Journal>>,
    pub task: String,
    pub stage: &'static str,
    pub pid: Cell<i32>,
    /// The task's recent lines, for `trcctl logs`.
    pub ring: Option<Rc<RefCell<LogRing>>>,
    /// `ready: log REGEX`: lines are matched while its task is starting.
    pub watch: Option<Rc<crate::supervisor::probe::LogWatch>>,
}

impl LineSink {
    /// The queue this sink's lines go through.
    fn lane(&self) -> &Lane {
        match &self.journal {
            Some(journal) => journal.lane(),
            None => writer::console(self.output),
        }
    }

    fn stream_name(&self) -> &'static str {
        match self.output {
            Output::Stdout => "stdout",
            Output::Stderr => "stderr",
        }
    }

    /// Keeps a line in the task's ring of recent lines.
    fn keep(&self, line: &[u8]) {
        if let Some(watch) = &self.watch {
            watch.line(line);
        }
        if let Some(ring) = &self.ring {
            let tag = match self.output {
                Output::Stdout => b'o',
                Output::Stderr => b'e',
            };
            ring.borrow_mut().push(tag, line);
        }
    }

    /// Whether console bytes are copied as they come, not framed into lines.
    fn passthrough(&self) -> bool {
        self.raw && self.style == Style::default()
    }

    /// What the console lines of one read share: their time, and in JSON the start of their
    /// objects (made in `head`, a buffer kept by the stream).
    fn frame<'a>(&self, head: &'a mut Vec<u8>) -> Frame<'a> {
        let stamp = self.style.stamp();
        if !self.style.is_json() {
            return Frame::Text(stamp);
        }
        let keys =
            TaskKeys { task: &self.task, stage: self.stage, stream: self.stream_name(), pid: self.pid.get() };
        format::task_head(head, stamp.as_str(), keys);
        Frame::Json(head)
    }

    /// Appends one line to `out`: prefixed (unless it is a log line already), after the time
    /// when the style shows times, or as a JSON object.
    fn console_line(&self, line: &[u8], frame: &Frame<'_>, out: &mut Vec<u8>) {
        match frame {
            Frame::Json(head) => format::task_line(out, head, line),
            Frame::Text(stamp) => {
                if !is_log_line(line) {
                    if !stamp.is_empty() {
                        out.extend_from_slice(stamp.as_bytes());
                        out.push(b' ');
                    }
                    out.extend_from_slice(&self.prefix);
                }
                out.extend_from_slice(line);
                out.push(b'\n');
            }
        }
    }

    /// Sends one line to the journal as a record of its own.
    fn journal_line(&self, journal: &Journal, line: &[u8]) {
        let (priority, text) = split_priority(line);
        let priority = priority.unwrap_or(PRIORITY_INFO);
        let mut message = Vec::with_capacity(self.task.len() + 2 + text.len());
        if !self.raw && !is_log_line(text) {
            message.extend_from_slice(self.task.as_bytes());
            message.extend_from_slice(b": ");
        }
        message.extend_from_slice(text);
        let pid = self.pid.get().to_string();
        journal.send(&[
            ("MESSAGE", &message),
            ("PRIORITY", &[b'0' + priority]),
            ("SYSLOG_IDENTIFIER", b"trc"),
            ("TRC_TASK", self.task.as_bytes()),
            ("TRC_STAGE", self.stage.as_bytes()),
            ("TRC_STREAM", self.stream_name().as_bytes()),
            ("TRC_TASK_PID", pid.as_bytes()),
        ]);
    }
}

/// What the console lines of one read share ([`LineSink::frame`]).
enum Frame<'a> {
    /// The time in front of each line; empty when the style shows none.
    Text(Stamp),
    /// The start of each line's JSON object, up to its message.
    Json(&'a [u8]),
}

/// One FIFO of one task and the state of its line framing.
pub struct LogStream {
    path: PathBuf,
    rx: pipe::Receiver,
    sink: LineSink,
    splitter: RefCell<LineSplitter>,
    /// The start of the JSON objects of the current read, kept between reads.
    head: RefCell<Vec<u8>>,
}

impl LogStream {
    /// Makes the FIFO at `path` (mode 0600) and opens it read-write.
    pub fn create(path: PathBuf, mut sink: LineSink) -> io::Result<Rc<LogStream>> {
        let _ = std::fs::remove_file(&path);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).map_err(|e| {
            io::Error::new(io::Error::from(e).kind(), format!("{}: mkfifo: {e}", path.display()))
        })?;
        let rx = pipe::OpenOptions::new().read_write(true).open_receiver(&path)?;
        let colour = sink.journal.is_none()
            && !sink.style.is_json()
            && sink.output.is_terminal()
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        sink.prefix = if sink.raw { Vec::new() } else { prefix_for(&sink.task, colour) };
        Ok(Rc::new(LogStream {
            path,
            rx,
            sink,
            splitter: RefCell::new(LineSplitter::default()),
            head: RefCell::new(Vec::new()),
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pid named in journal records from now on.
    pub fn set_pid(&self, pid: i32) {
        self.sink.pid.set(pid);
    }

    /// A blocking write end for the task (fd 1 or 2 after the fork).
    pub fn writer(&self) -> io::Result<OwnedFd> {
        Ok(std::fs::OpenOptions::new().write(true).open(&self.path)?.into())
    }

    /// Reads what is in the pipe now, without waiting, until it is empty or `until` says
    /// stop, and queues its complete lines.
    ///
    /// This reads the fd itself (it is non-blocking) rather than through tokio's `try_read`,
    /// which trusts the reactor's cached readiness and would read nothing when the reactor has
    /// not polled since the data came: the drain at a task's exit must see every byte.
    fn read_available(&self, until: Until) -> Reading {
        // One read buffer for all streams (trc reads on one thread), kept between calls: a
        // fresh 64 KiB each time cost page faults on every task exit.
        thread_local! {
            static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        }
        let mut buf = BUFFER.with(|b| std::mem::take(&mut *b.borrow_mut()));
        buf.resize(READ_SIZE, 0);
        let reading = self.read_into(&mut buf, until);
        BUFFER.with(|b| *b.borrow_mut() = buf);
        reading
    }

    fn read_into(&self, buf: &mut [u8], until: Until) -> Reading {
        let lane = self.sink.lane();
        let mut out = Queued::new(lane);
        let mut reading = Reading { bytes: 0, emptied: false };
        loop {
            let want = match until {
                Until::Full if !lane.has_room() => break,
                Until::Full => buf.len(),
                Until::Read(limit) if reading.bytes >= limit => break,
                Until::Read(limit) => buf.len().min(limit - reading.bytes),
            };
            match nix::unistd::read(self.rx.as_fd(), &mut buf[..want]).map_err(io::Error::from) {
                // Never at end-of-file (trc holds a write end): only an empty read buffer.
                Ok(0) => {
                    reading.emptied = true;
                    break;
                }
                Ok(n) => {
                    reading.bytes += n;
                    self.take(&buf[..n], &mut out);
                    if out.data.len() >= READ_SIZE {
                        out.push(self.sink.output, lane);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    // EAGAIN: the pipe is empty (any other error ends this read the same way).
                    reading.emptied = true;
                    break;
                }
            }
        }
        out.finish(self.sink.output, lane);
        reading
    }

    /// Frames `data`: console lines are added to `out`, journal records are queued.
    fn take(&self, data: &[u8], out: &mut Queued) {
        let sink = &self.sink;
        let mut splitter = self.splitter.borrow_mut();
        match &sink.journal {
            Some(journal) => splitter.feed(data, &mut |line| {
                sink.keep(line);
                sink.journal_line(journal, line)
            }),
            None if sink.passthrough() => {
                out.data.extend_from_slice(data);
                out.lines += data.iter().filter(|&&b| b == b'\n').count();
                // Framed only for the ring: the console gets the bytes as they are.
                if sink.ring.is_some() {
                    splitter.feed(data, &mut |line| sink.keep(line));
                }
            }
            None => {
                // One time for the lines of one read: when trc read them.
                let mut head = self.head.borrow_mut();
                let frame = sink.frame(&mut head);
                splitter.feed(data, &mut |line| {
                    sink.keep(line);
                    sink.console_line(line, &frame, &mut out.data);
                    out.lines += 1;
                })
            }
        }
    }

    /// Queues everything the pipe holds now and a waiting partial line too: called when the
    /// task has exited, before its exit is reported. Never waits: the lines go in even when the
    /// lane is full. That is at most one pipe's capacity (64 KiB unless the task enlarged its
    /// pipe, up to `/proc/sys/fs/pipe-max-size`, 1 MiB by default) plus a partial line of up to
    /// [`MAX_LINE`] bytes, each line growing by its prefix: data that helpers of the task go on
    /// writing meanwhile is read by the pump later, not here.
    pub fn drain(&self) {
        self.read_available(Until::Read(self.pipe_capacity()));
        self.flush_partial();
    }

    /// How many bytes the pipe holds when it is full.
    fn pipe_capacity(&self) -> usize {
        nix::fcntl::fcntl(self.rx.as_fd(), nix::fcntl::FcntlArg::F_GETPIPE_SZ)
            .ok()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(READ_SIZE)
    }

    fn flush_partial(&self) {
        let sink = &self.sink;
        let lane = sink.lane();
        let mut out = Queued::new(lane);
        let mut splitter = self.splitter.borrow_mut();
        match &sink.journal {
            Some(journal) => splitter.flush(&mut |line| {
                sink.keep(line);
                sink.journal_line(journal, line)
            }),
            None if sink.passthrough() => splitter.flush(&mut |line| sink.keep(line)),
            None if splitter.has_partial() => {
                let mut head = self.head.borrow_mut();
                let frame = sink.frame(&mut head);
                splitter.flush(&mut |line| {
                    sink.keep(line);
                    sink.console_line(line, &frame, &mut out.data);
                    out.lines += 1;
                })
            }
            None => {}
        }
        drop(splitter);
        out.finish(sink.output, lane);
    }

    /// Copies lines from the pipe as they come, until trc ends. Runs as a local task.
    pub async fn pump(self: Rc<LogStream>) {
        let lane = self.sink.lane();
        loop {
            // Backpressure: the pipe is left alone while the writer is behind.
            lane.room().await;
            let waiting = self.splitter.borrow().has_partial();
            if waiting {
                tokio::select! {
                    // Data first: when trc was busy for a while, both may be ready at once.
                    biased;
                    ready = self.rx.readable() => if ready.is_err() { return },
                    () = tokio::time::sleep(IDLE_FLUSH) => {
                        // The rest of the line may have come while trc was busy elsewhere (the
                        // reactor has not looked yet): a line is cut only after a real pause.
                        let reading = self.read_available(Until::Full);
                        if reading.bytes == 0 && reading.emptied {
                            self.flush_partial();
                        }
                        continue;
                    }
                }
            } else if self.rx.readable().await.is_err() {
                return;
            }
            // Read until EAGAIN, then report WouldBlock so that tokio clears the readiness; a
            // read stopped by a full lane keeps it, as data is still waiting.
            let _ = self.rx.try_io(|| match self.read_available(Until::Full) {
                Reading { emptied: true, .. } => Err::<(), _>(io::ErrorKind::WouldBlock.into()),
                Reading { emptied: false, .. } => Ok(()),
            });
        }
    }
}

/// When a read of the pipe stops, besides an empty pipe.
#[derive(Debug, Clone, Copy)]
enum Until {
    /// When the lane is full (the pump).
    Full,
    /// After this many bytes (a drain: whatever the lane holds).
    Read(usize),
}

/// What a read of the pipe did.
#[derive(Debug, Clone, Copy)]
struct Reading {
    bytes: usize,
    /// It stopped because the pipe was empty.
    emptied: bool,
}

/// Console bytes being framed, before they are queued on the lane.
struct Queued {
    data: Vec<u8>,
    lines: usize,
}

impl Queued {
    fn new(lane: &Lane) -> Queued {
        Queued { data: lane.buffer(), lines: 0 }
    }

    /// Queues what has been framed so far and starts a new buffer.
    fn push(&mut self, to: Output, lane: &Lane) {
        let data = std::mem::replace(&mut self.data, lane.buffer());
        lane.push(Item::Console { to, data, lines: std::mem::take(&mut self.lines) });
    }

    /// Queues what is left, or gives the buffer back.
    fn finish(mut self, to: Output, lane: &Lane) {
        if self.data.is_empty() {
            lane.give_back(self.data);
        } else {
            let data = std::mem::take(&mut self.data);
            lane.push(Item::Console { to, data, lines: self.lines });
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

    fn lines(p: &mut LineSplitter, chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        for c in chunks {
            p.feed(c, &mut |l| got.push(l.to_vec()));
        }
        got
    }

    #[test]
    fn whole_lines_across_reads() {
        let mut p = LineSplitter::default();
        assert_eq!(lines(&mut p, &[b"one\ntw", b"o\nthr", b"ee"]), [b"one".to_vec(), b"two".to_vec()]);
        let mut got = Vec::new();
        p.flush(&mut |l| got.push(l.to_vec()));
        assert_eq!(got, [b"three".to_vec()]);
        p.flush(&mut |_| panic!("nothing more to flush"));
    }

    #[test]
    fn empty_lines_and_binary_bytes_pass() {
        let mut p = LineSplitter::default();
        assert_eq!(lines(&mut p, &[b"\n\xff\xfe\x00bin\n"]), [b"".to_vec(), b"\xff\xfe\x00bin".to_vec()]);
    }

    #[test]
    fn long_lines_are_split_at_the_bound() {
        let mut p = LineSplitter::default();
        let mut data = vec![b'a'; MAX_LINE * 2 + 10];
        data.push(b'\n');
        let got = lines(&mut p, &[&data[..1000], &data[1000..]]);
        let lens: Vec<usize> = got.iter().map(Vec::len).collect();
        assert_eq!(lens, [MAX_LINE, MAX_LINE, 10]);
        // A line of exactly MAX_LINE bytes is one line, with no empty line after it.
        let mut exact = vec![b'b'; MAX_LINE];
        exact.extend_from_slice(b"\nnext\n");
        let got = lines(&mut p, &[&exact]);
        let lens: Vec<usize> = got.iter().map(Vec::len).collect();
        assert_eq!(lens, [MAX_LINE, 4]);
        assert!(!p.has_partial());
    }

    #[test]
    fn trivialrc_log_lines_are_recognised() {
        assert!(is_log_line(b"2026-11-24 06:58:41 trc [sync/5572]: Launching"));
        assert!(is_log_line(b"2026-11-24 06:58:41 trc [async/1]:  - dbg"));
        assert!(!is_log_line(b"2026-11-24 06:58:41 plain text"));
        assert!(!is_log_line(b"2026-11-24 06:58:41 [x]: no slash"));
        assert!(!is_log_line(b"hello"));
    }

    fn sink(style: Style, raw: bool) -> LineSink {
        LineSink {
            output: Output::Stderr,
            prefix: if raw { Vec::new() } else { prefix_for("web", false) },
            raw,
            style,
            journal: None,
            task: "web".to_owned(),
            stage: "async",
            pid: Cell::new(4242),
            ring: None,
            watch: None,
        }
    }

    const LOG_LINE: &[u8] = b"2026-11-24 06:58:41 trc [async/7]: said by log";

    #[test]
    fn text_lines_get_the_prefix_and_the_time_when_asked() {
        let stamp = Stamp::at(
            std::time::UNIX_EPOCH + Duration::new(1_796_625_001, 123_000_000),
            format::Precision::Millis,
        );
        let mut out = Vec::new();
        let plain = sink(Style::default(), false);
        let mut head = Vec::new();
        let frame = plain.frame(&mut head);
        assert!(matches!(&frame, Frame::Text(s) if s.is_empty()));
        plain.console_line(b"one", &frame, &mut out);
        plain.console_line(LOG_LINE, &frame, &mut out);
        let timed = sink(Style { timestamps: true, ..Style::default() }, false);
        assert!(matches!(timed.frame(&mut Vec::new()), Frame::Text(s) if s.as_bytes().len() == 24));
        timed.console_line(b"two", &Frame::Text(stamp), &mut out);
        timed.console_line(LOG_LINE, &Frame::Text(stamp), &mut out);
        // log-prefix: no, with times: framed, without the name.
        let raw = sink(Style { timestamps: true, ..Style::default() }, true);
        assert!(!raw.passthrough() && sink(Style::default(), true).passthrough());
        raw.console_line(b"three", &Frame::Text(stamp), &mut out);
        let want = [
            &b"web: one\n"[..],
            LOG_LINE,
            b"\n2026-12-07T06:30:01.123Z web: two\n",
            LOG_LINE,
            b"\n2026-12-07T06:30:01.123Z three\n",
        ]
        .concat();
        assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(&want));
    }

    #[test]
    fn json_lines_are_objects_with_the_task_keys() {
        let json = Style { format: format::LogFormat::Json, timestamps: false };
        for raw in [false, true] {
            let sink = sink(json, raw);
            assert!(!sink.passthrough());
            let mut head = Vec::new();
            let frame = sink.frame(&mut head);
            let mut out = Vec::new();
            sink.console_line(b"web: not a prefix \xff", &frame, &mut out);
            sink.console_line(LOG_LINE, &frame, &mut out);
            let lines: Vec<serde_json::Value> = out
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| serde_json::from_slice(l).unwrap())
                .collect();
            assert_eq!(lines.len(), 2);
            for line in &lines {
                assert_eq!(line["time"], lines[0]["time"], "one time per read");
                assert_eq!(line["time"].as_str().unwrap().len(), "2026-12-07T06:30:01.123456Z".len());
                assert_eq!(line["task"], "web");
                assert_eq!(line["stage"], "async");
                assert_eq!(line["stream"], "stderr");
                assert_eq!(line["pid"], 4242);
            }
            assert_eq!(lines[0]["message"], "web: not a prefix \u{fffd}");
            assert_eq!(lines[0]["message_base64"], format::base64(b"web: not a prefix \xff"));
            assert_eq!(lines[1]["message"], std::str::from_utf8(LOG_LINE).unwrap());
        }
    }

    #[test]
    fn colours_are_stable_and_optional() {
        assert_eq!(prefix_for("web", false), b"web: ");
        assert_eq!(prefix_for("x\nweb", false), b"x\\nweb: ");
        assert_eq!(prefix_for("a\tb\x1b[2J\u{9b}", false), b"a\\tb\\u{1b}[2J\\u{9b}: ".to_vec());
        let c = prefix_for("x\nweb", true);
        assert!(!c.contains(&b'\n') && c.ends_with(b"x\\nweb\x1b[0m: "), "{c:?}");
        let c = prefix_for("web", true);
        assert!(c.starts_with(b"\x1b[") && c.ends_with(b"web\x1b[0m: "));
        assert_eq!(c, prefix_for("web", true));
    }
}
