//! The value parsers of directives and long options: durations, signals, start limits and every
//! key of `TaskSettings::set`. None panics; a signal that parses parses again from its name and
//! its number.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::str::FromStr;
use trc::config::{parse_duration, parse_signal, StartLimit, TaskSettings, DIRECTIVE_KEYS};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = parse_duration(text);
    if let Ok(limit) = StartLimit::from_str(text) {
        assert!(limit.starts >= 1);
    }
    if let Ok(signal) = parse_signal(text) {
        assert_eq!(parse_signal(signal.as_str()), Ok(signal));
        assert_eq!(parse_signal(&(signal as i32).to_string()), Ok(signal));
    }
    for (key, _) in DIRECTIVE_KEYS {
        let _ = TaskSettings::default().set(key, text);
    }
    // `key: value` as a header line would split it, for keys the fuzzer invents.
    if let Some((key, value)) = text.split_once(':') {
        let _ = TaskSettings::default().set(key.trim(), value);
    }
});
