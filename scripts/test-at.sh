#!/usr/bin/env bash
# Runs the test suite with the wall clock set to another day: `scripts/test-at.sh '2026-12-05 15:00:00'`
# (a Saturday; UTC). No test may depend on the day or the hour it runs.
#
# The test binaries are built first, without a fake clock, then each runs under Debian's
# `faketime` (installed here when missing and root), from the repository root as `cargo test`
# runs them. Not cargo itself: rustc and rustdoc hang under libfaketime. The monotonic clock is
# left alone (FAKETIME_DONT_FAKE_MONOTONIC=1): std's timed waits use it, and a faked one never
# wakes them.
set -euo pipefail
cd "$(dirname "$0")/.."
at="${1:?usage: scripts/test-at.sh 'YYYY-MM-DD HH:MM:SS' (UTC)}"

if ! command -v faketime >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "== apt-get install faketime"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq faketime >/dev/null
    else
        echo "test-at: needs faketime (Debian: apt-get install faketime)" >&2
        exit 1
    fi
fi

# The test executables, from cargo's own list of what it built (one JSON object a line): those
# built with the test profile (`"profile":{… "test":true}`), not the daemon's own binary.
mapfile -t bins < <(cargo test --lib --bins --tests --no-run --message-format=json 2>/dev/null \
    | grep -E '"profile":\{[^}]*"test":true' | grep -o '"executable":"[^"]*"' | sed 's/^"executable":"//; s/"$//')
if [ "${#bins[@]}" = 0 ]; then
    echo "test-at: cargo listed no test executable" >&2
    exit 1
fi
echo "== ${#bins[@]} test executables with the wall clock at $at UTC: $(TZ=UTC FAKETIME_DONT_FAKE_MONOTONIC=1 faketime "$at" date)"
failed=0
for bin in "${bins[@]}"; do
    echo "     Running $bin"
    TZ=UTC FAKETIME_DONT_FAKE_MONOTONIC=1 faketime "$at" "$bin" || failed=$((failed + 1))
done
if [ "$failed" != 0 ]; then
    echo "test-at: $failed of ${#bins[@]} test executables failed at $at" >&2
    exit 1
fi
