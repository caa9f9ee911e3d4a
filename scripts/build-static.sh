#!/usr/bin/env bash
# Builds one statically linked musl executable of trading-hydra and prints its path.
#
#   scripts/build-static.sh [x86_64|aarch64]     (default x86_64)
#
# x86_64  -> target/x86_64-unknown-linux-musl/release/trading-hydra   (a VPS)
# aarch64 -> target/aarch64-unknown-linux-musl/release/trading-hydra  (Raspberry Pi 3/4/5, Zero 2 W,
#            64-bit OS)
#
# It installs what it lacks: the Rust target (rustup), and for x86_64 a C compiler for musl
# (Debian's musl-tools, for SQLite and ring), for aarch64 cargo-zigbuild and zig (PyPI's ziglang,
# in a virtual environment of its own under target/: Debian 12 and Ubuntu 24.04 refuse a pip
# install into the system's Python). Installing needs root for apt-get (musl-tools,
# python3-venv); everything else goes to the user's cargo and to target/zig-venv.
# Why musl: the result needs no libc, TLS roots or zoneinfo from the host (all are built in), so
# the same file runs on any Linux of that architecture.
set -euo pipefail
cd "$(dirname "$0")/.."

arch="${1:-x86_64}"
case "$arch" in
    x86_64 | aarch64) ;;
    *)
        echo "usage: scripts/build-static.sh [x86_64|aarch64] (got '$arch')" >&2
        exit 2
        ;;
esac
target="$arch-unknown-linux-musl"

say() { echo "build-static: $*" >&2; }

# Installs Debian's package $1 (for $2) as root, or says how and stops.
apt_install() {
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing $1 ($2)"
        apt-get install -y -q "$1" >/dev/null 2>&1 ||
            { apt-get update -q >/dev/null && apt-get install -y -q "$1" >/dev/null; }
    else
        say "$2 is missing: install Debian's $1 (sudo apt-get install $1), then run this again"
        exit 1
    fi
}

if ! rustup target list --installed | grep -qx "$target"; then
    say "adding the Rust target $target"
    rustup target add "$target"
fi

if [ "$arch" = x86_64 ]; then
    if ! command -v musl-gcc >/dev/null 2>&1; then
        apt_install musl-tools musl-gcc
    fi
    # SQLite (rusqlite's bundled C) and ring compile C for the target: musl-gcc does that.
    CC_x86_64_unknown_linux_musl=musl-gcc cargo build --release --locked --target "$target" >&2
else
    if ! command -v cargo-zigbuild >/dev/null 2>&1; then
        say "installing cargo-zigbuild"
        cargo install --locked cargo-zigbuild >&2
    fi
    venv="target/zig-venv"
    if ! command -v zig >/dev/null 2>&1 && ! "$venv/bin/python3" -m ziglang version >/dev/null 2>&1; then
        if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
            apt_install python3-venv "Python's venv"
        fi
        say "installing zig (PyPI's ziglang) into $venv"
        python3 -m venv "$venv" >&2
        "$venv/bin/python3" -m pip install -q ziglang >&2
    fi
    # cargo-zigbuild runs `python3 -m ziglang` when no zig is on the PATH: the venv's python3.
    PATH="$PWD/$venv/bin:$PATH" cargo zigbuild --release --locked --target "$target" >&2
fi

out="target/$target/release/trading-hydra"
say "$(wc -c <"$out") bytes: $out"
echo "$out"
