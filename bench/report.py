#!/usr/bin/env python3
"""Renders the results of bench/suite.sh as markdown (BENCHMARKS.md): the machine, the goals of
issue #6 (met or not), a table of every median with trc's ratio to each baseline, then each
measurement's own table.

Usage: bench/report.py RESULTS_DIR TRC [--smoke]
RESULTS_DIR holds what the suite collected: startup.json (hyperfine), throughput.md and
restart.md (the tables of bench/throughput.sh and bench/restart_latency.sh), memory.json,
teardown.json and idle.json (bench/supervisors.py), params (the suite's parameters).
"""

import datetime
import json
import os
import platform
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
MiB = 1024


def median(values):
    v = sorted(values)
    k = len(v)
    return v[k // 2] if k % 2 else (v[k // 2 - 1] + v[k // 2]) / 2


def run(*argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return ""


def dpkg(pkg):
    return run("dpkg-query", "-W", "-f=${Version}", pkg)


def machine(trc):
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    distro = ""
    if os.path.exists("/etc/os-release"):
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    distro = line.split("=", 1)[1].strip().strip('"')
    virt = run("systemd-detect-virt") if run("sh", "-c", "command -v systemd-detect-virt") else ""
    commit = run("git", "-C", REPO, "rev-parse", "--short", "HEAD")
    dirty = run("git", "-C", REPO, "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock")
    trc_version = run(trc, "--version")
    if commit:
        trc_version += f" (commit {commit}{', with uncommitted changes in src/' if dirty else ''})"
    if os.environ.get("TRC_BUILD"):
        trc_version += f", {os.environ['TRC_BUILD']}"
    def bare(name, version):  # "tini version 0.19.0" -> "0.19.0"
        return re.sub(rf"^{re.escape(name)}( version)? v?", "", version)

    tools = [
        ("trc", re.sub(r"^trc ", "", trc_version)),
        ("tini", run("tini", "--version")),
        ("dumb-init", run("dumb-init", "--version")),
        ("runit", dpkg("runit")),
        ("s6", dpkg("s6")),
        ("supervisor", run("supervisord", "--version")),
        ("hyperfine", run("hyperfine", "--version")),
        ("bash", run("bash", "-c", 'echo "$BASH_VERSION"')),
        ("dash", dpkg("dash")),
        ("python3", platform.python_version()),
        ("rustc", run("rustc", "--version")),
    ]
    return [
        ("CPU", f"{cpu or 'unknown'} ({os.cpu_count()} CPUs as seen by `nproc`: {run('nproc')})"),
        ("memory", f"{mem_kb / MiB / 1024:.1f} GiB"),
        ("kernel", " ".join(platform.uname()[i] for i in (0, 2, 4))),
        ("system", distro + (f", virtualization: {virt}" if virt and virt != "none" else "")),
        ("tools", "; ".join(f"{name} {bare(name, v)}" for name, v in tools if v)),
    ]


# ----- reading the results -------------------------------------------------------------------


def load_json(d, name):
    path = os.path.join(d, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def load_text(d, name):
    path = os.path.join(d, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return f.read().strip()


def table_rows(md):
    """The cells of a markdown table's body rows."""
    rows = []
    for line in (md or "").splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows[1:]  # without the header


def number(cell):
    return float(re.sub(r"[^0-9.]", "", cell.split()[0]))


def fmt_ms(v):
    return f"{v:,.2f} ms" if v < 10 else f"{v:,.1f} ms" if v < 1000 else f"{v / 1000:,.2f} s"


def fmt_kb(v):
    return f"{v:,.0f} kB" if v < 10 * 1024 else f"{v / 1024:,.1f} MiB"


def ratio(a, b):
    if not b:
        return "—"
    r = a / b
    return f"{r:.2f}" if r >= 0.1 else f"{r:.2g}"


# ----- the report ----------------------------------------------------------------------------


def main():
    d, trc = sys.argv[1], sys.argv[2]
    smoke = "--smoke" in sys.argv
    params = load_text(d, "params") or ""
    startup = load_json(d, "startup.json")
    throughput = table_rows(load_text(d, "throughput.md"))
    memory = load_json(d, "memory.json")
    restart = table_rows(load_text(d, "restart.md"))
    teardown = load_json(d, "teardown.json")
    idle = load_json(d, "idle.json")

    summary = []  # (measurement, trc value, baseline, baseline value, ratio)
    goals = []  # (goal, measured, met)

    # 1. start + teardown of `true`
    if startup:
        res = {r["command"]: r["median"] * 1000 for r in startup["results"]}
        names = {"tini": "tini", "dumb-init": "dumb-init", "bash": "bash, TrivialRC-style", "true": "`true` alone (floor)"}
        for key, label in names.items():
            if key in res:
                summary.append(("start + teardown of `true` (time)", fmt_ms(res["trc"]), label, fmt_ms(res[key]), ratio(res["trc"], res[key])))
        if "tini" in res:
            goals.append(("`trc true` ≤ 2× `tini true`", f"{fmt_ms(res['trc'])} vs {fmt_ms(res['tini'])}: {res['trc'] / res['tini']:.1f}×", res["trc"] <= 2 * res["tini"]))

    # 2. throughput
    if throughput:
        rate = {r[0]: number(r[3]) for r in throughput}
        for key, label in (("sed", "`sed 's/^/x: /'`"), ("bash", "bash `while read` loop")):
            if key in rate:
                summary.append(("prefixed log throughput (lines/s)", f"{rate['trc']:,.0f}", label, f"{rate[key]:,.0f}", ratio(rate["trc"], rate[key])))
        if "sed" in rate:
            goals.append(("throughput ≥ `sed`'s", f"{rate['trc']:,.0f} vs {rate['sed']:,.0f} lines/s: {rate['trc'] / rate['sed']:.1f}×", rate["trc"] >= rate["sed"]))

    # 3. memory
    if memory:
        rss, pss = {}, {}
        for r in memory["rows"]:
            rss[(r["kind"], r["tasks"])] = (median([s["rss_kb"] for s in r["samples"]]), r["label"])
            pss[(r["kind"], r["tasks"])] = median([s["pss_kb"] for s in r["samples"]])
        for (kind, n), (value, label) in rss.items():
            if kind == "trc" or ("trc", n) not in rss:
                continue
            t = rss[("trc", n)][0]
            summary.append((
                f"RSS (PSS) with {n:,} sleeping services",
                f"{fmt_kb(t)} ({fmt_kb(pss[('trc', n)])})",
                label,
                f"{fmt_kb(value)} ({fmt_kb(pss[(kind, n)])})",
                ratio(t, value),
            ))
        if ("trc", 3) in rss and ("tini", 3) in rss:
            t, b = rss[("trc", 3)][0], rss[("tini", 3)][0]
            goals.append(("RSS with 3 tasks ≤ 2× tini's", f"{fmt_kb(t)} vs {fmt_kb(b)}: {t / b:.1f}×", t <= 2 * b))
        if ("trc", 1000) in rss:
            t = rss[("trc", 1000)][0]
            goals.append(("RSS with 1,000 tasks ≤ 20 MiB", fmt_kb(t), t <= 20 * MiB))
        else:
            goals.append(("RSS with 1,000 tasks ≤ 20 MiB", "not measured in this run", None))

    # 4. restart latency
    if restart:
        lat = {r[0]: number(r[2]) for r in restart}
        for label, value in lat.items():
            if label != "trc":
                summary.append(("restart latency after SIGKILL (time)", f"{lat['trc']:,.0f} µs", label, f"{value:,.0f} µs", ratio(lat["trc"], value)))
        if "runit" in lat:
            goals.append(("restart latency ≤ runit's", f"{lat['trc']:,.0f} µs vs {lat['runit']:,.0f} µs", lat["trc"] <= lat["runit"]))

    # 5. teardown
    if teardown:
        ms = {(r["kind"], r["tasks"]): (median([s["ms"] for s in r["samples"]]), r["label"]) for r in teardown["rows"]}
        for (kind, n), (value, label) in ms.items():
            if kind != "trc" and ("trc", n) in ms:
                t = ms[("trc", n)][0]
                summary.append((f"teardown of {n} TERM-responsive services (time)", fmt_ms(t), label, fmt_ms(value), ratio(t, value)))
        trc_sizes = sorted(n for (kind, n) in ms if kind == "trc")
        if trc_sizes:
            worst = max(ms[("trc", n)][0] for n in trc_sizes)
            measured = ", ".join(f"{fmt_ms(ms[('trc', n)][0])} with {n}" for n in trc_sizes)
            goals.append(("teardown ≤ 50 ms for responsive tasks", measured, worst <= 50))

    # 6. idle
    if idle:
        by = {r["kind"]: r for r in idle["rows"]}
        window = idle["rows"][0]["window_s"]
        for kind, r in by.items():
            if kind != "trc" and "trc" in by:
                t = by["trc"]
                summary.append((
                    f"idle for {window:g} s: context switches (CPU time)",
                    f"{t['voluntary'] + t['involuntary']} ({t['cpu_ms']:.0f} ms)",
                    f"{r['label']} ({r['tasks']} services)",
                    f"{r['voluntary'] + r['involuntary']} ({r['cpu_ms']:.0f} ms)",
                    "—",
                ))
        if "trc" in by:
            t = by["trc"]
            n = t["voluntary"] + t["involuntary"]
            goals.append(("zero idle wakeups", f"{n} context switches, {t['cpu_ms']:.0f} ms CPU in {window:g} s with {t['tasks']} tasks", n == 0))

    # 7. readiness -> dependent start
    ready = table_rows(load_text(d, "ready.md"))
    if ready:
        med = {}
        for r in ready:
            key = "trc " + r[1].split(";")[0].strip("` ") if r[0] == "trc" else r[0]
            med[key] = number(r[2])
        trcs = [v for k, v in med.items() if k.startswith("trc")]
        if "s6" in med and trcs:
            best = min(trcs)
            worst = max(trcs)
            summary.append(("readiness to the dependent's start (time)", f"{worst:,.0f} µs", "s6", f"{med['s6']:,.0f} µs", ratio(worst, med["s6"])))
            goals.append(("readiness → dependent start ≤ s6's", f"{best:,.0f}–{worst:,.0f} µs vs {med['s6']:,.0f} µs", worst <= med["s6"]))

    out = []
    w = out.append
    w("# Benchmarks")
    w("")
    if smoke:
        w("**Smoke run** (`bench/suite.sh --smoke`): trc and the floors only, tiny sizes, a single")
        w("repetition and no settling waits (the texts below describe the full run), to check that")
        w("the suite works. These numbers are not for comparison.")
    else:
        w("trc against tini, dumb-init, runit, s6, supervisord and a bash supervisor with TrivialRC's")
        w("structure, all measured on the same machine in the same run by `bench/suite.sh` (issue #6).")
        w("Regenerate with `sudo bench/suite.sh` (it installs the baselines it misses with apt-get, and")
        w("builds trc with `cargo build --release` if `target/release/trc` is missing).")
    w("")
    w(f"Generated {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}; parameters: {params}.")
    w("")
    w("## Machine")
    w("")
    for k, v in machine(trc):
        w(f"- **{k}**: {v}")
    w("")
    w("## Goals")
    w("")
    w("| goal | measured | met |")
    w("|---|---|---|")
    for goal, measured, met in goals:
        w(f"| {goal} | {measured} | {'—' if met is None else 'met' if met else '**not met**'} |")
    w("")
    w("## Medians, and trc ÷ baseline")
    w("")
    w("Each row: trc's median, a baseline's median, and their ratio. For times and memory below 1")
    w("means trc is faster or smaller; for lines/s above 1 means trc is faster. Memory ratios are of")
    w("RSS; PSS (shared pages split among the processes that map them) is in brackets.")
    w("")
    w("| measurement | trc | baseline | baseline's median | trc ÷ baseline |")
    w("|---|---:|---|---:|---:|")
    for m, t, b, bv, r in summary:
        w(f"| {m} | {t} | {b} | {bv} | {r} |")
    w("")
    def sizes(data):
        got = sorted({r["tasks"] for r in data["rows"] if r["kind"] == "trc"}) if data else []
        words = [f"{n:,}" for n in got]
        return ", ".join(words[:-1]) + " and " + words[-1] if len(words) > 1 else "".join(words)

    fill = {"memory": sizes(memory), "teardown": sizes(teardown),
            "idle": str(max((r["tasks"] for r in idle["rows"]), default="")) if idle else ""}
    for name, title, text in SECTIONS:
        body = load_text(d, name + ".md")
        if body is None:
            continue
        title = title.format(n=fill.get(name, ""))
        text = text.format(n=fill.get(name, ""))
        w(f"## {title}")
        w("")
        w(text)
        w("")
        w(body)
        w("")
    print("\n".join(out).rstrip())


SECTIONS = [
    (
        "ready",
        "7. Readiness to the start of a dependent",
        "`bench/ready.sh`: task a becomes ready 20 ms after its start (a newline on fd 3, or the line\n"
        "`ready` on its stdout) and b, which depends on it, records its start as the first thing it\n"
        "does; the time from a's readiness write to b's first instruction. s6: `notification-fd 3` and\n"
        "b's run script `s6-svwait -U ../a` then `exec`; trc: `ready: fd 3` or `ready: log ^ready$` and\n"
        "`after: a`; the floor: a C parent that reads fd 3 and forks and execs b. The same a and b files\n"
        "for all (a small static C program run as the `#!` interpreter: no shell in the measured time).",
    ),
    (
        "startup",
        "1. Start + teardown of a group with one `true` task",
        "`bench/startup.sh`: hyperfine (`-N`, no shell) runs each command, which starts its supervisor, runs `true`,\n"
        "sees it exit and exits. trc runs in an empty work dir with its runtime dir under a temp\n"
        "`XDG_RUNTIME_DIR` (on a tmpfs, as on a host); tini with `-s` (a subreaper, as trc is; it is not\n"
        "PID 1 here). The bash row is\n"
        "`bench/trivialrc-like.sh`, a small supervisor with TrivialRC's structure (a main shell, a subshell\n"
        "with traps per task, `ls` per stage, `date` per log line, `ps`/`pkill` in the exit hooks).",
    ),
    (
        "throughput",
        "2. Prefixed log throughput",
        "`bench/throughput.sh`: a task writes its lines through trc's prefixing into a file; the same lines\n"
        "through `sed 's/^/x: /'`; TrivialRC's way, a bash `while read` loop (fewer lines: it is slow;\n"
        "rates are compared).",
    ),
    (
        "memory",
        "3. Memory with {n} sleeping services",
        "`bench/supervisors.py memory`: VmRSS (from `/proc/PID/status`) and PSS (from `smaps_rollup`, which\n"
        "shares each shared page among its users) of the supervisor's own processes, summed, once every\n"
        "service runs. Every service is `sleep`, exec'd, so it is not counted. trc: the trc process alone\n"
        "(it has no helper processes; a task file `exec sleep ...` is sourced by bash, which becomes the\n"
        "sleep). tini and dumb-init supervise a single child: they run `sh -c 'sleep & sleep & sleep &\n"
        "wait'`, so only the 3-service row exists, and the `sh` (which trc does not need) is shown apart.\n"
        "runit: runsvdir + one runsv per service; s6: s6-svscan + one s6-supervise per service;\n"
        "supervisord: one Python process (program output logged to files, its default); bash: the\n"
        "TrivialRC-style main shell + one subshell per task (its tasks are `sleep`, not `exec sleep`,\n"
        "as a TrivialRC user writes them). RSS counts the shared pages (libc, the program's text) once per\n"
        "process; PSS splits them, which is fairer to the many-process supervisors.",
    ),
    (
        "restart",
        "4. Restart latency",
        "`bench/restart_latency.sh`: a supervised service is killed with SIGKILL; the time until its next run\n"
        "has started (from just before the kill to the new run's first line on a FIFO). The same\n"
        "`#!/bin/dash` run script for all; each service has run 1.1 s before it is killed.",
    ),
    (
        "teardown",
        "5. Teardown of {n} TERM-responsive services",
        "`bench/supervisors.py teardown`: every service is `exec sleep` (which dies at once on SIGTERM) and\n"
        "has run 1.1 s. The clock starts just before the stop signal and stops when the supervisor's\n"
        "processes and every service have exited (a pidfd per process). The stop signal: SIGTERM to trc,\n"
        "to s6-svscan (as `s6-svscanctl -t`), to supervisord and to the bash main shell; SIGHUP to\n"
        "runsvdir (runsvdir(8): it sends TERM to each runsv and exits; each runsv stops its service and\n"
        "exits). Rows whose first run took over a second get 3 runs.",
    ),
    (
        "idle",
        "6. Idle cost with {n} sleeping services",
        "`bench/supervisors.py idle`: all supervisors run at once with their services; once each is quiet\n"
        "(no CPU time for 0.5 s), the CPU time (utime + stime in `/proc/PID/stat`) and the context switches\n"
        "(voluntary + involuntary, of every thread, from `/proc/PID/task/*/status`) of the supervisor\n"
        "processes are read before and after the window. Each switch is a wakeup. tini and dumb-init\n"
        "with 3 services (one `sh` child), the others with {n}.",
    ),
]

if __name__ == "__main__":
    main()
