#!/usr/bin/env bash
# Builds the static binary (scripts/build-static.sh) and proves it needs nothing from the host:
# no dynamic dependencies, and `check-config`, `run --sim --iterations 3` and `status` succeed in
# an otherwise empty root directory (chroot) holding only the binary and the shipped config.
#
#   scripts/check-static.sh [x86_64|aarch64]     (default x86_64; needs root for chroot)
#
# aarch64 runs the binary under qemu-aarch64-static (Debian's qemu-user-static, installed when
# missing) copied into the chroot. It takes several minutes more (zig build + emulation); CI runs
# only x86_64.
set -euo pipefail
cd "$(dirname "$0")/.."

arch="${1:-x86_64}"
fail() {
    echo "check-static: FAIL: $*" >&2
    exit 1
}
[ "$(id -u)" = 0 ] || fail "chroot needs root (run it with sudo)"

bin="$(scripts/build-static.sh "$arch")"

# A static executable has no program interpreter and no needed shared libraries.
if readelf -lW "$bin" | grep -q INTERP; then fail "$bin asks for a program interpreter (dynamic)"; fi
if readelf -dW "$bin" | grep -q NEEDED; then fail "$bin needs shared libraries: $(readelf -dW "$bin" | grep NEEDED)"; fi

root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/th"
cp "$bin" "$root/trading-hydra"
cp -r config "$root/th/config"
# One-second iterations so three of them take two seconds.
sed -i 's/loop_interval_seconds: 5/loop_interval_seconds: 1/' "$root/th/config/settings.yaml"
runner=()
if [ "$arch" = aarch64 ]; then
    if ! command -v qemu-aarch64-static >/dev/null 2>&1; then
        apt-get install -y -q qemu-user-static >/dev/null 2>&1 ||
            { apt-get update -q >/dev/null && apt-get install -y -q qemu-user-static >/dev/null; }
    fi
    cp "$(command -v qemu-aarch64-static)" "$root/qemu-aarch64-static"
    runner=(/qemu-aarch64-static)
fi
in_root() { (cd "$root/th" && chroot "$root" "${runner[@]}" /trading-hydra "$@" --config /th/config); }

# chroot starts in /, so the config's relative state/ and logs/ land at the root.
in_root check-config >/dev/null || fail "check-config failed in the empty root"
in_root run --sim --iterations 3 || fail "run --sim --iterations 3 failed in the empty root"
summaries="$(grep -c '"event":"loop_summary"' "$root/logs/app.jsonl" || true)"
[ "$summaries" = 3 ] || fail "expected 3 loop_summary events in the empty root, found $summaries"
status="$(in_root status --json)" || fail "status failed in the empty root"
case "$status" in *'"mode":"sim"'*) ;; *) fail "status did not report the sim run: $status" ;; esac
ls "$root" >&2
echo "check-static: ok: $arch binary of $(wc -c <"$bin") bytes is static and runs in an empty root"
