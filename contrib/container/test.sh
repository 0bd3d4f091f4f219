#!/usr/bin/env bash
# The container recipe, tested: builds trc statically and the demo program, builds the image of
# ./Containerfile with podman (offline), runs it as a read-only, non-root container and checks
# what the recipe promises; then plays ./deployment.yaml with `podman kube play`.
#
#   bash contrib/container/test.sh        (as root; .ci/run runs it with CI=true)
#
# Everything podman makes lives in a private store in a temp dir (its own --root, --runroot,
# --tmpdir, containers.conf, CNI config dir), removed at the end whatever happens; nothing is
# published on the host's ports and no network is made (--network none: the probes all go to
# 127.0.0.1 inside the container). Without CI=true, a machine where podman cannot work is
# skipped with a message; with CI=true that is a failure.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
image=localhost/trc-demo:latest
name=trc-demo-test
uid=65532
grace=10 # podman stop -t: SIGTERM, then SIGKILL after this many seconds

say() { echo "--- $*"; }
ok() { echo "ok: $*"; }
fail() {
    echo "FAIL: $*" >&2
    exit 1
}
skip() {
    if [ "${CI:-}" = true ]; then fail "$* (CI=true: not skipping)"; fi
    echo "SKIP: $*"
    exit 0
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }

[ "$(id -u)" = 0 ] || skip "needs root (rootful podman; rootless would need subuid ranges beyond $uid)"
for tool in podman runc catatonit nsenter gcc cargo rustc python3; do
    command -v "$tool" >/dev/null || skip "$tool is not installed (Debian: podman runc catatonit gcc libc6-dev python3)"
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/trc-container.XXXXXX")
started=$SECONDS

# podman on its private store. The systemd lines are noise: without systemd as PID 1, podman
# cannot make the timer of a healthcheck (`podman healthcheck run` still works, and is used).
pm() {
    podman --root "$tmp/storage" --runroot "$tmp/run" --tmpdir "$tmp/libpod" "$@" \
        2> >(grep -v 'unable to get systemd connection' >&2)
}

cleanup() {
    local status=$?
    set +e
    if [ -d "$tmp/storage" ]; then
        [ -f "$tmp/deployment.yaml" ] && pm kube down "$tmp/deployment.yaml" >/dev/null 2>&1
        pm pod rm --all --force >/dev/null 2>&1
        pm rm --all --force --volumes --time 0 >/dev/null 2>&1
        pm volume rm --all --force >/dev/null 2>&1
        pm rmi --all --force >/dev/null 2>&1
    fi
    # The storage's own mounts (the overlay dir, images mounted by a check that failed).
    grep -o " $tmp/[^ ]*" /proc/mounts | sort -r | while read -r m; do umount -l "$m"; done
    rm -rf "$tmp"
    if [ "$status" = 0 ]; then echo "container test: all checks passed in $((SECONDS - started)) s"; fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$tmp/libpod" "$tmp/cni"
export TMPDIR=$tmp # podman's build and copy temp files
# Only this file is read (CONTAINERS_CONF). runc and cgroupfs: what works on a machine without
# systemd; default_ulimits: podman's defaults (nofile 1048576) are above the hard limits of such
# a machine, and runc cannot raise them (soft = hard: podman 4.3 swaps them for the pod's infra
# container).
cat > "$tmp/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$tmp/events.log"
[network]
network_backend = "cni"
network_config_dir = "$tmp/cni"
EOF
export CONTAINERS_CONF=$tmp/containers.conf

say "podman works here"
podman --version
pm info --format '{{.Host.OCIRuntime.Name}} {{.Host.CgroupManager}} cgroups {{.Host.CgroupsVersion}}' ||
    skip "podman cannot work on this machine (podman info failed)"

# --- the build, on the host -------------------------------------------------------------------
say "static build of trc and trcctl (README: A static binary for containers)"
triple=$(rustc -vV | sed -n 's/^host: //p')
t0=$SECONDS
(cd "$repo" && RUSTFLAGS='-C target-feature=+crt-static' cargo build -q --release --target "$triple")
bin=${CARGO_TARGET_DIR:-$repo/target}/$triple/release
echo "built in $((SECONDS - t0)) s: $bin/trc, $bin/trcctl"

say "the build context"
ctx=$tmp/context
mkdir -p "$ctx/bin" "$ctx/run/trc"
chmod 1777 "$ctx/run/trc"
cp "$bin/trc" "$bin/trcctl" "$ctx/bin/"
gcc -static -O2 -s -Wall -Wextra -Werror -o "$ctx/bin/demo" "$here/demo/demo.c"
cp -a "$here/trc.d" "$ctx/trc.d"
[ -L "$ctx/trc.d/async.worker" ] || fail "trc.d/async.worker is not a symlink"
(cd "$ctx" && find . -printf '%M %P %l\n' | sort -k2)

say "podman build --network=none (nothing downloaded)"
t0=$SECONDS
pm build --quiet --network=none --format docker -f "$here/Containerfile" -t "$image" "$ctx" >/dev/null
echo "built in $((SECONDS - t0)) s"
out=$(pm run --rm --network none --entrypoint /usr/bin/trcctl "$image" --version 2>&1) ||
    skip "podman cannot run a container on this machine: $out"
ok "podman runs a container of the image: $out"

files=$(pm create --name "$name-files" "$image" >/dev/null && pm export "$name-files" | tar -t | LC_ALL=C sort)
pm rm "$name-files" >/dev/null
expected='app/
app/demo
app/trc.d/
app/trc.d/async.web
app/trc.d/async.worker
run/
run/trc/
usr/
usr/bin/
usr/bin/trc
usr/bin/trcctl'
[ "$files" = "$expected" ] || fail "the image's files are not the expected ones: $(echo "$files" | tr '\n' ' ')"
ok "the image holds only trc, trcctl, the demo, trc.d and the runtime dir (no shell, no libc)"

[ "$(pm image inspect -f '{{.Config.User}}' "$image")" = "$uid:$uid" ] || fail "the image's USER is not $uid:$uid"
pm image inspect -f '{{.Config.Healthcheck.Test}}' "$image" | grep -q 'trcctl check --ready' ||
    fail "the image has no HEALTHCHECK with trcctl check --ready"
ok "USER $uid:$uid, HEALTHCHECK trcctl check --ready"

# --- the container ----------------------------------------------------------------------------
# Read-only root with nothing writable but the image's VOLUME (no tmpfs on /tmp or /run), all
# capabilities dropped: as a restrictive Kubernetes pod runs it.
say "podman run --read-only --read-only-tmpfs=false --cap-drop all --network none"
pm run -d --name "$name" --read-only --read-only-tmpfs=false --cap-drop all \
    --security-opt no-new-privileges --network none "$image" >/dev/null

# Waits until `trcctl check --ready` exits 0 in container $1 (at most $2 seconds).
wait_ready() {
    local c=$1 limit=$2 t0 out
    t0=$(now_ms)
    until out=$(pm exec "$c" /usr/bin/trcctl check --ready 2>&1); do
        if [ $(($(now_ms) - t0)) -gt $((limit * 1000)) ]; then
            pm logs "$c" 2>&1 | tail -20
            fail "$c: trcctl check --ready still fails after ${limit}s: $out"
        fi
        [ "$(pm inspect -f '{{.State.Running}}' "$c")" = true ] || {
            pm logs "$c" 2>&1 | tail -20
            fail "$c exited with $(pm inspect -f '{{.State.ExitCode}}' "$c") before it was ready"
        }
        sleep 0.2
    done
    ok "$c: trcctl check --ready exits 0, $(($(now_ms) - t0)) ms after the container was started"
}
wait_ready "$name" 30

host_pid=$(pm inspect -f '{{.State.Pid}}' "$name")
[ "$(cat "/proc/$host_pid/comm")" = trc ] || fail "the container's first process is $(cat "/proc/$host_pid/comm"), not trc"
nspid=$(awk '/^NSpid:/ {print $NF}' "/proc/$host_pid/status")
[ "$nspid" = 1 ] || fail "trc is pid $nspid in the container, not 1"
pm top "$name" pid hpid user group args
ok "trc is PID 1 in the container (host pid $host_pid)"

# Checks that host pid $1 runs as $uid:$uid, all four ids (real, effective, saved, fs).
check_ids() {
    local what=$1 pid=$2
    if ! grep -q "^Uid:	$uid	$uid	$uid	$uid$" "/proc/$pid/status" ||
        ! grep -q "^Gid:	$uid	$uid	$uid	$uid$" "/proc/$pid/status"; then
        fail "$what (host pid $pid) does not run as $uid:$uid: $(grep -E '^(Uid|Gid):' "/proc/$pid/status" | tr '\n\t' '  ')"
    fi
}
check_ids trc "$host_pid"

# The tasks as trc sees them, and their host pids through podman top.
pm exec "$name" /usr/bin/trcctl list
tasks=$(pm exec "$name" /usr/bin/trcctl --json list |
    python3 -c 'import json,sys; [print(t["name"], t["state"], t["pid"]) for t in json.load(sys.stdin)]')
top=$(pm top "$name" pid hpid | tail -n +2)
for task in web worker; do
    read -r state pid < <(echo "$tasks" | awk -v t="$task" '$1 == t {print $2, $3}') ||
        fail "trcctl list has no task $task: $tasks"
    [ "$state" = running ] || fail "$task is $state, not running"
    hpid=$(echo "$top" | awk -v p="$pid" '$1 == p {print $2}')
    [ -n "$hpid" ] || fail "$task (pid $pid in the container) is not in podman top"
    check_ids "$task" "$hpid"
    # Exec'd directly: the task's process is the demo binary itself, not a shell running it.
    exe=$(readlink "/proc/$hpid/exe")
    [ "$exe" = /app/demo ] || fail "$task runs $exe, not /app/demo"
    ok "$task runs as $uid:$uid, as /app/demo itself: $(tr '\0' ' ' < "/proc/$hpid/cmdline")"
done
(pm top "$name" huser | tail -n +2 | grep -vx "$uid") && fail "a process of the container runs as another user"
ok "every process of the container runs as $uid"

# trc's private runtime dir below the volume: its own uid, mode 0700.
rundirs=$(find "/proc/$host_pid/root/run/trc" -mindepth 1 -maxdepth 1 -printf '%m %u %p\n')
echo "$rundirs"
[ -n "$rundirs" ] || fail "nothing below /run/trc (RC_RUNTIME_DIR)"
echo "$rundirs" | grep -qv "^700 $uid " && fail "a dir below /run/trc is not $uid's with mode 0700"
awk '$5 == "/" {print $6}' "/proc/$host_pid/mountinfo" | grep -q '^ro' || fail "the root file system is not read-only"
ok "trc's runtime dir is below RC_RUNTIME_DIR=/run/trc (mode 0700, uid $uid), the root file system is read-only"

logs=$(pm logs "$name" 2>&1)
echo "$logs" | grep -q "listening on 8080 (uid $uid, gid $uid)" || fail "no 'listening on 8080' in the logs: $logs"
ok "the web task logged: $(echo "$logs" | grep -m1 'listening on 8080')"
echo "$logs" | grep -q "worker: tick 1 (uid $uid)" || fail "no 'worker: tick' in the logs: $logs"
ok "the worker task logged: $(echo "$logs" | grep -m1 'worker: tick')"

pm healthcheck run "$name" >/dev/null || fail "podman healthcheck run (the image's HEALTHCHECK) failed"
ok "podman healthcheck run: healthy"

# What a Kubernetes container restart does with the emptyDir: the new trc finds the runtime dir
# of one that was SIGKILLed (lock free, socket dead) and takes it over.
say "podman kill -s KILL, then podman start: trc takes over the runtime dir left in the volume"
pm kill -s KILL "$name" >/dev/null
pm wait "$name" >/dev/null
left=$(find "$tmp/storage/volumes" -maxdepth 4 -path '*/_data/trc/*')
[ -n "$left" ] || fail "no runtime dir left in the volume after SIGKILL"
echo "left behind: $left"
pm start "$name" >/dev/null
wait_ready "$name" 30

say "podman stop -t $grace: SIGTERM, trc stops its tasks and exits 143 within the grace period"
t0=$(now_ms)
pm stop -t "$grace" "$name" >/dev/null
elapsed=$(($(now_ms) - t0))
status=$(pm inspect -f '{{.State.ExitCode}}' "$name")
[ "$status" = 143 ] || fail "exit status $status after podman stop, expected 143 (137: SIGKILLed after the grace period)"
[ "$elapsed" -lt $((grace * 1000)) ] || fail "podman stop took ${elapsed} ms, not within the ${grace}s grace period"
ok "exit status 143 after ${elapsed} ms"
pm rm --volumes "$name" >/dev/null

say "a shell task added to the image: a configuration error (78) naming it, nothing started"
printf 'echo "a shell task"\n' > "$tmp/async.shell"
status=0
out=$(pm run --rm --network none --read-only --read-only-tmpfs=false \
    -v "$tmp/async.shell:/app/trc.d/async.shell:ro" "$image" 2>&1) || status=$?
echo "$out"
[ "$status" = 78 ] || fail "status $status with a shell task and no bash, expected 78"
echo "$out" | grep -q 'async\.shell' || fail "the error does not name the task"
echo "$out" | grep -q bash || fail "the error does not say that bash is needed"
echo "$out" | grep -q listening && fail "a task started before the configuration error"
ok "status 78, naming the task and bash"

# --- the Kubernetes manifest ------------------------------------------------------------------
# podman 4.3 publishes a containerPort on the host's same port: the copy played leaves out the
# ports: block (informational in Kubernetes), with --network none as above.
say "podman kube play deployment.yaml"
sed '/^ *ports:$/,/containerPort:/d' "$here/deployment.yaml" > "$tmp/deployment.yaml"
grep -q containerPort "$tmp/deployment.yaml" && fail "could not leave out the ports: block"
pm kube play --network none "$tmp/deployment.yaml"
pod_ctr=$(pm ps --filter label=app=trc-demo --format '{{.Names}}' | grep -v infra | head -1)
[ -n "$pod_ctr" ] || pod_ctr=$(pm ps --format '{{.Names}}' | grep -- '-app$' | head -1)
[ -n "$pod_ctr" ] || fail "kube play started no container: $(pm ps -a)"
pm pod ps
wait_ready "$pod_ctr" 30
kpid=$(pm inspect -f '{{.State.Pid}}' "$pod_ctr")
[ "$(cat "/proc/$kpid/comm")" = trc ] || fail "the pod container's first process is not trc"
[ "$(awk '/^NSpid:/ {print $NF}' "/proc/$kpid/status")" = 1 ] || fail "trc is not PID 1 in the pod's container"
check_ids "trc in the pod" "$kpid"
awk '$5 == "/" {print $6}' "/proc/$kpid/mountinfo" | grep -q '^ro' || fail "the pod's root file system is not read-only"
awk '$5 == "/run/trc"' "/proc/$kpid/mountinfo" | grep -q . || fail "no emptyDir mounted on /run/trc in the pod"
grep -q '^CapEff:	0000000000000000$' "/proc/$kpid/status" || fail "trc has capabilities in the pod (drop: [ALL])"
grep -q '^NoNewPrivs:	1$' "/proc/$kpid/status" || fail "no_new_privs is not set in the pod (allowPrivilegeEscalation: false)"
grep -q 'command: \[/usr/bin/trcctl, --timeout, 4s, check, --alive\]' "$tmp/deployment.yaml" ||
    fail "the manifest's liveness probe is not trcctl --timeout 4s check --alive"
pm exec "$pod_ctr" /usr/bin/trcctl --timeout 4s check --alive >/dev/null ||
    fail "the liveness probe (trcctl check --alive) fails in the pod"
ok "the pod runs: trc is PID 1 as $uid, no capabilities, no_new_privs, read-only root, emptyDir on /run/trc, the probes' commands pass"

# The manifest's RC_STOP_DELAY: on SIGTERM, not ready at once, the tasks stopped only after it.
# (`podman pod stop`, as Kubernetes deletes a pod: a container that dies by itself would be
# restarted, the manifest being a Deployment's with restartPolicy Always.)
delay=$(awk '/name: RC_STOP_DELAY/ {getline; sub(/s$/, "", $2); print $2}' "$tmp/deployment.yaml")
[[ "$delay" =~ ^[0-9]+$ ]] || fail "no RC_STOP_DELAY in seconds in deployment.yaml"
grace_k8s=$(awk '/terminationGracePeriodSeconds:/ {print $2}' "$tmp/deployment.yaml")
say "podman pod stop -t $grace_k8s: not ready while trc drains (RC_STOP_DELAY=${delay}s), then 143 within ${grace_k8s}s"
# trcctl in the container's mount and pid namespaces, as its user, entered from the host:
# `podman exec` waits while `podman pod stop` holds the container's lock.
ns_trcctl() {
    env -i RC_RUNTIME_DIR=/run/trc nsenter -t "$kpid" -m -p -S "$uid" -G "$uid" /usr/bin/trcctl "$@"
}
ns_trcctl check --ready || fail "trcctl check --ready through nsenter fails before the stop"
pod=$(pm inspect -f '{{.Pod}}' "$pod_ctr")
t0=$(now_ms)
pm pod stop -t "$grace_k8s" "$pod" >/dev/null &
stopper=$!
drained=
while kill -0 "$stopper" 2>/dev/null; do
    status=0
    out=$(ns_trcctl check --ready 2>&1) || status=$?
    if [ "$status" = 1 ] && [[ "$out" == *"stopping soon"* ]]; then
        drained="$(($(now_ms) - t0)) ms after podman pod stop: $(echo "$out" | head -1)"
        break
    fi
    [ "$status" = 0 ] || break # trc is gone
    sleep 0.1
done
[ -n "$drained" ] || fail "trcctl check --ready never said 'stopping soon' during the stop delay: $out"
ok "draining: trcctl check --ready exits 1, $drained"
ns_trcctl --timeout 4s check --alive || fail "the liveness probe (trcctl check --alive) fails while trc drains"
ok "draining: trcctl check --alive (liveness) still exits 0"
wait "$stopper" || fail "podman pod stop failed"
elapsed=$(($(now_ms) - t0))
status=$(pm inspect -f '{{.State.ExitCode}}' "$pod_ctr")
[ "$status" = 143 ] || fail "the pod's trc exited with $status, expected 143 (137: SIGKILLed after the grace period)"
[ "$elapsed" -ge $((delay * 1000)) ] || fail "the pod stopped after ${elapsed} ms, before trc's stop delay"
[ "$elapsed" -lt $((grace_k8s * 1000)) ] || fail "the pod took ${elapsed} ms to stop, more than its grace period"
ok "exit status 143, the pod stopped after ${elapsed} ms"
pm kube down "$tmp/deployment.yaml" >/dev/null
[ -z "$(pm pod ps -q)" ] || fail "podman kube down left a pod"
ok "podman kube down removed the pod"
