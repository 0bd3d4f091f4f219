//! A writer of journald's native protocol (systemd's `JOURNAL_NATIVE_PROTOCOL`): one datagram
//! per record, `KEY=value\n` fields, or `KEY\n<u64 LE length><value>\n` for values that contain
//! a newline; a record too large for a datagram goes in a sealed memfd passed with SCM_RIGHTS.
//!
//! Why not tracing-journald: trc sends two kinds of records through one connection, its own
//! events and its tasks' lines, and a task line needs fields of its own (`TRC_TASK`,
//! `TRC_STAGE`, `TRC_STREAM`, `TRC_TASK_PID`, a priority from a `<N>` prefix) that a tracing
//! event does not carry; the protocol is small and documented.
//!
//! Records are sent by a writer thread ([`super::writer`]) on a non-blocking socket: a journald
//! that does not read never blocks trc. A record that finds journald's socket full waits for
//! room [`PATIENCE`] at most, then it is dropped and counted; journald is told the count once it
//! reads again, and trc's stderr at exit.

use super::pipe::Output;
use super::writer::{self, Item, Lane, Sink};
use std::io::{self, IoSlice, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Where journald listens for native records.
pub const SOCKET: &str = "/run/systemd/journal/socket";

/// syslog priorities.
pub const PRIORITY_ERR: u8 = 3;
pub const PRIORITY_WARNING: u8 = 4;
pub const PRIORITY_INFO: u8 = 6;
pub const PRIORITY_DEBUG: u8 = 7;

/// How long a record waits for room in journald's socket before it is dropped. Only the first
/// of a run of records that find the socket full waits: while journald does not read, the next
/// ones are dropped at once (and counted), until one gets through again.
pub const PATIENCE: Duration = Duration::from_secs(1);

/// A connection to journald. Records are queued for a writer thread ([`writer`]): sending
/// never blocks the caller.
pub struct Journal {
    lane: Arc<Lane>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Journal")
    }
}

impl Journal {
    /// Connects to journald's socket at `path` (normally [`SOCKET`]) and starts the thread that
    /// sends the records.
    pub fn connect(path: &Path) -> io::Result<Journal> {
        let socket = JournalSocket::connect(path)?;
        Ok(Journal { lane: Lane::start("trc-journal", Sink::Journal(socket)) })
    }

    /// Queues one record.
    pub fn send(&self, fields: &[(&str, &[u8])]) {
        self.lane.push(Item::Record { data: encode(fields), instead: None });
    }

    /// Queues one record; if journald turns out to be gone, `line` goes to `output` instead.
    pub fn send_or_write(&self, fields: &[(&str, &[u8])], output: Output, line: Vec<u8>) {
        self.lane.push(Item::Record { data: encode(fields), instead: Some((output, line)) });
    }

    /// The queue of the records, for backpressure.
    pub fn lane(&self) -> &Lane {
        &self.lane
    }
}

/// What became of a record.
pub(crate) enum Delivery {
    Sent,
    /// journald's socket stayed full: dropped, and counted.
    Dropped,
    /// The socket failed otherwise (journald is gone).
    Failed,
}

/// The sending end, owned by the writer thread. The socket is non-blocking: a full socket
/// is waited for with `poll`, [`PATIENCE`] at most.
pub(crate) struct JournalSocket {
    socket: UnixDatagram,
    path: PathBuf,
    /// The last record was dropped: the next ones do not wait for room.
    stalled: bool,
    /// Records dropped since journald was last told about them.
    unreported: u64,
}

impl JournalSocket {
    fn connect(path: &Path) -> io::Result<JournalSocket> {
        let socket = UnixDatagram::unbound()?;
        socket.connect(path)?;
        socket.set_nonblocking(true)?;
        Ok(JournalSocket { socket, path: path.to_owned(), stalled: false, unreported: 0 })
    }

    /// Sends one record, waiting for room in the socket [`PATIENCE`] at most.
    pub(crate) fn deliver(&mut self, record: &[u8]) -> Delivery {
        loop {
            match self.try_send(record) {
                Ok(()) => {
                    self.stalled = false;
                    self.report_drops();
                    return Delivery::Sent;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !self.stalled && writer::wait_writable(self.socket.as_fd(), Some(PATIENCE)) {
                        continue;
                    }
                    self.stalled = true;
                    self.unreported += 1;
                    return Delivery::Dropped;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Delivery::Failed,
            }
        }
    }

    /// Tells journald how many records it missed, once it reads again.
    fn report_drops(&mut self) {
        if self.unreported == 0 {
            return;
        }
        let message =
            format!("trc: {} records could not be sent to journald (its socket was full)", self.unreported);
        let record = encode(&[
            ("MESSAGE", message.as_bytes()),
            ("PRIORITY", &[b'0' + PRIORITY_WARNING]),
            ("SYSLOG_IDENTIFIER", b"trc"),
        ]);
        if self.try_send(&record).is_ok() {
            self.unreported = 0;
        }
    }

    /// Sends one record without waiting.
    fn try_send(&self, record: &[u8]) -> io::Result<()> {
        match self.socket.send(record) {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) || e.raw_os_error() == Some(libc::ENOBUFS) => {
                self.send_memfd(record)
            }
            Err(e) => Err(e),
        }
    }

    /// Sends a large record as a sealed memfd, as sd_journal_sendv does.
    fn send_memfd(&self, record: &[u8]) -> io::Result<()> {
        use nix::fcntl::{fcntl, FcntlArg, SealFlag};
        use nix::sys::memfd::{memfd_create, MFdFlags};
        use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};
        let fd = memfd_create("trc-journal", MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)?;
        let mut file = std::fs::File::from(fd);
        file.write_all(record)?;
        let seals =
            SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_WRITE | SealFlag::F_SEAL_SEAL;
        fcntl(&file, FcntlArg::F_ADD_SEALS(seals))?;
        let fds = [file.as_raw_fd()];
        let cmsg = [ControlMessage::ScmRights(&fds)];
        let addr = UnixAddr::new(&self.path)?;
        let iov: [IoSlice; 0] = [];
        sendmsg(self.socket.as_raw_fd(), &iov, &cmsg, MsgFlags::MSG_DONTWAIT, Some(&addr))?;
        Ok(())
    }
}

/// Serialises a record in the native protocol.
pub fn encode(fields: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::with_capacity(fields.iter().map(|(k, v)| k.len() + v.len() + 10).sum());
    for (key, value) in fields {
        out.extend_from_slice(key.as_bytes());
        if value.contains(&b'\n') {
            out.push(b'\n');
            out.extend_from_slice(&(value.len() as u64).to_le_bytes());
        } else {
            out.push(b'=');
        }
        out.extend_from_slice(value);
        out.push(b'\n');
    }
    out
}

/// Decodes a record of the native protocol (for tests, and the inverse of [`encode`]).
pub fn decode(mut data: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let mut fields = Vec::new();
    while !data.is_empty() {
        let end = data.iter().position(|&b| b == b'\n' || b == b'=')?;
        let key = String::from_utf8(data[..end].to_vec()).ok()?;
        if data[end] == b'=' {
            let rest = &data[end + 1..];
            let nl = rest.iter().position(|&b| b == b'\n')?;
            fields.push((key, rest[..nl].to_vec()));
            data = &rest[nl + 1..];
        } else {
            let rest = &data[end + 1..];
            let len = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?) as usize;
            let value = rest.get(8..8 + len)?.to_vec();
            fields.push((key, value));
            data = rest.get(8 + len + 1..)?;
        }
    }
    Some(fields)
}

/// Splits a `<N>` syslog priority prefix off a line, as systemd does for stream output.
pub fn split_priority(line: &[u8]) -> (Option<u8>, &[u8]) {
    match line {
        [b'<', n @ b'0'..=b'7', b'>', rest @ ..] => (Some(n - b'0'), rest),
        _ => (None, line),
    }
}

/// `text` with the syslog prefix `<priority>` on each of its lines (blank ones too), ending
/// with a newline: on a journal stream, journald takes the prefix off and files each line at
/// that priority (3: error), where the stream's default is 6 (info).
pub fn with_priority(priority: u8, text: &str) -> String {
    text.lines().map(|line| format!("<{priority}>{line}\n")).collect()
}

/// Whether trc's stderr is the journal stream systemd set up (`JOURNAL_STREAM=dev:ino`).
pub fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else { return false };
    let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else { return false };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else { return false };
    match std::fs::metadata("/proc/self/fd/2") {
        Ok(meta) => meta.dev() == dev && meta.ino() == ino,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_plain_and_binary_safe_fields() {
        let rec = encode(&[("MESSAGE", b"web: hello"), ("TRC_TASK", b"web"), ("X", b"a\nb")]);
        assert_eq!(&rec[..28], b"MESSAGE=web: hello\nTRC_TASK=");
        let fields = decode(&rec).unwrap();
        assert_eq!(fields[0], ("MESSAGE".to_owned(), b"web: hello".to_vec()));
        assert_eq!(fields[2], ("X".to_owned(), b"a\nb".to_vec()));
    }

    #[test]
    fn syslog_prefixes() {
        assert_eq!(split_priority(b"<3>boom"), (Some(3), &b"boom"[..]));
        assert_eq!(with_priority(3, "trc: boom\n"), "<3>trc: boom\n");
        assert_eq!(with_priority(3, "a\n\nb"), "<3>a\n<3>\n<3>b\n");
        assert_eq!(split_priority(b"<9>x"), (None, &b"<9>x"[..]));
        assert_eq!(split_priority(b"plain"), (None, &b"plain"[..]));
    }

    #[test]
    fn sends_small_and_large_records_to_a_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("socket");
        let server = UnixDatagram::bind(&path).unwrap();
        let journal = Journal::connect(&path).unwrap();
        journal.send(&[("MESSAGE", b"hi"), ("PRIORITY", b"6")]);
        let mut buf = vec![0u8; 4096];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(decode(&buf[..n]).unwrap()[0].1, b"hi");
        // Larger than the default datagram limit: goes through a memfd.
        let big = vec![b'x'; 4 * 1024 * 1024];
        journal.send(&[("MESSAGE", &big)]);
        let (fields, via_memfd) = recv_with_fd(&server);
        assert!(via_memfd);
        assert_eq!(fields[0].1.len(), big.len());
    }

    #[test]
    fn a_full_socket_drops_records_and_journald_is_told_how_many_later() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("socket");
        let server = UnixDatagram::bind(&path).unwrap();
        let mut socket = JournalSocket::connect(&path).unwrap();
        let record = |n: usize| encode(&[("MESSAGE", n.to_string().as_bytes())]);
        // The server reads nothing: its queue fills, then the first record that finds it full
        // waits PATIENCE and is dropped; the next ones are dropped at once.
        let mut sent = 0;
        let started = std::time::Instant::now();
        while matches!(socket.deliver(&record(sent)), Delivery::Sent) {
            sent += 1;
            assert!(sent < 100_000, "the socket never filled");
        }
        assert!(started.elapsed() >= PATIENCE);
        let again = std::time::Instant::now();
        for n in 1..=4 {
            assert!(matches!(socket.deliver(&record(sent + n)), Delivery::Dropped));
        }
        assert!(again.elapsed() < PATIENCE, "a stalled journal made records wait again");
        // journald reads again: the next record goes, and then the count of the lost ones.
        server.set_nonblocking(true).unwrap();
        let mut buf = vec![0u8; 4096];
        let mut got = 0;
        while server.recv(&mut buf).is_ok() {
            got += 1;
        }
        assert_eq!(got, sent);
        assert!(matches!(socket.deliver(&record(0)), Delivery::Sent));
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(decode(&buf[..n]).unwrap()[0].1, b"0");
        let n = server.recv(&mut buf).unwrap();
        let notice = decode(&buf[..n]).unwrap();
        assert_eq!(notice[0].1, b"trc: 5 records could not be sent to journald (its socket was full)");
        assert_eq!(notice[1], ("PRIORITY".to_owned(), b"4".to_vec()));
    }

    /// Receives a record, reading it from a passed memfd when there is one.
    pub fn recv_with_fd(server: &UnixDatagram) -> (Vec<(String, Vec<u8>)>, bool) {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        use std::io::Read;
        use std::os::fd::FromRawFd;
        let mut buf = vec![0u8; 256 * 1024];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(server.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty()).unwrap();
        let mut passed = None;
        for c in msg.cmsgs().unwrap() {
            if let ControlMessageOwned::ScmRights(fds) = c {
                passed = fds.first().copied();
            }
        }
        let n = msg.bytes;
        match passed {
            Some(fd) => {
                // SAFETY: the fd was just received with SCM_RIGHTS and is ours to own.
                let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
                // The offset is shared with the sender's end: read from the start, as journald does.
                std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0)).unwrap();
                let mut data = Vec::new();
                file.read_to_end(&mut data).unwrap();
                (decode(&data).unwrap(), true)
            }
            None => (decode(&buf[..n]).unwrap(), false),
        }
    }
}
