"""Several replicas, one view: real ``esbridge serve`` processes on loopback, real Elasticsearch.

Heartbeat 1 s and lease 5 s keep the scenarios short. Timing assertions check the design
bounds (docs/scale-out.md) plus a documented MARGIN for a loaded 2-core test machine: a
replica's heartbeat round, a poll period of this test and a batch run can each be late.
"""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from esbridge.membership import MEMBERS_MAPPING
from esbridge_dev import httpcalls
from esbridge_dev.service import EsbridgeProcess, poll
from test_service_support import CountingProxy, delete_index, write

pytestmark = [pytest.mark.es, pytest.mark.slow]

HEARTBEAT = 1.0
LEASE = 5.0  # a heartbeat round may stall 4 s on a loaded machine without a departure
WRITE_DELAY = 0.5  # a heartbeat write held by the proxy: less than HEARTBEAT (see its test)
MARGIN = 4.0  # heartbeat round late + test poll period + batch duration, on a loaded machine
# Allowed age = STALENESS x interval. The default 2 leaves a 2 s check 2 s for scheduling,
# the state flush (0.5 s) and the shared-view read (0.5 s); on a shared 2-core test machine
# that is sometimes not enough, so the tests allow 3 intervals and assert against that.
STALENESS = 3
CHECKS = 300
STEADY_WINDOW = 30.0  # 6 to 15 runs of each check: enough to see one owner run it
PLUGIN = (
    Path(__file__).resolve().parents[1] / "service" / "esbridge" / "plugin" / "check_esbridge.py"
)


def interval_of(i: int) -> int:
    return 2 + i % 4  # 2, 3, 4, 5 s


def expected_state(i: int) -> str:
    return ("OK", "WARNING", "CRITICAL")[i % 3]


def checks_file(path: Path, index: str, count: int) -> Path:
    """``count`` count checks on 20 recent documents; thresholds fix each one's state."""
    thresholds = ("warning: 100, critical: 200", "warning: 10, critical: 50", "critical: 5")
    lines = ["defaults:", f"  index: {index}", "  window: 1h", "checks:"]
    for i in range(count):
        lines.append(
            f"  - {{name: c{i:04d}, kind: count, interval: {interval_of(i)}s, {thresholds[i % 3]}}}"
        )
    return write(path, "\n".join(lines) + "\n")


@pytest.fixture
def index20(make_index, seed) -> str:  # type: ignore[no-untyped-def]
    index = make_index("cluster")
    seed(index, [{"ago": f"{i + 1}m", "status": 500} for i in range(20)])
    return index


@pytest.fixture
def indices(es_url: str) -> Iterator[tuple[str, str]]:
    tag = uuid.uuid4().hex[:8]
    state, members = f"esbridge-test-state-{tag}", f"esbridge-test-members-{tag}"
    yield state, members
    delete_index(es_url, state)
    delete_index(es_url, members)


class Replicas:
    """A group of ``esbridge serve`` processes sharing one state and members index."""

    def __init__(self, es_url: str, checks: Path, state: str, members: str) -> None:
        self.es_url, self.checks_path, self.state, self.members = es_url, checks, state, members
        self.procs: dict[str, EsbridgeProcess] = {}
        self.disagreement = ""

    def start(
        self,
        name: str,
        port: int | None = None,
        es_url: str | None = None,
        env: dict[str, str] | None = None,
    ) -> str:
        proc = EsbridgeProcess(
            es_url or self.es_url,
            [self.checks_path],
            port=port,
            state_index=self.state,
            env={
                "ESBRIDGE_CLUSTER__ENABLED": "true",
                "ESBRIDGE_CLUSTER__REPLICA_ID": name,
                "ESBRIDGE_CLUSTER__INDEX": self.members,
                "ESBRIDGE_CLUSTER__HEARTBEAT": f"{HEARTBEAT:g}s",
                "ESBRIDGE_CLUSTER__LEASE": f"{LEASE:g}s",
                "ESBRIDGE_CLUSTER__VIEW_REFRESH": "0.5s",
                "ESBRIDGE_STATE__FLUSH_INTERVAL": "0.5s",
                "ESBRIDGE_DEFAULTS__TIMEOUT": "2s",
                "ESBRIDGE_DEFAULTS__STALENESS_FACTOR": str(STALENESS),
            }
            | (env or {}),
        )
        proc.start(wait=180)  # a loaded 2-core machine can take a minute to import
        self.procs[name] = proc
        return name

    def live(self) -> dict[str, EsbridgeProcess]:
        return {n: p for n, p in self.procs.items() if p.proc and p.proc.poll() is None}

    def cluster(self, name: str, runs: bool = False) -> dict[str, Any]:
        r = self.procs[name].get("/api/v1/cluster", params={"runs": str(runs).lower()})
        r.raise_for_status()
        return r.json()

    def view(self, name: str) -> dict[str, dict[str, Any]]:
        r = self.procs[name].get("/api/v1/checks")
        r.raise_for_status()
        return {c["name"]: c for c in r.json()["checks"]}

    def agreed(self, expected_members: int) -> dict[str, str] | None:
        """check → owner once every live replica is ready, sees the same members and owners.

        When not, ``self.disagreement`` says why (for the failure message of a poll).
        """
        views = {}
        for name in self.live():
            cluster = self.cluster(name)
            if not cluster["ready"] or len(cluster["live_members"]) != expected_members:
                self.disagreement = (
                    f"{name}: ready={cluster['ready']} live={cluster['live_members']} "
                    f"members={cluster['members']}"
                )
                return None
            views[name] = {n: c["owner"] for n, c in self.view(name).items()}
        first = next(iter(views.values()))
        differ = {n: len([c for c in v if v[c] != first.get(c)]) for n, v in views.items()}
        if any(differ.values()) or any(o is None for o in first.values()):
            self.disagreement = f"owners differ (checks per replica): {differ}"
            return None
        self.disagreement = ""
        return first

    def until_agreed(self, expected_members: int, timeout: float) -> dict[str, str]:
        """Poll :meth:`agreed`; on failure say why and show each replica's membership log."""
        try:
            return poll(lambda: self.agreed(expected_members), timeout=timeout, interval=0.5)
        except AssertionError as error:
            logs = {
                name: [line for line in proc.log().splitlines() if "membership" in line][-8:]
                for name, proc in self.live().items()
            }
            raise AssertionError(f"{error}; last: {self.disagreement}; logs: {logs}") from None

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.stop()


@pytest.fixture
def replicas(es_url: str, index20: str, indices, tmp_path: Path) -> Iterator[Replicas]:  # type: ignore[no-untyped-def]
    group = Replicas(es_url, checks_file(tmp_path / "c.yaml", index20, CHECKS), *indices)
    try:
        yield group
    finally:
        group.stop_all()


def runs_by_replica(group: Replicas) -> dict[str, Counter[str]]:
    return {n: Counter(group.cluster(n, runs=True)["runs"]) for n in group.live()}


def assert_honest(view: dict[str, dict[str, Any]], at: float) -> None:
    """No OK from stale data; every state the one its thresholds give, or UNKNOWN stale."""
    for name, check in view.items():
        i = int(name[1:])
        max_age = STALENESS * interval_of(i)
        if check["state"] == "PENDING":
            continue
        if check["state"] == "OK":
            assert check["age_seconds"] <= max_age + 0.5, (name, check, at)
        if check["state"] != "UNKNOWN":
            assert check["state"] == expected_state(i), (name, check)


def stale_checks(view: dict[str, dict[str, Any]]) -> dict[str, tuple[Any, Any]]:
    """check -> (age, owner) of the ones a replica shows stale: what a failure must say."""
    return {n: (c["age_seconds"], c["owner"]) for n, c in view.items() if c["stale"]}


def unknown_checks(group: Replicas) -> dict[str, dict[str, Any]]:
    """Per replica, check -> summary of the UNKNOWN ones (an Elasticsearch timeout under load
    is a change, written: it shows here when the steady window's write count is off)."""
    return {
        name: {n: c["summary"] for n, c in group.view(name).items() if c["state"] == "UNKNOWN"}
        for name in group.live()
    }


def plugin_codes(url: str) -> dict[str, int]:
    """Exit codes as Nagios gets them: the plugin itself for every 30th check (a process each,
    slow on a loaded machine), ``status_code`` of the same store read for all of them."""
    codes = {
        c["name"]: c["status_code"] for c in httpcalls.get(f"{url}/api/v1/checks").json()["checks"]
    }
    for i in range(0, CHECKS, 30):
        name = f"c{i:04d}"
        done = subprocess.run(
            ["python3", "-I", "-S", str(PLUGIN), "-H", url, "-C", name],
            capture_output=True,
            timeout=60,
        )
        assert done.returncode == codes[name], (name, done.stdout)
    return codes


def state_versions(group: Replicas) -> dict[str, int]:
    """check -> ``_seq_no`` of its state document (real-time ``_mget``)."""
    ids = [f"c{i:04d}" for i in range(CHECKS)]
    answer = httpcalls.post(
        f"{group.es_url}/{group.state}/_mget?_source=false", json={"ids": ids}
    ).json()
    return {d["_id"]: d["_seq_no"] for d in answer["docs"] if d.get("found")}


def metric_values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by name and sorted labels (the standard parser)."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


# Both heavy slots: its timing bounds are the design's plus a MARGIN set for one such
# scenario on the two cores, not for two side by side (other backends' lanes).
@pytest.mark.heavy(cores=2)
@pytest.mark.timeout(2400)  # up to 900 s of it waiting for the heavy lock (conftest)
def test_three_replicas_share_join_fail_over_and_restart(replicas: Replicas) -> None:
    group = replicas
    ports = {}
    for name in ("r1", "r2", "r3"):
        ports[name] = group.procs[group.start(name)].port
    owners = group.until_agreed(3, timeout=90)
    assert set(owners.values()) == {"r1", "r2", "r3"}
    poll(lambda: all(c["state"] != "PENDING" for c in group.view("r1").values()), timeout=60)

    # -- every check evaluated by exactly one replica over a steady window ----------------
    # Every check gives the same answer run after run here: once ownership has settled, the
    # owners announce those runs in their heartbeats and write no state document, and
    # every replica still shows every check fresh (the owner's run times, followed). Checks
    # at intervals too short to wait for a heartbeat (below flush + 3 heartbeats, 3.5 s
    # here: the 2 s and 3 s ones) are written every run and read by version, as before.
    # past the settling of the last rebalance: a gained check is written every run until
    # 2 heartbeats and a flush after it, and once more at its next run (up to 5 s later)
    time.sleep(2 * HEARTBEAT + 0.5 + 2 * 5)
    writes_before = state_versions(group)
    before = runs_by_replica(group)
    window_start = time.monotonic()
    while time.monotonic() - window_start < STEADY_WINDOW:
        for name in group.live():
            view = group.view(name)
            assert_honest(view, time.time())
            assert not stale_checks(view), ("steady window", name, stale_checks(view))
        time.sleep(5)
    after = runs_by_replica(group)
    rewritten = {n for n, v in state_versions(group).items() if writes_before.get(n) != v}
    short = {f"c{i:04d}" for i in range(CHECKS) if interval_of(i) < 0.5 + 3 * HEARTBEAT}
    assert len(writes_before) == CHECKS and rewritten == short, (
        "steady window: rewritten but for the short intervals",
        sorted(rewritten ^ short),
        unknown_checks(group),
    )
    # One instant can catch a replica between heartbeat rounds (not ready, or a heartbeat
    # late on a loaded machine: a CI run with five test lanes once waited more than a lease
    # plus MARGIN for it). A real move stays, so the equality below still catches one.
    steady = group.until_agreed(3, timeout=30)
    assert steady == owners, "ownership moved without a membership change"
    for i in range(CHECKS):
        check = f"c{i:04d}"
        ran = {n: after[n][check] - before[n][check] for n in after}
        runners = [n for n, count in ran.items() if count > 0]
        assert runners == [owners[check]], (check, ran)
        assert ran[owners[check]] >= STEADY_WINDOW / interval_of(i) / 2, (check, ran)

    # -- check_esbridge gives the same exit code against every replica ---------------------
    codes = {name: plugin_codes(proc.url) for name, proc in group.live().items()}
    for i in range(CHECKS):
        check = f"c{i:04d}"
        seen = {codes[n][check] for n in codes}
        assert seen == {("OK", "WARNING", "CRITICAL").index(expected_state(i))}, (check, codes)

    # -- /metrics of every replica: members, checks owned, what coordination costs --------
    def settled_metrics() -> dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
        """Every replica's samples once each says 3 members and owns its share (one scrape
        can catch a heartbeat late on a loaded machine, as the ownership checks above)."""
        scraped = {n: metric_values(p.get("/metrics").text) for n, p in group.live().items()}
        for name, values in scraped.items():
            if values[("esbridge_cluster_members", ())] != 3:
                return {}
            if values[("esbridge_checks_owned", ())] != list(owners.values()).count(name):
                return {}
        return scraped

    scraped = poll(settled_metrics, timeout=LEASE + MARGIN + 10, interval=0.5)
    for name, values in scraped.items():
        for part in ("membership", "shared_view"):
            label = (("part", part),)
            assert values[("esbridge_cluster_coordination_requests_total", label)] > 0, name
            assert values[("esbridge_cluster_coordination_cpu_seconds_total", label)] > 0, name
        # the tasks' own CPU, requests included, is at least what the counters time
        task = values[("esbridge_cluster_coordination_task_cpu_seconds_total", ())]
        parts = ("membership", "shared_view")
        counted = sum(
            values[("esbridge_cluster_coordination_cpu_seconds_total", (("part", p),))]
            for p in parts
        )
        assert task >= counted > 0, (name, task, counted)
        # every replica reads the others' checks: at least one document of each by now
        foreign = CHECKS - values[("esbridge_checks_owned", ())]
        assert values[("esbridge_shared_view_documents_read_total", ())] >= foreign, name
        # and the long-interval ones repeat their answer: their runs come from the owners'
        # marks, one number per heartbeat, not a step per run
        assert values[("esbridge_shared_view_marks_followed_total", ())] > 0, name
    assert sum(v[("esbridge_checks_owned", ())] for v in scraped.values()) == CHECKS

    # -- a fourth replica joins: about a quarter moves, none goes unevaluated -------------
    joined_at = time.time()
    group.start("r4")
    new_owners = group.until_agreed(4, timeout=60)
    moved = [c for c in owners if owners[c] != new_owners[c]]
    assert abs(len(moved) / CHECKS - 0.25) <= 0.05, len(moved)
    assert {new_owners[c] for c in moved} == {"r4"}

    def all_evaluated_since(at: float) -> bool:
        for name in group.live():
            view = group.view(name)
            assert_honest(view, time.time())
            assert not stale_checks(view), ("after the join", name, stale_checks(view))
        view = group.view("r4")
        return all(c["evaluated_at_ts"] > at for c in view.values())

    poll(lambda: all_evaluated_since(joined_at), timeout=5 + LEASE + MARGIN + 5, interval=0.5)

    # -- kill -9 one: survivors evaluate its checks within interval + lease ---------------
    owners = new_owners
    victim = "r2"
    theirs = [c for c, o in owners.items() if o == victim]
    view = group.view("r1")
    since_before = {c: view[c]["since_ts"] for c in theirs}
    group.procs[victim].kill()
    killed_at = time.time()
    first_seen: dict[str, float] = {}
    deadline = killed_at + 5 + LEASE + HEARTBEAT + MARGIN + 10
    while len(first_seen) < len(theirs) and time.time() < deadline:
        now = time.time()
        for name in group.live():
            view = group.view(name)
            assert_honest(view, now)
            for c in theirs:
                if c not in first_seen and (view[c]["evaluated_at_ts"] or 0) > killed_at:
                    first_seen[c] = view[c]["evaluated_at_ts"]
        time.sleep(0.3)
    assert len(first_seen) == len(theirs), (
        "after kill -9",
        [c for c in theirs if c not in first_seen],
    )
    late = {
        c: round(at - killed_at, 2)
        for c, at in first_seen.items()
        if at - killed_at > interval_of(int(c[1:])) + LEASE + MARGIN
    }
    assert not late, ("after kill -9, later than interval + lease + MARGIN", late)
    after_owners = group.until_agreed(3, timeout=30)
    assert victim not in after_owners.values()
    assert all(after_owners[c] == owners[c] for c in owners if owners[c] != victim)
    view = group.view("r1")
    assert {c: view[c]["since_ts"] for c in theirs} == since_before

    # -- rolling restart of the three left: no result older than its allowed age ---------
    for name in list(group.live()):
        port = group.procs[name].port
        assert group.procs[name].stop() == 0
        stopped = time.time()
        group.start(name, port=port)
        while time.time() - stopped < 8:
            for other in group.live():
                if not group.cluster(other)["ready"]:
                    continue
                view = group.view(other)
                old = {
                    n: (c["age_seconds"], c["owner"], name)  # age, owner, replica restarted
                    for n, c in view.items()
                    if c["age_seconds"] is not None
                    # two handovers in a few seconds (away and back): the same MARGIN for
                    # a late heartbeat round or batch as every other bound in this file
                    and c["age_seconds"] > STALENESS * interval_of(int(n[1:])) + MARGIN
                }
                assert not old, ("rolling restart", other, old)
            time.sleep(0.5)
    group.until_agreed(3, timeout=30)


@pytest.mark.timeout(600)
def test_elasticsearch_unreachable_for_all_replicas(
    es_url: str,
    index20: str,
    indices,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    checks = checks_file(tmp_path / "c.yaml", index20, 30)
    # the view read in the heartbeat's round, as by default (one wake-up per heartbeat)
    same_round = {"ESBRIDGE_CLUSTER__VIEW_REFRESH": f"{HEARTBEAT:g}s"}
    with CountingProxy(es_url) as proxy:
        group = Replicas(es_url, checks, *indices)
        try:
            group.start("a", es_url=proxy.url, env=same_round)
            group.start("b", es_url=proxy.url, env=same_round)
            group.until_agreed(2, timeout=60)
            for name in ("a", "b"):  # every check evaluated and seen by both before the cut
                poll(
                    lambda n=name: all(c["state"] != "PENDING" for c in group.view(n).values()), 60
                )

            proxy.fail = {".*": 503}
            cut = time.time()

            def all_unknown() -> bool:
                for name in group.live():
                    view = group.view(name)
                    for n, c in view.items():
                        assert c["state"] == "UNKNOWN" or c["state"] == expected_state(int(n[1:]))
                        if c["state"] == "OK":
                            assert c["age_seconds"] <= STALENESS * interval_of(int(n[1:])) + 0.5
                    if any(c["state"] != "UNKNOWN" for c in view.values()):
                        return False
                return True

            poll(all_unknown, timeout=STALENESS * 5 + LEASE + MARGIN + 10, interval=0.5)
            # each replica is alone now: it owns every check and reports it UNKNOWN itself
            poll(lambda: all(group.cluster(n)["checks_owned"] == 30 for n in group.live()), 30)
            assert time.time() - cut < 60

            proxy.fail = {}
            restored = time.time()
            twice_until = restored
            while time.time() - restored < 20:
                owned = [set(_owned(group, n)) for n in group.live()]
                if owned[0] & owned[1]:
                    twice_until = time.time()
                elif group.agreed(2):
                    break
                time.sleep(0.2)
            owners = group.until_agreed(2, timeout=30)
            assert set(owners.values()) == {"a", "b"}
            # both replicas need one successful heartbeat each to see the other again
            assert twice_until - restored <= 2 * HEARTBEAT + MARGIN, twice_until - restored
            poll(
                lambda: all(
                    c["state"] == expected_state(int(n[1:])) for n, c in group.view("b").items()
                ),
                timeout=30,
            )
        finally:
            group.stop_all()


@pytest.mark.timeout(600)
def test_a_replica_back_from_a_partition_restores_its_checks_before_writing(
    es_url: str,
    index20: str,
    indices,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    """Cut off for longer than a lease, replica a owns every check alone (UNKNOWN, never
    written) while b covers a's share, keeping since and writing history. When the partition
    heals, a's share is a subset of what it held, so nothing counts as gained: a must still
    restore its checks from the state index before it writes them, never its own UNKNOWN
    and an "UNKNOWN -> OK" recovery over b's since and history; nor the UNKNOWN of a run it
    started alone that ends only after the restore (a CI run: a search answered late)."""
    checks = checks_file(tmp_path / "c.yaml", index20, 12)
    state = indices[0]

    def doc(name: str) -> dict[str, Any]:
        r = httpcalls.get(f"{es_url}/{state}/_doc/{name}", timeout=30)
        r.raise_for_status()
        return r.json()["_source"]

    def mine_on_a() -> list[dict[str, Any]]:
        view = group.view("a")
        return [view[c] for c in mine]

    with CountingProxy(es_url) as proxy:
        group = Replicas(es_url, checks, *indices)
        try:
            group.start("a", es_url=proxy.url)
            group.start("b")
            owners = group.until_agreed(2, timeout=60)
            mine = sorted(c for c, owner in owners.items() if owner == "a")
            assert mine
            poll(lambda: all(doc(c)["state"] == expected_state(int(c[1:])) for c in mine), 60)
            since = {c: doc(c)["since_ts"] for c in mine}

            # a's searches are held, then fail without a retry: at the heal, runs that
            # started alone are still in flight and end UNKNOWN after a restored its checks
            proxy.stall = {"_msearch": 3.0}
            proxy.fail = {"_msearch": 500, ".*": 503}
            poll(lambda: group.cluster("b")["checks_owned"] == 12, LEASE + MARGIN + 10)
            taken = time.time()
            # b evaluates and writes a's share; a, alone, records UNKNOWN for every check
            poll(lambda: all(doc(c)["updated_at"] / 1000 > taken + 1 for c in mine), 30)
            poll(lambda: group.cluster("a")["checks_owned"] == 12, LEASE + MARGIN + 10)
            poll(lambda: all(c["state"] == "UNKNOWN" for c in group.view("a").values()), 30)

            proxy.fail, proxy.stall = {}, {}
            assert group.until_agreed(2, timeout=30) == owners
            agreed = time.time()
            # a evaluates its share again; it writes each check's state after taking it back
            # (every run until the move has settled, then only changes: the same answers
            # here), so whichever document the index holds once a's writes are done, it
            # keeps b's since and history, and no UNKNOWN a recorded alone
            poll(lambda: all(view["evaluated_at_ts"] > agreed + 2 for view in mine_on_a()), 30)
            time.sleep(2 * HEARTBEAT + 0.5 + 5)  # a's writes of the settling, flushed
            for c in mine:
                d = doc(c)
                history = [(t["from"], t["to"]) for t in d["transitions"]]
                assert d["state"] == expected_state(int(c[1:])), (c, d["state"])
                assert d["since_ts"] == since[c], (c, d["since_ts"], since[c], history)
                assert "UNKNOWN" not in {s for pair in history for s in pair}, (c, history)
            view = group.view("a")
            assert {c: view[c]["since_ts"] for c in mine} == since
        finally:
            group.stop_all()


def test_an_owner_writes_again_what_a_replica_that_counted_it_out_wrote(
    es_url: str,
    index20: str,
    indices,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    """A replica that counted the owner out for a moment (a newcomer that read it before its
    counter moved, a lease run out on a loaded machine) ran and wrote some of its checks.
    The owner saw no change of its own and went on announcing its runs as repeats of its own
    last write, which the index no longer held: a replica that read the other's write could
    follow none of them and showed the check stale (UNKNOWN) until the owner's write was ten
    minutes old (a CI run: 4-5 s checks 16 s old in the steady window). Here the test is the
    other replica: it writes one check's document, as a run of its own, and a heartbeat
    saying it counted the owner out (never moving: it owns nothing here); the follower
    restarts, so it reads that document."""
    checks = checks_file(tmp_path / "c.yaml", index20, 12)
    state, members = indices
    group = Replicas(es_url, checks, state, members)
    try:
        group.start("a")
        port = group.procs[group.start("b")].port
        owners = group.until_agreed(2, timeout=60)
        name = next(
            c for c, o in sorted(owners.items()) if o == "a" and interval_of(int(c[1:])) == 5
        )

        def settled() -> dict[str, Any] | None:
            """The document once a's runs of it repeat its written answer (announced, not
            written): unchanged over a whole interval."""
            before = httpcalls.get(f"{es_url}/{state}/_doc/{name}", timeout=30).json()
            time.sleep(5 + 1)
            after = httpcalls.get(f"{es_url}/{state}/_doc/{name}", timeout=30).json()
            return after if after["_seq_no"] == before["_seq_no"] else None

        other = poll(settled, timeout=90, interval=0)["_source"]
        now = time.time()
        other["result"]["evaluated_at"] = other["last_success_ts"] = now
        httpcalls.put(
            f"{es_url}/{state}/_doc/{name}?refresh=true", json=other, timeout=30
        ).raise_for_status()
        # x owns checks since its view 1, and counts a live since its view 3: it had
        # counted a out in between
        heartbeat = {"replica": "x", "incarnation": "x1", "counter": 1, "url": ""}
        heartbeat |= {"view": 3, "live_since": {"b": 1, "a": 3}, "owning_since": 1}
        httpcalls.put(
            f"{es_url}/{members}/_doc/x?refresh=true",
            json={**heartbeat, "started_at": now, "heartbeat_at": now, "checks_owned": 0},
            timeout=30,
        ).raise_for_status()
        assert group.procs["b"].stop() == 0
        group.start("b", port=port)
        group.until_agreed(2, timeout=60)
        # a writes it again (every run for a settle, then one more): b reads that, and
        # follows a's runs from then on; its age never passes the allowed one
        allowed = STALENESS * 5 + MARGIN
        watched = time.monotonic()
        ages = []
        while time.monotonic() - watched < 6 * 5:
            check = group.view("b")[name]
            ages.append(check["age_seconds"])
            assert not check["stale"] and check["age_seconds"] <= allowed, (name, ages)
            time.sleep(0.5)
        assert group.view("b")[name]["evaluated_at_ts"] > now + 5, (name, ages)
    finally:
        group.stop_all()


def test_a_replica_that_cannot_read_the_members_steps_aside(
    es_url: str,
    index20: str,
    indices,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    """Reads of the members index fail for one replica while its writes still work: it stops
    heartbeating, so the other takes every check after a lease, and it writes no state while
    it cannot confirm its share (it runs every check alone: they would be written twice)."""
    checks = checks_file(tmp_path / "c.yaml", index20, 30)
    members = indices[1]
    with CountingProxy(es_url) as proxy:
        group = Replicas(es_url, checks, *indices)
        try:
            group.start("a", es_url=proxy.url)
            group.start("b")
            group.until_agreed(2, timeout=60)
            poll(lambda: all(c["state"] != "PENDING" for c in group.view("b").values()), 60)
            poll(lambda: proxy.requests(r"POST /_bulk"), timeout=30)  # a writes its share

            proxy.fail = {rf"POST /{members}/_search": 503}
            cut = time.time()
            poll(lambda: group.cluster("b")["live_members"] == ["b"], LEASE + MARGIN + 10)
            poll(lambda: group.cluster("b")["checks_owned"] == 30, 30)
            poll(lambda: group.cluster("a")["checks_owned"] == 30, LEASE + MARGIN + 10)
            alone = time.time()  # a runs every check now, from data it can still read
            before = sum(group.cluster("a", runs=True)["runs"].values())
            time.sleep(3 * HEARTBEAT + 2)
            assert sum(group.cluster("a", runs=True)["runs"].values()) > before
            assert proxy.requests(r"POST /_bulk", since=cut + LEASE + 1.0) == [], (
                "a wrote state while it could not confirm its membership"
            )
            assert_honest(group.view("b"), time.time())
            assert time.time() - alone < 60

            proxy.fail = {}
            lifted = time.time()
            group.until_agreed(2, timeout=30)
            poll(lambda: proxy.requests(r"POST /_bulk", since=lifted), timeout=30)
            assert_honest(group.view("a"), time.time())
        finally:
            group.stop_all()


def test_takeover_waits_while_the_state_cannot_be_read(
    es_url: str,
    index20: str,
    indices,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    """A joining replica whose real-time read of the previous owner's state fails does not
    run its share from nothing (a false transition, a lost since): it waits and reads again,
    and takes the checks without their state only after a lease of failed reads."""
    checks = checks_file(tmp_path / "c.yaml", index20, 30)
    state = indices[0]
    with CountingProxy(es_url) as proxy:
        group = Replicas(es_url, checks, *indices)
        try:
            group.start("b")
            group.until_agreed(1, timeout=60)
            poll(lambda: all(c["state"] != "PENDING" for c in group.view("b").values()), 60)
            # a can read the members but not the state index (_mget, and the restore's search)
            proxy.fail = {rf"POST /{state}/_(mget|search)": 503}
            group.start("a", es_url=proxy.url)
            log = group.procs["a"].log
            poll(lambda: "not taking" in log(), timeout=60, interval=0.2)
            assert sum(group.cluster("a", runs=True)["runs"].values()) == 0
            assert group.cluster("a")["checks_owned"] == 0
            poll(lambda: "without their persisted state" in log(), LEASE + MARGIN + 10)
            poll(lambda: sum(group.cluster("a", runs=True)["runs"].values()) > 0, 30)
            proxy.fail = {}
            group.until_agreed(2, timeout=60)
            assert_honest(group.view("a"), time.time())
        finally:
            group.stop_all()


def _owned(group: Replicas, name: str) -> list[str]:
    view = group.view(name)
    me = group.cluster(name)["replica"]
    return [n for n, c in view.items() if c["owner"] == me]


@pytest.mark.timeout(300)
def test_replicas_started_together_never_both_own_a_check(
    es_url: str,
    index20: str,
    indices,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    """Started at the same moment, each replica may read the members before the other's
    first heartbeat is written: alone at its first read, a replica reads them once more
    before it takes a share, so the two never both own every check (a Deployment's pods
    start so).

    Each heartbeat write is held WRITE_DELAY on its way (a proxy): two replicas whose first
    reads come within that time of each other both read before either write lands, every
    time, not only when the scheduler happens to interleave them so. The members index
    exists already, as after a first deployment (two replicas creating it at the same
    moment: docs/scale-out.md). Started further apart than the proxy's hold (a loaded
    machine), the second is an ordinary join: the first may own every check for a round,
    and the checks that move to the second may run on both for up to one heartbeat (the
    join overlap, docs/scale-out.md), never the checks the first keeps."""
    members = indices[1]
    created = httpcalls.request(
        "PUT", f"{es_url}/{members}", json={"mappings": MEMBERS_MAPPING}, timeout=30
    )
    assert created.status_code == 200, created.text
    health = f"{es_url}/_cluster/health/{members}?wait_for_status=yellow&timeout=30s"
    assert httpcalls.get(health, timeout=40).status_code == 200
    path = tmp_path / "c.yaml"
    header = f"defaults:\n  index: {index20}\n  window: 1h\n  interval: 1s\nchecks:\n"
    spec = "  - {{name: t{i}, kind: count, critical: 100}}\n"
    write(path, header + "".join(spec.format(i=i) for i in range(12)))
    with CountingProxy(es_url) as proxy:
        # less than a heartbeat: each replica's second read still comes after both writes
        proxy.stall = {rf"^PUT /{members}/_doc/": WRITE_DELAY}
        group = Replicas(proxy.url, path, *indices)
        try:
            with ThreadPoolExecutor(2) as pool:
                list(pool.map(group.start, ("a", "b")))
            owners = group.until_agreed(2, timeout=60)
            assert set(owners.values()) == {"a", "b"}
            time.sleep(3 * HEARTBEAT)  # three runs of each check
            runs = runs_by_replica(group)
            both = sorted(set(runs["a"]) & set(runs["b"]))
            logs = {
                n: [x for x in p.log().splitlines() if "ship" in x] for n, p in group.procs.items()
            }
            said = f"run by both replicas: {both} ({runs}); membership: {logs}"
            alone = [n for n, lines in logs.items() if any("1 members" in x for x in lines)]
            assert len(alone) <= 1, f"both replicas owned every check: {said}"
            # a join (at most one replica alone first): only what moved to the other may
            # have run on both, within the overlap
            joined = [n for n in ("a", "b") if n not in alone]
            moved = {c for c, who in owners.items() if who in joined} if alone else set()
            assert set(both) <= moved, said
            assert set(runs["a"]) | set(runs["b"]) == set(owners)  # and none by nobody
            for name, who in owners.items():
                assert runs[who][name] >= 1, (name, who, runs)
        finally:
            group.stop_all()


@pytest.mark.timeout(300)
def test_run_now_and_reload_reach_the_owner(
    es_url: str,
    index20: str,
    indices,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    """Run now is the owner's alone (another replica answers 409 and says where to ask); a
    reload that changes definitions but neither members nor names reaches the owners'
    schedules (thresholds here), not only their check lists."""
    path = tmp_path / "c.yaml"
    header = f"defaults:\n  index: {index20}\n  window: 1h\n  interval: 1s\nchecks:\n"
    spec = "  - {{name: r{i}, kind: count, critical: {critical}}}\n"
    write(path, header + "".join(spec.format(i=i, critical=100) for i in range(6)))
    token = "run-token-" + uuid.uuid4().hex
    auth = {"Authorization": f"Bearer {token}"}
    group = Replicas(es_url, path, *indices)
    try:
        for name in ("a", "b"):
            group.start(name, env={"ESBRIDGE_API__TOKEN": token})
        owners = group.until_agreed(2, timeout=60)
        assert set(owners.values()) == {"a", "b"}
        for name in ("a", "b"):
            poll(lambda n=name: all(c["state"] == "OK" for c in group.view(n).values()), 30)

        check = next(c for c, owner in owners.items() if owner == "a")
        before = group.cluster("b", runs=True)["runs"].get(check, 0)
        assert before == 0  # started one after the other, they never both owned it
        refused = group.procs["b"].post(f"/api/v1/checks/{check}/run", headers=auth)
        assert refused.status_code == 409, refused.text
        body = refused.json()
        assert body["owner"] == "a" and body["owner_url"] == group.procs["a"].url
        assert f"{check!r} is evaluated by replica 'a'" in body["error"]
        assert group.cluster("b", runs=True)["runs"].get(check, 0) == before  # b did not run it
        runs = group.cluster("a", runs=True)["runs"][check]
        ran = group.procs["a"].post(f"/api/v1/checks/{check}/run", headers=auth)
        assert ran.status_code == 200, ran.text
        assert ran.json()["state"] == "OK"
        assert group.cluster("a", runs=True)["runs"][check] > runs

        rebalances = {n: group.cluster(n)["rebalances"] for n in ("a", "b")}
        write(path, header + "".join(spec.format(i=i, critical=5) for i in range(6)))
        for name in ("a", "b"):
            group.procs[name].signal(signal.SIGHUP)
        for name in ("a", "b"):
            poll(lambda n=name: all(c["state"] == "CRITICAL" for c in group.view(n).values()), 30)
            assert group.cluster(name)["rebalances"] == rebalances[name] + 1
            summaries = [c["summary"] for c in group.view(name).values()]
            assert all(s.endswith("(critical > 5)") for s in summaries), summaries
        assert group.until_agreed(2, timeout=30) == owners  # the same names: the same owners
    finally:
        group.stop_all()
