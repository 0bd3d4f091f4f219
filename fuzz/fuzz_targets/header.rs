//! The header-block parser over arbitrary text: `header_directives` and `parse_header` never
//! panic, and what they return is consistent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trc::config::{apply, header_directives, parse_header, TaskSettings};

fuzz_target!(|data: &[u8]| {
    // As `read_directives` reads a file: bytes that are not UTF-8 replaced.
    let text = String::from_utf8_lossy(data);
    let directives = header_directives(&text);
    let parsed = parse_header(&text, &TaskSettings::default());
    match directives {
        Ok(directives) => {
            let mut last = 0;
            for d in &directives {
                assert!(d.line > last, "line numbers go up: {directives:?}");
                last = d.line;
                assert_eq!(d.key, d.key.trim());
                assert_eq!(d.value, d.value.trim());
                assert!(!d.key.contains(':'), "the key ends at the first colon: {d:?}");
            }
            assert_eq!(parsed, apply(&TaskSettings::default(), &directives));
        }
        Err(e) => {
            assert!(e.line >= 1);
            assert_eq!(parsed, Err(e));
        }
    }
});
