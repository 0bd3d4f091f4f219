//! How console lines look: `--log-format text|json` (`RC_LOG_FORMAT`) and `--log-timestamps`
//! (`RC_LOG_TIMESTAMPS=true`). Chosen once, at start, for the whole run; journald records do
//! not depend on it.
//!
//! - text: `name: line` for task lines; with timestamps `2026-12-07T06:30:01.123Z name: line`
//!   (RFC 3339, UTC, milliseconds). Lines in TrivialRC's log format (trc's own, and those of
//!   the `log` function of shell tasks) carry a time already and are left as they are.
//! - json: one object per line. A task line:
//!   `{"time":"2026-12-07T06:30:01.123456Z","task":"web","stage":"async","stream":"stdout","pid":42,"message":"..."}`;
//!   trc's own: `{"time":...,"level":"info","task":...,"stage":...,"pid":...,"message":"..."}`
//!   (`task`, `stage`, `pid` only when the record is about one task). A line that is not
//!   UTF-8 has its invalid bytes replaced by U+FFFD in `message` and the original bytes, in
//!   standard base64 with padding, in `message_base64` (only then).
//!
//! Times are UTC, taken once per read of a task's pipe (the lines of one read get the same
//! time: when trc read them), formatted without allocating.

use serde::Serialize;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// The shape of console lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl LogFormat {
    pub fn parse(text: &str) -> Option<LogFormat> {
        match text {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// The console style of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Style {
    pub format: LogFormat,
    /// Text lines get a time in front.
    pub timestamps: bool,
}

impl Style {
    pub fn is_json(self) -> bool {
        self.format == LogFormat::Json
    }

    /// The time for the lines about to be framed: empty when the style shows none.
    pub fn stamp(self) -> Stamp {
        match (self.format, self.timestamps) {
            (LogFormat::Json, _) => Stamp::now(Precision::Micros),
            (LogFormat::Text, true) => Stamp::now(Precision::Millis),
            (LogFormat::Text, false) => Stamp::default(),
        }
    }
}

static STYLE: OnceLock<Style> = OnceLock::new();

/// Sets the style of the run (once; later calls change nothing).
pub fn set_style(style: Style) {
    let _ = STYLE.set(style);
}

/// The style of the run: text without timestamps until it is set.
pub fn style() -> Style {
    STYLE.get().copied().unwrap_or_default()
}

/// Digits after the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Millis,
    Micros,
}

/// An RFC 3339 UTC time, `2026-12-07T06:30:01.123Z` or `2026-12-07T06:30:01.123456Z`, on the
/// stack. The default is empty.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stamp {
    buf: [u8; 27],
    len: u8,
}

impl Stamp {
    pub fn now(precision: Precision) -> Stamp {
        Stamp::at(SystemTime::now(), precision)
    }

    /// The time `t` (a time before 1970 is shown as 1970-01-01T00:00:00Z).
    pub fn at(t: SystemTime, precision: Precision) -> Stamp {
        let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs();
        let (days, rest) = (secs / 86_400, secs % 86_400);
        let (year, month, day) = civil_from_days(days);
        let mut s = Stamp::default();
        let mut put = |value: u64, digits: u32, after: Option<u8>| {
            let mut n = value;
            for i in (0..digits).rev() {
                s.buf[usize::from(s.len) + i as usize] = b'0' + (n % 10) as u8;
                n /= 10;
            }
            s.len += digits as u8;
            if let Some(c) = after {
                s.buf[usize::from(s.len)] = c;
                s.len += 1;
            }
        };
        put(year % 10_000, 4, Some(b'-'));
        put(month, 2, Some(b'-'));
        put(day, 2, Some(b'T'));
        put(rest / 3600, 2, Some(b':'));
        put(rest / 60 % 60, 2, Some(b':'));
        put(rest % 60, 2, Some(b'.'));
        match precision {
            Precision::Millis => put(u64::from(since.subsec_millis()), 3, Some(b'Z')),
            Precision::Micros => put(u64::from(since.subsec_micros()), 6, Some(b'Z')),
        }
        s
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits and separators are ever written.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Year, month, day of the day `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// What a task line's record says besides its time and message.
#[derive(Debug, Clone, Copy)]
pub struct TaskKeys<'a> {
    pub task: &'a str,
    pub stage: &'a str,
    pub stream: &'a str,
    pub pid: i32,
}

/// The keys of a task line's object before `message`, in their order.
#[derive(Serialize)]
struct TaskHead<'a> {
    time: &'a str,
    task: &'a str,
    stage: &'a str,
    stream: &'a str,
    pid: i32,
}

/// Writes to `head` what the objects of task lines read at `time` start with, up to the value
/// of `message`: `{"time":...,"task":...,"stage":...,"stream":...,"pid":N,"message":`. It is
/// the same for every line of one read, so it is made once per read.
pub fn task_head(head: &mut Vec<u8>, time: &str, keys: TaskKeys<'_>) {
    head.clear();
    let fields = TaskHead { time, task: keys.task, stage: keys.stage, stream: keys.stream, pid: keys.pid };
    // Writing to a Vec cannot fail, and these fields always serialize.
    let _ = serde_json::to_writer(&mut *head, &fields);
    // The object goes on: `}` becomes the next key.
    head.pop();
    head.extend_from_slice(b",\"message\":");
}

/// Appends the JSON object of one task line (`line` without its newline) and a newline: `head`
/// (from [`task_head`]), the message, and `message_base64` when the line is not UTF-8.
/// Allocates nothing for a UTF-8 line but the growth of `out`.
pub fn task_line(out: &mut Vec<u8>, head: &[u8], line: &[u8]) {
    out.extend_from_slice(head);
    match std::str::from_utf8(line) {
        Ok(text) => {
            let _ = serde_json::to_writer(&mut *out, text);
        }
        Err(_) => {
            let _ = serde_json::to_writer(&mut *out, &String::from_utf8_lossy(line));
            out.extend_from_slice(b",\"message_base64\":\"");
            base64_into(out, line);
            out.push(b'"');
        }
    }
    out.extend_from_slice(b"}\n");
}

/// [`task_head`] and [`task_line`] at once, for one line.
pub fn task_record(out: &mut Vec<u8>, time: &str, keys: TaskKeys<'_>, line: &[u8]) {
    let mut head = Vec::new();
    task_head(&mut head, time, keys);
    task_line(out, &head, line);
}

/// Which task one of trc's own records is about.
#[derive(Debug, Clone, Copy)]
pub struct About<'a> {
    pub task: &'a str,
    pub stage: &'a str,
    pub pid: Option<u32>,
}

#[derive(Serialize)]
struct OwnRecord<'a> {
    time: &'a str,
    level: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    task: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stage: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pid: Option<u32>,
    message: &'a str,
}

/// The JSON object of one of trc's own records, with a newline. `level`: error, warn, info,
/// debug.
pub fn own_record(time: &str, level: &str, about: Option<About<'_>>, message: &str) -> Vec<u8> {
    let record = OwnRecord {
        time,
        level,
        task: about.map(|a| a.task),
        stage: about.map(|a| a.stage),
        pid: about.and_then(|a| a.pid),
        message,
    };
    let mut out = serde_json::to_vec(&record).unwrap_or_default();
    out.push(b'\n');
    out
}

/// A line of trc's own that is not a TrivialRC log line (a configuration error, a count of
/// lost records): `trc: text` in text, an object of `level` in JSON.
pub fn plain_line(level: &str, text: &str) -> Vec<u8> {
    match style().format {
        LogFormat::Text => format!("trc: {text}\n").into_bytes(),
        LogFormat::Json => own_record(Stamp::now(Precision::Micros).as_str(), level, None, text),
    }
}

/// Standard base64 (RFC 4648 §4), with padding.
pub fn base64(data: &[u8]) -> String {
    let mut out = Vec::with_capacity(data.len().div_ceil(3) * 4);
    base64_into(&mut out, data);
    // Only ASCII was written.
    String::from_utf8(out).unwrap_or_default()
}

/// Appends `data` in standard base64 (RFC 4648 §4), with padding.
fn base64_into(out: &mut Vec<u8>, data: &[u8]) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    out.reserve(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            out.push(if i <= chunk.len() { ALPHABET[(n >> (18 - 6 * i)) as usize & 63] } else { b'=' });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::time::Duration;

    fn keys() -> TaskKeys<'static> {
        TaskKeys { task: "web", stage: "async", stream: "stdout", pid: 42 }
    }

    fn parse(line: &[u8]) -> serde_json::Map<String, Value> {
        assert_eq!(line.last(), Some(&b'\n'), "{line:?}");
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1, "one line: {line:?}");
        match serde_json::from_slice(line).unwrap() {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    fn decode_base64(text: &str) -> Vec<u8> {
        let value = |c: u8| match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        };
        let mut out = Vec::new();
        for quad in text.as_bytes().chunks(4) {
            let pad = quad.iter().filter(|&&c| c == b'=').count();
            let n =
                quad.iter().fold(0u32, |n, &c| (n << 6) | u32::from(if c == b'=' { 0 } else { value(c) }));
            out.extend_from_slice(&n.to_be_bytes()[1..4 - pad]);
        }
        out
    }

    #[test]
    fn a_task_line_is_one_object_with_every_key_in_order() {
        let mut out = b"before\n".to_vec();
        task_record(&mut out, "2026-12-07T06:30:01.123456Z", keys(), b"hello \"world\"\t\x1b[1m");
        let line = &out[b"before\n".len()..];
        assert_eq!(
            std::str::from_utf8(line).unwrap(),
            "{\"time\":\"2026-12-07T06:30:01.123456Z\",\"task\":\"web\",\"stage\":\"async\",\
             \"stream\":\"stdout\",\"pid\":42,\"message\":\"hello \\\"world\\\"\\t\\u001b[1m\"}\n"
        );
        let map = parse(line);
        assert_eq!(map["message"], "hello \"world\"\t\x1b[1m");
        assert!(!map.contains_key("message_base64"));
    }

    #[test]
    fn bytes_that_are_not_utf8_survive_in_base64() {
        for bytes in [&b"\xff\xfe bin\x00ary \xc3"[..], b"\xe2\x82", b"ok \xc3\xa9 \x80", b"\xff"] {
            let mut out = Vec::new();
            task_record(&mut out, "t", keys(), bytes);
            let map = parse(&out);
            assert_eq!(map["message"], String::from_utf8_lossy(bytes).as_ref());
            let encoded = map["message_base64"].as_str().unwrap();
            assert_eq!(decode_base64(encoded), bytes, "{encoded}");
        }
        // Valid UTF-8, also with control characters and NULs, has no base64 copy.
        let mut out = Vec::new();
        task_record(&mut out, "t", keys(), "é\u{0}\u{7f}数".as_bytes());
        let map = parse(&out);
        assert_eq!(map["message"], "é\u{0}\u{7f}数");
        assert!(!map.contains_key("message_base64"));
    }

    #[test]
    fn one_head_serves_many_lines() {
        let mut head = Vec::new();
        task_head(&mut head, "t", keys());
        assert_eq!(
            head,
            b"{\"time\":\"t\",\"task\":\"web\",\"stage\":\"async\",\"stream\":\"stdout\",\"pid\":42,\"message\":"
        );
        let mut out = Vec::new();
        for line in [&b"one"[..], b"\xfftwo", b"three"] {
            task_line(&mut out, &head, line);
        }
        let lines: Vec<_> = out.split_inclusive(|&b| b == b'\n').map(parse).collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[1]["message"], "\u{fffd}two");
        assert_eq!(decode_base64(lines[1]["message_base64"].as_str().unwrap()), b"\xfftwo");
        assert_eq!(lines[2]["message"], "three");
        assert!(!lines[2].contains_key("message_base64"));
        // Names that need escaping stay one valid key.
        let odd = TaskKeys { task: "a\"b\n\u{1b}", ..keys() };
        let mut out = Vec::new();
        task_record(&mut out, "t", odd, b"x");
        assert_eq!(parse(&out)["task"], "a\"b\n\u{1b}");
    }

    #[test]
    fn an_empty_line_is_an_empty_message() {
        let mut out = Vec::new();
        task_record(&mut out, "t", keys(), b"");
        assert_eq!(parse(&out)["message"], "");
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
        assert_eq!(base64(&[0xfb, 0xff, 0xfe]), "+//+");
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(decode_base64(&base64(&all)), all);
    }

    #[test]
    fn own_records_carry_the_task_keys_only_when_about_a_task() {
        let line = own_record("t", "info", None, "The wait policy: wait_any");
        assert_eq!(line, b"{\"time\":\"t\",\"level\":\"info\",\"message\":\"The wait policy: wait_any\"}\n");
        let about = About { task: "web", stage: "async", pid: Some(7) };
        let map = parse(&own_record("t", "error", Some(about), "x\ny"));
        assert_eq!(map["task"], "web");
        assert_eq!(map["stage"], "async");
        assert_eq!(map["pid"], 7);
        assert_eq!(map["message"], "x\ny");
        let about = About { pid: None, ..about };
        assert!(!parse(&own_record("t", "warn", Some(about), "m")).contains_key("pid"));
    }

    #[test]
    fn stamps_are_rfc3339_utc_and_agree_with_chrono() {
        let t = UNIX_EPOCH + Duration::new(1_796_625_001, 123_456_789);
        assert_eq!(Stamp::at(t, Precision::Millis).as_str(), "2026-12-07T06:30:01.123Z");
        assert_eq!(Stamp::at(t, Precision::Micros).as_str(), "2026-12-07T06:30:01.123456Z");
        assert_eq!(Stamp::at(UNIX_EPOCH, Precision::Millis).as_str(), "1970-01-01T00:00:00.000Z");
        assert!(Stamp::default().is_empty());
        // Leap days, year ends, centuries: every few days over four centuries.
        let mut secs: u64 = 0;
        while secs < 13_000_000_000 {
            let t = UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(secs % 1_000_000);
            let want =
                chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
            assert_eq!(Stamp::at(t, Precision::Micros).as_str(), want);
            secs += 86_400 * 3 + 3_607;
        }
    }

    #[test]
    fn the_style_decides_whether_there_is_a_stamp() {
        assert!(Style::default().stamp().is_empty());
        let json = Style { format: LogFormat::Json, timestamps: false };
        assert_eq!(json.stamp().as_bytes().len(), "2026-12-07T06:30:01.123456Z".len());
        let text = Style { format: LogFormat::Text, timestamps: true };
        assert_eq!(text.stamp().as_bytes().len(), "2026-12-07T06:30:01.123Z".len());
        assert_eq!(LogFormat::parse("json"), Some(LogFormat::Json));
        assert_eq!(LogFormat::parse("JSON"), None);
        assert_eq!(LogFormat::parse(LogFormat::Text.as_str()), Some(LogFormat::Text));
    }
}
