"""Coordination cost and handover time of replicas (issue: several replicas, one view).

Starts N ``esbridge serve`` replicas in cluster mode on loopback against a real
Elasticsearch (``$ESBRIDGE_TEST_ES_URL`` when set, else one started here), with C count
checks, and measures over a steady window:

- per replica: Elasticsearch requests/s and CPU s/s spent on coordination (heartbeats,
  membership reads, the shared view), from the service's own counters
  (``GET /api/v1/cluster`` → ``coordination``), against the replica's whole CPU (/proc);
  the foreign runs it took from the owners' heartbeats, the foreign documents it read and
  the ``_seq_no`` heads it asked for per document read (``shared_view`` counters);
- the state index write volume: documents indexed per second (index stats) and per check;
- handover after ``kill -9`` of one replica (median of T trials): time until the survivors
  own its checks, and until every one of its checks has been evaluated again.

*All in* compares each replica's CPU with one instance in cluster mode off that evaluates a
replica's share of the same checks alone, measured in the same window on the same machine
(measured apart, at another load, the difference moved by 20 points between two runs). A
replica writes a check's state only when its answer changes, where a single instance writes
every run, so the difference nets out the writes saved; a second single instance that writes
no state at all is measured too, and a replica's CPU less *that* is the upper bound the goal
is judged by (coordination plus every state write the replica still makes).
``--values steady``: every check answers the same run after run (20 documents in its hour),
the usual case of a healthy site; ``changing``: documents keep entering and leaving the window,
so every run gives a new count, and every foreign document is decoded whole.

After the window, every replica's ``/api/v1/checks`` is read for 30 s: the oldest result shown
as a share of its allowed age, and how many stale results were shown. ``--interval`` under the
cluster's announce threshold (17 s by default) measures checks read by version instead.

Figures go to stdout and into the "Replicas" section of bench/RESULTS.md (one section per kind
of values, and per interval other than 30s).

    python bench/cluster.py [--replicas 3] [--checks 3000] [--interval 30s] [--window 180]
                            [--trials 5] [--heartbeat 5s] [--lease 15s]
                            [--values steady|changing] [--view-refresh 10s]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from benchlib import cpu_seconds
from esbridge.durations import parse_duration
from esbridge_dev.service import EsbridgeProcess, poll

RESULTS = Path(__file__).with_name("RESULTS.md")
FOOTER = "How each figure is measured: see bench/README.md."


DEFAULT_INTERVAL = "30s"


def markers(values: str, interval: str = DEFAULT_INTERVAL) -> tuple[str, str]:
    """Where a run's section goes in RESULTS.md: one section per kind of values, and one
    per interval other than the default (a short one is read by version)."""
    name = "replicas" if values == "steady" else f"replicas-{values}"
    if interval != DEFAULT_INTERVAL:
        name += f"-{interval}"
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


@contextlib.contextmanager
def elasticsearch() -> Iterator[str]:
    url = os.environ.get("ESBRIDGE_TEST_ES_URL")
    if url:
        yield url
        return
    from esbridge_dev.elasticsearch import ElasticsearchServer

    with ElasticsearchServer(heap="1g") as es:
        yield es.url


def seed(es: str, index: str, values: str = "steady") -> None:
    """20 documents in the last hour (``steady``: every count the same for 40 minutes), or
    one every 2 s on average from an hour ago to three hours ahead (``changing``: each run
    of a check counts the ~15 that entered and left its hour since the run before)."""
    httpx.put(f"{es}/{index}", json={"settings": {"number_of_replicas": 0}}, timeout=60)
    now = dt.datetime.now(dt.UTC)
    if values == "steady":
        times = [now - dt.timedelta(minutes=i + 1) for i in range(20)]
    else:
        rng = random.Random(7)
        times = [now + dt.timedelta(seconds=rng.uniform(-3600, 3 * 3600)) for _ in range(7200)]
    lines = []
    for ts in times:
        lines.append('{"index":{}}')
        lines.append(f'{{"@timestamp":"{ts.isoformat()}","status":500}}')
    httpx.post(
        f"{es}/{index}/_bulk?refresh=true",
        content="\n".join(lines) + "\n",
        headers={"content-type": "application/x-ndjson"},
        timeout=60,
    ).raise_for_status()


def checks_file(folder: Path, index: str, count: int, interval: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    thresholds = ("critical: 100", "warning: 10, critical: 100", "critical: 5")
    lines = ["defaults:", f"  index: {index}", "  window: 1h", f"  interval: {interval}", "checks:"]
    lines += [f"  - {{name: b{i:05d}, kind: count, {thresholds[i % 3]}}}" for i in range(count)]
    path = folder / "checks.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


class Group:
    def __init__(self, es: str, checks: Path, args: argparse.Namespace, tag: str) -> None:
        self.es, self.checks, self.args = es, checks, args
        self.state, self.members = f"bench-state-{tag}", f"bench-members-{tag}"
        self.procs: dict[str, EsbridgeProcess] = {}

    def start(self, name: str, port: int | None = None) -> None:
        proc = EsbridgeProcess(
            self.es,
            [self.checks],
            port=port,
            state_index=self.state,
            env={
                "ESBRIDGE_CLUSTER__ENABLED": "true",
                "ESBRIDGE_CLUSTER__REPLICA_ID": name,
                "ESBRIDGE_CLUSTER__INDEX": self.members,
                "ESBRIDGE_CLUSTER__HEARTBEAT": self.args.heartbeat,
                "ESBRIDGE_CLUSTER__LEASE": self.args.lease,
                **(
                    {"ESBRIDGE_CLUSTER__VIEW_REFRESH": self.args.view_refresh}
                    if self.args.view_refresh
                    else {}
                ),
            },
        )
        proc.start(wait=300)  # a loaded machine can take minutes to start a replica
        self.procs[name] = proc

    def cluster(self, name: str) -> dict[str, Any]:
        return self.procs[name].get("/api/v1/cluster").json()

    def live(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.proc and p.proc.poll() is None]

    def agreed(self) -> bool:
        views = [self.cluster(n) for n in self.live()]
        return all(v["ready"] and len(v["live_members"]) == len(views) for v in views)

    def owners(self, name: str) -> dict[str, tuple[str | None, float | None]]:
        checks = self.procs[name].get("/api/v1/checks").json()["checks"]
        return {c["name"]: (c["owner"], c["evaluated_at_ts"]) for c in checks}

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.stop()
        for index in (self.state, self.members):
            httpx.delete(f"{self.es}/{index}", timeout=60)


def freshness(group: Group, allowed: float, seconds: float = 30.0) -> dict[str, Any]:
    """Every live replica's API every few seconds: the oldest result shown, as a share of
    its allowed age (``allowed`` seconds: staleness_factor x interval), and how many stale
    results were shown. After the cost window: reading every check costs the replicas CPU."""
    oldest, stale, reads = 0.0, 0, 0
    where: Counter[str] = Counter()  # stale results by "reader <- owner"
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        for name in group.live():
            for check in group.procs[name].get("/api/v1/checks").json()["checks"]:
                oldest = max(oldest, (check["age_seconds"] or 0.0) / allowed)
                if check["stale"]:
                    stale += 1
                    where[f"{name} <- {check['owner']}"] += 1
            reads += 1
        time.sleep(3)
    return {"oldest_share": round(oldest, 3), "stale": stale, "reads": reads, "where": where}


def steady_cost(
    group: Group, window: float, single: EsbridgeProcess, bare: EsbridgeProcess
) -> dict[str, Any]:
    def snap() -> dict[str, dict[str, float]]:
        out = {}
        for name in group.live():
            body = group.cluster(name)
            c, view = body["coordination"], body["shared_view"]
            out[name] = {
                "requests": c["requests"],
                "coordination": c["cpu_seconds"],
                "task": c["task_cpu_seconds"],
                "membership": c["membership_cpu_seconds"],
                "decoding": c["view_decode_cpu_seconds"],
                "process": cpu_seconds(group.procs[name].proc.pid),
                "heads": view["heads_read"],
                "documents": view["documents_read"],
                "followed": view["runs_followed"],
                "owned": body["checks_owned"],
            }
        return out

    def indexed() -> int:
        stats = httpx.get(f"{group.es}/{group.state}/_stats/indexing", timeout=30).json()
        return int(stats["_all"]["primaries"]["indexing"]["index_total"])

    assert single.proc is not None and bare.proc is not None
    alone_before, bare_before = cpu_seconds(single.proc.pid), cpu_seconds(bare.proc.pid)
    before, docs_before, t0 = snap(), indexed(), time.monotonic()
    time.sleep(window)
    after, docs_after, t1 = snap(), indexed(), time.monotonic()
    alone_after, bare_after = cpu_seconds(single.proc.pid), cpu_seconds(bare.proc.pid)
    span = t1 - t0
    rows = {}
    for name, now in after.items():
        d = {key: value - before[name][key] for key, value in now.items()}
        coord, total, documents = d["coordination"], d["process"], d["documents"]
        rows[name] = {
            "requests_per_s": round(d["requests"] / span, 2),
            "coordination_cpu_s_per_s": round(coord / span, 5),
            "process_cpu_s_per_s": round(total / span, 4),
            "coordination_share": round(coord / total, 4) if total else None,
            # the coordination tasks' own CPU, step by step: requests included
            "task_cpu_s_per_s": round(d["task"] / span, 5),
            "task_share": round(d["task"] / total, 4) if total else None,
            "documents_per_s": round(documents / span, 1),
            "followed_per_s": round(d["followed"] / span, 1),
            "heads_per_document": round(d["heads"] / documents, 2) if documents else None,
            # where it goes: membership (heartbeats), parsing the view's answers, the rest
            # (choosing the documents due and applying them to the store)
            "membership_share": round(d["membership"] / coord, 3) if coord else None,
            "decode_share": round(d["decoding"] / coord, 3) if coord else None,
            "owned": int(now["owned"]),
        }
    writes = (docs_after - docs_before) / span
    return {
        "replicas": rows,
        "alone_cpu_s_per_s": round((alone_after - alone_before) / span, 5),
        "bare_cpu_s_per_s": round((bare_after - bare_before) / span, 5),
        "state_docs_per_s": round(writes, 2),
        "state_doc_bytes": document_bytes(group),
        "window_s": round(span, 1),
    }


@contextlib.contextmanager
def alone(
    es: str, folder: Path, index: str, checks: int, interval: str, state: bool = True
) -> Iterator[EsbridgeProcess]:
    """One instance, cluster mode off, evaluating ``checks`` of the checks alone (with
    ``state=False``, writing no state either).

    The service's own counters meter parsing and applying the other replicas' documents,
    not the requests that carry them (the client's transport, the event loop) nor the
    garbage they leave: a replica's CPU less what the same checks cost a single instance is
    coordination all in. It runs beside the replicas, so both are measured at one load.
    """
    name = f"bench-state-alone-{uuid.uuid4().hex[:8]}"
    proc = EsbridgeProcess(
        es,
        [checks_file(folder / f"alone-{name}", index, checks, interval)],
        state_index=name,
        env={} if state else {"ESBRIDGE_STATE__ENABLED": "false"},
    )
    proc.start(wait=300)
    try:
        yield proc
    finally:
        proc.stop()
        httpx.delete(f"{es}/{name}", timeout=60)


def document_bytes(group: Group, sample: int = 500) -> int:
    """Mean size of a state document as compact JSON (what one write and one read carry)."""
    hits = httpx.post(
        f"{group.es}/{group.state}/_search",
        json={"size": sample, "query": {"match_all": {}}},
        timeout=60,
    ).json()["hits"]["hits"]
    sizes = [len(json.dumps(h["_source"], separators=(",", ":")).encode()) for h in hits]
    return round(statistics.mean(sizes)) if sizes else 0


def handover(group: Group, victim: str, interval: float) -> dict[str, float]:
    survivor = next(n for n in group.live() if n != victim)
    theirs = {c for c, (o, _) in group.owners(survivor).items() if o == victim}
    port = group.procs[victim].port
    group.procs[victim].kill()
    killed = time.time()
    taken = evaluated = None
    deadline = killed + interval + 120
    while time.time() < deadline and evaluated is None:
        view = group.owners(survivor)
        if taken is None and all(view[c][0] not in (victim, None) for c in theirs):
            taken = time.time() - killed
        if all((view[c][1] or 0) > killed for c in theirs):
            evaluated = time.time() - killed
        time.sleep(0.25)
    trial = {"checks": len(theirs), "takeover_s": taken or -1, "reevaluated_s": evaluated or -1}
    print(trial, flush=True)
    group.start(victim, port=port)
    poll(group.agreed, timeout=300, interval=1)
    return trial


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--checks", type=int, default=3000)
    parser.add_argument("--interval", default=DEFAULT_INTERVAL)
    parser.add_argument("--window", type=float, default=180.0)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--heartbeat", default="5s")
    parser.add_argument("--lease", default="15s")
    parser.add_argument(
        "--view-refresh", default="", help="cluster.view_refresh (default: heartbeat)"
    )
    parser.add_argument("--values", choices=("steady", "changing"), default="steady")
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args(argv)
    interval = parse_duration(args.interval).total_seconds()
    lease = parse_duration(args.lease).total_seconds()
    tag = uuid.uuid4().hex[:8]
    started = time.time()
    with elasticsearch() as es, tempfile.TemporaryDirectory() as tmp:
        index = f"bench-cluster-{tag}"
        seed(es, index, args.values)
        group = Group(es, checks_file(Path(tmp), index, args.checks, args.interval), args, tag)
        owned = round(args.checks / args.replicas)
        try:
            for i in range(args.replicas):
                group.start(f"replica-{i + 1}")
            poll(group.agreed, timeout=180, interval=1)
            with (
                alone(es, Path(tmp), index, owned, args.interval) as single,
                alone(es, Path(tmp), index, owned, args.interval, state=False) as bare,
            ):
                # every check evaluated twice since the last move: the first burst and a
                # moved check's settling writes (its first runs by a new owner) are over
                time.sleep(2 * interval + 5)
                cost = steady_cost(group, args.window, single, bare)
                cost["freshness"] = freshness(group, 2 * interval)
            print(cost, flush=True)
            trials = [
                handover(group, f"replica-{1 + t % args.replicas}", interval)
                for t in range(args.trials)
            ]
        finally:
            group.stop()
        httpx.delete(f"{es}/{index}", timeout=60)
    alone_cpu, bare_cpu = cost["alone_cpu_s_per_s"], cost["bare_cpu_s_per_s"]
    for row in cost["replicas"].values():
        # coordination all in: this replica's CPU less what its own checks cost alone, net
        # of the state writes it saves; and less what they cost without writing any state,
        # an upper bound (the replica's remaining writes counted as coordination)
        process, share = row["process_cpu_s_per_s"], row["owned"] / owned
        extra, bound = process - alone_cpu * share, process - bare_cpu * share
        row["all_in_cpu_s_per_s"] = round(extra, 5)
        row["all_in_share"] = round(extra / process, 4)
        row["bound_cpu_s_per_s"] = round(bound, 5)
        row["bound_share"] = round(bound / process, 4)
    cost["alone_checks"] = owned
    print(cost, flush=True)
    shares = [r["bound_share"] for r in cost["replicas"].values()]
    tasks = [r["task_share"] or 0.0 for r in cost["replicas"].values()]
    goal = interval + lease + 2
    command = "python bench/cluster.py " + " ".join(sys.argv[1:] if argv is None else argv)
    begin, end = markers(args.values, args.interval)
    lines = [
        begin,
        "## Replicas"
        + ("" if args.values == "steady" else f", {args.values} values")
        + ("" if args.interval == DEFAULT_INTERVAL else f", checks every {args.interval}")
        + " (bench/cluster.py)",
        "",
        f"Date: {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}; "
        f"wall {time.time() - started:.0f} s; "
        f"load average at end {os.getloadavg()[0]:.2f} (2 shared cores).",
        f"Command: `{command.strip()}` — {args.replicas} replicas, {args.checks} count checks "
        f"every {args.interval} ({args.values} values), heartbeat {args.heartbeat}, lease "
        f"{args.lease}, view refresh {args.view_refresh or args.heartbeat}, window "
        f"{cost['window_s']} s.",
        "",
        "| replica | checks owned | coordination requests/s | replica CPU s/s "
        "| coordination CPU s/s, counters | share, counters "
        "| coordination tasks, all in: CPU s/s | share "
        "| all in, net of writes saved: CPU s/s | share "
        "| all in, upper bound: CPU s/s | share "
        "| foreign runs followed/s | foreign documents read/s | `_seq_no` heads per document "
        "| counters (membership / parsing / applying) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in cost["replicas"].items():
        membership, decode = row["membership_share"] or 0, row["decode_share"] or 0
        lines.append(
            f"| {name} | {row['owned']} | {row['requests_per_s']} | "
            f"{row['process_cpu_s_per_s']} | {row['coordination_cpu_s_per_s']} | "
            f"{100 * (row['coordination_share'] or 0):.2f} % | {row['task_cpu_s_per_s']} | "
            f"{100 * (row['task_share'] or 0):.2f} % | {row['all_in_cpu_s_per_s']} | "
            f"{100 * row['all_in_share']:.2f} % | {row['bound_cpu_s_per_s']} | "
            f"{100 * row['bound_share']:.2f} % | {row['followed_per_s']} | "
            f"{row['documents_per_s']} | {row['heads_per_document']} | "
            f"{100 * membership:.0f} / {100 * decode:.0f} / "
            f"{100 * (1 - membership - decode):.0f} % |"
        )
    lines += [
        "",
        f"Alone (cluster mode off, same settings, in the same window): {cost['alone_checks']} "
        "of these checks cost "
        f"{cost['alone_cpu_s_per_s']} CPU s/s writing every run, {cost['bare_cpu_s_per_s']} "
        "writing no state. *All in* is a replica's CPU less those, scaled to the checks it "
        "owns: the requests that carry heartbeats and documents, the event loop and the "
        "garbage they leave, which the service's own counters (parsing and applying only) "
        "leave out. Less the first it nets out the state writes a replica saves (it writes a "
        "repeated answer only every 10 minutes); less the second it is an upper bound "
        "(every state write the replica still makes counted as coordination).",
    ]
    fresh = cost["freshness"]
    lines += [
        "",
        f"Freshness, after the window ({fresh['reads']} reads of every replica's "
        "`/api/v1/checks` over 30 s): the oldest result shown was "
        f"{100 * fresh['oldest_share']:.0f} % of its allowed age (2 x interval); "
        f"{fresh['stale']} stale results shown.",
    ]
    lines += [
        "",
        f"State index writes: {cost['state_docs_per_s']} documents/s for {args.checks} checks "
        f"every {args.interval} ({cost['state_docs_per_s'] * interval / args.checks:.2f} "
        f"writes per check per interval), {cost['state_doc_bytes']} bytes per document "
        "(mean, compact JSON).",
        "",
    ]
    if trials:  # --trials 0: the steady cost only
        lines += [
            "| trial | checks of the killed replica | takeover s | all re-evaluated s |",
            "|---|---|---|---|",
            *(
                f"| {i + 1} | {t['checks']} | {t['takeover_s']:.1f} | {t['reevaluated_s']:.1f} |"
                for i, t in enumerate(trials)
            ),
            "",
        ]
    lines += [
        "| goal | figure | target | met |",
        "|---|---|---|---|",
        f"| coordination <= 5 % of a replica's CPU (all in, upper bound) "
        f"| max {100 * max(shares):.2f} % "
        "| <= 5 % | "
        f"{'yes' if max(shares) <= 0.05 else '**no**'} |",
        f"| coordination <= 5 % of a replica's CPU (coordination tasks, all in) "
        f"| max {100 * max(tasks):.2f} % "
        "| <= 5 % | "
        f"{'yes' if max(tasks) <= 0.05 else '**no**'} |",
    ]
    if trials:
        reeval = statistics.median(t["reevaluated_s"] for t in trials)
        takeover = statistics.median(t["takeover_s"] for t in trials)
        lines.append(
            f"| handover <= interval + lease + 2 s | median {reeval:.1f} s "
            f"(takeover {takeover:.1f} s) | <= {goal:.0f} s | "
            f"{'yes' if 0 <= reeval <= goal else '**no**'} |"
        )
    lines.append(end)
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        current = RESULTS.read_text() if RESULTS.exists() else ""
        if begin in current and end in current:
            head, rest = current.split(begin, 1)
            current = head + text + rest.split(end, 1)[1]
        elif FOOTER in current:  # a new section goes before the report's last line
            head, tail = current.rsplit(FOOTER, 1)
            current = head.rstrip("\n") + "\n\n" + text + "\n\n" + FOOTER + tail
        else:
            current = current.rstrip("\n") + "\n\n" + text + "\n"
        RESULTS.write_text(current)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
