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
import signal
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from esbridge.config import load_settings
from esbridge.passive import make_target, nagios_command, write_commands
from esbridge.ranges import Range
from esbridge.result import Perfdatum, Result, State

ROOT = Path(__file__).resolve().parents[1]
NAGIOS = "/usr/sbin/nagios4"
PLUGIN = ROOT / "service" / "esbridge" / "plugin" / "check_esbridge.py"
TICK = os.sysconf("SC_CLK_TCK")
BODY = (
    b"WARNING - 12 5xx responses in last 5m on logs-web-* (warning > 10) | 'errors'=12;10;50;0\n"
    b"WARNING: web-01: 12 5xx responses (warning > 10) | 'web-01'=12;10;50;0"
)

OBJECTS = """\
define timeperiod {{
    timeperiod_name 24x7
    alias 24x7
    sunday 00:00-24:00
    monday 00:00-24:00
    tuesday 00:00-24:00
    wednesday 00:00-24:00
    thursday 00:00-24:00
    friday 00:00-24:00
    saturday 00:00-24:00
}}
define command {{
    command_name check_esbridge
    command_line $USER1$/check_esbridge -H {url} -C '$ARG1$'
}}
define contact {{
    contact_name admin
    host_notifications_enabled 0
    service_notifications_enabled 0
    host_notification_period 24x7
    service_notification_period 24x7
    host_notification_options n
    service_notification_options n
    host_notification_commands check_esbridge
    service_notification_commands check_esbridge
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


class Nagios:
    def __init__(self, services: int, active: bool, url: str) -> None:
        self.dir = d = Path(tempfile.mkdtemp(prefix="esbridge-bench-nagios-"))
        d.chmod(0o755)
        plugins = d / "plugins"
        plugins.mkdir()
        shutil.copy(PLUGIN, plugins / "check_esbridge")
        (plugins / "check_esbridge").chmod(0o755)
        objects = OBJECTS.format(url=url) + "".join(
            SERVICE.format(i=i, active=int(active)) for i in range(services)
        )
        (d / "objects.cfg").write_text(objects)
        (d / "resource.cfg").write_text(f"$USER1$={plugins}\n")
        for sub in ("checkresults", "tmp"):
            (d / sub).mkdir()
        self.command_file = d / "nagios.cmd"
        main = [
            f"log_file={d}/nagios.log",
            f"cfg_file={d}/objects.cfg",
            f"resource_file={d}/resource.cfg",
            f"status_file={d}/status.dat",
            f"temp_file={d}/nagios.tmp",
            f"temp_path={d}/tmp",
            f"check_result_path={d}/checkresults",
            f"lock_file={d}/nagios.lock",
            f"query_socket={d}/nagios.qh",
            f"command_file={self.command_file}",
            f"object_cache_file={d}/objects.cache",
            f"precached_object_file={d}/objects.precache",
            f"state_retention_file={d}/retention.dat",
            "retain_state_information=0",
            "check_external_commands=1",
            "log_passive_checks=1",
            "nagios_user=nagios",
            "nagios_group=nagios",
            "interval_length=1",
            "use_syslog=0",
            "enable_notifications=0",
            "max_service_check_spread=1",
        ]
        (d / "nagios.cfg").write_text("\n".join(main) + "\n")
        for path in [d, *d.rglob("*")]:
            shutil.chown(path, "nagios", "nagios")
        self.proc = subprocess.Popen(
            [NAGIOS, str(d / "nagios.cfg")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while not self.command_file.exists():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("nagios did not start")
            time.sleep(0.1)
        time.sleep(1.0)  # let start-up work settle before measuring

    def log(self) -> str:
        return (self.dir / "nagios.log").read_text(errors="replace")

    def stop(self) -> None:
        with_group = self.proc.poll() is None
        if with_group:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


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


def idle_rate(nagios: Nagios, seconds: float = 3.0) -> float:
    before = cpu_seconds(nagios.proc.pid)
    time.sleep(seconds)
    return (cpu_seconds(nagios.proc.pid) - before) / seconds


def bench_plugin(results: int, services: int) -> dict[str, float]:
    server, answered = stub_server()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    nagios = Nagios(services, active=True, url=url)
    try:
        start_count, t0 = answered[0], time.monotonic()
        before = cpu_seconds(nagios.proc.pid)
        while answered[0] - start_count < results:
            time.sleep(0.05)
            if time.monotonic() - t0 > 600:
                raise RuntimeError("plugin runs too slow")
        time.sleep(0.5)  # the last plugins get reaped (their CPU lands in cutime)
        cpu = cpu_seconds(nagios.proc.pid) - before
        wall = time.monotonic() - t0
        return {"cpu": cpu, "wall": wall, "runs": answered[0] - start_count}
    finally:
        nagios.stop()
        server.shutdown()
        server.server_close()


def bench_passive(results: int, services: int) -> dict[str, float]:
    nagios = Nagios(services, active=False, url="http://127.0.0.1:9")
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
        before = cpu_seconds(nagios.proc.pid)
        for i in range(0, len(lines), 100):  # esbridge's Nagios target writes in batches
            written = write_commands(str(nagios.command_file), lines[i : i + 100], 10.0)
            assert isinstance(written, tuple) and written[1] is None, written
        while nagios.log().count("PASSIVE SERVICE CHECK: esbridge;svc-") < results:
            time.sleep(0.05)
            if time.monotonic() - t0 > 300:
                raise RuntimeError("nagios did not take in the results")
        cpu = cpu_seconds(nagios.proc.pid) - before
        wall = time.monotonic() - t0
        idle = idle_rate(nagios)
        return {"cpu": cpu, "wall": wall, "runs": results, "idle": idle}
    finally:
        nagios.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--results", type=int, default=1000)
    parser.add_argument("--services", type=int, default=100)
    args = parser.parse_args()
    if os.geteuid() != 0 or not os.access(NAGIOS, os.X_OK):
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
