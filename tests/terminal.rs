//! B1 (issue #15): a foreground task — boot, sync, halt — that reads the terminal gets the
//! terminal's foreground while it runs, as TrivialRC's tasks share its terminal; before, it got
//! SIGTTIN and stayed stopped for ever. Run under a pseudo-terminal (util-linux `script`), the
//! test answers the task's prompt once it shows.

mod common;

use common::{skip, trc_bin, Spawned, DEADLINE};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Runs trc on a work dir holding `file` (a task that prompts and reads a name) under a
/// pseudo-terminal, answers "Alice" once the prompt shows, and returns what the terminal showed.
fn answer_prompt(file: &str, extra_args: &[&str]) -> Option<String> {
    if Command::new("script").arg("--version").output().map(|o| !o.status.success()).unwrap_or(true) {
        skip(std::thread::current().name().unwrap_or("a terminal test"), "script(1) from util-linux");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("trc.d")).unwrap();
    // `read -t` only so that a broken trc cannot hang the test past its deadline.
    std::fs::write(dir.path().join("trc.d").join(file), "read -r -t 25 -p \"name? \" n; echo \"hi $n\"\n")
        .unwrap();
    let mut line = format!(
        "{} -w {}",
        shell_quote(trc_bin().to_str().unwrap()),
        shell_quote(dir.path().to_str().unwrap())
    );
    for arg in extra_args {
        line.push(' ');
        line.push_str(&shell_quote(arg));
    }
    let mut script = Command::new("script");
    script.args(["-qfec", &line, "/dev/null"]).current_dir(dir.path());
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("RC_") || k.starts_with("TRC_") || k == "NOTIFY_SOCKET" {
            script.env_remove(&key);
        }
    }
    script.env("NO_COLOR", "1");
    script.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = Spawned::spawn(&mut script);
    let shown = Arc::new(Mutex::new(Vec::new()));
    let mut out = child.stdout.take().unwrap();
    let sink = shown.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let text = || String::from_utf8_lossy(&shown.lock().unwrap()).replace("\r\n", "\n");
    let until = Instant::now() + DEADLINE;
    while !text().contains("name? ") {
        assert!(Instant::now() < until, "no prompt within {DEADLINE:?}: {:?}", text());
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"Alice\n").unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < until, "trc did not end within {DEADLINE:?}: {:?}", text());
        std::thread::sleep(Duration::from_millis(10));
    };
    drop(stdin);
    reader.join().unwrap();
    assert!(status.success(), "script or trc failed ({status}): {:?}", text());
    Some(text())
}

#[test]
fn a_sync_task_reads_the_terminal() {
    let Some(shown) = answer_prompt("sync.ask", &[]) else { return };
    assert!(shown.contains("ask: hi Alice"), "{shown:?}");
}

#[test]
fn a_boot_task_reads_the_terminal() {
    let Some(shown) = answer_prompt("boot.ask", &["-F", "echo after boot"]) else { return };
    assert!(shown.contains("ask: hi Alice"), "{shown:?}");
    assert!(shown.contains("sync-1: after boot"), "{shown:?}");
}

#[test]
fn a_halt_task_reads_the_terminal() {
    let Some(shown) = answer_prompt("halt.ask", &["-F", "echo running"]) else { return };
    assert!(shown.contains("sync-1: running"), "{shown:?}");
    assert!(shown.contains("ask: hi Alice"), "{shown:?}");
}
