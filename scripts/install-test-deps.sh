#!/usr/bin/env bash
# Install the Debian packages the esbridge test suite drives (Nagios, Icinga 2, Prometheus,
# the monitoring plugins, Chromium, Maven, hyperfine for bench/plugin_latency.sh and a Java
# runtime for Elasticsearch).
#
# - Each package is checked with `dpkg -s`; `apt-get update` runs once, only if something
#   is missing.
# - As root it installs with --no-install-recommends and prevents the packages' daemons
#   from being started (policy-rc.d answering 101 while installing), then makes sure no
#   prometheus/nagios4/icinga2 daemon is left running.
# - Not root: prints one line per missing package and exits 0 (tests skip outside CI and
#   fail under CI=true, with the reason).
set -euo pipefail

packages=(nagios4-core icinga2-bin prometheus monitoring-plugins-basic chromium maven hyperfine)

have_java() {
    command -v java >/dev/null 2>&1 && return 0
    local d
    for d in /usr/lib/jvm/*/bin/java; do
        [ -x "$d" ] && return 0
    done
    return 1
}
have_java || packages+=(default-jre-headless)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg -s "$p" >/dev/null 2>&1 || ! dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed'; then
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-test-deps: all test packages present (${packages[*]})"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    for p in "${missing[@]}"; do
        echo "install-test-deps: missing package $p (run this script as root to install it)"
    done
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    for p in "${missing[@]}"; do
        echo "install-test-deps: missing package $p (no apt-get on this machine)"
    done
    exit 0
fi

start=$(date +%s)
echo "install-test-deps: installing ${missing[*]}"

# Keep package maintainer scripts from starting daemons (prometheus would take :9090).
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    own_policy=1
fi
cleanup() {
    if [ "$own_policy" -eq 1 ]; then rm -f "$policy"; fi
}
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"

# Belt and braces: nothing of these should be running now unless it was before.
for svc in prometheus nagios4 icinga2; do
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        systemctl stop "$svc" >/dev/null 2>&1 || true
        systemctl disable "$svc" >/dev/null 2>&1 || true
    fi
done
for exe in /usr/bin/prometheus /usr/sbin/nagios4 /usr/sbin/icinga2; do
    # Only daemons started by the package (their parent is init), never test instances.
    for pid in $(pgrep -x -f "$exe.*" 2>/dev/null || true); do
        if [ "$(ps -o ppid= -p "$pid" | tr -d ' ')" = "1" ]; then
            echo "install-test-deps: stopping daemon $exe (pid $pid) started by the package"
            kill "$pid" 2>/dev/null || true
        fi
    done
done

end=$(date +%s)
echo "install-test-deps: installed ${missing[*]} in $((end - start)) s"
