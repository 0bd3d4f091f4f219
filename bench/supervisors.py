#!/usr/bin/env python3
"""Supervisors running N sleeping services, measured side by side (not a test: nothing asserted).

  memory    RSS (and PSS) of the supervisor's own processes once all N services run
  teardown  time from the stop signal to the moment the supervisor and every service are gone
  idle      CPU time and context switches (wakeups) of the supervisor's processes over a window
            in which nothing happens

Every service is `sleep 100000`, exec'd so that the service process is `sleep` itself:
  trc            `trc -w DIR` (wait_forever), each service a file trc.d/async.tN `exec sleep ...`
                 (bash sources it and is replaced by sleep); counted: the trc process. Its
                 XDG_RUNTIME_DIR (its FIFOs, socket) is on /dev/shm when that is a tmpfs
  tini           `tini -s -- sh -c 'sleep & sleep & sleep & wait'`: tini supervises one child, so
                 only with 3 services, started by a shell; counted: tini (the sh is shown apart)
  dumb-init      the same with `dumb-init sh -c ...`; counted: dumb-init
  runit          `runsvdir DIR`, a service dir per service, `run` = `#!/bin/sh` + `exec sleep ...`;
                 counted: runsvdir and every runsv
  s6             `s6-svscan DIR` (`-c N` above its default of 500 services), the same run scripts;
                 counted: s6-svscan and every s6-supervise
  supervisord    `supervisord -n`, a [program] per service (`command=sleep ...`, output logged to
                 files as by default); counted: the supervisord process
  bash           bench/trivialrc-like.sh (TrivialRC's structure) with `-D 'sleep ...'` per service
                 (its default policy, wait_any); counted: the main shell and every task subshell

teardown: SIGTERM to trc, s6-svscan (it acts as `s6-svscanctl -t`), supervisord and the bash
main shell; SIGHUP to runsvdir (runsvdir(8): it sends TERM to every runsv and exits; each runsv
stops its service and exits). The clock starts just before the kill(2) and stops when a pidfd
of every process of the tree (supervisors and services) has reported its exit.
idle: every supervisor runs at once; once all are quiet (no CPU time used for 0.5 s), the CPU
time (utime + stime) and the context switches (of every thread) of the supervisor processes are
read from /proc before and after the window.

The services run when every one of them is a live `sleep` and the supervisor processes are all
there; waits are on such states, polled, each with a deadline. This script registers as a child
subreaper: whatever a supervisor leaves behind comes to it, and it kills all of it at the end.

Usage: bench/supervisors.py memory   [--sizes 3,100,1000] [--runs 3] [--json FILE]
       bench/supervisors.py teardown [--sizes 5,100] [--runs 5] [--json FILE]
       bench/supervisors.py idle     [--tasks 100] [--window 10] [--json FILE]
Env:   TRC (default target/release/trc), KINDS (the rows: "trc tini dumb-init runit s6
       supervisord bash"; missing programs are skipped), TIMEOUT (60 s per wait), GUARD (teardown:
       how long every service has run before the stop signal, 1.1 s: runsv waits a second after a
       run shorter than that), SLOW_RUNS (teardown: runs of a row whose first run took over 1 s, 3),
       BENCH_SMOKE=1 (a smoke run, which only shows that the script works end to end: KINDS
       defaults to "trc bash", GUARD to 0, and there is no wait for the supervisors' CPU to
       settle before a measurement)
"""

import argparse
import ctypes
import json
import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SLEEP = "sleep 100000"
CLK_TCK = os.sysconf("SC_CLK_TCK")
TIMEOUT = float(os.environ.get("TIMEOUT", "60"))
# A smoke run (CI) only shows that the script works end to end, quickly even on a busy machine.
SMOKE = os.environ.get("BENCH_SMOKE") == "1"
GUARD = float(os.environ.get("GUARD", "0" if SMOKE else "1.1"))
SLOW_RUNS = int(os.environ.get("SLOW_RUNS", "3"))
RUNTIME_BASE = None  # where trc's XDG_RUNTIME_DIRs go: a tmpfs when there is one


class Failed(Exception):
    pass


# ----- the process table ---------------------------------------------------------------------


def proc_table():
    """{pid: (ppid, comm, state)} of every process."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        close = data.rindex(b")")
        fields = data[close + 2 :].split()
        comm = data[data.index(b"(") + 1 : close].decode(errors="replace")
        table[int(name)] = (int(fields[1]), comm, fields[0].decode())
    return table


def descendants(root, table):
    """root and all its descendants that are in `table`."""
    children = defaultdict(list)
    for pid, (ppid, _, _) in table.items():
        children[ppid].append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def status_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def pss_kb(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_ticks(pid):
    """utime + stime of the whole process (all its threads), in clock ticks."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    fields = data[data.rindex(b")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def switches(pid):
    """Voluntary and involuntary context switches, summed over the process's threads."""
    total = [0, 0]
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        total[0] += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        total[1] += int(line.split()[1])
        except OSError:
            pass
    return total


def wait_for(what, check, timeout=None, every=0.02):
    deadline = time.monotonic() + (timeout or TIMEOUT)
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise Failed(f"timed out waiting for {what}")
        time.sleep(every)


# ----- the supervisors -----------------------------------------------------------------------


class Kind:
    """How one supervisor runs N sleeping services."""

    name = label = ""
    programs = ()  # what must be installed
    supervisors = ()  # comm of the processes counted as the supervisor
    stop_signal = signal.SIGTERM
    max_tasks = None  # tini and dumb-init: 3 only

    def available(self):
        return all(shutil.which(p) for p in self.programs)

    def supervisor_count(self, n):
        return 1

    def prepare(self, d, n):
        """Writes the config under d; returns (argv, extra env)."""
        raise NotImplementedError


class Trc(Kind):
    name, label, supervisors = "trc", "trc", ("trc",)

    def __init__(self, trc):
        self.trc = trc
        self.programs = (trc, "bash")
        self.supervisors = (os.path.basename(trc)[:15],)  # its comm

    def prepare(self, d, n):
        os.makedirs(f"{d}/work/trc.d")
        for i in range(1, n + 1):
            with open(f"{d}/work/trc.d/async.t{i}", "w") as f:
                f.write(f"exec {SLEEP}\n")
        xdg = tempfile.mkdtemp(prefix="xdg-", dir=RUNTIME_BASE or d)
        return [self.trc, "-w", f"{d}/work"], {"RC_WAIT_POLICY": "wait_forever", "XDG_RUNTIME_DIR": xdg}


class Tini(Kind):
    name, label, programs, supervisors, max_tasks = "tini", "tini", ("tini", "sh"), ("tini",), 3

    def prepare(self, d, n):
        return ["tini", "-s", "--", "sh", "-c", f"{SLEEP} & " * n + "wait"], {}


class DumbInit(Kind):
    name, label, programs, supervisors, max_tasks = "dumb-init", "dumb-init", ("dumb-init", "sh"), ("dumb-init",), 3

    def prepare(self, d, n):
        return ["dumb-init", "sh", "-c", f"{SLEEP} & " * n + "wait"], {}


def service_dirs(d, n):
    for i in range(1, n + 1):
        os.makedirs(f"{d}/t{i}")
        with open(f"{d}/t{i}/run", "w") as f:
            f.write(f"#!/bin/sh\nexec {SLEEP}\n")
        os.chmod(f"{d}/t{i}/run", 0o755)


class Runit(Kind):
    name, label, programs, supervisors = "runit", "runit", ("runsvdir", "runsv"), ("runsvdir", "runsv")
    stop_signal = signal.SIGHUP  # runsvdir(8): TERM to every runsv, then exit

    def supervisor_count(self, n):
        return 1 + n

    def prepare(self, d, n):
        service_dirs(f"{d}/sv", n)
        return ["runsvdir", f"{d}/sv"], {}


class S6(Kind):
    name, label, programs, supervisors = "s6", "s6", ("s6-svscan", "s6-supervise"), ("s6-svscan", "s6-supervise")
    # s6-svscan: SIGTERM acts as `s6-svscanctl -t` (TERM to every s6-supervise, which brings its
    # service down and exits; s6-svscan exits when they are gone).

    def supervisor_count(self, n):
        return 1 + n

    def prepare(self, d, n):
        service_dirs(f"{d}/scan", n)
        return ["s6-svscan"] + (["-c", str(n)] if n > 500 else []) + [f"{d}/scan"], {}


class Supervisord(Kind):
    name, label, programs, supervisors = "supervisord", "supervisord", ("supervisord",), ("supervisord",)

    def prepare(self, d, n):
        with open(f"{d}/supervisord.conf", "w") as f:
            f.write(
                f"[supervisord]\nnodaemon=true\nlogfile={d}/supervisord.log\npidfile={d}/supervisord.pid\n"
                f"childlogdir={d}\nminfds={max(1024, 4 * n + 64)}\n\n"
            )
            for i in range(1, n + 1):
                f.write(f"[program:t{i}]\ncommand={SLEEP}\n\n")
        return ["supervisord", "-n", "-c", f"{d}/supervisord.conf"], {}


class Bash(Kind):
    name, label, programs, supervisors = "bash", "bash, TrivialRC-style", ("bash", "ps", "pgrep", "pkill"), ("bash",)

    def supervisor_count(self, n):
        return 1 + n

    def prepare(self, d, n):
        argv = ["bash", f"{HERE}/trivialrc-like.sh", "-w", d]
        for _ in range(n):
            argv += ["-D", SLEEP]
        return argv, {"RC_WAIT_POLICY": "wait_any"}


def all_kinds(trc):
    return [Trc(trc), Tini(), DumbInit(), Runit(), S6(), Supervisord(), Bash()]


class Group:
    """One supervisor with its n services, in a directory of its own."""

    def __init__(self, kind, n, tmp):
        self.kind, self.n = kind, n
        self.dir = tempfile.mkdtemp(prefix=f"{kind.name}-", dir=tmp)
        argv, env = kind.prepare(self.dir, n)
        self.log = open(f"{self.dir}/log", "wb")
        self.proc = subprocess.Popen(
            argv,
            env={**os.environ, **env},
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C on the terminal is for the measuring script only
        )
        self.root = self.proc.pid

    def census(self):
        """(supervisors, services, others): live processes of the tree, by role."""
        table = proc_table()
        sup, svc, other = [], [], []
        for pid in descendants(self.root, table):
            _, comm, state = table[pid]
            if state == "Z":
                continue
            if comm == "sleep":
                svc.append(pid)
            elif comm in self.kind.supervisors:
                sup.append(pid)
            else:
                other.append(pid)
        return sup, svc, other, table

    def wait_running(self):
        want_sup = self.kind.supervisor_count(self.n)

        def running():
            if self.proc.poll() is not None:
                raise Failed(f"{self.kind.label} exited ({self.proc.returncode}):\n{self.log_tail()}")
            sup, svc, other, table = self.census()
            return (sup, svc, other, table) if len(svc) == self.n and len(sup) == want_sup else None

        try:
            return wait_for(f"{self.kind.label}'s {self.n} services", running, every=0.02 if self.n < 200 else 0.1)
        except Failed as e:
            raise Failed(f"{e}\n{self.log_tail()}") from None

    def log_tail(self):
        try:
            with open(f"{self.dir}/log", errors="replace") as f:
                return f.read()[-1500:]
        except OSError:
            return ""

    def wait_quiet(self, pids, quiet=0.3, timeout=5.0):
        """Waits until the processes' CPU time stops growing for `quiet` s (at most `timeout` s):
        a supervisor that has just started every service may still be busy. Not in a smoke run,
        whose numbers are not for comparison (on a busy machine, it would take the whole timeout)."""
        if SMOKE:
            return
        deadline = time.monotonic() + timeout
        last, since = None, time.monotonic()
        while time.monotonic() < deadline:
            now = sum(cpu_ticks(p) for p in pids)
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return
            time.sleep(0.05)


def kill_everything():
    """SIGKILL to every descendant of this process (this script is a subreaper, so that is all
    the supervisors left behind), then reaps them."""
    me = os.getpid()
    deadline = time.monotonic() + 20
    while True:
        table = proc_table()
        live = [p for p in descendants(me, table) if p != me and table[p][2] != "Z"]
        for pid in live:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        reap()
        if not live:
            return
        if time.monotonic() > deadline:
            raise Failed(f"processes left that cannot be killed: {live}")
        time.sleep(0.01)


def reap():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


# ----- the measurements ----------------------------------------------------------------------


def measure_memory(kinds, sizes, runs, tmp):
    rows = []
    for n in sizes:
        for kind in kinds:
            if kind.max_tasks and n > kind.max_tasks:
                continue
            samples = []
            for _ in range(runs):
                group = Group(kind, n, tmp)
                sup, svc, other, table = group.wait_running()
                group.wait_quiet(sup)
                samples.append(
                    {
                        "rss_kb": sum(status_kb(p, "VmRSS") for p in sup),
                        "pss_kb": sum(pss_kb(p) for p in sup),
                        "processes": len(sup),
                        "other_rss_kb": sum(status_kb(p, "VmRSS") for p in other),
                        "others": sorted({table[p][1] for p in other}),
                    }
                )
                kill_everything()
                shutil.rmtree(group.dir, ignore_errors=True)
            rows.append({"kind": kind.name, "label": kind.label, "tasks": n, "samples": samples})
            log(f"memory: {kind.label}, {n} services: {median([s['rss_kb'] for s in samples]):.0f} kB RSS")
    return rows


def measure_teardown(kinds, sizes, runs, tmp):
    rows = []
    for n in sizes:
        for kind in kinds:
            if kind.max_tasks:
                continue
            samples = []
            while len(samples) < (runs if not samples or samples[0]["ms"] < 1000 else min(runs, SLOW_RUNS)):
                group = Group(kind, n, tmp)
                sup, svc, other, _ = group.wait_running()
                running = time.monotonic()
                group.wait_quiet(sup)
                # runsv sleeps 1 s after a run shorter than 1 s before it acts (exits, here):
                # every service has run GUARD s before it is stopped, for every supervisor.
                time.sleep(max(0.0, running + GUARD - time.monotonic()))
                watched = sup + svc + other
                fds = [os.pidfd_open(p) for p in watched]
                poller = select.poll()
                for fd in fds:
                    poller.register(fd, select.POLLIN)
                left = set(fds)
                t0 = time.perf_counter()
                os.kill(group.root, kind.stop_signal)
                deadline = t0 + TIMEOUT
                t1 = None
                while left:
                    wait_ms = max(0, (deadline - time.perf_counter()) * 1000)
                    events = poller.poll(wait_ms)
                    t1 = time.perf_counter()
                    if not events:
                        break
                    for fd, _ in events:
                        poller.unregister(fd)
                        left.discard(fd)
                for fd in fds:
                    os.close(fd)
                if left:
                    raise Failed(f"teardown of {kind.label} with {n} services: {len(left)} processes still there after {TIMEOUT:g} s")
                samples.append({"ms": (t1 - t0) * 1000, "processes": len(watched)})
                kill_everything()
                shutil.rmtree(group.dir, ignore_errors=True)
            rows.append({"kind": kind.name, "label": kind.label, "tasks": n, "samples": samples})
            log(f"teardown: {kind.label}, {n} services: {median([s['ms'] for s in samples]):.1f} ms")
    return rows


def measure_idle(kinds, n, window, tmp):
    groups = []
    for kind in kinds:
        groups.append(Group(kind, min(n, kind.max_tasks or n), tmp))
    sups = {}
    for group in groups:
        sups[group] = group.wait_running()[0]
    for group in groups:
        group.wait_quiet(sups[group], quiet=0.5)
    before = {g: [(cpu_ticks(p), switches(p)) for p in sups[g]] for g in groups}
    time.sleep(window)
    rows = []
    for group in groups:
        sup_now = group.census()[0]
        if sorted(sup_now) != sorted(sups[group]):
            raise Failed(f"idle: {group.kind.label}'s supervisor processes changed during the window")
        after = [(cpu_ticks(p), switches(p)) for p in sups[group]]
        cpu = sum(a[0] - b[0] for a, b in zip(after, before[group]))
        vol = sum(a[1][0] - b[1][0] for a, b in zip(after, before[group]))
        invol = sum(a[1][1] - b[1][1] for a, b in zip(after, before[group]))
        rows.append(
            {
                "kind": group.kind.name,
                "label": group.kind.label,
                "tasks": group.n,
                "processes": len(sups[group]),
                "window_s": window,
                "cpu_ms": cpu * 1000 / CLK_TCK,
                "voluntary": vol,
                "involuntary": invol,
            }
        )
        log(f"idle: {group.kind.label}, {group.n} services: {vol + invol} context switches in {window:g} s")
    kill_everything()
    for group in groups:
        shutil.rmtree(group.dir, ignore_errors=True)
    return rows


# ----- output --------------------------------------------------------------------------------


def median(values):
    v = sorted(values)
    k = len(v)
    return v[k // 2] if k % 2 else (v[k // 2 - 1] + v[k // 2]) / 2


def log(msg):
    print(f"  {msg}", file=sys.stderr, flush=True)


def fmt_ratio(r):
    return f"{r:.2f}" if r >= 0.1 else f"{r:.2g}"


def print_memory(rows):
    trc = {r["tasks"]: median([s["rss_kb"] for s in r["samples"]]) for r in rows if r["kind"] == "trc"}
    print("| supervisor | services | processes counted | RSS (median) | PSS (median) | trc's RSS ÷ this |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        rss = median([s["rss_kb"] for s in r["samples"]])
        pss = median([s["pss_kb"] for s in r["samples"]])
        ratio = fmt_ratio(trc[r["tasks"]] / rss) if r["tasks"] in trc and rss else ""
        extra = ""
        if r["samples"][0]["others"]:
            extra = f" (+ {', '.join(r['samples'][0]['others'])}: {median([s['other_rss_kb'] for s in r['samples']]):,.0f} kB, not counted)"
        procs = r["samples"][0]["processes"]
        print(f"| {r['label']}{extra} | {r['tasks']} | {procs} | {rss:,.0f} kB | {pss:,.0f} kB | {ratio} |")


def print_teardown(rows):
    trc = {r["tasks"]: median([s["ms"] for s in r["samples"]]) for r in rows if r["kind"] == "trc"}
    print("| supervisor | services | runs | median | min | max | trc's median ÷ this |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        ms = [s["ms"] for s in r["samples"]]
        ratio = fmt_ratio(trc[r["tasks"]] / median(ms)) if r["tasks"] in trc else ""
        print(f"| {r['label']} | {r['tasks']} | {len(ms)} | {median(ms):,.1f} ms | {min(ms):,.1f} ms | {max(ms):,.1f} ms | {ratio} |")


def print_idle(rows):
    print("| supervisor | services | processes | CPU time | context switches (voluntary + involuntary) | per second |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        total = r["voluntary"] + r["involuntary"]
        print(
            f"| {r['label']} | {r['tasks']} | {r['processes']} | {r['cpu_ms']:.0f} ms | "
            f"{total} ({r['voluntary']} + {r['involuntary']}) | {total / r['window_s']:.1f} |"
        )


# ----- main ----------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["memory", "teardown", "idle"])
    parser.add_argument("--sizes", help="numbers of services (memory: 3,100,1000; teardown: 5,100)")
    parser.add_argument("--runs", type=int, help="runs per row (memory: 3, teardown: 5)")
    parser.add_argument("--tasks", type=int, default=100, help="idle: services per supervisor")
    parser.add_argument("--window", type=float, default=10.0, help="idle: seconds measured")
    parser.add_argument("--json", help="also write the raw results to this file")
    args = parser.parse_args()

    trc = os.environ.get("TRC") or f"{REPO}/target/release/trc"
    trc = os.path.abspath(trc)
    if not os.access(trc, os.X_OK):
        sys.exit(f"{trc}: not an executable (cargo build --release, or set TRC=...)")
    wanted = os.environ.get("KINDS", "trc bash" if SMOKE else "trc tini dumb-init runit s6 supervisord bash").split()
    kinds = []
    for kind in all_kinds(trc):
        if kind.name not in wanted:
            continue
        if kind.available():
            kinds.append(kind)
        else:
            log(f"{kind.label}: not installed, skipped ({', '.join(kind.programs)})")

    # Whatever a supervisor leaves behind becomes ours, and is killed at the end.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    # 1,000 services: trc holds 2 pipes per task, supervisord 3; a soft limit of 1024 is too low.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard == resource.RLIM_INFINITY else min(hard, 1 << 16)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    def stop(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, stop)
    tmp = tempfile.mkdtemp(prefix="trc-bench-")
    # trc's runtime dirs on a tmpfs when there is one, as XDG_RUNTIME_DIR and /run are on a host.
    global RUNTIME_BASE
    if is_tmpfs("/dev/shm") and os.access("/dev/shm", os.W_OK):
        RUNTIME_BASE = tempfile.mkdtemp(prefix="trc-bench-", dir="/dev/shm")
    try:
        if args.what == "memory":
            sizes = [int(s) for s in (args.sizes or "3,100,1000").split(",")]
            rows = measure_memory(kinds, sizes, args.runs or 3, tmp)
            print_memory(rows)
        elif args.what == "teardown":
            sizes = [int(s) for s in (args.sizes or "5,100").split(",")]
            rows = measure_teardown(kinds, sizes, args.runs or 5, tmp)
            print_teardown(rows)
        else:
            rows = measure_idle(kinds, args.tasks, args.window, tmp)
            print_idle(rows)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"what": args.what, "rows": rows}, f, indent=1)
    except Failed as e:
        sys.exit(f"{args.what}: {e}")
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        kill_everything()
        shutil.rmtree(tmp, ignore_errors=True)
        if RUNTIME_BASE:
            shutil.rmtree(RUNTIME_BASE, ignore_errors=True)


def is_tmpfs(path):
    try:
        with open("/proc/self/mounts") as f:
            mounts = [line.split() for line in f]
    except OSError:
        return False
    best = max((m for m in mounts if path == m[1] or path.startswith(m[1].rstrip("/") + "/")), key=lambda m: len(m[1]), default=None)
    return bool(best) and best[2] == "tmpfs"


if __name__ == "__main__":
    main()
