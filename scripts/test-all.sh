#!/usr/bin/env bash
# The whole test suite: `make test` on the default backend (as its two halves, `test-main`
# and `test-once`) and every backend phase of the Makefile (`make -s backend-phases`), run in
# lanes with a table of phase wall times.
# Works from a clean clone in any folder. Any failure exits non-zero;
# pytest's "no tests collected" (exit 5) is a failure too (make propagates it).
#
# Phases run in lanes: the lanes run at the same time (the test phases mostly wait on
# servers, intervals and timeouts), the phases of one lane one after the other. Every phase
# runs even after another fails; its output lines are prefixed with its name, and a table of
# wall times ends the run. CI_LANES=N sets the number of lanes (default 4: main in one lane,
# the other phases dealt over the other three; 1: one phase at a time; 5: every phase at
# once). CI_REPORTS=DIR keeps each phase's JUnit XML there. A phase spends much of its time
# waiting (intervals, timeouts, server starts); all five side by side were faster here (24
# min against 27) but left the timing bounds of the replica scenarios too little CPU: a CI
# run failed on them, so four lanes it is.
set -uo pipefail
cd "$(dirname "$0")/.."

# A developer's running instance must not leak into CI.
unset ESBRIDGE_TEST_ES_URL ESBRIDGE_TEST_ES_VERSION ESBRIDGE_TEST_BACKEND ESBRIDGE_TEST_OS_VERSION

# pytest's 25 slowest tests per phase show where the time goes.
DURATIONS="PYTEST_ARGS=--durations=25"

# One entry per phase: lane|name|command. "setup" runs alone before the lanes; lane 1 is
# the default backend's tests that depend on the server, "once" (the version-independent
# ones) and the backend phases of the Makefile (backend_phase: adding a backend there is the
# only change needed) are dealt over the other lanes.
#
# Tests marked `heavy` take turns on a lock (tests/conftest.py); a phase waiting for it does
# nothing else, so the phases reach them at different times: main runs them last, the other
# phases that start a lane alternate (first, last, first, ...), and a phase that is not the
# first of its lane runs them first (by default: once, os2 and os3 first; main and es9 last).
TARGETS=(once $(make -s backend-phases))
LANES=${CI_LANES:-4}
PHASES=("1|main|env ESBRIDGE_TEST_HEAVY_ORDER=last make test-main DEPS= $DURATIONS")
i=0
for target in "${TARGETS[@]}"; do
    lane=1
    [ "$LANES" -gt 1 ] && lane=$((2 + i % (LANES - 1)))
    order=last
    { [ $((i % 2)) = 0 ] || [ "$i" -ge $((LANES - 1)) ]; } && order=first
    PHASES+=("$lane|$target|env ESBRIDGE_TEST_HEAVY_ORDER=$order make test-$target DEPS= $DURATIONS")
    i=$((i + 1))
done

LOGS=$(mktemp -d "${TMPDIR:-/tmp}/esbridge-ci-XXXXXX")
trap 'rm -rf "$LOGS"' EXIT
# Tests marked `heavy` (minutes of both cores) take turns across the lanes (tests/conftest.py).
export ESBRIDGE_TEST_HEAVY_LOCK="$LOGS/heavy.lock"

# run_phase NAME COMMAND...: prefixed output; "name seconds exit" appended to $LOGS/times
run_phase() {
    local name=$1 start rc
    shift
    echo "[$name] === $*"
    start=$(date +%s)
    # shellcheck disable=SC2068  # the command line is split on purpose
    PYTEST_ADDOPTS="${PYTEST_ADDOPTS:-} --junitxml=$LOGS/$name.xml" $@ 2>&1 |
        tee "$LOGS/$name.out" | sed -u "s/^/[$name] /"
    rc=${PIPESTATUS[0]}
    echo "$name $(($(date +%s) - start)) $rc" >>"$LOGS/times"
    echo "[$name] === exit $rc"
}

run_lane() {
    local lane=$1 entry
    for entry in "${PHASES[@]}"; do
        IFS='|' read -r l name cmd <<<"$entry"
        if [ "$l" = "$lane" ]; then
            # shellcheck disable=SC2086
            run_phase "$name" $cmd
        fi
    done
}

total_start=$(date +%s)
run_phase setup make venv test-deps es-fetch
pids=()
for lane in $(printf '%s\n' "${PHASES[@]}" | cut -d'|' -f1 | sort -u); do
    run_lane "$lane" &
    pids+=($!)
done
wait "${pids[@]}"

echo
echo "=== phase wall times (lanes: $LANES)"
printf '%-10s %8s  %s\n' phase seconds exit
failed=0
while read -r name seconds rc; do
    printf '%-10s %8d  %s\n' "$name" "$seconds" "$rc"
    [ "$rc" = 0 ] || failed=1
done <"$LOGS/times"
printf '%-10s %8d  %s\n' total $(($(date +%s) - total_start)) "$failed"
# CI_REPORTS=DIR keeps every phase's JUnit XML (per-test times) for a closer look.
if [ -n "${CI_REPORTS:-}" ]; then
    mkdir -p "$CI_REPORTS" && cp "$LOGS"/*.xml "$CI_REPORTS"/ 2>/dev/null || true
fi
# One plain closing line over every phase, from pytest's own summary lines.
passed=0
failures=0
for out in "$LOGS"/*.out; do
    summary=$(grep -E '^=+ .*[0-9]+ (passed|failed|error)' "$out" | tail -n 1)
    p=$(grep -oE '[0-9]+ passed' <<<"$summary" | grep -oE '[0-9]+' || true)
    passed=$((passed + ${p:-0}))
    for f in $(grep -oE '[0-9]+ (failed|errors?)' <<<"$summary" | grep -oE '^[0-9]+' || true); do
        failures=$((failures + f))
    done
done
echo "total: $passed passed, $failures failed"
# The failed tests of every phase, last: a log cut to its tail still names them.
if [ "$failed" != 0 ]; then
    echo "=== failed tests"
    for out in "$LOGS"/*.out; do
        name=$(basename "$out" .out)
        grep -E '^(FAILED|ERROR) ' "$out" | cut -c1-300 | sed "s/^/[$name] /" || true
    done
fi
exit "$failed"
