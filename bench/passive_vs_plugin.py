"""Nagios-side CPU to take in 1,000 check results: plugin runs vs passive submission.

Two Nagios 4 instances in turn (temp folders, ``interval_length=1``), 100 services each:

* **plugin**: active services running the real ``check_esbridge`` (through its shebang,
  ``/usr/bin/python3 -IS``) against a stand-in for esbridge's HTTP API (a stdlib server in
  this process, so the server's own CPU is not counted); stops after 1,000 answered runs.
* **passive**: passive services; 1,000 ``PROCESS_SERVICE_CHECK_RESULT`` lines written to the
  command file by ``esbridge.passive.write_commands`` (what esbridge's Nagios target does);
  stops when Nagios has logged all 1,000 ``PASSIVE SERVICE CHECK`` lines.

CPU = own CPU time (schedstat, ns) of the Nagios main process and its direct children (check
workers, command file worker) + their cutime/cstime (the workers fork the plugins and reap
them, so plugin CPU lands there), read from /proc before and after. Idle Nagios CPU over
the same wall time is not subtracted; the idle rate is printed for reference.

Run (as root, nagios4-core installed):  .venv/bin/python bench/passive_vs_plugin.py
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from esbridge.config import load_settings
from esbridge.passive import make_target, nagios_command, write_commands
from esbridge.ranges import Range
from esbridge.result import Perfdatum, Result, State
from esbridge_dev.nagios import NAGIOS4, Nagios, prepare

TICK = os.sysconf("SC_CLK_TCK")
BODY = (
    b"WARNING - 12 5xx responses in last 5m on logs-web-* (warning > 10) | 'errors'=12;10;50;0\n"
    b"WARNING: web-01: 12 5xx responses (warning > 10) | 'web-01'=12;10;50;0"
)

OBJECTS = """
define command {{
    command_name check_esbridge
    command_line $USER1$/check_esbridge -H {url} -C '$ARG1$'
}}
define host {{
    host_name esbridge
    max_check_attempts 1
    check_period 24x7
    contacts admin
    active_checks_enabled 0
}}
"""

SERVICE = """\
define service {{
    host_name esbridge
    service_description svc-{i}
    check_command check_esbridge!svc-{i}
    max_check_attempts 1
    check_interval 1
    retry_interval 1
    check_period 24x7
    contacts admin
    active_checks_enabled {active}
    passive_checks_enabled 1
}}
"""


def cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and its direct children, including their reaped children.

    Own time from /proc/<p>/task/*/schedstat (nanoseconds: 1,000 passive results take only
    milliseconds, below the 10 ms resolution of utime/stime), plus cutime+cstime (clock
    ticks) for the reaped children: the plugins the check workers forked.
    """
    pids = [pid]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                pids.append(int(entry.name))
    own_ns = 0
    reaped_ticks = 0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            reaped_ticks += int(fields[13]) + int(fields[14])  # cutime cstime
            for task in Path(f"/proc/{p}/task").iterdir():
                own_ns += int((task / "schedstat").read_text().split()[0])
        except OSError:
            continue
    return own_ns / 1e9 + reaped_ticks / TICK


def start_nagios(services: int, active: bool, url: str) -> Nagios:
    """A Nagios 4 with ``services`` services on host esbridge, in a temp folder."""
    d = Path(tempfile.mkdtemp(prefix="esbridge-bench-nagios-"))
    objects = OBJECTS.format(url=url)
    objects += "".join(SERVICE.format(i=i, active=int(active)) for i in range(services))
    settings = ["check_external_commands=1", "log_passive_checks=1", "max_service_check_spread=1"]
    nagios = prepare(d, objects, settings=settings)
    try:
        nagios.start(log=False)
    except BaseException:
        shutil.rmtree(d, ignore_errors=True)
        raise
    time.sleep(1.0)  # let start-up work settle before measuring
    return nagios


def stop_nagios(nagios: Nagios) -> None:
    nagios.stop()
    shutil.rmtree(nagios.folder, ignore_errors=True)


def stub_server() -> tuple[ThreadingHTTPServer, list[int]]:
    answered = [0]
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("X-Nagios-Exit-Code", "1")
            self.send_header("X-Esbridge-Evaluated-At", f"{time.time():.3f}")
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)
            with lock:
                answered[0] += 1

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, answered


def nagios_pid(nagios: Nagios) -> int:
    assert nagios.proc is not None
    return nagios.proc.pid


def idle_rate(nagios: Nagios, seconds: float = 3.0) -> float:
    before = cpu_seconds(nagios_pid(nagios))
    time.sleep(seconds)
    return (cpu_seconds(nagios_pid(nagios)) - before) / seconds


def bench_plugin(results: int, services: int) -> dict[str, float]:
    server, answered = stub_server()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    nagios = start_nagios(services, active=True, url=url)
    try:
        start_count, t0 = answered[0], time.monotonic()
        before = cpu_seconds(nagios_pid(nagios))
        while answered[0] - start_count < results:
            time.sleep(0.05)
            if time.monotonic() - t0 > 600:
                raise RuntimeError("plugin runs too slow")
        time.sleep(0.5)  # the last plugins get reaped (their CPU lands in cutime)
        cpu = cpu_seconds(nagios_pid(nagios)) - before
        wall = time.monotonic() - t0
        return {"cpu": cpu, "wall": wall, "runs": answered[0] - start_count}
    finally:
        stop_nagios(nagios)
        server.shutdown()
        server.server_close()


def bench_passive(results: int, services: int) -> dict[str, float]:
    nagios = start_nagios(services, active=False, url="http://127.0.0.1:9")
    tmp = Path(tempfile.mkdtemp(prefix="esbridge-bench-cfg-"))
    try:
        config = tmp / "esbridge.yaml"
        config.write_text(
            "passive:\n  - name: nagios\n    type: nagios\n"
            f"    command_file: {nagios.command_file}\n    service: 'svc-{{labels[i]}}'\n"
        )
        target = make_target(load_settings(config).passive[0])
        lines = []
        for n in range(results):
            result = Result(
                check="web-5xx",
                state=State.WARNING,
                summary="12 5xx responses in last 5m on logs-web-* (warning > 10)",
                perfdata=(Perfdatum("errors", 12, "", Range.parse("10"), Range.parse("50"), 0),),
                evaluated_at=time.time(),
            )
            [sub] = target.submissions(result, 60.0, {"i": str(n % services)})
            lines.append(nagios_command(sub).encode())
        t0 = time.monotonic()
        before = cpu_seconds(nagios_pid(nagios))
        for i in range(0, len(lines), 100):  # esbridge's Nagios target writes in batches
            written = write_commands(str(nagios.command_file), lines[i : i + 100], 10.0)
            assert isinstance(written, tuple) and written[1] is None, written
        while nagios.log().count("PASSIVE SERVICE CHECK: esbridge;svc-") < results:
            time.sleep(0.05)
            if time.monotonic() - t0 > 300:
                raise RuntimeError("nagios did not take in the results")
        cpu = cpu_seconds(nagios_pid(nagios)) - before
        wall = time.monotonic() - t0
        idle = idle_rate(nagios)
        return {"cpu": cpu, "wall": wall, "runs": results, "idle": idle}
    finally:
        stop_nagios(nagios)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--results", type=int, default=1000)
    parser.add_argument("--services", type=int, default=100)
    args = parser.parse_args()
    if os.geteuid() != 0 or not os.access(NAGIOS4, os.X_OK):
        parser.error("needs root and nagios4 (nagios4-core)")
    plugin = bench_plugin(args.results, args.services)
    passive = bench_passive(args.results, args.services)
    print(f"Nagios 4 taking in {args.results} check results ({args.services} services):")
    for name, r in (("plugin runs", plugin), ("passive", passive)):
        print(
            f"  {name:12s} CPU {r['cpu']:8.3f} s  ({1000 * r['cpu'] / r['runs']:7.3f} ms/result)"
            f"  wall {r['wall']:6.1f} s"
        )
    print(f"  idle Nagios CPU rate: {passive['idle'] * 1000:.1f} ms/s (not subtracted)")
    ratio = plugin["cpu"] / passive["cpu"] if passive["cpu"] > 0 else float("inf")
    print(f"  plugin / passive CPU: {ratio:.0f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
