//! The control server's line → `Request` decoder over arbitrary bytes: never panics, and a line
//! it accepts re-serializes to a line that decodes to the same request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trc::control::protocol::Request;
use trc::control::server::parse;

fuzz_target!(|data: &[u8]| {
    let decoded = parse(data);
    // The plain serde path trcctl's tests use; it must not panic either.
    let _ = serde_json::from_slice::<Request>(data);
    if let Ok(request) = decoded {
        let line = serde_json::to_vec(&request).expect("a request serializes");
        assert_eq!(parse(&line).as_ref(), Ok(&request), "{}", String::from_utf8_lossy(&line));
    }
});
