"""``make demo``: a local Elasticsearch with live sample data, and esbridge watching it.

``make demo BACKEND=opensearch`` (``--backend opensearch``) runs the same on OpenSearch.

Starts Elasticsearch (fetched from Maven Central on first use), loads an hour of realistic
web logs and host metrics, keeps appending data with an incident every few minutes, starts
``esbridge serve`` with the sample checks in ``checks/`` and prints where to look.
Ctrl-C stops everything it started; nothing is left running.

Environment: ``ESBRIDGE_DEMO_ES_URL`` reuses a running Elasticsearch or OpenSearch instead
of starting one; ``ESBRIDGE_DEMO_PORT`` picks the esbridge port (default 9108).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path

from esbridge_dev.elasticsearch import ELASTICSEARCH, ElasticsearchServer
from esbridge_dev.opensearch import OPENSEARCH
from esbridge_dev.sampledata import IncidentSchedule, backfill, run_forever
from esbridge_dev.service import EsbridgeProcess

ROOT = Path(__file__).resolve().parents[2]


def _say(text: str) -> None:
    print(text, flush=True)


def _stop_on_sigint(stop: threading.Event) -> None:
    """From here on Ctrl-C is a request to stop, never an exception.

    Ctrl-C reaches the whole process group. This process can notice it only after esbridge
    has already stopped on it and the loop below has moved on to the clean-up; raised there,
    a KeyboardInterrupt would cut the clean-up short (a traceback, Elasticsearch left
    running). A second Ctrl-C while stopping is absorbed the same way: the stop is bounded.
    """
    signal.signal(signal.SIGINT, lambda *_: stop.set())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m esbridge_dev.demo", description=__doc__)
    parser.add_argument("--es-url", default=os.environ.get("ESBRIDGE_DEMO_ES_URL"))
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("ESBRIDGE_DEMO_PORT", "9108"))
    )
    parser.add_argument(
        "--backend",
        choices=("elasticsearch", "opensearch"),
        default=os.environ.get("ESBRIDGE_DEMO_BACKEND", "elasticsearch"),
        help="which search server to start (ignored with --es-url)",
    )
    parser.add_argument("--checks", default=str(ROOT / "checks"))
    parser.add_argument("--config", default=str(ROOT / "config" / "esbridge.yaml"))
    parser.add_argument("--rate", type=float, default=20.0, help="log lines per second")
    parser.add_argument(
        "--duration", type=float, default=0, help="stop after this many seconds (0: until Ctrl-C)"
    )
    args = parser.parse_args(argv)
    dist = OPENSEARCH if args.backend == "opensearch" else ELASTICSEARCH
    product = dist.product

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # SIGINT stops the demo even when it was started in the background of a script, whose
    # shell leaves SIGINT ignored for its children.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    server: ElasticsearchServer | None = None
    service: EsbridgeProcess | None = None
    feeder: threading.Thread | None = None
    try:
        if args.es_url:
            es_url = args.es_url.rstrip("/")
            product = "Search server"
            _say(f"Using the search server at {es_url}")
        else:
            _say(f"Starting {product} (first run downloads it from Maven Central) ...")
            server = ElasticsearchServer(dist=dist)
            server.start()
            es_url = server.url
            _say(f"{product} {server.version} is up at {es_url} ({server.start_seconds:.1f} s)")

        incident = IncidentSchedule()
        _say("Loading 60 minutes of sample web logs and host metrics ...")
        counts = backfill(es_url, minutes=60, rate_per_s=args.rate, incident=incident)
        _say(
            f"  {counts['logs']} log lines, {counts['metrics']} metric samples"
            f" in {counts['seconds']} s"
        )
        feeder = threading.Thread(
            target=run_forever,
            kwargs={
                "url": es_url,
                "rate_per_s": args.rate,
                "incident": incident,
                "stop_event": stop,
            },
            name="sample-feeder",
            daemon=True,
        )
        feeder.start()

        service = EsbridgeProcess(
            es_url,
            checks=[args.checks],
            config=args.config if Path(args.config).exists() else None,
            port=args.port,
            env={"ESBRIDGE_API__ALLOW_UNAUTHENTICATED_WRITES": "true"},
            keep_log=True,
        )
        service.start()
        base = service.url
        plugin = ROOT / "service" / "esbridge" / "plugin" / "check_esbridge.py"
        _say(
            f"""
esbridge is running with the sample checks from {args.checks}

  Status page       {base}/
  JSON API          {base}/api/v1/checks
  Nagios text       {base}/api/v1/checks/web-5xx/nagios
  Prometheus        {base}/metrics
  OpenAPI docs      {base}/docs
  Readiness         {base}/readyz
  {product:<18}{es_url}

  Nagios plugin:    python3 -I -S {plugin} -H {base} -C web-5xx
  One-shot run:     .venv/bin/esbridge run --checks {args.checks} --es-url {es_url} web-5xx

An incident repeats every {int(incident.cycle_s)} s: a burst of 5xx and slow requests on
{incident.error_host}, {incident.silent_host} stops sending metrics, disk fills up on
{incident.disk_host}. Watch the states change on the status page.
esbridge log: {service.log_path}
Press Ctrl-C to stop everything."""
        )
        _stop_on_sigint(stop)
        deadline = time.monotonic() + args.duration if args.duration else None
        while not stop.is_set():
            if service.proc is not None and service.proc.poll() is not None:
                # Ctrl-C reaches the whole process group: esbridge may see it (and stop
                # cleanly, exit 0) before this process does. That is a stop, not a failure.
                if service.proc.returncode == 0:
                    break
                _say(f"esbridge exited with {service.proc.returncode}:\n{service.log()[-3000:]}")
                return 1
            if deadline is not None and time.monotonic() > deadline:
                break
            stop.wait(1.0)
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # say what went wrong, then clean up
        _say(f"demo failed: {exc}")
        return 1
    finally:
        _stop_on_sigint(stop)
        stop.set()
        _say("\nStopping ...")
        if service is not None:
            service.stop()
        if feeder is not None:
            feeder.join(10)
        if server is not None:
            server.stop()
        _say(f"Stopped esbridge, the sample feeder and {product}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
