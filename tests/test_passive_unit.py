"""Passive delivery without processes: rendering, the bounded queue, when to send, config."""

from __future__ import annotations

import asyncio
import fcntl
import os
import select
import time
from pathlib import Path

import pytest

from esbridge.config import ConfigError, load_settings
from esbridge.passive import (
    NAGIOS_MAX_COMMAND,
    DeliveryError,
    LatestQueue,
    NagiosTarget,
    PassiveHub,
    Submission,
    make_target,
    nagios_command,
    split_perfdata,
    write_commands,
)
from esbridge.ranges import Range
from esbridge.result import GroupResult, Perfdatum, Result, State


def settings(tmp_path: Path, body: str):
    path = tmp_path / "esbridge.yaml"
    path.write_text(body)
    return load_settings(path)


def nagios_target(tmp_path: Path, **extra: str):
    lines = "".join(f"    {k}: {v}\n" for k, v in extra.items())
    s = settings(
        tmp_path,
        f"passive:\n  - name: n\n    type: nagios\n    command_file: {tmp_path}/cmd\n{lines}",
    )
    return make_target(s.passive[0])


GROUPED = Result(
    check="web-5xx",
    state=State.CRITICAL,
    summary="2 of 3 hosts | above",
    value=300,
    perfdata=(Perfdatum("errors", 312, "", Range.parse("10"), Range.parse("50"), 0),),
    groups=(
        GroupResult(
            (("host", "web-01"),),
            State.CRITICAL,
            300,
            "web-01: 300 (critical > 50)",
            (Perfdatum("web-01", 300, "", None, Range.parse("50")),),
        ),
        GroupResult(
            (("host", "web-02"),), State.OK, 1, "web-02: 1 \\ fine", (Perfdatum("web-02", 1),)
        ),
    ),
    evaluated_at=1000.0,
    duration=0.5,
)


def test_split_perfdata_keeps_text_and_perfdata_apart():
    output, perfdata = split_perfdata(GROUPED)
    assert output.splitlines() == [
        "CRITICAL - 2 of 3 hosts ¦ above",
        "CRITICAL: web-01: 300 (critical > 50)",
        "OK: web-02: 1 \\ fine",
    ]
    assert perfdata == ["'errors'=312;10;50;0", "'web-01'=300;;50", "'web-02'=1"]


def test_nagios_command_escapes_and_keeps_the_plugin_layout(tmp_path):
    target = nagios_target(tmp_path)
    [sub] = target.submissions(GROUPED, 60.0, {})
    line = nagios_command(sub, now=1234)
    assert line.endswith("\n") and line.count("\n") == 1
    assert line.startswith("[1234] PROCESS_SERVICE_CHECK_RESULT;esbridge;web-5xx;2;CRITICAL - ")
    body = line.split(";2;", 1)[1].rstrip("\n")
    # literal \n between lines, backslashes doubled: Nagios unescapes both
    assert body == (
        "CRITICAL - 2 of 3 hosts ¦ above | 'errors'=312;10;50;0\\n"
        "CRITICAL: web-01: 300 (critical > 50)\\n"
        "OK: web-02: 1 \\\\ fine | 'web-01'=300;;50 'web-02'=1"
    )


def test_nagios_command_fits_the_nagios_limit_even_for_huge_results(tmp_path):
    target = nagios_target(tmp_path)
    huge = Result(
        check="big",
        state=State.WARNING,
        summary="many",
        long_output=tuple(f"line {i} " + "x" * 80 for i in range(400)),
        evaluated_at=1.0,
    )
    [sub] = target.submissions(huge, 60.0, {})
    line = nagios_command(sub, now=1)
    assert len(line.encode()) <= NAGIOS_MAX_COMMAND
    assert "lines truncated" in line and line.count("\n") == 1


def wide(hosts: int) -> Result:
    """A grouped CRITICAL whose command line is well over PIPE_BUF (4096 bytes)."""
    groups = tuple(
        GroupResult(
            (("host", f"wéb-{i:03d}"),),
            State.CRITICAL,
            100 + i,
            f"wéb-{i:03d}: {100 + i} 5xx responses (critical > 50) \\ ✓",
            (Perfdatum(f"web-{i:03d}", 100 + i),),
        )
        for i in range(hosts)
    )
    return Result(
        check="web-5xx",
        state=State.CRITICAL,
        summary=f"{hosts} of {hosts} hosts above 50",
        value=100 + hosts,
        perfdata=(Perfdatum("errors", 312, "", Range.parse("10"), Range.parse("50"), 0),),
        groups=groups,
        evaluated_at=1700000000.0,
    )


def test_nagios_command_fits_one_atomic_pipe_write(tmp_path):
    """A line longer than PIPE_BUF can be written in part to a full pipe: every command is
    rendered within PIPE_BUF instead, still valid UTF-8, overall perfdata intact."""
    target = nagios_target(tmp_path)
    [sub] = target.submissions(wide(80), 60.0, {})
    assert len(sub.nagios_text.encode()) > select.PIPE_BUF  # what the plugin would print
    line = nagios_command(sub, now=1)
    raw = line.encode()
    assert len(raw) <= select.PIPE_BUF and len(raw) > select.PIPE_BUF - 300, len(raw)
    assert raw.decode("utf-8") == line and line.count("\n") == 1
    first = line.split("\\n", 1)[0]
    assert first.endswith("CRITICAL - 80 of 80 hosts above 50 | 'errors'=312;10;50;0")
    assert "more lines truncated" in line and "\\\\ ✓" in line


def fill_pipe(fifo: Path, free: int) -> tuple[int, int]:
    """A "Nagios" holding the FIFO open but not reading, with only ``free`` bytes left."""
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    capacity = fcntl.fcntl(writer, 1032)  # F_GETPIPE_SZ
    os.write(writer, b"#" * (capacity - free - 1) + b"\n")
    os.close(writer)
    return reader, capacity


def drain(fd: int) -> bytes:
    out = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return out
        if not chunk:
            return out
        out += chunk


def test_a_full_pipe_never_holds_half_a_command(tmp_path):
    """Nagios stalls with less than a long command's room left in its pipe. Whatever is
    written then and after it drains, it reads whole commands only, each exactly once: no
    half line reported as unwritten, no retry glued onto it."""
    fifo = tmp_path / "cmd"  # nagios_target's command_file
    os.mkfifo(fifo)
    target = nagios_target(tmp_path, timeout="300ms", backoff="50ms")
    small = Result(check="db-ok", state=State.OK, summary="0 slow", evaluated_at=1.0)

    async def scenario(reader: int) -> bytes:
        for result in (wide(80), small):
            for s in target.submissions(result, 60.0, {}):
                target.offer(s, 0.0)
        target.start()
        try:
            await asyncio.sleep(0.5)  # the first attempt runs into the full pipe
            received = drain(reader)  # Nagios reads again
            deadline = time.monotonic() + 10
            while target.stats.sent < 2 or len(target.queue):
                assert time.monotonic() < deadline, target.status()
                await asyncio.sleep(0.05)
                received += drain(reader)
            await asyncio.sleep(0.3)  # nothing more comes
            return received + drain(reader)
        finally:
            await target.close()

    reader, _ = fill_pipe(fifo, 3000)  # room for the small command, not the big one
    try:
        data = asyncio.run(scenario(reader))
    finally:
        os.close(reader)
    lines = [ln for ln in data.split(b"\n") if ln and not ln.startswith(b"#")]
    assert [ln.count(b"PROCESS_SERVICE_CHECK_RESULT") for ln in lines] == [1, 1], lines
    assert sorted(ln.split(b";")[2] for ln in lines) == [b"db-ok", b"web-5xx"]
    assert all(len(ln) < select.PIPE_BUF for ln in lines)
    assert target.stats.sent == 2 and target.stats.dropped == 0


def test_write_commands_refuses_lines_it_cannot_write_atomically(tmp_path):
    fifo = tmp_path / "nagios.cmd"
    os.mkfifo(fifo)
    with pytest.raises(ValueError):
        write_commands(str(fifo), [b"x" * select.PIPE_BUF + b"\n"], 1.0)


def test_failed_submissions_are_retried_in_their_original_order(tmp_path):
    """A failed batch goes back to the front of the queue as it was: a, b, c, not c, b, a."""
    batches: list[list[str]] = []

    class FailsOnce(NagiosTarget):
        async def deliver(self, subs):
            batches.append([s.service for s in subs])
            if len(batches) == 1:
                raise DeliveryError("blocked", "pipe full")
            return []

    target = FailsOnce(nagios_target(tmp_path, backoff="10ms").config)

    async def scenario() -> None:
        for name in "abc":
            target.offer(sub(name), now=0.0)
        target.start()
        try:
            while target.stats.sent < 3:
                await asyncio.sleep(0.01)
        finally:
            await target.close()

    asyncio.run(scenario())
    assert batches == [["a", "b", "c"], ["a", "b", "c"]]


def test_per_group_services_and_names(tmp_path):
    target = nagios_target(
        tmp_path,
        host="'{labels[team]}'",
        service="'{check};x'",
        groups="{host: '{group[host]}', service: 'errors {check}'}",
    )
    subs = target.submissions(GROUPED, 30.0, {"team": "web"}, check_timeout=5.0)
    assert [(s.host, s.service, s.state) for s in subs] == [
        ("web", "web-5xx_x", State.CRITICAL),  # ';' would split the command: replaced
        ("web-01", "errors web-5xx", State.CRITICAL),
        ("web-02", "errors web-5xx", State.OK),
    ]
    assert subs[1].perfdata == ["'web-01'=300;;50"]
    assert subs[0].ttl == pytest.approx(2 * 30 + 5 + 10)
    assert subs[0].execution_start == pytest.approx(999.5)


def test_group_template_with_a_missing_field_is_counted_not_raised(tmp_path):
    target = nagios_target(tmp_path, groups="{host: '{group[region]}'}")
    subs = target.submissions(GROUPED, 30.0, {})
    assert len(subs) == 1  # only the overall result
    assert target.stats.failed == {"template": 2}


def sub(service: str, state: State = State.OK) -> Submission:
    return Submission("h", service, service, state, "", [], "", 0.0, 0.0, 1.0)


def test_latest_queue_keeps_one_per_service_and_a_bound():
    q = LatestQueue(maxsize=3)
    assert q.put(sub("a")) == 0
    assert q.put(sub("b")) == 0
    assert q.put(sub("a", State.CRITICAL)) == 1  # newest wins, keeps its place
    assert len(q) == 2
    assert q.put(sub("c")) == 0
    assert q.put(sub("d")) == 1  # full: the oldest ("a") goes
    retry = sub("d", State.WARNING)
    assert q.put(retry, front=True) == 1  # a newer "d" is queued: the retry is dropped
    got = asyncio.run(q.get_many(10))
    assert [(s.service, s.state) for s in got] == [
        ("b", State.OK),
        ("c", State.OK),
        ("d", State.OK),
    ]
    assert q.put(sub("e"), front=True) == 0 and q.put(sub("f")) == 0
    assert [s.service for s in asyncio.run(q.get_many(10))] == ["e", "f"]


def test_change_mode_sends_changes_and_heartbeats(tmp_path):
    target = nagios_target(tmp_path, when="change", heartbeat="60s")
    assert isinstance(target, NagiosTarget)
    target.offer(sub("a"), now=100.0)
    assert len(target.queue) == 1  # never delivered: send
    asyncio.run(target.queue.get_many(10))
    target.delivered[("h", "a")] = (State.OK, 100.0)
    target.offer(sub("a"), now=130.0)
    assert len(target.queue) == 0  # same state, heartbeat not due
    target.offer(sub("a", State.WARNING), now=131.0)
    assert len(target.queue) == 1  # a change goes out
    asyncio.run(target.queue.get_many(10))
    target.offer(sub("a"), now=170.0)
    assert len(target.queue) == 1  # the heartbeat is due


@pytest.mark.parametrize("when", ["every", "change"])
def test_what_was_delivered_is_not_kept_forever(tmp_path, when):
    """Groups come and go (pods): "change" mode keeps what each (host, service) last got for
    one heartbeat, no longer; "every" mode needs none of it and keeps nothing."""

    class Delivered(NagiosTarget):
        async def deliver(self, subs):  # every submission accepted, nothing written
            return []

    config = settings(
        tmp_path,
        f"passive:\n  - name: n\n    type: nagios\n    command_file: {tmp_path}/cmd\n"
        f"    when: {when}\n    heartbeat: 1s\n    queue_size: 1000\n",
    ).passive[0]

    async def scenario() -> list[int]:
        target = Delivered(config)
        target.start()
        kept = []
        try:
            for round_ in range(3):  # 300 pods each round, replaced by new ones the next
                for i in range(300):
                    target.offer(sub(f"pod-{round_}-{i}"), now=0.0)
                while len(target.queue):
                    await asyncio.sleep(0.01)
                await asyncio.sleep(1.1)  # one heartbeat
                kept.append(len(target.delivered))
        finally:
            await target.close()
        return kept

    kept = asyncio.run(scenario())
    if when == "every":
        assert kept == [0, 0, 0]
    else:
        assert max(kept) <= 300 and kept[-1] > 0, kept  # the last round, not all 900


def test_hub_metrics_one_family_per_name_for_several_targets(tmp_path):
    s = settings(
        tmp_path,
        "passive:\n"
        f"  - {{name: a, type: nagios, command_file: {tmp_path}/a}}\n"
        f"  - {{name: b, type: nagios, command_file: {tmp_path}/b, checks: ['x-*']}}\n",
    )
    hub = PassiveHub(None, [make_target(c) for c in s.passive])
    families = list(hub.metrics())
    names = [f.name for f in families]
    assert len(names) == len(set(names))
    up = next(f for f in families if f.name == "esbridge_passive_target_up")
    assert sorted(smp.labels["target"] for smp in up.samples) == ["a", "b"]
    assert hub.targets[1].wants("x-1") and not hub.targets[1].wants("web-5xx")
    assert [t["name"] for t in hub.status()] == ["a", "b"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("  - {name: i, type: icinga2, url: https://x:5665, username: u}\n", "exactly one of"),
        (
            "  - {name: i, type: icinga2, url: x:5665, username: u, password: p}\n",
            "is not an http",
        ),
        ("  - {name: n, type: nagios, command_file: /x, service: '{chek}'}\n", "{chek}"),
        ("  - {name: n, type: nagios, command_file: /x, when: sometimes}\n", "'every' or"),
        ("  - {name: n, type: nagios, command_file: /x, concurrency: 4}\n", "less than or"),
        ("  - {name: n, type: smtp}\n", "type"),
        (
            "  - {name: n, type: nagios, command_file: /x}\n"
            "  - {name: n, type: nagios, command_file: /y}\n",
            "unique",
        ),
        ("  - {name: n, type: nagios, command_file: /x, heartbeet: 5m}\n", "'heartbeat'"),
    ],
)
def test_config_rejects_bad_targets(tmp_path, body, message):
    with pytest.raises(ConfigError) as info:
        settings(tmp_path, "passive:\n" + body)
    assert message in str(info.value)


def test_password_sources_and_relative_paths(tmp_path, monkeypatch):
    (tmp_path / "pw").write_text("from-file\n")
    s = settings(
        tmp_path,
        "passive:\n"
        "  - {name: a, type: icinga2, url: 'https://i:5665/', username: u, password_file: pw,"
        " ca_certs: ca.crt}\n"
        "  - {name: b, type: icinga2, url: 'https://i:5665', username: u, password_env: PW_B}\n",
    )
    a, b = s.passive
    assert a.url == "https://i:5665" and a.resolved_password() == "from-file"
    assert a.ca_certs == tmp_path / "ca.crt"
    monkeypatch.setenv("PW_B", "from-env")
    assert b.resolved_password() == "from-env"
    monkeypatch.delenv("PW_B")
    with pytest.raises(ConfigError, match=r"\$PW_B is not set"):
        b.resolved_password()


def test_validate_reports_unusable_targets(tmp_path):
    import subprocess
    import sys

    checks = tmp_path / "checks.yaml"
    checks.write_text("checks:\n  - {name: c1, kind: count, index: x, warning: 1, critical: 2}\n")
    config = tmp_path / "esbridge.yaml"
    config.write_text(
        f"checks: [{checks}]\n"
        "passive:\n"
        "  - {name: i, type: icinga2, url: 'https://i:5665', username: u,"
        " password_file: missing-pw, ca_certs: missing.crt}\n"
        "  - {name: n, type: nagios, command_file: /no/such/dir/nagios.cmd, checks: [zz*]}\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "esbridge", "validate", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout
    assert "passive.0.password_file" in out and "missing-pw" in out
    assert "passive.0.ca_certs" in out
    assert "passive.1.command_file" in out and "/no/such/dir" in out
    assert "passive.1.checks" in out and "'zz*' matches no check" in out
