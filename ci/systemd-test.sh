#!/usr/bin/env bash
# trc under a real systemd: boots this machine's own systemd as PID 1 in new pid, mount, uts,
# ipc, net and cgroup namespaces, on a throw-away overlay of / (upper layer on tmpfs; private
# /run, /tmp and /dev; /sys and /proc/sys read-only; risky units masked; a target that runs
# only journald), so nothing of the host changes. Installs the freshly built trc and trcctl
# and systemd/trc@.service inside, runs the checks with nsenter, prints each with its result,
# and tears everything down (also on failure or Ctrl-C).
#
#   ci/systemd-test.sh [BINDIR]
#
# BINDIR holds trc and trcctl (e.g. target/release); without it the script runs `cargo build`
# and takes target/debug (or $CARGO_TARGET_DIR/debug). Needs root, util-linux (unshare,
# nsenter, setpriv), systemd, overlayfs and a writable cgroup2 (/sys/fs/cgroup or its
# unified/ part). Exit status: 0 every check passed, 1 one failed or systemd did not boot.
# A machine that cannot run it at all (not root, no systemd) is a skip (status 0, said on
# stderr), except under CI=true, where it fails.
# shellcheck disable=SC2016,SC2317  # bash -c scripts in single quotes; helpers run through until_ok
set -uo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
SELF=$(readlink -f "$0")
P=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# Units that would touch the host (sysctl, modules, clock, udev, binfmt...) or wait for
# hardware are masked inside.
MASK="systemd-sysctl.service systemd-modules-load.service kmod-static-nodes.service
systemd-binfmt.service proc-sys-fs-binfmt_misc.automount systemd-random-seed.service
systemd-pstore.service systemd-timesyncd.service systemd-hwdb-update.service
systemd-udevd.service systemd-udev-trigger.service systemd-remount-fs.service
systemd-firstboot.service systemd-machine-id-commit.service systemd-repart.service
systemd-pcrphase.service systemd-pcrphase-sysinit.service systemd-journald-audit.socket
sys-kernel-debug.mount sys-kernel-tracing.mount sys-kernel-config.mount
sys-fs-fuse-connections.mount dev-hugepages.mount getty.target console-getty.service
systemd-logind.service timers.target networking.service systemd-networkd.service"
# How long web (in trc@demo) takes to be ready: the unit must stay "activating" that long.
WEB_DELAY=3

# --- PID 1 of the new namespaces, until it execs systemd ---------------------------------
inner() {
    set -euo pipefail
    local R=$BASE/root U=$BASE/upper E=$BASE/root/etc/systemd/system u f d
    mount -t tmpfs -o mode=755,size=2g trc-sysd-upper "$U"
    mkdir "$U/upper" "$U/work"
    mount -t overlay -o "lowerdir=/,upperdir=$U/upper,workdir=$U/work" trc-sysd-root "$R"
    mount -t proc -o nosuid,nodev,noexec proc "$R/proc"
    for f in sys sysrq-trigger; do # /proc/sys is the host's (core_pattern, file-max...)
        [ -e "$R/proc/$f" ] || continue
        mount --bind "$R/proc/$f" "$R/proc/$f"
        mount -o remount,bind,ro "$R/proc/$f"
    done
    mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$R/sys"
    mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$R/sys/fs/cgroup"
    mount -t tmpfs -o mode=755,nosuid,size=64m trc-sysd-dev "$R/dev"
    for d in null zero full random urandom tty; do
        touch "$R/dev/$d"
        mount --bind "/dev/$d" "$R/dev/$d"
    done
    mkdir "$R/dev/pts" "$R/dev/shm"
    ln -s pts/ptmx "$R/dev/ptmx"
    mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5 devpts "$R/dev/pts"
    touch "$R/dev/console"
    mount --bind "$BASE/console.log" "$R/dev/console"
    mount -t tmpfs -o mode=755,nosuid,nodev,size=256m trc-sysd-run "$R/run"
    mount -t tmpfs -o mode=1777,nosuid,nodev,size=1g trc-sysd-tmp "$R/tmp"
    mkdir -p "$R/payload"
    mount --bind "$BASE/payload" "$R/payload"
    mount -o remount,bind,ro "$R/payload"
    for u in $MASK; do ln -sfn /dev/null "$E/$u"; done
    rm -rf "$E"/*.wants # the host's enabled units are not wanted here
    printf '[Unit]\nDescription=%s: journald only\nRequires=%s\nAfter=systemd-journald.service\n' \
        "$NAME" "systemd-journald.socket systemd-journald-dev-log.socket systemd-journald.service" \
        > "$E/$NAME.target"
    echo "$NAME" > "$R/etc/hostname"
    hostname "$NAME"
    cd "$R"
    mkdir -p .oldroot
    pivot_root . .oldroot
    cd /
    umount -l /.oldroot
    rmdir /.oldroot
    exec setpriv --inh-caps=-all \
        --bounding-set=-sys_module,-sys_time,-sys_boot,-sys_rawio,-wake_alarm,-syslog \
        env -i container="$NAME" PATH=$P LANG=C.UTF-8 /lib/systemd/systemd --unit="$NAME.target" --show-status=no
}
if [ "${1:-}" = --inner ]; then
    BASE=$TRC_SYSD_BASE NAME=$TRC_SYSD_NAME
    inner
    exit 1
fi

# --- The host side ------------------------------------------------------------------------
T_START=$EPOCHREALTIME
say() { printf '%s\n' "$*"; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
# A machine where this cannot run at all: a skip, but a failure under CI=true.
cannot() {
    if [ "${CI:-}" = true ]; then
        say "systemd test: FAIL: $* (CI=true: this must run)" >&2
        exit 1
    fi
    say "systemd test: SKIPPED: $*" >&2
    exit 0
}
[ "$(id -u)" = 0 ] || cannot "needs root"
for c in unshare nsenter setpriv mount pivot_root systemctl journalctl timeout; do
    command -v "$c" >/dev/null || cannot "no $c"
done
[ -x /lib/systemd/systemd ] || cannot "no /lib/systemd/systemd"
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || true
grep -qw overlay /proc/filesystems || cannot "no overlayfs"
if [ "$(stat -f -c %T /sys/fs/cgroup)" = cgroup2fs ]; then
    CGROOT=/sys/fs/cgroup
elif [ "$(stat -f -c %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ]; then
    CGROOT=/sys/fs/cgroup/unified
else
    cannot "no cgroup2 hierarchy (/sys/fs/cgroup or /sys/fs/cgroup/unified)"
fi

if [ $# -ge 1 ]; then
    BINDIR=$(cd "$1" && pwd) || exit 1
else
    say "building trc (cargo build)"
    (cd "$REPO" && cargo build -q) || { say "cargo build failed" >&2; exit 1; }
    BINDIR=${CARGO_TARGET_DIR:-$REPO/target}/debug
    case $BINDIR in /*) ;; *) BINDIR=$REPO/$BINDIR ;; esac
fi
for b in trc trcctl; do
    [ -x "$BINDIR/$b" ] || { say "no $BINDIR/$b" >&2; exit 1; }
done

NAME=trc-systemd-test-$$
BASE=$(mktemp -d /tmp/trc-systemd-test.XXXXXX)
CG=$CGROOT/$NAME
UNSHARE_PID="" PID1="" BG_PIDS=()

pid1() { # systemd's pid on the host: unshare's only child
    local c
    [ -n "$UNSHARE_PID" ] && [ -d "/proc/$UNSHARE_PID" ] || return 1
    c=$(awk '{ print $1 }' "/proc/$UNSHARE_PID/task/$UNSHARE_PID/children" 2>/dev/null) && [ -n "$c" ] &&
        echo "$c"
}
# ns CMD...: CMD inside (every namespace, systemd's root and cwd), at most NS_TIMEOUT s.
ns() {
    nsenter -t "$PID1" -m -u -i -n -p -C -r -w \
        env -i PATH=$P HOME=/root TERM=dumb LANG=C.UTF-8 SYSTEMD_PAGER= SYSTEMD_COLORS=0 \
        timeout "${NS_TIMEOUT:-30}" "$@"
}
prop() { ns systemctl show -p "$2" --value -- "$1"; }
# until_ok SECONDS CMD...: runs CMD every 0.1 s until it succeeds; 1 when time is up.
until_ok() {
    local end=$((SECONDS + $1))
    shift
    while ! "$@"; do
        [ $SECONDS -lt $end ] || return 1
        sleep 0.1
    done
}

teardown() {
    local rc=$? t0=$EPOCHREALTIME p
    trap - EXIT INT TERM
    exec 1>&3 2>&4 # also when a check (whose output goes to a file) was interrupted
    [ -z "$RUNNING" ] || say "interrupted in check $N: $RUNNING"
    for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null; done
    if p=$(pid1); then
        NS_TIMEOUT=5 ns systemctl poweroff --no-block >/dev/null 2>&1 || kill -s RTMIN+4 "$p" 2>/dev/null
        for _ in $(seq 100); do [ -d "/proc/$p" ] || break; sleep 0.1; done
        if [ -d "/proc/$p" ]; then
            say "systemd did not power off in 10 s: SIGKILL (ends every process inside)"
            kill -KILL "$p" 2>/dev/null
        fi
    fi
    if [ -n "$UNSHARE_PID" ]; then
        for _ in $(seq 50); do [ -d "/proc/$UNSHARE_PID" ] || break; sleep 0.1; done
        kill -KILL "$UNSHARE_PID" 2>/dev/null
    fi
    wait 2>/dev/null
    local left=""
    if [ -d "$CG" ]; then
        find "$CG" -depth -type d -exec rmdir {} \; 2>/dev/null
        [ ! -d "$CG" ] || { left="processes left in $CG"; rc=1; }
    fi
    # The mounts were made in the namespace, which is gone: only plain dirs are left here.
    rm -rf --one-file-system "$BASE"
    say "torn down in $(since "$t0") s${left:+: $left}"
    exit "$rc"
}
exec 3>&1 4>&2
RUNNING=""
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- Checks -------------------------------------------------------------------------------
N=0 FAILED=() BAD=0
# check TITLE FUNCTION ARGS...: runs it, prints ok/FAIL with what it saw.
check() {
    local title=$1 t0=$EPOCHREALTIME rc
    shift
    N=$((N + 1)) BAD=0 RUNNING=$title
    "$@" > "$BASE/check.out" 2>&1
    rc=$? RUNNING=""
    [ "$BAD" = 0 ] || rc=1
    if [ $rc = 0 ]; then
        printf 'ok   %2d  %s (%s s)\n' "$N" "$title" "$(since "$t0")"
        sed 's/^/          /' "$BASE/check.out"
    else
        printf 'FAIL %2d  %s (%s s)\n' "$N" "$title" "$(since "$t0")"
        sed 's/^/       !  /' "$BASE/check.out"
        FAILED+=("$N $title")
    fi
}
# is WHAT GOT WANT: says what was seen; a mismatch fails the check.
is() {
    if [ "$2" = "$3" ]; then
        say "$1: $2"
    else
        say "$1: got '$2', expected '$3'"
        BAD=1
        return 1
    fi
}
# yes_ WHAT CMD...: CMD must succeed.
yes_() {
    local what=$1
    shift
    if "$@"; then say "$what: yes"; else say "$what: NO"; BAD=1; return 1; fi
}
# matches WHAT TEXT REGEX (grep -E)
matches() {
    if grep -Eq -- "$3" <<< "$2"; then
        say "$1: $(grep -Em 1 -- "$3" <<< "$2" | head -c 300)"
    else
        say "$1: got '$(head -c 600 <<< "$2")', expected /$3/"
        BAD=1
        return 1
    fi
}
bad() { say "$*"; BAD=1; return 1; }
json() { sed -n "s/^ *\"$1\": *\"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}$/\1/p" | head -n 1; }
trcctl_pid() { ns trcctl --manager trc --instance demo --json status "$1" | json pid; }
jctl() { ns journalctl --no-pager -o cat "$@"; }

# --- The files installed inside -----------------------------------------------------------
payload() {
    local pl=$BASE/payload
    mkdir -p "$pl/opt/demo/trc.d" "$pl/opt/bad/trc.d" "$pl/opt/wd/trc.d" "$pl/dropin"
    cp "$BINDIR/trc" "$BINDIR/trcctl" "$REPO/systemd/trc@.service" "$pl/"
    cat > "$pl/opt/demo/trc.d/async.web" << EOF
### BEGIN TRC
# restart: always
# restart-delay: 200ms
# ready: log ^listening on
# ready-timeout: 60s
### END TRC
# Ready $WEB_DELAY s after its start: until then trc@demo must stay "activating". The file
# says when it is about to be ready, for the test.
rm -f /run/web-listening
echo "warming up"
sleep $WEB_DELAY
: > /run/web-listening
echo "listening on :8080"
while sleep 0.5; do echo "web tick"; done
EOF
    cat > "$pl/opt/demo/trc.d/async.worker" << 'EOF'
### BEGIN TRC
# restart: on-failure
# restart-delay: 200ms
### END TRC
echo "worker started"
while sleep 0.5; do echo "worker tick"; done
EOF
    cat > "$pl/opt/bad/trc.d/async.x" << 'EOF'
### BEGIN TRC
# restart: sometimes
### END TRC
sleep 100
EOF
    printf '%s\n' 'exec sleep infinity' > "$pl/opt/wd/trc.d/async.idle"
    printf '[Service]\nWatchdogSec=2s\nLimitCORE=0\n' > "$pl/dropin/watchdog.conf"
    # trc@usage: a usage error (status 2), an option trc does not know.
    printf '[Service]\nExecStart=\nExecStart=/usr/local/bin/trc --workdir /opt/demo --no-such-option\n' \
        > "$pl/dropin/usage.conf"
    # What systemd saw when trc@demo's trc exited (the unit is unloaded once inactive).
    printf '%s\n' '[Service]' \
        'ExecStopPost=/bin/sh -c '"'"'printf "result=%%s\\ncode=%%s\\nstatus=%%s\\n" "$SERVICE_RESULT" "$EXIT_CODE" "$EXIT_STATUS" > /run/trc-demo.exit'"'" \
        > "$pl/dropin/exit.conf"
}

boot() {
    mkdir -p "$BASE/root" "$BASE/upper" "$BASE/payload"
    : > "$BASE/console.log"
    payload
    mkdir "$CG" || { bad "cannot make the cgroup $CG"; return 1; }
    # The subshell joins the new cgroup, then becomes unshare, whose child (PID 1) sees that
    # cgroup as its root.
    TRC_SYSD_BASE=$BASE TRC_SYSD_NAME=$NAME setsid bash -c 'echo $$ > "$1/cgroup.procs"
        exec unshare --pid --fork --kill-child --mount --uts --ipc --net --cgroup --propagation private bash "$2" --inner' \
        _ "$CG" "$SELF" < /dev/null > "$BASE/unshare.log" 2>&1 &
    UNSHARE_PID=$!
    local state=""
    for _ in $(seq 300); do # 60 s
        if PID1=$(pid1) && NS_TIMEOUT=5 ns test -S /run/systemd/private 2>/dev/null; then
            state=$(NS_TIMEOUT=60 ns systemctl is-system-running --wait 2>&1)
            break
        fi
        [ -d "/proc/$UNSHARE_PID" ] || break
        sleep 0.2
    done
    if [ "$state" != running ]; then
        bad "systemd did not boot (state: ${state:-none})"
        tail -n 20 "$BASE/console.log" "$BASE/unshare.log"
        [ -z "${PID1:-}" ] || ns systemctl --failed --no-legend
        return 1
    fi
    say "$(ns systemctl --version | head -n 1) is PID 1 (host pid $PID1), system state: $state"
    say "units: $(ns systemctl list-units --no-legend --plain --state=active | awk '{ print $1 }' |
        grep -E '\.(service|target)$' | tr '\n' ' ')"
}

install_trc() {
    ns sh -c 'install -m 755 /payload/trc /payload/trcctl /usr/local/bin/ &&
        install -m 644 /payload/trc@.service /etc/systemd/system/ &&
        cp -r /payload/opt/. /opt/ &&
        mkdir -p /etc/systemd/system/trc@wd.service.d /etc/systemd/system/trc@demo.service.d \
            /etc/systemd/system/trc@usage.service.d &&
        cp /payload/dropin/watchdog.conf /etc/systemd/system/trc@wd.service.d/ &&
        cp /payload/dropin/usage.conf /etc/systemd/system/trc@usage.service.d/ &&
        cp /payload/dropin/exit.conf /etc/systemd/system/trc@demo.service.d/ &&
        systemctl daemon-reload' || bad "install failed"
    matches "trc --version" "$(ns trc --version)" '^trc '
    is "trc@demo.service" "$(prop trc@demo LoadState)" loaded
    is "its ExecStart" "$(prop trc@demo ExecStart | grep -o 'argv\[\]=[^;]*' | sed 's/ *$//')" \
        "argv[]=/usr/local/bin/trc --workdir /opt/demo"
}

demo_start() {
    local t0=$EPOCHREALTIME rc seen="" early="" s st file
    # `systemctl start` waits for READY=1; meanwhile the unit's state is sampled.
    ns systemctl start trc@demo > "$BASE/start.out" 2>&1 &
    local start_pid=$!
    while kill -0 "$start_pid" 2>/dev/null; do
        s=$(ns systemctl show -p ActiveState,StatusText trc@demo | tr '\n' ' ')
        # The state first, then the file: active before web said "listening" is a bug.
        file=$(ns sh -c 'test -e /run/web-listening && echo yes || echo no')
        case $s in
            *ActiveState=activating*) [ "$file" = yes ] || seen=$s ;; # the last one before ready
            *ActiveState=active\ *) [ "$file" = yes ] || early=$s ;;
        esac
        sleep 0.1
    done
    wait "$start_pid"
    rc=$?
    local took
    took=$(since "$t0")
    is "systemctl start trc@demo: status" "$rc" 0 || cat "$BASE/start.out"
    say "systemctl start returned after $took s (web is ready after ${WEB_DELAY} s)"
    is "ActiveState right after" "$(prop trc@demo ActiveState)" active
    yes_ "web had said 'listening on' when systemctl start returned" ns test -e /run/web-listening
    [ -z "$early" ] || bad "active before web was ready: $early"
    if [ -n "$seen" ]; then
        matches "while web was not ready" "$seen" \
            'StatusText=2 running: web, worker; 1 ready, 1 starting ActiveState=activating'
    else
        bad "never saw the unit activating while web was not ready"
    fi
    awk -v t="$took" -v d="$WEB_DELAY" 'BEGIN { exit !(t >= d - 0.5) }' ||
        bad "systemctl start took $took s, less than web's delay of $WEB_DELAY s"
}

demo_status() {
    local st
    st=$(prop trc@demo StatusText)
    is "StatusText" "$st" "2 running: web, worker; 2 ready"
    is "Type" "$(prop trc@demo Type)" notify
    matches "systemctl status" "$(ns systemctl status --no-pager --lines 0 trc@demo | grep Status: | sed 's/^ *//')" \
        'Status: "2 running: web, worker; 2 ready"'
}

demo_journal() {
    local all web worker
    web_ticks() { jctl -u trc@demo TRC_TASK=web | grep -q '^web: web tick$'; }
    until_ok 10 web_ticks || bad "no 'web tick' record with TRC_TASK=web"
    all=$(jctl -u trc@demo)
    web=$(jctl -u trc@demo TRC_TASK=web)
    worker=$(jctl -u trc@demo TRC_TASK=worker)
    say "journalctl -u trc@demo: $(wc -l <<< "$all") lines; TRC_TASK=web: $(wc -l <<< "$web"); TRC_TASK=worker: $(wc -l <<< "$worker")"
    matches "TRC_TASK=web has web's lines" "$web" '^web: listening on :8080$'
    is "TRC_TASK=web: lines of other tasks" "$(grep -vc '^web: ' <<< "$web")" 0
    matches "TRC_TASK=worker has worker's lines" "$worker" '^worker: worker started$'
    is "TRC_TASK=worker: lines of other tasks" "$(grep -vc '^worker: ' <<< "$worker")" 0
    matches "the unit's journal has both" "$all" '^worker: worker tick$'
    matches "record fields (web)" \
        "$(ns journalctl --no-pager -u trc@demo TRC_TASK=web -n 1 -o verbose | grep -E '^ *(TRC_STAGE|TRC_STREAM|SYSLOG_IDENTIFIER|PRIORITY)=' | tr -s ' \n' ' ')" \
        'PRIORITY=6 .*SYSLOG_IDENTIFIER=trc .*TRC_STAGE=async .*TRC_STREAM=stdout'
}

demo_kill() {
    local old new main
    main=$(prop trc@demo MainPID)
    old=$(trcctl_pid worker)
    [ -n "$old" ] || { bad "no pid for worker (trcctl --manager trc status worker)"; return 1; }
    say "worker pid $old: kill -KILL"
    ns kill -KILL "$old"
    new_pid() {
        new=$(trcctl_pid worker)
        [ -n "$new" ] && [ "$new" != "$old" ] && [ "$new" != 0 ]
    }
    until_ok 10 new_pid || bad "worker was not started again within 10 s (pid: ${new:-none})"
    say "worker runs again: pid $new"
    local st
    st=$(ns trcctl --manager trc --instance demo --json status worker)
    is "its starts" "$(json starts <<< "$st")" 2
    is "its last status" "$(json last_status <<< "$st")" 137
    is "trc's pid (MainPID) unchanged" "$(prop trc@demo MainPID)" "$main"
    is "the unit's NRestarts" "$(prop trc@demo NRestarts)" 0
    all_ready() { [ "$(prop trc@demo StatusText)" = "2 running: web, worker; 2 ready" ]; }
    until_ok 5 all_ready || bad "StatusText after the restart: $(prop trc@demo StatusText)"
    say "StatusText: $(prop trc@demo StatusText)"
    twice() { [ "$(jctl -u trc@demo TRC_TASK=worker | grep -c '^worker: worker started$')" -ge 2 ]; }
    until_ok 5 twice || bad "the journal does not show worker started twice"
    say "journal: worker started twice"
}

demo_stop() {
    local cg main rc left
    cg=$(prop trc@demo ControlGroup)
    main=$(prop trc@demo MainPID)
    say "cgroup $cg: $(ns cat "/sys/fs/cgroup$cg/cgroup.procs" | wc -l) processes, trc is pid $main"
    ns systemctl stop trc@demo
    rc=$?
    is "systemctl stop trc@demo: status" "$rc" 0
    is "ActiveState" "$(prop trc@demo ActiveState)" inactive
    # An inactive instance is unloaded at once (systemd's GC), and with it ExecMainStatus and
    # Result: the drop-in's ExecStopPost= wrote them down ($SERVICE_RESULT, $EXIT_STATUS...).
    local exit
    exit=$(ns cat /run/trc-demo.exit)
    is "Result (ExecStopPost's \$SERVICE_RESULT)" "$(sed -n 's/^result=//p' <<< "$exit")" success
    is "ExecMainCode (\$EXIT_CODE)" "$(sed -n 's/^code=//p' <<< "$exit")" exited
    is "ExecMainStatus (\$EXIT_STATUS)" "$(sed -n 's/^status=//p' <<< "$exit")" 143
    matches "systemd says" "$(jctl -u trc@demo)" '^trc@demo.service: Deactivated successfully.$'
    if ns test -d "/sys/fs/cgroup$cg"; then
        left=$(ns cat "/sys/fs/cgroup$cg/cgroup.procs")
        is "processes left in $cg" "${left:-none}" none
    else
        say "cgroup $cg: removed (empty)"
    fi
    local killed
    killed=$(jctl -u trc@demo | grep -E 'Killing process|remains running|SIGKILL' | tail -n 3)
    is "systemd had to kill leftovers" "${killed:-no}" no
    yes_ "trc removed its runtime dir /run/trc/demo" ns sh -c '! test -e /run/trc/demo'
}

config_errors() {
    local u
    ns systemctl start trc@typo > /dev/null 2>&1 && bad "systemctl start trc@typo succeeded"
    ns systemctl start trc@bad > /dev/null 2>&1 && bad "systemctl start trc@bad succeeded"
    ns systemctl start trc@usage > /dev/null 2>&1 && bad "systemctl start trc@usage succeeded"
    say "systemctl start trc@typo, trc@bad, trc@usage: failed as expected; waiting 3 s (RestartSec=2s) for a retry"
    sleep 3
    for u in typo bad usage; do
        is "trc@$u ActiveState" "$(prop "trc@$u" ActiveState)" failed
        is "trc@$u Result" "$(prop "trc@$u" Result)" exit-code
        is "trc@$u ExecMainStatus" "$(prop "trc@$u" ExecMainStatus)" "$([ $u = usage ] && echo 2 || echo 78)"
        is "trc@$u NRestarts" "$(prop "trc@$u" NRestarts)" 0
    done
    matches "journalctl -u trc@typo -p err (trc's lines)" "$(jctl -u trc@typo -p err SYSLOG_IDENTIFIER=trc)" '/opt/typo'
    matches "journalctl -u trc@bad -p err (trc's lines)" "$(jctl -u trc@bad -p err SYSLOG_IDENTIFIER=trc)" \
        '/opt/bad/trc.d/async.x:2'
    matches "journalctl -u trc@usage -p err (a usage error)" "$(jctl -u trc@usage -p err SYSLOG_IDENTIFIER=trc)" \
        "^error: unexpected argument '--no-such-option' found"
    is "journalctl -u trc@usage -p info..info (none of it at info)" \
        "$(jctl -u trc@usage -p info..info SYSLOG_IDENTIFIER=trc | grep -c .)" 0
    is "trc@typo: starts in the journal" "$(jctl -u trc@typo | grep -c 'Starting trc@typo')" 1
}

watchdog() {
    local main new
    ns systemctl start trc@wd || bad "systemctl start trc@wd failed"
    is "trc@wd WatchdogUSec (the drop-in)" "$(prop trc@wd WatchdogUSec)" 2s
    main=$(prop trc@wd MainPID)
    say "waiting 5 s (2.5 × WatchdogSec): trc must keep pinging"
    sleep 5
    is "trc@wd after 5 s: ActiveState" "$(prop trc@wd ActiveState)" active
    is "trc@wd after 5 s: MainPID" "$(prop trc@wd MainPID)" "$main"
    is "trc@wd after 5 s: NRestarts" "$(prop trc@wd NRestarts)" 0
    say "kill -STOP $main (trc)"
    local t0=$EPOCHREALTIME
    ns kill -STOP "$main"
    fired() { jctl -u trc@wd | grep -q "Failed with result 'watchdog'"; }
    until_ok 15 fired || bad "no \"Failed with result 'watchdog'\" within 15 s"
    say "$(jctl -u trc@wd | grep -m 1 'Watchdog timeout') ($(since "$t0") s after SIGSTOP)"
    restarted() {
        new=$(prop trc@wd MainPID)
        [ "$(prop trc@wd ActiveState)" = active ] && [ "$new" != "$main" ] && [ "$new" != 0 ]
    }
    until_ok 15 restarted || bad "trc@wd was not restarted within 15 s"
    is "trc@wd NRestarts" "$(prop trc@wd NRestarts)" 1
    say "trc@wd active again, trc is pid $new ($(since "$t0") s after SIGSTOP)"
    ns systemctl stop trc@wd
}

# --- trcctl --manager systemd ----------------------------------------------------------------
# web.service: prints "up", and "got USR1" on SIGUSR1; $ and quotes test the unit's quoting.
WEB1='trap "echo got USR1" USR1; echo "web v1 up"; while :; do echo "tick $$"; sleep 0.2 & wait $!; done'
WEB2=${WEB1/v1/v2}
ctl() { ns trcctl --manager systemd "$@"; }
OUT="" RC=0
run() { OUT=$(ctl "$@" 2>&1); RC=$?; }

ctl_ensure() {
    local main
    run ensure web -- /bin/sh -c "$WEB1"
    is "ensure web -- sh -c ...: status" "$RC" 0
    is "  it says" "$(head -n 1 <<< "$OUT")" "web: created"
    matches "  /etc/systemd/system/web.service" "$(ns head -n 1 /etc/systemd/system/web.service)" '^# Managed by trcctl$'
    is "  web.service ActiveState" "$(prop web.service ActiveState)" active
    is "  web.service UnitFileState" "$(prop web.service UnitFileState)" enabled
    up() { jctl -u web.service | grep -q "^web $1 up\$"; }
    until_ok 5 up v1 || bad "the journal has no 'web v1 up'"
    main=$(prop web.service MainPID)
    run ensure web -- /bin/sh -c "$WEB1"
    is "ensure web again (same): status" "$RC" 0
    is "  it says" "$(head -n 1 <<< "$OUT")" "web: unchanged"
    is "  MainPID unchanged" "$(prop web.service MainPID)" "$main"
    run ensure web.service -- /bin/sh -c "$WEB2"
    is "ensure web.service (another command): status" "$RC" 0
    is "  it says" "$(head -n 1 <<< "$OUT")" "web: updated"
    yes_ "  no web.service.service" ns sh -c '! test -e /etc/systemd/system/web.service.service'
    local new
    new=$(prop web.service MainPID)
    if [ "$new" = "$main" ] || [ "$new" = 0 ]; then bad "  MainPID $new: not restarted"; fi
    until_ok 5 up v2 || bad "the journal has no 'web v2 up'"
    say "  restarted with the new command (pid $main -> $new, 'web v2 up' in the journal)"
    # trcctl wrote "tick $$$$": systemd gave sh '$$', which it expanded (a "$" would be wrong).
    matches "  \$\$ reached sh" "$(jctl -u web.service)" '^tick [0-9]+$'
}

ctl_list_status() {
    local main
    main=$(prop web.service MainPID)
    run list
    is "list: status" "$RC" 0
    say "$OUT"
    matches "  web's row" "$(grep '^web ' <<< "$OUT")" "^web +running +$main "
    is "  rows (only trcctl's units)" "$(tail -n +2 <<< "$OUT" | wc -l)" 1
    run status web
    is "status web: status" "$RC" 0
    matches "  it says" "$OUT" "running"
    run --json status web
    is "--json status web: state" "$(json state <<< "$OUT")" running
    is "--json status web: pid" "$(json pid <<< "$OUT")" "$main"
    run status nope
    is "status nope: status" "$RC" 1
    say "  $OUT"
}

ctl_stop_start() {
    local main
    run stop web
    is "stop web: status" "$RC" 0
    is "  web.service ActiveState" "$(prop web.service ActiveState)" inactive
    is "  --json status: state" "$(ctl --json status web | json state)" stopped
    run start web
    is "start web: status" "$RC" 0
    is "  web.service ActiveState" "$(prop web.service ActiveState)" active
    main=$(prop web.service MainPID)
    run restart web
    is "restart web: status" "$RC" 0
    is "  web.service ActiveState" "$(prop web.service ActiveState)" active
    local new
    new=$(prop web.service MainPID)
    if [ "$new" = "$main" ] || [ "$new" = 0 ]; then bad "  MainPID $new: not restarted"; fi
    say "  MainPID $main -> $new"
}

ctl_signal() {
    run signal web USR1
    is "signal web USR1: status" "$RC" 0
    got() { ctl logs web -n 20 | grep -q '^got USR1$'; }
    until_ok 5 got || bad "  'got USR1' not in trcctl logs web within 5 s"
    say "  trcctl logs web: 'got USR1'"
    is "  web.service ActiveState" "$(prop web.service ActiveState)" active
}

ctl_logs() {
    # `logs` is `journalctl -u`, which has systemd's own lines about the unit too: right after
    # the signal check, the last lines may be its "Sent signal SIGUSR1" ones. Wait for three
    # ticks after them (one every 0.2 s; a loaded machine may take longer).
    three_ticks() { run logs web -n 3; [ "$RC" = 0 ] && [ "$(grep -cE '^tick [0-9]+$' <<< "$OUT")" = 3 ]; }
    until_ok 10 three_ticks || true
    run logs web -n 3
    is "logs web -n 3: status" "$RC" 0
    is "  lines" "$(wc -l <<< "$OUT")" 3
    matches "  web's lines" "$OUT" '^tick [0-9]+$'
    # -f: a few new lines, then the reader goes away: trcctl (and its journalctl) must end.
    local out rcs
    out=$(nsenter -t "$PID1" -m -u -i -n -p -C -r -w env -i PATH=$P LANG=C.UTF-8 \
        bash -c 'timeout 20 trcctl --manager systemd logs -n 0 -f web | head -n 3; echo "rc=${PIPESTATUS[*]}"')
    rcs=$(tail -n 1 <<< "$out")
    out=$(head -n -1 <<< "$out")
    is "logs -f web | head -n 3: lines" "$(grep -c '^tick [0-9]*$' <<< "$out")" 3
    case $rcs in
        "rc=124 "*) bad "  trcctl logs -f did not end when its reader went away ($rcs)" ;;
        *) say "  trcctl ended when head did ($rcs)" ;;
    esac
    gone() { ! ns pgrep -x journalctl > /dev/null; }
    until_ok 3 gone || bad "  journalctl still runs: $(ns pgrep -a journalctl)"
}

ctl_start_all_reload() {
    ctl stop web > /dev/null
    is "web.service after stop" "$(prop web.service ActiveState)" inactive
    run start-all
    is "start-all: status" "$RC" 0
    say "  it says: $OUT"
    matches "  it names web" "$OUT" 'web'
    is "  web.service ActiveState" "$(prop web.service ActiveState)" active
    run start-all
    is "start-all again: status" "$RC" 0
    say "  it says: ${OUT:-(nothing)}"
    # reload is daemon-reload: a unit changed by hand is read again.
    ns sh -c 'echo "# changed by hand" >> /etc/systemd/system/web.service'
    is "NeedDaemonReload after a hand edit" "$(prop web.service NeedDaemonReload)" yes
    run reload
    is "reload: status" "$RC" 0
    say "  it says: $OUT"
    is "  NeedDaemonReload after reload" "$(prop web.service NeedDaemonReload)" no
}

ctl_user() {
    run --user list
    is "--user list (no user manager): status" "$RC" 69
    say "  $OUT"
    run --user status web
    is "--user status web: status" "$RC" 69
}

# --- Main ---------------------------------------------------------------------------------
say "trc under systemd: $BINDIR/{trc,trcctl}, work dir $BASE, cgroup $CG"
check "boot: systemd as PID 1 in new namespaces on an overlay of /" boot
if [ "${#FAILED[@]}" != 0 ]; then
    say "systemd did not boot: no further checks"
    exit 1
fi
check "install trc, trcctl, trc@.service; /opt/demo, /opt/bad, /opt/wd, drop-ins (wd, demo, usage)" install_trc
check "trc@demo starts, and is active only after READY=1 (web ready after ${WEB_DELAY} s)" demo_start
check "STATUS= names the tasks and how many are ready" demo_status
check "journalctl -u trc@demo TRC_TASK=<name> filters one task" demo_journal
check "a killed task (restart: on-failure) restarts; the unit stays up" demo_kill
check "systemctl stop: Result=success, status 143, the cgroup empty" demo_stop
check "config errors (no /opt/typo, a bad directive): -p err, status 78; a usage error: -p err, status 2; no retry" config_errors
check "WatchdogSec=2s (drop-in): trc keeps the unit alive; SIGSTOP fires it" watchdog
check "trcctl --manager systemd ensure: created, unchanged, updated (web.service)" ctl_ensure
check "trcctl --manager systemd list, status" ctl_list_status
check "trcctl --manager systemd stop, start, restart" ctl_stop_start
check "trcctl --manager systemd signal" ctl_signal
check "trcctl --manager systemd logs, logs -f" ctl_logs
check "trcctl --manager systemd start-all, reload" ctl_start_all_reload
check "trcctl --manager systemd --user without a user manager: 69" ctl_user

say "${N} checks, ${#FAILED[@]} failed, in $(since "$T_START") s"
for f in "${FAILED[@]}"; do say "  FAILED: $f"; done
[ "${#FAILED[@]}" = 0 ]
