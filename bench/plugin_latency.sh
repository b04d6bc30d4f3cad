#!/usr/bin/env bash
# Wall time of one check_esbridge run, as Nagios runs it, next to check_http and bare Python.
#
#   bench/plugin_latency.sh                 # ES at $ES_URL (default http://127.0.0.1:9200)
#   RUNS=200 CHECK=web-5xx bench/plugin_latency.sh
#
# Seeds the sample data (python -m esbridge_dev.sampledata), starts `esbridge serve` with the
# sample checks (checks/) on a free loopback port, copies the single plugin file to a folder
# under /tmp (outside the project), and times with hyperfine (--warmup 5 --runs 100, no shell),
# every command as the nagios user through `runuser -u nagios --`:
#   1. /usr/bin/python3 -I -S <copied plugin> -H URL -C CHECK          (the plugin)
#   2. /usr/lib/nagios/plugins/check_http -H 127.0.0.1 -p PORT -u /api/v1/checks/CHECK/nagios
#   3. /usr/bin/python3 -I -S -c pass                                   (interpreter start)
#   4. /bin/true                                                        (runuser's own cost)
#   5. <prefix>/bin/check_esbridge -H URL -C CHECK    (the sh launcher as `pip install` lays it
#      out: <prefix>/share/esbridge/check_esbridge.py, <prefix>/bin/python3 = /usr/bin/python3,
#      the module's __pycache__ compiled at install time, as `pip install` compiles it)
#   6. <plugins>/check_esbridge -H URL -C CHECK   (as `esbridge install-plugin --python
#      /usr/bin/python3 <plugins>` writes it: a "#!/usr/bin/python3 -IS" script importing the
#      package's plugin module, compiled by that interpreter; no shell)
# Prints median/mean/min in ms; the JSON from hyperfine stays in $OUT (default: not kept).
# Everything it starts is stopped on exit; the state index it used is deleted.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ES_URL=${ES_URL:-http://127.0.0.1:9200}
PY=${PY:-$ROOT/.venv/bin/python}
CHECK=${CHECK:-web-5xx}
RUNS=${RUNS:-100}
WARMUP=${WARMUP:-5}
OUT=${OUT:-}

command -v hyperfine >/dev/null || { echo "hyperfine is missing: apt-get install -y hyperfine" >&2; exit 2; }
id nagios >/dev/null 2>&1 || { echo "no nagios user (apt-get install nagios4-core)" >&2; exit 2; }
[ -x /usr/lib/nagios/plugins/check_http ] || { echo "check_http missing (monitoring-plugins-basic)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "run as root (runuser -u nagios)" >&2; exit 2; }

WORK=$(mktemp -d /tmp/esbridge-plugin-bench-XXXXXX)
chmod 755 "$WORK"
STATE_INDEX="esbridge-bench-plugin-$$"
SERVICE_PID=""
cleanup() {
    if [ -n "$SERVICE_PID" ] && kill -0 "$SERVICE_PID" 2>/dev/null; then
        kill -TERM "$SERVICE_PID"
        for _ in $(seq 100); do kill -0 "$SERVICE_PID" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$SERVICE_PID" 2>/dev/null || true
        wait "$SERVICE_PID" 2>/dev/null || true
    fi
    curl -s -o /dev/null -X DELETE "$ES_URL/$STATE_INDEX?ignore_unavailable=true" || true
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "seeding sample data into $ES_URL ..." >&2
"$PY" -m esbridge_dev.sampledata --es-url "$ES_URL" --backfill-minutes 10 >"$WORK/sampledata.log" 2>&1

PORT=$("$PY" -c 'from esbridge_dev.service import free_port; print(free_port())')
URL="http://127.0.0.1:$PORT"
ESBRIDGE_STATE__INDEX="$STATE_INDEX" "$PY" -m esbridge serve --host 127.0.0.1 --port "$PORT" \
    --es-url "$ES_URL" --checks "$ROOT/checks" >"$WORK/esbridge.log" 2>&1 &
SERVICE_PID=$!

# wait (bounded) until the check has a result: the header appears with the first evaluation
for i in $(seq 120); do
    if curl -s -D - -o /dev/null "$URL/api/v1/checks/$CHECK/nagios" 2>/dev/null \
        | grep -qi '^x-esbridge-evaluated-at:'; then
        break
    fi
    [ "$i" = 120 ] && { echo "no result for $CHECK after 60 s" >&2; tail -20 "$WORK/esbridge.log" >&2; exit 1; }
    sleep 0.5
done

install -m 0755 "$ROOT/service/esbridge/plugin/check_esbridge.py" "$WORK/check_esbridge"
# The layout `pip install` gives (root-owned, so the nagios user cannot write a __pycache__).
install -d -m 0755 "$WORK/prefix/bin" "$WORK/prefix/share/esbridge"
install -m 0755 "$ROOT/scripts/check_esbridge" "$WORK/prefix/bin/check_esbridge"
install -m 0644 "$ROOT/service/esbridge/plugin/check_esbridge.py" "$WORK/prefix/share/esbridge/"
ln -s /usr/bin/python3 "$WORK/prefix/bin/python3"
/usr/bin/python3 -m compileall -q "$WORK/prefix/share/esbridge"
LAUNCHED="$WORK/prefix/bin/check_esbridge -H $URL -C $CHECK"
install -d -m 0755 "$WORK/plugins"
"$PY" -m esbridge install-plugin --python /usr/bin/python3 "$WORK/plugins" >/dev/null
INSTALLED="$WORK/plugins/check_esbridge -H $URL -C $CHECK"
cd "$WORK"
PLUGIN="/usr/bin/python3 -I -S $WORK/check_esbridge -H $URL -C $CHECK"
HTTP="/usr/lib/nagios/plugins/check_http -H 127.0.0.1 -p $PORT -u /api/v1/checks/$CHECK/nagios"
said=$(runuser -u nagios -- $PLUGIN) && code=0 || code=$?
echo "plugin says (as nagios): ${said%%$'\n'*} [exit $code]" >&2
echo "check_http says:         $(runuser -u nagios -- $HTTP | head -1)" >&2
said=$(runuser -u nagios -- $LAUNCHED) && code=0 || code=$?
echo "launcher says (as nagios): ${said%%$'\n'*} [exit $code]" >&2
said=$(runuser -u nagios -- $INSTALLED) && code=0 || code=$?
echo "install-plugin's says (as nagios): ${said%%$'\n'*} [exit $code]" >&2

hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --ignore-failure --style basic \
    --export-json "$WORK/hyperfine.json" \
    -n check_esbridge "runuser -u nagios -- $PLUGIN" \
    -n "check_esbridge (pip)" "runuser -u nagios -- $LAUNCHED" \
    -n "check_esbridge (install-plugin)" "runuser -u nagios -- $INSTALLED" \
    -n check_http "runuser -u nagios -- $HTTP" \
    -n "python3 -I -S -c pass" "runuser -u nagios -- /usr/bin/python3 -I -S -c pass" \
    -n "runuser /bin/true" "runuser -u nagios -- /bin/true" >"$WORK/hyperfine.txt" 2>&1 \
    || { cat "$WORK/hyperfine.txt" >&2; exit 1; }

[ -n "$OUT" ] && cp "$WORK/hyperfine.json" "$OUT"
"$PY" - "$WORK/hyperfine.json" "$RUNS" "$WARMUP" <<'EOF'
import json, os, sys

data = json.load(open(sys.argv[1]))["results"]
print(f"one invocation as the nagios user (runuser), hyperfine --warmup {sys.argv[3]} "
      f"--runs {sys.argv[2]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
print(f"{'command':<32}{'median ms':>10}{'mean ms':>10}{'min ms':>9}{'stddev':>9}")
for r in data:
    print(f"{r['command']:<32}{r['median'] * 1e3:>10.1f}{r['mean'] * 1e3:>10.1f}"
          f"{r['min'] * 1e3:>9.1f}{r['stddev'] * 1e3:>9.1f}")
# Ratios of medians, net of runuser's own cost (it is in every command, and would bring every
# ratio closer to 1): the launcher and the copied file against the interpreter's bare start.
median = {r["command"]: r["median"] for r in data}
base = median["runuser /bin/true"]
bare = median["python3 -I -S -c pass"] - base
names = ("check_esbridge (pip)", "check_esbridge (install-plugin)", "check_esbridge", "check_http")
net = {name: median[name] - base for name in names}
print(f"net of runuser: install-plugin's {net['check_esbridge (install-plugin)'] * 1e3:.1f} ms, "
      f"launcher {net['check_esbridge (pip)'] * 1e3:.1f} ms, single file "
      f"{net['check_esbridge'] * 1e3:.1f} ms, bare python {bare * 1e3:.1f} ms, "
      f"check_http {net['check_http'] * 1e3:.1f} ms")
print(json.dumps({
    "installed_to_bare_python": round(net["check_esbridge (install-plugin)"] / bare, 3),
    "launcher_to_bare_python": round(net["check_esbridge (pip)"] / bare, 3),
    "single_file_to_bare_python": round(net["check_esbridge"] / bare, 3),
    "launcher_to_check_http": round(net["check_esbridge (pip)"] / net["check_http"], 3),
}))
EOF
