//! Properties of the parsers, checked on generated inputs (proptest): what trc prints or writes
//! parses back to the same value, and no input panics a parser. The fuzz targets in `fuzz/` run
//! the same parsers on far more inputs; these stay small enough for every `cargo test`.

use nix::sys::signal::Signal;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use std::ffi::OsString;
use std::time::Duration;
use trc::cli::CommandLine;
use trc::config::{
    apply, header_directives, parse_duration, parse_header, parse_signal, StartLimit, TaskSettings,
};
use trc::control::protocol::{Command, Request};
use trc::control::server::parse as parse_request;

fn config() -> ProptestConfig {
    ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() }
}

fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        (0u64..100_000, 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        (0u64..10_000).prop_map(Duration::from_millis),
        (0u64..1 << 40).prop_map(Duration::from_secs),
    ]
}

/// A value that `TaskSettings::set(key, _)` accepts, for each directive key.
fn directive() -> impl Strategy<Value = (String, String)> {
    let text = |key: &str, s: BoxedStrategy<String>| {
        s.prop_map({
            let key = key.to_owned();
            move |v| (key.clone(), v)
        })
    };
    let human = || duration().prop_map(|d| humantime::format_duration(d).to_string()).boxed();
    prop_oneof![
        text(
            "restart",
            prop::sample::select(vec!["never", "no", "on-failure", "always"]).prop_map(str::to_owned).boxed()
        ),
        text("restart-delay", human()),
        text("restart-max-delay", human()),
        text("stop-timeout", (0u32..1000).prop_map(|s| s.to_string()).boxed()),
        text(
            "start-limit",
            prop_oneof![
                Just("none".to_owned()),
                (1u32..1000, duration())
                    .prop_map(|(n, d)| format!("{n} in {}", humantime::format_duration(d))),
            ]
            .boxed()
        ),
        text(
            "stop-signal",
            prop::sample::select(Signal::iterator().collect::<Vec<_>>())
                .prop_map(|s| s.as_str()[3..].to_owned())
                .boxed()
        ),
        text(
            "log-prefix",
            prop::sample::select(vec!["yes", "no", "true", "false", "on", "off", "1", "0"])
                .prop_map(str::to_owned)
                .boxed()
        ),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_formatted_duration_parses_back(d in duration()) {
        prop_assert_eq!(parse_duration(&humantime::format_duration(d).to_string()), Ok(d));
        prop_assert_eq!(parse_duration(&format!("  {}  ", d.as_secs())), Ok(Duration::from_secs(d.as_secs())));
        let secs = d.as_secs_f64();
        prop_assert_eq!(parse_duration(&secs.to_string()), Ok(Duration::from_secs_f64(secs)));
    }

    #[test]
    fn a_formatted_start_limit_parses_back(starts in 1u32.., window in duration()) {
        let text = format!("{starts} in {}", humantime::format_duration(window));
        prop_assert_eq!(text.parse::<StartLimit>(), Ok(StartLimit { starts, window }));
        let zero = format!("0 in {}", humantime::format_duration(window));
        prop_assert!(zero.parse::<StartLimit>().is_err());
    }

    #[test]
    fn every_signal_parses_from_what_trc_prints(signal in prop::sample::select(Signal::iterator().collect::<Vec<_>>())) {
        let name = signal.as_str();
        prop_assert_eq!(parse_signal(name), Ok(signal));
        prop_assert_eq!(parse_signal(&name[3..]), Ok(signal));
        prop_assert_eq!(parse_signal(&name[3..].to_ascii_lowercase()), Ok(signal));
        prop_assert_eq!(parse_signal(&(signal as i32).to_string()), Ok(signal));
    }

    #[test]
    fn garbage_is_not_a_signal(text in "\\PC{0,12}") {
        let known = Signal::iterator().any(|s| {
            let upper = text.to_ascii_uppercase();
            upper == s.as_str() || upper == s.as_str()[3..] || text.parse::<i32>() == Ok(s as i32)
        });
        prop_assert_eq!(parse_signal(&text).is_ok(), known, "{:?}", text);
        let _ = parse_duration(&text);
        let _ = text.parse::<StartLimit>();
    }

    #[test]
    fn a_header_built_from_directives_parses_back(
        before in vec("[a-z #!/]{0,20}", 0..3),
        directives in vec(directive(), 0..8),
        style in prop::sample::select(vec![("###", '#'), ("#", '#'), ("//", '/'), ("--", '-'), (";;", ';')]),
        spaces in vec(0usize..3, 8),
        trailing in vec(any::<bool>(), 8),
    ) {
        let (marker, comment) = style;
        // Lines before the block must not look like its start.
        let mut text: String = before.iter().filter(|l| !l.trim().ends_with("BEGIN TRC")).map(|l| format!("{l}\n")).collect();
        text += &format!("{marker} BEGIN TRC\n");
        for (i, (key, value)) in directives.iter().enumerate() {
            let pad = " ".repeat(spaces[i]);
            // A note after a value: `--` and `//` need both characters and a space.
            let token = if matches!(comment, '/' | '-') { format!("{comment}{comment}") } else { comment.to_string() };
            let note = if trailing[i] { format!("   {token} a note") } else { String::new() };
            text += &format!("{comment}{pad} {key}:{pad} {value}{note}\n");
        }
        text += &format!("{marker} END TRC\nexec true\n");
        let parsed = header_directives(&text).map_err(|e| TestCaseError::fail(format!("{text}\n{e:?}")))?;
        let got: Vec<(String, String)> = parsed.iter().map(|d| (d.key.clone(), d.value.clone())).collect();
        prop_assert_eq!(&got, &directives, "{}", text);
        let mut expected = TaskSettings::default();
        let mut ok = Ok(());
        for (key, value) in &directives {
            ok = ok.and_then(|()| expected.set(key, value));
        }
        prop_assert!(ok.is_ok());
        let settings = parse_header(&text, &TaskSettings::default());
        prop_assert_eq!(settings.clone(), apply(&TaskSettings::default(), &parsed));
        if expected.restart_max_delay >= expected.restart_delay {
            prop_assert_eq!(settings, Ok(expected));
        }
    }

    #[test]
    fn any_text_never_panics_the_header_parser(
        lines in vec(prop_oneof!["\\PC{0,30}", "[#/;-]{1,3} (BEGIN|END) TRC", "[#/;-]{1,2} ?[a-z-]{0,12}: ?\\PC{0,10}"], 0..12),
    ) {
        let text = lines.join("\n");
        let directives = header_directives(&text);
        let settings = parse_header(&text, &TaskSettings::default());
        match directives {
            Ok(d) => prop_assert_eq!(settings, apply(&TaskSettings::default(), &d)),
            Err(e) => prop_assert_eq!(settings, Err(e)),
        }
    }

    #[test]
    fn any_bytes_never_panic_the_request_decoder(bytes in vec(any::<u8>(), 0..200), text in "\\{\"v\":[0-9. ]{1,3},\"cmd\":\"[a-z-]{0,10}\"(,\"[a-z]{1,8}\":(\"\\PC{0,8}\"|[0-9]{1,3}|true|null|\\[\\]))*\\}") {
        let _ = parse_request(&bytes);
        if let Ok(request) = parse_request(text.as_bytes()) {
            let line = serde_json::to_vec(&request).unwrap();
            prop_assert_eq!(parse_request(&line), Ok(request));
        }
    }

    #[test]
    fn a_request_re_serializes_to_the_same_request(command in command()) {
        let request = Request::new(command);
        let line = serde_json::to_vec(&request).unwrap();
        prop_assert_eq!(parse_request(&line), Ok(request.clone()));
        // With whitespace, as a person types it, and a trailing carriage return.
        let pretty = serde_json::to_string_pretty(&request).unwrap() + "\r";
        prop_assert_eq!(parse_request(pretty.as_bytes()), Ok(request));
    }

    #[test]
    fn task_argv_parses_back_to_the_same_tasks(
        boot in vec(word(), 0..3),
        halt in vec(word(), 0..3),
        async_ in vec(word(), 0..3),
        sync in vec(word(), 0..3),
        // A trailing command whose first word starts with `-` does not parse back: see
        // fuzz/crashes.md.
        command in vec(word(), 0..4).prop_filter("no leading hyphen", |c| c.first().is_none_or(|w| !w.starts_with('-'))),
    ) {
        let os = |v: &[String]| v.iter().map(OsString::from).collect::<Vec<_>>();
        let mut cli = CommandLine::parse_args(["--verbose", "-w", "w"].map(OsString::from)).unwrap();
        (cli.boot, cli.halt, cli.async_, cli.sync) = (os(&boot), os(&halt), os(&async_), os(&sync));
        cli.command = os(&command);
        let again = cli.reparse_tasks(cli.task_argv()).map_err(|e| TestCaseError::fail(format!("{:?}: {e}", cli.task_argv())))?;
        prop_assert_eq!(again, cli);
    }

    #[test]
    fn any_argv_never_panics_the_cli_parser(words in vec(prop_oneof![word(), "-[a-zA-Z]{1,2}", "--[a-z-]{1,14}(=\\PC{0,5})?"], 0..8)) {
        let words: Vec<OsString> = words.iter().filter(|w| !["--help", "-h", "--version", "-v"].contains(&w.as_str())).map(OsString::from).collect();
        let _ = CommandLine::parse_args(words.clone());
        let _ = CommandLine::default().reparse_tasks(words);
    }
}

/// One argv word: shell code, a path, an option-looking word, or nothing.
fn word() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z0-9 ./$;=-]{0,10}", "-[A-Za-z-]{0,6}", Just(String::new()), Just("--".to_owned())]
}

fn command() -> impl Strategy<Value = Command> {
    let task = || "\\PC{0,12}";
    let map = || btree_map("\\PC{0,6}", "\\PC{0,6}", 0..3);
    prop_oneof![
        Just(Command::Info),
        Just(Command::List),
        Just(Command::StartAll),
        Just(Command::Reload),
        task().prop_map(|task| Command::Status { task }),
        task().prop_map(|task| Command::Start { task }),
        task().prop_map(|task| Command::Stop { task }),
        task().prop_map(|task| Command::Restart { task }),
        (task(), "[A-Z0-9]{0,6}").prop_map(|(task, signal)| Command::Signal { task, signal }),
        (task(), vec("\\PC{0,8}", 0..4), proptest::option::of("\\PC{0,8}"), map(), map()).prop_map(
            |(task, command, cwd, env, directives)| {
                Command::Ensure { task, command, cwd, env, directives }
            }
        ),
        (task(), proptest::option::of(any::<usize>()), any::<bool>())
            .prop_map(|(task, lines, follow)| Command::Logs { task, lines, follow }),
    ]
}
