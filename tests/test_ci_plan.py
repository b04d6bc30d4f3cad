"""The plan of ``make test-all`` (scripts/test-all.sh): every phase runs, once, in a lane.

The lanes are packed by hand from measured phase times, ``test-main`` and ``test-once`` run
as three phases each; a phase left out of the plan, or a test left out of every part, would
pass CI unseen. No server involved: the script prints its plan under ``CI_PLAN=1``, and the parts'
marker expressions are read from ``make -n``.
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from _pytest.mark.expression import Expression

ROOT = Path(__file__).resolve().parents[1]
ONCE_PARTS = ("once-heavy", "once-clients", "once-rest")
MAIN_PARTS = ("main-es", "main-sec", "main-rest")


def _env(**extra: str) -> dict[str, str]:
    """This environment without the make that may run pytest (its flags, its level) and
    without a lane count of the caller's."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MAKE", "MFLAGS")) and k not in ("CI_LANES", "CI_PLAN")
    }
    return {**env, **extra}


def _make(*args: str) -> str:
    done = subprocess.run(
        ["make", "-s", *args], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _script(**env: str) -> subprocess.CompletedProcess[str]:
    """scripts/test-all.sh printing its plan (``CI_PLAN=1``) under this environment."""
    return subprocess.run(
        ["bash", "scripts/test-all.sh"],
        cwd=ROOT,
        env=_env(CI_PLAN="1", **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def _plan(lanes: str | None = None) -> list[tuple[int, str, str]]:
    done = _script(**({"CI_LANES": lanes} if lanes is not None else {}))
    assert done.returncode == 0, done.stderr
    rows = []
    for line in done.stdout.splitlines():
        lane, phase, command = line.split("|", 2)
        rows.append((int(lane), phase, command))
    return rows


def test_every_phase_runs_once_in_one_of_six_lanes() -> None:
    backends = _make("backend-phases").split()
    assert backends, "make backend-phases lists no backend"
    plan = _plan()
    phases = [phase for _, phase, _ in plan]
    assert sorted(phases) == sorted([*MAIN_PARTS, *ONCE_PARTS, *backends])
    assert {lane for lane, _, _ in plan} <= {1, 2, 3, 4, 5, 6}
    for _, phase, command in plan:
        assert f"make test-{phase} DEPS=" in command, command
    # every backend phase (but a secured cluster's) and test-main's server part is as long as
    # a lane: one per lane
    long = {*(b for b in backends if not b.endswith("-sec")), "main-es"}
    lanes = [lane for lane, phase, _ in plan if phase in long]
    assert len(lanes) == len(set(lanes)), plan


def test_one_lane_runs_every_phase_one_after_the_other() -> None:
    plan = _plan("1")
    assert {lane for lane, _, _ in plan} == {1}
    assert len(plan) == len(_plan())


def test_a_lane_count_that_is_not_a_number_is_refused() -> None:
    done = _script(CI_LANES="0")
    assert done.returncode == 2
    assert "CI_LANES" in done.stderr


def _marker_expression(target: str) -> Expression:
    """The ``-m`` expression of a Makefile test target, as ``make -n`` would run it."""
    command = next(line for line in _make("-n", target, "DEPS=").splitlines() if "pytest" in line)
    words = shlex.split(command)
    expression = words[words.index("-m") + 1]
    assert re.fullmatch(r"[\w ]+", expression), expression
    return Expression.compile(expression)


def _selections(
    targets: tuple[str, ...], markers: tuple[str, ...]
) -> Iterator[tuple[dict[str, bool], set[str]]]:
    """For every combination of ``markers`` on a test: the combination, and the targets
    whose ``-m`` expression selects such a test."""
    expressions = {t: _marker_expression(f"test-{t}") for t in targets}
    for marks in itertools.product((False, True), repeat=len(markers)):
        present = dict(zip(markers, marks, strict=True))
        selected = {t for t, e in expressions.items() if e.evaluate(present.__getitem__)}
        yield present, selected


@pytest.mark.parametrize(
    ("whole", "parts", "markers"),
    [
        ("once", ONCE_PARTS, ("version_independent", "heavy", "clients")),
        ("main", MAIN_PARTS, ("version_independent", "es", "secured_cluster")),
    ],
)
def test_the_parts_of_a_split_phase_select_each_of_its_tests_exactly_once(
    whole: str, parts: tuple[str, ...], markers: tuple[str, ...]
) -> None:
    """Over every combination of the markers the parts split on, a test of ``test-<whole>``
    is in exactly one part, and a test outside it in none."""
    for present, selected in _selections((whole, *parts), markers):
        in_parts = [part for part in parts if part in selected]
        assert len(in_parts) == (1 if whole in selected else 0), (present, in_parts)


def test_elasticsearch_9_runs_what_main_runs_on_its_servers() -> None:
    """es9 and es9-sec select exactly the tests of main-es and main-sec, part for part."""
    markers = ("version_independent", "es", "secured_cluster", "es_security")
    for present, selected in _selections(("main-es", "main-sec", "es9", "es9-sec"), markers):
        assert ("es9" in selected) == ("main-es" in selected), present
        assert ("es9-sec" in selected) == ("main-sec" in selected), present
