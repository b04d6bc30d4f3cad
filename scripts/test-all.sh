#!/usr/bin/env bash
# The whole test suite: `make test` on the default backend (as `test-main` in three parts,
# `test-main-es`, `-sec` and `-rest`, and `test-once` in three, `test-once-heavy`, `-clients`
# and `-rest`) and every backend phase of the Makefile (`make -s backend-phases`), run in
# lanes with a table of phase wall times.
# Works from a clean clone in any folder. Any failure exits non-zero;
# pytest's "no tests collected" (exit 5) is a failure too (make propagates it).
#
# Phases run in lanes: the lanes run at the same time (the test phases mostly wait on
# servers, intervals and timeouts), the phases of one lane one after the other. Every phase
# runs even after another fails; its output lines are prefixed with its name, and a table of
# wall times ends the run. CI_LANES=N (default 6) folds the six lanes of the plan below onto
# N (1: one phase at a time). CI_REPORTS=DIR keeps each phase's JUnit XML there.
set -uo pipefail
cd "$(dirname "$0")/.."

# A developer's running instance must not leak into CI.
unset ESBRIDGE_TEST_ES_URL ESBRIDGE_TEST_ES_VERSION ESBRIDGE_TEST_BACKEND ESBRIDGE_TEST_OS_VERSION

# pytest's 25 slowest tests per phase show where the time goes.
DURATIONS="PYTEST_ARGS=--durations=25"

# The plan: lane|phase|order of its heavy tests. The run takes as long as its longest lane, so
# the phases are packed by their times in a fresh-clone run (2026-12-01, commit ec36846):
# main-es 840 s, es9 885 s, os3 797 s, os2 707 s, each alone in a lane, less the secured
# cluster's tests (about 2 minutes of the Elasticsearch lanes, now main-sec and es9-sec);
# those, and test-main's part without the server (172 s), after test-once's tests of real
# Nagios, Icinga 2, Prometheus or Chromium programs (`clients`, 325 s) and its heavy tests
# (238 s) after its rest (323 s).
# Tests marked `heavy` take slots of a lock (tests/conftest.py): the three-replica scenario
# and the bench (`heavy(cores=2)`) run alone among them; a phase waiting for a slot does nothing
# else, so the plan spreads them in time: os3's and es9's first, test-once's heavy phase after
# its rest, main-es's and os2's last (ESBRIDGE_TEST_HEAVY_ORDER). A backend phase that the
# plan does not name (a new backend_phase line in the Makefile) joins lane 6, heavy tests
# first; one named here but gone from the Makefile is left out.
PLAN=("1|os3|first" "2|es9|first" "3|main-es|last" "4|os2|last"
    "5|once-rest|first" "5|once-heavy|first" "5|es9-sec|first"
    "6|once-clients|first" "6|main-rest|last" "6|main-sec|first")
BACKENDS=" $(make -s backend-phases) "
for target in $BACKENDS; do
    printf '%s\n' "${PLAN[@]}" | cut -d'|' -f2 | grep -qx "$target" || PLAN+=("6|$target|first")
done
LANES=${CI_LANES:-6}
[[ "$LANES" =~ ^[1-9][0-9]*$ ]] || { echo "CI_LANES must be a whole number from 1: $LANES" >&2; exit 2; }
PHASES=()
for entry in "${PLAN[@]}"; do
    IFS='|' read -r lane target order <<<"$entry"
    case "$target" in
    main-* | once-*) ;;
    *) [[ "$BACKENDS" == *" $target "* ]] || continue ;;
    esac
    PHASES+=("$(((lane - 1) % LANES + 1))|$target|env ESBRIDGE_TEST_HEAVY_ORDER=$order make test-$target DEPS= $DURATIONS")
done

# CI_PLAN=1: print the phases as lane|phase|command and stop (tests/test_ci_plan.py).
if [ -n "${CI_PLAN:-}" ]; then
    printf '%s\n' "${PHASES[@]}"
    exit 0
fi

LOGS=$(mktemp -d "${TMPDIR:-/tmp}/esbridge-ci-XXXXXX")
trap 'rm -rf "$LOGS"' EXIT
# Tests marked `heavy` take slots of a lock across the lanes (tests/conftest.py).
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
