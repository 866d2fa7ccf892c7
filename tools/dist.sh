#!/usr/bin/env bash
# A binary to ship: the release build with its debug info moved to a file of its own.
#
#   tools/dist.sh [OUT_DIR]      (default dist/)
#
# OUT_DIR/crossdock is stripped of debug info and names OUT_DIR/crossdock.debug in a
# .gnu_debuglink section, so gdb, perf and addr2line find the symbols when the two files sit
# side by side (or the .debug file is in /usr/lib/debug). Needs binutils' objcopy.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-dist}"
command -v objcopy >/dev/null || { echo "objcopy (binutils) is required" >&2; exit 1; }
cargo build --release --locked --bin crossdock
mkdir -p "$out"
cp target/release/crossdock "$out/crossdock.full"
objcopy --only-keep-debug "$out/crossdock.full" "$out/crossdock.debug"
objcopy --strip-debug --strip-unneeded "$out/crossdock.full" "$out/crossdock"
(cd "$out" && objcopy --add-gnu-debuglink=crossdock.debug crossdock)
rm "$out/crossdock.full"
ls -l "$out/crossdock" "$out/crossdock.debug"
