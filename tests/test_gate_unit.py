"""The gate verdict (pure) and the deploy-event helpers: every rule on hand-made histories."""

from __future__ import annotations

import fnmatch
import time
from types import SimpleNamespace
from typing import Any

import pytest

from esbridge.events import DeployEvent, after_deploy, after_text, event_from_source
from esbridge.gate import CheckHistory, judge, judge_check
from esbridge.gate_api import matcher, select
from esbridge.result import State
from esbridge.statedoc import Transition

OK, WARN, CRIT, UNK = State.OK, State.WARNING, State.CRITICAL, State.UNKNOWN


def hist(
    changes: list[tuple[float, State]],
    evaluated_at: float | None = 1000.0,
    stale: bool = False,
    name: str = "web-5xx",
) -> CheckHistory:
    kept = []
    prev = None
    for at, state in changes:
        kept.append(Transition(at, prev, state, f"{state.name} summary at {at}"))
        prev = state
    current = UNK if stale else (kept[-1].to_state if kept else None)
    return CheckHistory(name, current, "now", evaluated_at, stale, kept)


def test_ok_through_the_period_passes_only_after_an_evaluation_past_the_end() -> None:
    h = hist([(100.0, OK)], evaluated_at=699.0)
    assert judge_check(h, 200.0, 700.0, now=650.0).verdict == "pending"
    waiting = judge_check(h, 200.0, 700.0, now=705.0)
    assert waiting.verdict == "pending" and "after the period" in waiting.reason
    done = judge_check(hist([(100.0, OK)], evaluated_at=701.0), 200.0, 700.0, now=705.0)
    assert done.verdict == "pass" and done.since == 100.0


def test_critical_and_back_within_the_period_fails_naming_when() -> None:
    h = hist([(100.0, OK), (300.0, CRIT), (320.0, OK)], evaluated_at=800.0)
    v = judge_check(h, 200.0, 700.0, now=800.0)
    assert (v.verdict, v.state, v.since) == ("fail", "CRITICAL", 300.0)
    assert v.summary == "CRITICAL summary at 300.0"


def test_bad_state_already_at_start_fails() -> None:
    v = judge_check(hist([(100.0, CRIT), (250.0, OK)]), 200.0, 700.0, now=800.0)
    assert v.verdict == "fail" and v.since == 100.0


def test_bad_state_before_start_that_ended_before_start_is_forgiven() -> None:
    v = judge_check(hist([(100.0, CRIT), (150.0, OK)], 801.0), 200.0, 700.0, now=802.0)
    assert v.verdict == "pass"


def test_change_after_the_end_does_not_count() -> None:
    h = hist([(100.0, OK), (750.0, CRIT)], evaluated_at=760.0)
    assert judge_check(h, 200.0, 700.0, now=760.0).verdict == "pass"


def test_warning_fails_unless_allowed() -> None:
    h = hist([(100.0, OK), (300.0, WARN)], evaluated_at=801.0)
    assert judge_check(h, 200.0, 700.0, now=802.0).verdict == "fail"
    assert judge_check(h, 200.0, 700.0, now=802.0, allow_warning=True).verdict == "pass"
    crit = hist([(100.0, OK), (300.0, CRIT)], evaluated_at=801.0)
    assert judge_check(crit, 200.0, 700.0, now=802.0, allow_warning=True).verdict == "fail"


def test_stale_or_unknown_is_never_a_pass() -> None:
    stale = judge_check(hist([(100.0, OK)], 400.0, stale=True), 200.0, 700.0, now=800.0)
    assert stale.verdict == "unknown" and "stale" in stale.reason
    blip = hist([(100.0, OK), (300.0, UNK), (310.0, OK)], evaluated_at=801.0)
    assert judge_check(blip, 200.0, 700.0, now=802.0).verdict == "unknown"
    never = CheckHistory("x", None, "", None, False, ())
    assert judge_check(never, 200.0, 700.0, now=300.0).verdict == "pending"
    assert judge_check(never, 200.0, 700.0, now=800.0).verdict == "unknown"


def test_trimmed_history_uses_the_first_kept_from_state() -> None:
    trimmed = CheckHistory("x", OK, "ok", 801.0, False, [Transition(300.0, CRIT, OK, "recovered")])
    assert judge_check(trimmed, 200.0, 700.0, now=802.0).verdict == "fail"
    # the first kept change after the period says the state during it (CRITICAL)
    later = CheckHistory("x", OK, "ok", 901.0, False, [Transition(900.0, CRIT, OK, "recovered")])
    v = judge_check(later, 200.0, 700.0, now=902.0)
    assert (v.verdict, v.state, v.since) == ("fail", "CRITICAL", 200.0)


def test_a_check_first_evaluated_after_the_period_never_passes_it() -> None:
    """A new check, or esbridge started late: nothing was seen of the period."""
    v = judge_check(hist([(900.0, OK)], evaluated_at=901.0), 200.0, 700.0, now=902.0)
    assert v.verdict == "unknown" and "first result came after the end" in v.reason
    assert judge([hist([(900.0, OK)], 901.0)], 200.0, 500.0, now=902.0).verdict == "unknown"


def test_overall_fail_beats_unknown_beats_pending_beats_pass() -> None:
    good = hist([(100.0, OK)], 801.0, name="a")
    bad = hist([(100.0, OK), (300.0, CRIT)], 801.0, name="b")
    stale = hist([(100.0, OK)], 400.0, stale=True, name="c")
    failed = judge([good, bad, stale], 200.0, 500.0, now=802.0)
    assert failed.verdict == "fail" and failed.reason == "b CRITICAL: CRITICAL summary at 300.0"
    v = judge([good, stale], 200.0, 500.0, now=802.0)
    assert v.verdict == "unknown" and v.reason.startswith("c the result is stale")
    assert judge([good, hist([(100.0, OK)], 650.0, name="d")], 200.0, 500.0, 650.0).verdict == (
        "pending"
    )
    assert judge([good], 200.0, 500.0, now=802.0).verdict == "pass"
    with pytest.raises(ValueError):
        judge([], 200.0, 500.0, now=802.0)


def event(at: float, tags: list[str], service: str = "web") -> DeployEvent:
    return DeployEvent(
        id=str(at),
        service=service,
        version="1.4.2",
        by="ci",
        at=at,
        at_iso="",
        tags=tags,
        source="i",
    )


def test_after_deploy_picks_the_latest_matching_deploy_within_the_window() -> None:
    events = [event(100.0, ["web"]), event(200.0, ["web"]), event(250.0, ["db"], "db")]
    found = after_deploy(events, ["web", "page"], at=320.0, within=900.0)
    assert found is not None and found.event.at == 200.0
    assert found.text == "started 2 min after deploy web 1.4.2 by ci"
    assert after_deploy(events, ["web"], at=1200.0, within=900.0) is None  # too long after
    assert after_deploy(events, ["web"], at=150.0, within=900.0).event.at == 100.0  # type: ignore[union-attr]
    assert after_deploy(events, ["checkout"], at=320.0, within=900.0) is None
    assert after_deploy([event(100.0, [], "checkout")], ["checkout"], 130.0, 900.0) is not None


def test_after_text_reads_like_people_say_it() -> None:
    assert [after_text(s) for s in (5, 59.9, 60, 150, 3600, 3900)] == [
        "5 s",
        "59 s",
        "1 min",
        "2 min",
        "1 h",
        "1 h 5 min",
    ]


def test_pipeline_documents_are_read_through_the_field_mapping() -> None:
    fields = {
        "service": "app.name",
        "version": "release",
        "by": "user",
        "at": "@timestamp",
        "tags": "labels",
    }
    doc = {
        "app": {"name": "web"},
        "release": "2.0",
        "user": "alice",
        "@timestamp": "2026-11-29T01:00:00Z",
        "labels": "web",
    }
    e = event_from_source("1", doc, "deploys", fields)
    assert e is not None and (e.service, e.version, e.by, e.tags) == (
        "web",
        "2.0",
        "alice",
        ["web"],
    )
    assert e.at == 1795914000.0 and e.at_iso == "2026-11-29T01:00:00Z"
    assert event_from_source("2", {"release": "1"}, "deploys", fields) is None  # no service
    millis = event_from_source("3", {**doc, "@timestamp": 1795914000000}, "deploys", fields)
    assert millis is not None and millis.at == 1795914000.0
    for beyond in (1795914000000000, 1e300, float("inf"), float("nan"), "+50000-01-01"):
        # microseconds (a date field takes them) and the like: skipped, never raised
        assert event_from_source("4", {**doc, "@timestamp": beyond}, "deploys", fields) is None


def test_after_deploy_survives_the_store_round_trip() -> None:
    """Persisted transitions keep their deploy note (a restart does not lose it)."""
    from esbridge.store import Transition, transition_from_dict, transition_to_dict

    note = {"text": "started 2 min after deploy web 1.4.2 by ci", "seconds_after": 120.0}
    t = Transition(10.0, State.OK, State.CRITICAL, "bad", note)
    assert transition_from_dict(transition_to_dict(t)) == t
    plain = Transition(10.0, State.OK, State.CRITICAL, "bad")
    assert "after_deploy" not in transition_to_dict(plain)
    assert transition_from_dict(transition_to_dict(plain)) == plain


def test_store_attaches_the_deploy_note_to_real_changes_only() -> None:
    from esbridge.result import Result
    from esbridge.store import ResultStore

    store = ResultStore()
    store.sync({"c": 1.0})
    note = {"text": "started 5 s after deploy web 1 by ci"}
    first = store.record(Result("c", State.OK, "ok", evaluated_at=1.0), after_deploy=note)
    assert first is not None and first.after_deploy is None  # PENDING -> OK is no change
    assert store.record(Result("c", State.OK, "ok", evaluated_at=2.0), after_deploy=note) is None
    bad = store.record(Result("c", State.CRITICAL, "bad", evaluated_at=3.0), after_deploy=note)
    assert bad is not None and bad.after_deploy == note


def test_events_connection_must_exist() -> None:
    from esbridge.config import Settings

    with pytest.raises(ValueError, match=r"events\.connection 'nope' is not a connection"):
        Settings(events={"connection": "nope"})
    assert Settings(events={"enabled": False, "connection": "nope"}).events.enabled is False
    # Not set: the state store's connection, or the first one (old configs keep working).
    two = {"a": {"urls": ["http://127.0.0.1:1"]}, "b": {"urls": ["http://127.0.0.1:2"]}}
    assert Settings(elasticsearch=two, state={"connection": "b"}).events_connection() == "b"
    assert Settings(elasticsearch=two, state={"enabled": False}).events_connection() == "a"


def test_event_store_keeps_each_event_once_across_record_and_refresh() -> None:
    """A refresh that reads back an event recorded here keeps one copy (pure: no I/O)."""
    from esbridge.config import EventsConfig
    from esbridge.events import EventStore

    store = EventStore(EventsConfig(), connection=None)  # type: ignore[arg-type]
    e = event(100.0, ["web"])
    store._merge([e])
    store._merge([e, e])
    assert store.events == [e]


# -- selecting checks by name globs and tags (gate_api.select) ------------------------------


def test_selection_matches_exactly_as_fnmatchcase() -> None:
    names = ["web-5xx", "web-latency", "db-lag", "Web-5xx", "a[b]", "x?y", "web-", "web"]
    for patterns in (
        ["web-*"],
        ["web-?xx", "db-*"],
        ["*[0-9]*", "a[[]b]"],
        ["x[?]y", "web"],
        ["*", "web-5xx"],
        ["w*b*5*"],
        ["[!w]*"],
    ):
        match = matcher(patterns)
        assert match is not None
        expected = {n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)}
        assert {n for n in names if match(n)} == expected, patterns
    assert matcher([]) is None


def test_selection_needs_every_tag_and_sorts() -> None:
    checks = {
        "web-b": SimpleNamespace(tags=["web", "prod"]),
        "web-a": SimpleNamespace(tags=["web"]),
        "db": SimpleNamespace(tags=["prod"]),
    }
    items = list(checks.items())
    assert select(items, ["web-*"], []) == ["web-a", "web-b"]
    assert select(items, ["web-*"], ["prod"]) == ["web-b"]
    assert select(items, [], ["prod"]) == ["db", "web-b"]
    assert select(items, ["nothing"], []) == []


def test_selection_cost_does_not_grow_with_repeated_patterns() -> None:
    """1,500 times check=z* over 5,000 checks took 7.6 s (a fnmatch per pattern and name)."""
    items = [(f"bulk-check-{i:05d}", SimpleNamespace(tags=[])) for i in range(5000)]
    started = time.perf_counter()
    assert select(items, ["z*"] * 1500, []) == []
    assert select(items, [f"bulk-check-{i:05d}" for i in range(100)], []) == [
        f"bulk-check-{i:05d}" for i in range(100)
    ]
    assert time.perf_counter() - started < 0.5


def test_the_gate_command_waits_out_a_429_and_asks_again(capsys: Any) -> None:
    """Too many gates waiting (429, Retry-After): `esbridge gate` asks again when told to,
    instead of failing the deploy pipeline with an HTTP error."""
    import argparse
    import json as jsonlib
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from esbridge.gateclient import add_arguments, run

    asked: list[float] = []
    verdict = {"verdict": "pass", "reason": "all 1 checks OK", "checks": []}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(time.monotonic())
            if len(asked) == 1:
                body, status = b'{"error": "32 gate requests are already waiting"}', 429
            else:
                body, status = jsonlib.dumps(verdict).encode(), 200
            self.send_response(status)
            if status == 429:
                self.send_header("Retry-After", "1")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        parser = argparse.ArgumentParser()
        add_arguments(parser)
        url = f"http://127.0.0.1:{server.server_address[1]}"
        args = parser.parse_args(["--url", url, "--check", "c", "--for", "1s"])
        assert run(args) == 0
    finally:
        server.shutdown()
    assert len(asked) == 2 and asked[1] - asked[0] >= 0.9
    assert "gate pass" in capsys.readouterr().out
