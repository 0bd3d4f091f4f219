//! A bounded ring of a task's recent output lines, for `trcctl logs`, and the live followers of
//! it (`trcctl logs -f`).
//!
//! Lines are kept as bytes in one buffer (a tag byte for the stream, the line, a newline), so
//! keeping them costs a copy, not an allocation per line. The oldest lines make room for new
//! ones; a line longer than a quarter of the ring is kept cut, with a marker saying how much.
//!
//! A follower has a queue of its own, bounded in bytes ([`FOLLOW_BYTES`]): one that reads too
//! slowly loses lines rather than slowing trc down or growing, and is told how many as soon as
//! it has read what was queued before them ([`Followed::Dropped`]), also when the task has gone
//! quiet since, and before its end. The ring only holds a weak reference to a follower's
//! queue: a follower that goes away frees its queue at once, and leaves a few bytes in the
//! ring until [`LogRing::prune_followers`] (which [`LogRing::follow`] and every line call).

use super::protocol::LogLine;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use tokio::sync::Notify;

/// Bytes of output kept per task: 64 MiB at most for 1,000 chatty tasks.
pub const RING_BYTES: usize = 64 * 1024;
/// Bytes one follower may have queued before it starts losing lines: a line counts its text
/// plus a fixed cost (64 bytes).
pub const FOLLOW_BYTES: usize = 256 * 1024;
/// What a queued line costs on top of its text (its `LogLine` and queue slot), so that a flood
/// of empty lines is bounded too.
const LINE_COST: usize = 64;
/// Room left for the marker of a cut line (` [... N bytes cut]`).
const MARKER_ROOM: usize = 40;

/// What a follower receives.
#[derive(Debug, Clone, PartialEq)]
pub enum Followed {
    Line(LogLine),
    /// This many lines were lost here because the follower read too slowly.
    Dropped(u64),
}

/// A follower's queue, shared by the ring (weakly) and the follower.
#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    /// Woken when something is queued or the ring goes away.
    ready: Notify,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Followed>,
    /// The cost of the lines in `items`.
    bytes: usize,
    /// Lines lost since the last one queued (not yet told).
    lost: u64,
    /// The ring is gone: nothing more will come.
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding it leaves a consistent queue: go on with it.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The ring's side of a follower.
struct Follower(Weak<Shared>);

/// A follower's side: the lines pushed since [`LogRing::follow`], and counts of lost ones.
pub struct Follow {
    shared: Arc<Shared>,
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
    /// stderr), and hands it to the followers. A line longer than a quarter of the ring is
    /// kept cut (followers get up to [`FOLLOW_BYTES`] of it).
    pub fn push(&mut self, stream: u8, line: &[u8]) {
        let kept = cut(line, self.capacity / 4);
        let need = kept.len() + 2;
        if need <= self.capacity {
            while self.bytes.len() + need > self.capacity {
                self.drop_oldest();
            }
            self.bytes.push_back(stream);
            self.bytes.extend(kept.iter());
            self.bytes.push_back(b'\n');
        }
        if !self.followers.is_empty() {
            let line = to_log_line(stream, &cut(line, FOLLOW_BYTES - LINE_COST));
            self.followers.retain(|f| f.offer(&line));
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

    /// A new follower: every line pushed from now on. Forgets the followers that have gone.
    pub fn follow(&mut self) -> Follow {
        self.prune_followers();
        let shared = Arc::new(Shared::default());
        self.followers.push(Follower(Arc::downgrade(&shared)));
        Follow { shared }
    }

    /// Forgets the followers that have gone away (their [`Follow`] was dropped). Cheap: the
    /// supervisor may call it on a timer, for a task that has gone quiet.
    pub fn prune_followers(&mut self) {
        self.followers.retain(|f| f.0.strong_count() > 0);
    }

    /// How many followers the ring knows of (gone ones included until pruned).
    pub fn followers(&self) -> usize {
        self.followers.len()
    }
}

impl Follower {
    /// Queues a line, or counts it lost when the queue is full; false when the follower has
    /// gone away.
    fn offer(&self, line: &LogLine) -> bool {
        let Some(shared) = self.0.upgrade() else { return false };
        let mut queue = shared.lock();
        let cost = cost(line);
        if queue.bytes + cost > FOLLOW_BYTES {
            queue.lost += 1;
            return true;
        }
        if queue.lost > 0 {
            let lost = std::mem::take(&mut queue.lost);
            queue.items.push_back(Followed::Dropped(lost));
        }
        queue.items.push_back(Followed::Line(line.clone()));
        queue.bytes += cost;
        drop(queue);
        shared.ready.notify_one();
        true
    }
}

impl Drop for Follower {
    /// The ring is gone (or forgets this follower): the follower ends once it has read all.
    fn drop(&mut self) {
        if let Some(shared) = self.0.upgrade() {
            shared.lock().closed = true;
            shared.ready.notify_one();
        }
    }
}

impl Follow {
    /// The next line, or the count of lines lost before the next one; `None` once the ring is
    /// gone and everything has been received. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Followed> {
        loop {
            if let Some(next) = self.try_recv() {
                return next;
            }
            self.shared.ready.notified().await;
        }
    }

    /// What [`Follow::recv`] would give now: `None` when it would wait, `Some(None)` at the end.
    pub fn try_recv(&mut self) -> Option<Option<Followed>> {
        let mut queue = self.shared.lock();
        if let Some(item) = queue.items.pop_front() {
            if let Followed::Line(line) = &item {
                queue.bytes -= cost(line);
            }
            return Some(Some(item));
        }
        // Everything queued has been read: the lines lost after it can be told now.
        if queue.lost > 0 {
            return Some(Some(Followed::Dropped(std::mem::take(&mut queue.lost))));
        }
        queue.closed.then_some(None)
    }
}

fn cost(line: &LogLine) -> usize {
    line.text.len() + LINE_COST
}

/// `line`, or its first bytes and a marker saying how many were cut when it is longer than
/// `max` (cut at a UTF-8 character's start; marker included, so the result fits in `max`).
fn cut(line: &[u8], max: usize) -> std::borrow::Cow<'_, [u8]> {
    if line.len() <= max {
        return line.into();
    }
    let mut keep = max.saturating_sub(MARKER_ROOM);
    while keep > 0 && line[keep] & 0xc0 == 0x80 {
        keep -= 1;
    }
    let mut kept = line[..keep].to_vec();
    kept.extend_from_slice(format!(" [... {} bytes cut]", line.len() - keep).as_bytes());
    kept.into()
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

    fn line(text: &str) -> Followed {
        Followed::Line(LogLine { stream: "stdout".into(), text: text.into() })
    }

    /// Everything the follower has now, and whether it has ended.
    fn drain(rx: &mut Follow) -> (Vec<Followed>, bool) {
        let mut got = Vec::new();
        loop {
            match rx.try_recv() {
                Some(Some(item)) => got.push(item),
                Some(None) => return (got, true),
                None => return (got, false),
            }
        }
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
        // A line that cannot be kept even cut (this ring is too small for the marker) is not.
        ring.push(b'o', &[b'x'; 30]);
        assert_eq!(texts(ring.recent(2)), ["out:five", "out:"]);
    }

    #[test]
    fn a_long_line_is_kept_cut_with_a_marker() {
        let mut ring = LogRing::default();
        ring.push(b'o', b"before");
        let mut long = vec![b'a'; 64 * 1024 + 5];
        let kept = RING_BYTES / 4 - MARKER_ROOM - 1;
        long[kept] = 0xc3; // a two-byte character across the cut
        long[kept + 1] = 0xa9;
        ring.push(b'o', &long);
        ring.push(b'e', b"after");
        let lines = ring.recent(10);
        assert_eq!(lines.len(), 3, "{:?}", texts(lines.clone()));
        let text = &lines[1].text;
        assert!(text.len() <= RING_BYTES / 4, "{}", text.len());
        assert_eq!(&text[..kept], "a".repeat(kept));
        assert_eq!(&text[kept..], format!(" [... {} bytes cut]", long.len() - kept));
        assert_eq!(lines[2].text, "after");
    }

    #[test]
    fn followers_get_new_lines_and_a_count_of_lost_ones() {
        let mut ring = LogRing::default();
        let mut rx = ring.follow();
        let fits = FOLLOW_BYTES / (LINE_COST + 4);
        for i in 0..fits + 10 {
            ring.push(b'o', format!("{i:04}").as_bytes());
        }
        // What was queued, then at once (the task has gone quiet) the count of lost lines.
        let (got, ended) = drain(&mut rx);
        assert!(!ended);
        assert_eq!(got.len(), fits + 1);
        assert_eq!(got[fits - 1], line(&format!("{:04}", fits - 1)));
        assert_eq!(got[fits], Followed::Dropped(10));
        ring.push(b'o', b"later");
        assert_eq!(drain(&mut rx), (vec![line("later")], false));
        drop(rx);
        ring.push(b'o', b"gone");
        assert_eq!(ring.followers(), 0);
    }

    #[test]
    fn lost_lines_are_told_before_the_next_line_and_before_the_end() {
        let mut ring = LogRing::default();
        let mut rx = ring.follow();
        let fits = FOLLOW_BYTES / (LINE_COST + 4);
        for i in 0..fits + 3 {
            ring.push(b'o', format!("{i:04}").as_bytes());
        }
        // One read makes room: the next line comes after the count of those lost before it.
        assert_eq!(rx.try_recv(), Some(Some(line("0000"))));
        ring.push(b'o', b"next");
        ring.push(b'o', b"lost");
        let (got, _) = drain(&mut rx);
        assert_eq!(got[got.len() - 3..], [Followed::Dropped(3), line("next"), Followed::Dropped(1)]);
        // Lost lines are told before the end, when the ring goes away.
        for i in 0..fits + 2 {
            ring.push(b'o', format!("{i:04}").as_bytes());
        }
        drop(ring);
        let (got, ended) = drain(&mut rx);
        assert!(ended);
        assert_eq!(got.last(), Some(&Followed::Dropped(2)));
        assert_eq!(got.len(), fits + 1);
    }

    #[test]
    fn the_queue_is_bounded_in_bytes() {
        let mut ring = LogRing::default();
        let mut rx = ring.follow();
        let big = vec![b'x'; 60 * 1024];
        for _ in 0..100 {
            ring.push(b'o', &big);
        }
        let (got, _) = drain(&mut rx);
        let queued: usize = got.iter().map(|f| if let Followed::Line(l) = f { cost(l) } else { 0 }).sum();
        assert!(queued <= FOLLOW_BYTES, "{queued}");
        assert_eq!(got.last(), Some(&Followed::Dropped(100 - (got.len() as u64 - 1))));
        // A line too long for the whole queue comes cut.
        ring.push(b'o', &vec![b'y'; FOLLOW_BYTES * 2]);
        let (got, _) = drain(&mut rx);
        let Followed::Line(l) = &got[0] else { panic!("{got:?}") };
        assert!(cost(l) <= FOLLOW_BYTES && l.text.ends_with(" bytes cut]"), "{}", l.text.len());
    }

    #[test]
    fn gone_followers_are_pruned_without_a_new_line() {
        let mut ring = LogRing::default();
        let keep = ring.follow();
        for _ in 0..1000 {
            drop(ring.follow());
        }
        // Each follow() forgets the ones gone before it.
        assert_eq!(ring.followers(), 2);
        let gone = ring.follow();
        drop(gone);
        ring.prune_followers();
        assert_eq!(ring.followers(), 1);
        drop(keep);
        ring.prune_followers();
        assert_eq!(ring.followers(), 0);
    }

    #[test]
    fn recv_waits_for_a_line_and_ends_with_the_ring() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let mut ring = LogRing::default();
            let mut rx = ring.follow();
            let waiting = tokio::spawn(async move {
                let first = rx.recv().await;
                let end = rx.recv().await;
                (first, end)
            });
            tokio::task::yield_now().await;
            ring.push(b'o', b"hello");
            drop(ring);
            let (first, end) = waiting.await.unwrap();
            assert_eq!(first, Some(line("hello")));
            assert_eq!(end, None);
        });
    }
}
