#!/usr/bin/env bash
# Runs every cargo-fuzz target for a while on a scratch copy of its seed corpus.
#
#   fuzz/run.sh [SECONDS]        # per target, default 20
#
# Env: FUZZ_SANITIZER=address|none (default: address, falling back to none if the
# ASan build fails), FUZZ_TARGETS="a b" (default: all), CARGO_FUZZ_VERSION.
# Exit status: 0 if no target found anything, 1 if any crashed / leaked / timed out / OOMed
# (the reproducer paths are printed), 2 on a setup or build error.
set -uo pipefail

DURATION="${1:-20}"
case "$DURATION" in '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;; esac

FUZZ_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$FUZZ_DIR" || exit 2

# cargo fuzz passes -Zsanitizer / -Cpasses flags; the stable toolchain accepts them with this.
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked ${CARGO_FUZZ_VERSION:+--version "$CARGO_FUZZ_VERSION"} || exit 2
fi

TARGETS="${FUZZ_TARGETS:-$(cargo fuzz list)}"
[ -n "$TARGETS" ] || { echo "no fuzz targets found" >&2; exit 2; }

SANITIZER="${FUZZ_SANITIZER:-address}"
echo "== building fuzz targets (sanitizer: $SANITIZER)"
if ! cargo fuzz build -s "$SANITIZER"; then
    if [ "$SANITIZER" = none ] || [ -n "${FUZZ_SANITIZER:-}" ]; then
        echo "build failed" >&2; exit 2
    fi
    echo "== ASan build failed; retrying without a sanitizer (-s none)"
    SANITIZER=none
    cargo fuzz build -s none || { echo "build failed" >&2; exit 2; }
fi

# Run the binaries just built rather than `cargo fuzz run`, which rebuilds before each target:
# with others editing the tree, every target would otherwise test a different snapshot.
HOST="$(rustc -vV | sed -n 's/^host: //p')"
BIN_DIR="$FUZZ_DIR/target/$HOST/release"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_odr_violation=0}"

SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/sluice-fuzz.XXXXXX")"
trap 'rm -rf "$SCRATCH"' EXIT

FAILED=()
for target in $TARGETS; do
    corpus="$SCRATCH/corpus/$target"
    artifacts="$FUZZ_DIR/artifacts/$target"
    log="$SCRATCH/$target.log"
    mkdir -p "$corpus" "$artifacts"
    # Scratch copy: new inputs libFuzzer keeps must not grow the checked-in corpus.
    if [ -d "corpus/$target" ]; then cp -R "corpus/$target/." "$corpus/"; fi
    echo "== $target: ${DURATION}s, seeds: $(ls "$corpus" | wc -l)"
    "$BIN_DIR/$target" "$corpus" \
        -max_total_time="$DURATION" -max_len=65536 -timeout=30 \
        -artifact_prefix="$artifacts/" -print_final_stats=1 2>&1 | tee "$log"
    status=${PIPESTATUS[0]}
    if [ "$status" -ne 0 ]; then
        FAILED+=("$target")
        echo "!! $target FAILED (exit $status)"
        grep -E '^(==[0-9]+==ERROR|thread .* panicked|panicked at|SUMMARY|.*libFuzzer: )' "$log" | head -5
        inputs=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log")
        if [ -n "$inputs" ]; then
            for input in $inputs; do echo "!! crashing input: $input"; done
            echo "!! reproduce: (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -s $SANITIZER $target <input>)"
            echo "!!   or run: $BIN_DIR/$target <input>"
        fi
    else
        echo "== $target: ok"
    fi
done

echo
if [ "${#FAILED[@]}" -ne 0 ]; then
    echo "FAIL: ${FAILED[*]} (inputs under $FUZZ_DIR/artifacts/)"
    exit 1
fi
echo "PASS: $(echo $TARGETS | wc -w) targets, ${DURATION}s each, no crashes"
