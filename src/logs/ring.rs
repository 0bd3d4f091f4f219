//! A bounded ring of a task's recent output lines, for `trcctl logs`, and the live followers of
//! it (`trcctl logs -f`).
//!
//! Lines are kept as bytes in one buffer (a tag byte for the stream, the line, a newline), so
//! keeping them costs a copy, not an allocation per line. The oldest lines make room for new
//! ones. A follower gets its lines through a bounded channel: one that reads too slowly loses
//! lines (and is told how many) rather than slowing trc down.

use crate::control::protocol::LogLine;
use std::collections::VecDeque;
use tokio::sync::mpsc;

/// Bytes of output kept per task: 64 MiB at most for 1,000 chatty tasks.
pub const RING_BYTES: usize = 64 * 1024;
/// Lines queued for one follower before it starts losing them.
const FOLLOW_QUEUE: usize = 4096;

/// What a follower receives.
#[derive(Debug, Clone, PartialEq)]
pub enum Followed {
    Line(LogLine),
    /// This many lines were skipped because the follower read too slowly.
    Dropped(u64),
}

struct Follower {
    tx: mpsc::Sender<Followed>,
    dropped: u64,
}

pub struct LogRing {
    bytes: VecDeque<u8>,
    capacity: usize,
    followers: Vec<Follower>,
}

impl Default for LogRing {
    fn default() -> Self {
        LogRing::with_capacity(RING_BYTES)
    }
}

impl LogRing {
    pub fn with_capacity(capacity: usize) -> LogRing {
        LogRing { bytes: VecDeque::new(), capacity, followers: Vec::new() }
    }

    /// Keeps one complete line (without its newline) of `stream` (`b'o'` stdout, `b'e'`
    /// stderr), and hands it to the followers.
    pub fn push(&mut self, stream: u8, line: &[u8]) {
        let need = line.len() + 2;
        if need > self.capacity {
            return;
        }
        while self.bytes.len() + need > self.capacity {
            self.drop_oldest();
        }
        self.bytes.push_back(stream);
        self.bytes.extend(line);
        self.bytes.push_back(b'\n');
        if !self.followers.is_empty() {
            let line = to_log_line(stream, line);
            self.followers.retain_mut(|f| f.offer(&line));
        }
    }

    fn drop_oldest(&mut self) {
        let (a, b) = self.bytes.as_slices();
        let end = match a.iter().position(|&c| c == b'\n') {
            Some(i) => i + 1,
            None => a.len() + b.iter().position(|&c| c == b'\n').map_or(b.len(), |i| i + 1),
        };
        self.bytes.drain(..end);
    }

    /// The last `n` lines, oldest first.
    pub fn recent(&self, n: usize) -> Vec<LogLine> {
        let bytes = self.bytes.iter().copied().collect::<Vec<u8>>();
        let mut lines: Vec<&[u8]> = bytes.split(|&c| c == b'\n').filter(|l| !l.is_empty()).collect();
        let skip = lines.len().saturating_sub(n);
        lines.drain(..skip);
        lines.into_iter().map(|l| to_log_line(l[0], &l[1..])).collect()
    }

    /// A new follower: every line pushed from now on.
    pub fn follow(&mut self) -> mpsc::Receiver<Followed> {
        let (tx, rx) = mpsc::channel(FOLLOW_QUEUE);
        self.followers.push(Follower { tx, dropped: 0 });
        rx
    }
}

impl Follower {
    /// Queues a line; false when the follower has gone away.
    fn offer(&mut self, line: &LogLine) -> bool {
        use mpsc::error::TrySendError;
        if self.dropped > 0 {
            match self.tx.try_send(Followed::Dropped(self.dropped)) {
                Ok(()) => self.dropped = 0,
                Err(TrySendError::Full(_)) => {
                    self.dropped += 1;
                    return true;
                }
                Err(TrySendError::Closed(_)) => return false,
            }
        }
        match self.tx.try_send(Followed::Line(line.clone())) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.dropped += 1;
                true
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }
}

fn to_log_line(stream: u8, line: &[u8]) -> LogLine {
    LogLine {
        stream: if stream == b'e' { "stderr" } else { "stdout" }.to_owned(),
        text: String::from_utf8_lossy(line).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(lines: Vec<LogLine>) -> Vec<String> {
        lines.into_iter().map(|l| format!("{}:{}", &l.stream[3..], l.text)).collect()
    }

    #[test]
    fn keeps_the_last_lines_within_its_bytes() {
        let mut ring = LogRing::with_capacity(20);
        ring.push(b'o', b"one");
        ring.push(b'e', b"two");
        assert_eq!(texts(ring.recent(10)), ["out:one", "err:two"]);
        assert_eq!(texts(ring.recent(1)), ["err:two"]);
        for line in [&b"three"[..], b"four", b"five"] {
            ring.push(b'o', line);
        }
        // 20 bytes hold "four" and "five" (6 + 6) and "three" (7), not more.
        assert_eq!(texts(ring.recent(10)), ["out:three", "out:four", "out:five"]);
        ring.push(b'o', b"");
        assert_eq!(texts(ring.recent(2)), ["out:five", "out:"]);
        // A line longer than the whole ring is not kept.
        ring.push(b'o', &[b'x'; 30]);
        assert_eq!(texts(ring.recent(2)), ["out:five", "out:"]);
    }

    #[test]
    fn followers_get_new_lines_and_a_count_of_lost_ones() {
        let mut ring = LogRing::default();
        let mut rx = ring.follow();
        for i in 0..FOLLOW_QUEUE + 10 {
            ring.push(b'o', i.to_string().as_bytes());
        }
        let mut got = Vec::new();
        while let Ok(item) = rx.try_recv() {
            got.push(item);
        }
        assert_eq!(got.len(), FOLLOW_QUEUE);
        ring.push(b'o', b"later");
        assert_eq!(rx.try_recv().unwrap(), Followed::Dropped(10));
        assert_eq!(
            rx.try_recv().unwrap(),
            Followed::Line(LogLine { stream: "stdout".into(), text: "later".into() })
        );
        drop(rx);
        ring.push(b'o', b"gone");
        assert!(ring.followers.is_empty());
    }
}
