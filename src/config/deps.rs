//! The dependency graph of `after:` directives, checked before anything starts: every name
//! must be an async task's, there must be no cycle, and only async and sync tasks take the
//! readiness, health and dependency directives.

use super::directives::Directive;
use super::probe::parse_names;
use super::{ConfigError, Stage, TaskFiles};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Directives that make sense only for tasks trc supervises (async and sync).
const SUPERVISED_ONLY: [&str; 7] =
    ["ready", "ready-timeout", "ready-interval", "after", "health", "watchdog", "health-retries"];

impl TaskFiles {
    /// Checks the `after:` graph of the work dir's files, with `cli_async` async tasks of the
    /// command line (`async-1`...): unknown names, names of tasks that are not async, cycles,
    /// and directives on boot and halt tasks that only supervised tasks take. The error names
    /// the file and line.
    pub fn check_dependencies(&self, cli_async: usize) -> Result<(), ConfigError> {
        let err = |path: &Path, line: usize, problem: String| ConfigError::Directive {
            path: path.to_owned(),
            line,
            problem,
        };
        for file in self.stage(Stage::Boot) {
            if let Some(d) = file.directives.iter().find(|d| matches!(d.key.as_str(), "user" | "group")) {
                return Err(err(
                    &file.path,
                    d.line,
                    format!(
                        "\"{}:\" is not for boot tasks (they run as trc's user: what they set becomes trc's)",
                        d.key
                    ),
                ));
            }
        }
        for stage in [Stage::Boot, Stage::Halt] {
            for file in self.stage(stage) {
                if let Some(d) = file.directives.iter().find(|d| SUPERVISED_ONLY.contains(&d.key.as_str())) {
                    return Err(err(
                        &file.path,
                        d.line,
                        format!(
                            "\"{}:\" is for async and sync tasks ({stage} tasks run once, to their end)",
                            d.key
                        ),
                    ));
                }
            }
        }
        let mut asyncs: Vec<String> = self.stage(Stage::Async).iter().map(|f| f.name.clone()).collect();
        asyncs.extend((1..=cli_async).map(|i| format!("async-{i}")));
        // name -> (its `after:` names, each with its line), for the async files.
        let mut graph: BTreeMap<&str, Vec<(String, usize)>> = BTreeMap::new();
        let mut paths: HashMap<&str, &Path> = HashMap::new();
        for stage in [Stage::Async, Stage::Sync] {
            for file in self.stage(stage) {
                let deps = after_names(&file.directives).map_err(|(line, p)| err(&file.path, line, p))?;
                for (name, line) in &deps {
                    if asyncs.contains(name) {
                        continue;
                    }
                    let problem = if self.stage(Stage::Sync).iter().any(|f| &f.name == name) {
                        format!("\"{name}\" is a sync task: \"after:\" names async tasks (sync tasks run one after another already)")
                    } else {
                        let known = if asyncs.is_empty() { "none".to_owned() } else { asyncs.join(", ") };
                        format!("\"after:\" names an unknown task \"{name}\" (async tasks: {known})")
                    };
                    return Err(err(&file.path, *line, problem));
                }
                if stage == Stage::Async {
                    paths.insert(&file.name, &file.path);
                    graph.insert(&file.name, deps);
                }
            }
        }
        if let Some(cycle) = find_cycle(&graph) {
            let first = cycle[0];
            let line = graph[first].iter().find(|(n, _)| n == cycle[1]).map_or(1, |(_, l)| *l);
            let shown = cycle.join(" -> ");
            let problem = if cycle.len() == 2 {
                format!("\"after:\" names the task itself ({shown}): a dependency cycle")
            } else {
                format!("a dependency cycle: {shown}")
            };
            return Err(err(paths[first], line, problem));
        }
        Ok(())
    }
}

/// The names of a file's `after:` lines, each with its line number.
fn after_names(directives: &[Directive]) -> Result<Vec<(String, usize)>, (usize, String)> {
    let mut names = Vec::new();
    for d in directives.iter().filter(|d| d.key == "after") {
        for name in parse_names(&d.value).map_err(|p| (d.line, p))? {
            names.push((name, d.line));
        }
    }
    Ok(names)
}

/// A cycle of the graph as `[a, b, ..., a]`, if there is one (the first found, in name order).
fn find_cycle<'a>(graph: &BTreeMap<&'a str, Vec<(String, usize)>>) -> Option<Vec<&'a str>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut marks: HashMap<&str, Mark> = graph.keys().map(|&k| (k, Mark::New)).collect();
    for &start in graph.keys() {
        if marks[start] != Mark::New {
            continue;
        }
        // Depth first, without recursion: (node, index of the next edge to follow).
        let mut path: Vec<(&str, usize)> = vec![(start, 0)];
        marks.insert(start, Mark::OnPath);
        while let Some(&mut (node, ref mut next)) = path.last_mut() {
            let edges = &graph[node];
            if *next == edges.len() {
                marks.insert(node, Mark::Done);
                path.pop();
                continue;
            }
            let target = edges[*next].0.as_str();
            *next += 1;
            // Command-line tasks have no `after:`: never part of a cycle.
            let Some((&target, _)) = graph.get_key_value(target) else { continue };
            match marks[target] {
                Mark::OnPath => {
                    let from = path.iter().position(|(n, _)| *n == target).unwrap_or(0);
                    let mut cycle: Vec<&str> = path[from..].iter().map(|(n, _)| *n).collect();
                    cycle.push(target);
                    return Some(cycle);
                }
                Mark::New => {
                    marks.insert(target, Mark::OnPath);
                    path.push((target, 0));
                }
                Mark::Done => {}
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::scan::RunMode;
    use super::super::TaskFile;
    use super::*;
    use std::path::PathBuf;

    fn file(stage: Stage, name: &str, directives: &[(&str, &str)]) -> TaskFile {
        TaskFile {
            stage,
            name: name.to_owned(),
            path: PathBuf::from(format!("trc.d/{stage}.{name}")),
            run: RunMode::Fragment,
            directives: directives
                .iter()
                .enumerate()
                .map(|(i, (k, v))| Directive { line: i + 2, key: (*k).to_owned(), value: (*v).to_owned() })
                .collect(),
            fingerprint: None,
        }
    }

    fn files(list: Vec<TaskFile>) -> TaskFiles {
        let mut files = TaskFiles::default();
        for f in list {
            match f.stage {
                Stage::Boot => files.boot.push(f),
                Stage::Async => files.async_.push(f),
                Stage::Sync => files.sync.push(f),
                Stage::Halt => files.halt.push(f),
            }
        }
        files
    }

    fn problem(list: Vec<TaskFile>) -> String {
        files(list).check_dependencies(1).unwrap_err().to_string()
    }

    #[test]
    fn a_chain_and_command_line_names_are_fine() {
        let ok = files(vec![
            file(Stage::Async, "a", &[]),
            file(Stage::Async, "b", &[("after", "a")]),
            file(Stage::Async, "c", &[("restart", "always"), ("after", "b, async-1")]),
            file(Stage::Sync, "s", &[("after", "c a")]),
        ]);
        ok.check_dependencies(1).unwrap();
        assert!(ok.check_dependencies(0).unwrap_err().to_string().contains("unknown task \"async-1\""));
    }

    #[test]
    fn cycles_name_the_file_line_and_path() {
        let e = problem(vec![
            file(Stage::Async, "a", &[("after", "c")]),
            file(Stage::Async, "b", &[("after", "a")]),
            file(Stage::Async, "c", &[("restart", "always"), ("after", "b")]),
        ]);
        assert_eq!(e, "trc.d/async.a:2: a dependency cycle: a -> c -> b -> a");
        let e = problem(vec![file(Stage::Async, "a", &[("after", "a")])]);
        assert_eq!(e, "trc.d/async.a:2: \"after:\" names the task itself (a -> a): a dependency cycle");
    }

    #[test]
    fn unknown_sync_and_misplaced_names_are_errors() {
        let e = problem(vec![file(Stage::Async, "web", &[("after", "db")])]);
        assert_eq!(
            e,
            "trc.d/async.web:2: \"after:\" names an unknown task \"db\" (async tasks: web, async-1)"
        );
        let e = problem(vec![file(Stage::Sync, "s", &[]), file(Stage::Async, "a", &[("after", "s")])]);
        assert!(e.contains("\"s\" is a sync task"), "{e}");
        let e = problem(vec![file(Stage::Boot, "b", &[("restart", "never"), ("ready", "notify")])]);
        assert_eq!(
            e,
            "trc.d/boot.b:3: \"ready:\" is for async and sync tasks (boot tasks run once, to their end)"
        );
        let e = problem(vec![file(Stage::Halt, "h", &[("after", "x")])]);
        assert!(e.starts_with("trc.d/halt.h:2: \"after:\" is for async"), "{e}");
    }
}
