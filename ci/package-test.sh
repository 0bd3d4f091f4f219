#!/usr/bin/env bash
# The Debian package, built and installed as README.md says: the man pages and completions
# generated from the clap definitions (examples/gen-docs.rs), `cargo deb` (the one release build
# of this script), then `dpkg -i` into a throw-away root (`dpkg --root`: this machine is not
# touched; its dpkg database gets the package's dependencies from the machine's own), and
# checks of what got installed: every file, `trc --version` from /usr/bin, `man` renders each
# page without a warning, bash loads the completions and completes, the unit names the
# installed trc, the example trc.d runs, and `dpkg --purge` leaves nothing behind.
#
# Needs cargo-deb, dpkg, man-db and groff-base (.ci/run installs them); root is not needed.
# Every check is printed; the status is non-zero when one fails.
# shellcheck disable=SC2016  # the bash -c scripts take their arguments as "$1"
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C.UTF-8 MANWIDTH=80

start=$SECONDS
failed=0
pass() { echo "ok: $*"; }
fail() {
    echo "FAIL: $*"
    failed=$((failed + 1))
}
indent() { sed 's/^/    /'; }
# check WHAT COMMAND...: runs COMMAND, prints ok or FAIL (with its output).
check() {
    local what=$1 out
    shift
    if out=$("$@" 2>&1); then
        pass "$what"
    else
        fail "$what"
        [ -z "$out" ] || indent <<<"$out"
    fi
}

root=$(mktemp -d "${TMPDIR:-/tmp}/trc-deb-root.XXXXXX")
demo_out=$(mktemp)
trap 'rm -rf "$root" "$demo_out"' EXIT

# 1. Generate, build.
t=$SECONDS
cargo run -q --example gen-docs
echo "::: gen-docs: $((SECONDS - t)) s"
t=$SECONDS
deb=$(cargo deb | tail -n 1)
echo "::: cargo deb: $((SECONDS - t)) s: $deb"
[ -f "$deb" ] || { echo "FAIL: cargo deb made no package"; exit 1; }

# 2. The package.
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
check "Package: trc" test "$(dpkg-deb -f "$deb" Package)" = trc
check "Version: $version-1" test "$(dpkg-deb -f "$deb" Version)" = "$version-1"
depends=$(dpkg-deb -f "$deb" Depends)
check "Depends: names libc6 ($depends)" grep -q 'libc6' <<<"$depends"

# 3. Install it into the throw-away root. Its dpkg database knows the package's dependencies as
# this machine has them installed, so dpkg checks them for real (no --force-depends); a
# path-exclude of a slim image's dpkg.cfg.d (man pages, docs) must not apply here.
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates"
: >"$root/var/lib/dpkg/status"
for dep in $(tr ',|' '\n' <<<"$depends" | sed -E 's/^ *([^ (:]+).*/\1/' | sort -u); do
    { dpkg-query -s "$dep"; echo; } >>"$root/var/lib/dpkg/status"
done
t=$SECONDS
check "dpkg --root ROOT -i $(basename "$deb")" dpkg --root="$root" --path-include='/*' -i "$deb"
echo "::: dpkg -i: $((SECONDS - t)) s"
check "dpkg: trc is installed" test "$(dpkg-query --admindir="$root/var/lib/dpkg" -W -f='${Status}' trc)" = "install ok installed"

files=(
    usr/bin/trc
    usr/bin/trcctl
    lib/systemd/system/trc@.service
    usr/share/man/man1/trc.1.gz
    usr/share/man/man1/trcctl.1.gz
    usr/share/man/man5/trc.d.5.gz
    usr/share/bash-completion/completions/trc
    usr/share/bash-completion/completions/trcctl
    usr/share/zsh/vendor-completions/_trc
    usr/share/zsh/vendor-completions/_trcctl
    usr/share/fish/vendor_completions.d/trc.fish
    usr/share/fish/vendor_completions.d/trcctl.fish
    usr/share/doc/trc/README.md
    usr/share/doc/trc/copyright
)
for f in trc.d/*; do files+=("usr/share/doc/trc/examples/$f"); done
for f in "${files[@]}"; do
    check "installed: /$f (non-empty)" test -s "$root/$f"
done
check "the binaries are executable" test -x "$root/usr/bin/trc" -a -x "$root/usr/bin/trcctl"
for f in trc.d/*; do
    check "example $f is the repository's" cmp "$f" "$root/usr/share/doc/trc/examples/$f"
done

# 4. The binaries run from where the package put them.
check "/usr/bin/trc --version: trc $version" test "$("$root/usr/bin/trc" --version)" = "trc $version"
check "/usr/bin/trcctl --version: trcctl $version" test "$("$root/usr/bin/trcctl" --version)" = "trcctl $version"

# 5. man renders each page without a warning (man-db's --warnings=w: every groff warning), by
# file and by name as `man trc` finds it.
man_clean() { # man_clean TITLE MAN-ARGS...: output starts with TITLE, nothing on stderr
    local title=$1 out err
    shift
    err=$(man --warnings=w "$@" 2>&1 >/dev/null) || { echo "man $*: status $?"; echo "$err"; return 1; }
    [ -z "$err" ] || { echo "man $* warned:"; echo "$err"; return 1; }
    out=$(man --warnings=w "$@" 2>/dev/null)
    head -n 1 <<<"$out" | grep -q "^$title" || { echo "first line: $(head -n 1 <<<"$out")"; return 1; }
    if ! grep -q '^NAME' <<<"$out" || ! grep -q '^SEE ALSO' <<<"$out"; then
        echo "no NAME or SEE ALSO section"
        return 1
    fi
}
man_dir=$root/usr/share/man
check "man -l trc.1.gz" man_clean 'TRC(1)' -l "$man_dir/man1/trc.1.gz"
check "man -l trcctl.1.gz" man_clean 'TRCCTL(1)' -l "$man_dir/man1/trcctl.1.gz"
check "man -l trc.d.5.gz" man_clean 'TRC.D(5)' -l "$man_dir/man5/trc.d.5.gz"
check "man trc" man_clean 'TRC(1)' -M "$man_dir" trc
check "man trcctl" man_clean 'TRCCTL(1)' -M "$man_dir" trcctl
check "man 5 trc.d" man_clean 'TRC.D(5)' -M "$man_dir" 5 trc.d
# man_section SECTION MAN-ARGS...: the text of one section of a rendered page.
man_section() {
    local name=$1
    shift
    man "$@" 2>/dev/null | awk -v s="$name" '/^[A-Z]/ { on = ($0 == s); next } on'
}
# has_all SECTION 'WORD...' MAN-ARGS...: the section holds every word (fixed strings, split on
# spaces, not globbed; a % in a word stands for a space).
has_all() {
    local name=$1 text word
    local -a words
    read -ra words <<<"$2"
    shift 2
    text=$(man_section "$name" "$@")
    [ -n "$text" ] || { echo "no $name section"; return 1; }
    for word in "${words[@]}"; do
        word=${word//%/ }
        grep -qF -- "$word" <<<"$text" || { echo "$name: no \"$word\" in:"; echo "$text"; return 1; }
    done
}
check "man trcctl: SYNOPSIS shows the options' values" has_all SYNOPSIS \
    '[--manager%MANAGER] [--instance%NAME] [--timeout%DURATION] [--host%[USER@]HOST[:PORT]] VERB' \
    -M "$man_dir" trcctl
check "man trc: SYNOPSIS shows the options' values" has_all SYNOPSIS \
    '[-w|--workdir%DIR] [-B%CMDS]... [--wait-policy%POLICY] [--stop-timeout%DURATION] [COMMAND...]' \
    -M "$man_dir" trc
check "man trcctl: ENVIRONMENT names its variables" has_all ENVIRONMENT \
    'TRCCTL_MANAGER TRCCTL_HOST TRCCTL_REMOTE TRCCTL_TIMEOUT TRCCTL_SSH TRC_INSTANCE TRCCTL_TMUX_SOCKET SVDIR' \
    -M "$man_dir" trcctl
check "man trc: ENVIRONMENT names the RC_* variables" has_all ENVIRONMENT \
    'RC_WORK_DIR=DIR RC_WAIT_POLICY RC_LOG_FORMAT RC_USER RC_LIMIT_NOFILE NOTIFY_SOCKET JOURNAL_STREAM' \
    -M "$man_dir" trc
check "man trcctl documents every verb" bash -c '
    out=$(man -M "$1" trcctl 2>/dev/null)
    for verb in list status start stop restart signal ensure start-all logs reload instances check; do
        grep -q "^   $verb\$" <<<"$out" || { echo "no verb $verb"; exit 1; }
    done' _ "$man_dir"

# 6. Completions: bash loads them and completes; zsh and fish files are the generated ones.
completion=$root/usr/share/bash-completion/completions
check "bash: complete -p trc" bash --norc --noprofile -c 'source "$1" && complete -p trc' _ "$completion/trc"
check "bash: complete -p trcctl" bash --norc --noprofile -c 'source "$1" && complete -p trcctl' _ "$completion/trcctl"
check "bash: trc --wait-policy <TAB>" bash --norc --noprofile -c '
    source "$1"
    COMP_WORDS=(trc --wait-policy ""); COMP_CWORD=2
    _trc trc "" --wait-policy
    [ "${COMPREPLY[*]}" = "wait_any wait_all wait_err wait_forever" ] || { echo "got: ${COMPREPLY[*]}"; exit 1; }
' _ "$completion/trc"
check "bash: trcctl <TAB> offers the verbs" bash --norc --noprofile -c '
    source "$1"
    COMP_WORDS=(trcctl ""); COMP_CWORD=1
    _trcctl trcctl "" trcctl
    for verb in ensure logs start-all check; do
        [[ " ${COMPREPLY[*]} " == *" $verb "* ]] || { echo "no $verb in: ${COMPREPLY[*]}"; exit 1; }
    done
' _ "$completion/trcctl"
check "zsh: _trc and _trcctl are #compdef files" bash -c '
    head -n 1 "$1/_trc" | grep -qx "#compdef trc" && head -n 1 "$1/_trcctl" | grep -qx "#compdef trcctl"' _ "$root/usr/share/zsh/vendor-completions"
check "fish: trc.fish and trcctl.fish complete their command" bash -c '
    grep -q "^complete -c trc " "$1/trc.fish" && grep -q "^complete -c trcctl " "$1/trcctl.fish"' _ "$root/usr/share/fish/vendor_completions.d"
if command -v zsh >/dev/null; then
    check "zsh -n" zsh -n "$root/usr/share/zsh/vendor-completions/_trc" "$root/usr/share/zsh/vendor-completions/_trcctl"
fi
if command -v fish >/dev/null; then
    check "fish --no-execute" fish --no-execute "$root/usr/share/fish/vendor_completions.d/trc.fish"
fi

# 7. The unit runs the packaged trc, and is clean for systemd-analyze (on a copy naming the
# binary in the throw-away root, as .ci/run verifies the repository's unit; its
# Documentation=man:trc(1) man:trc.d(5) are looked up in the throw-away root's man pages).
unit=$root/lib/systemd/system/trc@.service
check "unit: ExecStart=/usr/bin/trc --workdir /opt/%i" grep -qx 'ExecStart=/usr/bin/trc --workdir /opt/%i' "$unit"
if command -v systemd-analyze >/dev/null; then
    verify_packaged_unit() {
        local dir out
        dir=$(mktemp -d)
        sed "s#/usr/bin/trc#$root/usr/bin/trc#" "$unit" >"$dir/trc@demo.service"
        out=$(MANPATH=$man_dir systemd-analyze verify "$dir/trc@demo.service" 2>&1) || { echo "$out"; rm -rf "$dir"; return 1; }
        rm -rf "$dir"
        [ -z "$out" ] || { echo "$out"; return 1; }
    }
    check "unit: systemd-analyze verify" verify_packaged_unit
fi

# 8. The example trc.d runs from /usr/share/doc (README's demo): its listener receives, and
# Ctrl-C ends it with 130.
demo() {
    local status=0
    timeout --preserve-status -s INT 5 "$root/usr/bin/trc" -w "$root/usr/share/doc/trc/examples" >"$demo_out" 2>&1 </dev/null || status=$?
    [ "$status" = 130 ] || { echo "status $status, expected 130"; tail -5 "$demo_out"; return 1; }
    grep -q '^listener: got: hello' "$demo_out" || { echo "the listener received nothing"; tail -5 "$demo_out"; return 1; }
}
check "trc -w /usr/share/doc/trc/examples: the demo runs" demo

# 9. Purge: the package leaves nothing behind.
check "dpkg --root ROOT --purge trc" dpkg --root="$root" --purge trc
left=$(find "$root" -mindepth 1 -not -path "$root/var" -not -path "$root/var/*" -type f)
check "nothing left after the purge" test -z "$left"
[ -z "$left" ] || indent <<<"$left"

echo "::: package test: $((SECONDS - start)) s, $failed failed"
[ "$failed" = 0 ]
