#!/usr/bin/env bash
# Runs the whole test suite (`cargo test --all-features`) several times while
# every core is kept busy by a CPU hog, to catch tests that pass only on an
# idle machine. Use it before a release and after any change to a
# concurrency or stress test (say its last line in the change's note).
#
#   scripts/stress-suite.sh [runs]        (default 10 runs)
#
# Extra arguments after the run count go to every `cargo test` (e.g.
# `scripts/stress-suite.sh 3 --test limit_stress`). The hog is one busy loop
# per core (`nproc`), started here and stopped on exit, however the script
# ends. Every run goes on whatever the previous one did, and each runs with
# `--no-fail-fast`, so that one failing test binary does not hide the tests
# after it; the script prints each failing test's name, ends with
# `N passed, M failed`, and exits non-zero if any run failed.
set -uo pipefail
cd "$(dirname "$0")/.."

runs="${1:-10}"
shift $(( $# > 0 ? 1 : 0 ))
case "$runs" in
    '' | *[!0-9]* | 0)
        echo "usage: $0 [runs] [cargo test arguments]  (runs: a whole number above 0)" >&2
        exit 2
        ;;
esac

echo "== building the tests first, so that the runs time only the tests"
cargo test --all-features --no-run "$@" || exit 1

logs="$(mktemp -d)"
hogs=()
stop_hogs() {
    for pid in "${hogs[@]}"; do
        kill "$pid" 2>/dev/null
    done
    for pid in "${hogs[@]}"; do
        wait "$pid" 2>/dev/null
    done
    hogs=()
}
trap 'stop_hogs; rm -rf "$logs"' EXIT
trap 'exit 130' INT TERM

cores="$(nproc)"
for _ in $(seq "$cores"); do
    sh -c 'while :; do :; done' &
    hogs+=("$!")
done
echo "== $cores busy loops started (pids ${hogs[*]}); cargo test --all-features $*, runs: $runs"

passed=0
failed=0
for run in $(seq "$runs"); do
    log="$logs/run-$run.log"
    started=$SECONDS
    if cargo test --all-features --no-fail-fast "$@" >"$log" 2>&1; then
        passed=$((passed + 1))
        echo "run $run: passed ($((SECONDS - started)) s)"
    else
        failed=$((failed + 1))
        echo "run $run: FAILED ($((SECONDS - started)) s)"
        # The failing tests by name; a binary that failed to run or
        # crashed (no test line) shows through its last lines instead.
        if grep -E '^test .* \.\.\. FAILED$' "$log" | sed 's/^/    /' | grep .; then
            :
        else
            tail -n 20 "$log" | sed 's/^/    /'
        fi
        # Where each one panicked, and its message.
        grep -E -A1 "^thread '.*'.* panicked at " "$log" | grep -v '^--$' | sed 's/^/    /' | head -n 40
    fi
done

stop_hogs
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
