//! The end of a log file, and following it as it grows: `logs` of the runit backend (svlogd's
//! `log/main/current`) and of the tmux backend (the `pipe-pane` copy of a window).
//!
//! Only complete lines are given out; a line still being written is given once its newline
//! arrives. Following notices a file replaced under the same name (svlogd rotates `current`
//! into `@<timestamp>.s` and starts a new `current`) and a file cut short, and reads the new
//! one from its start. It polls (every 200 ms): this runs in `trcctl`, not in the supervisor.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

/// How long following waits before looking at the file again.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// How much of the file's end is read at a time while looking for the last lines.
const CHUNK: u64 = 64 * 1024;

/// The last `count` complete lines of `path` (without their newlines), and the offset just
/// after the last of them, where following goes on. A missing file has no lines.
pub fn last_lines(path: &Path, count: usize) -> io::Result<(Vec<Vec<u8>>, u64)> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    // Read backwards until the tail holds `count` newlines before the last one (or the file
    // is read whole).
    let mut start = len;
    let mut tail: Vec<u8> = Vec::new();
    while start > 0 && tail.iter().filter(|&&b| b == b'\n').count() <= count {
        let from = start.saturating_sub(CHUNK);
        let mut chunk = vec![0; (start - from) as usize];
        file.seek(SeekFrom::Start(from))?;
        file.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&tail);
        tail = chunk;
        start = from;
    }
    // Drop a last line without its newline yet.
    let complete = tail.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let end = start + complete as u64;
    let mut lines: Vec<Vec<u8>> = tail[..complete].split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    lines.pop(); // the empty piece after the last newline
    if start > 0 && !lines.is_empty() && lines.len() > count {
        // The first piece may be the end of a longer line cut at the chunk boundary; it is
        // dropped whenever more than `count` lines are there anyway.
        lines.remove(0);
    }
    let skip = lines.len().saturating_sub(count);
    Ok((lines.split_off(skip), end))
}

/// Follows `path` from `offset`, giving every new complete line to `line`, until `line` fails
/// (the reader went away: `Ok`) or `keep_going` says the file's owner is gone.
pub fn follow(
    path: &Path,
    mut offset: u64,
    keep_going: &mut dyn FnMut() -> bool,
    line: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<()> {
    let mut file = open_at(path, offset)?;
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0; CHUNK as usize];
    loop {
        let n = match &mut file {
            Some((f, _)) => f.read(&mut buf)?,
            None => 0,
        };
        if n > 0 {
            offset += n as u64;
            pending.extend_from_slice(&buf[..n]);
            let complete = pending.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            let mut lines: Vec<&[u8]> = pending[..complete].split(|&b| b == b'\n').collect();
            lines.pop();
            for text in lines {
                if line(text).is_err() {
                    return Ok(());
                }
            }
            pending.drain(..complete);
            continue;
        }
        // At the end: has the file been replaced or cut short?
        match std::fs::metadata(path) {
            Ok(meta) => {
                let replaced = file.as_ref().is_none_or(|(_, ino)| *ino != (meta.dev(), meta.ino()));
                if replaced || meta.len() < offset {
                    // Whatever the old file still held was read above; start the new one.
                    offset = 0;
                    pending.clear();
                    file = open_at(path, 0)?;
                    continue;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if !keep_going() {
            return Ok(());
        }
        std::thread::sleep(FOLLOW_POLL);
    }
}

/// `path` opened at `offset` with its (device, inode); `None` while it does not exist.
fn open_at(path: &Path, offset: u64) -> io::Result<Option<(File, (u64, u64))>> {
    match File::open(path) {
        Ok(mut file) => {
            let meta = file.metadata()?;
            file.seek(SeekFrom::Start(offset.min(meta.len())))?;
            Ok(Some((file, (meta.dev(), meta.ino()))))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn text(lines: &[Vec<u8>]) -> Vec<String> {
        lines.iter().map(|l| String::from_utf8_lossy(l).into_owned()).collect()
    }

    #[test]
    fn last_lines_are_complete_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        assert_eq!(last_lines(&path, 5).unwrap(), (Vec::new(), 0));
        std::fs::write(&path, "one\ntwo\nthree\npart").unwrap();
        let (lines, end) = last_lines(&path, 2).unwrap();
        assert_eq!(text(&lines), ["two", "three"]);
        assert_eq!(end, 14);
        let (lines, _) = last_lines(&path, 10).unwrap();
        assert_eq!(text(&lines), ["one", "two", "three"]);
        assert!(last_lines(&path, 0).unwrap().0.is_empty());
    }

    #[test]
    fn last_lines_of_a_big_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut file = File::create(&path).unwrap();
        for i in 0..50_000 {
            writeln!(file, "line {i} {}", "x".repeat(i % 7)).unwrap();
        }
        let (lines, end) = last_lines(&path, 3).unwrap();
        assert_eq!(lines.len(), 3);
        assert!(lines[2].starts_with(b"line 49999 "), "{:?}", text(&lines));
        assert!(lines[0].starts_with(b"line 49997 "));
        assert_eq!(end, std::fs::metadata(&path).unwrap().len());
        let (lines, _) = last_lines(&path, 20_000).unwrap();
        assert_eq!(lines.len(), 20_000);
        assert!(lines[0].starts_with(b"line 30000 "));
    }

    #[test]
    fn follow_reads_on_across_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("current");
        std::fs::write(&path, "old\n").unwrap();
        let (_, end) = last_lines(&path, 10).unwrap();
        let append = |text: &str| {
            let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
            f.write_all(text.as_bytes()).unwrap();
        };
        append("new 1\nnew");
        let mut seen = Vec::new();
        follow(&path, end, &mut || true, &mut |l| {
            seen.push(String::from_utf8_lossy(l).into_owned());
            match seen.len() {
                // The rest of a line written in two pieces.
                1 => append(" 2\n"),
                // svlogd's rotation: `current` renamed away, a new one started.
                2 => {
                    std::fs::rename(&path, path.with_file_name("@rotated.s")).unwrap();
                    std::fs::write(&path, "after rotation\n").unwrap();
                }
                _ => return Err(io::Error::other("enough")),
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, ["new 1", "new 2", "after rotation"]);
    }
}
