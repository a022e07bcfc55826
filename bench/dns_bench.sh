#!/usr/bin/env bash
# DNS throughput and latency: triumvir's responder vs dnsmasq (a C reference) answering the same 1000 names.
#
#   bench/dns_bench.sh [seconds=20] [members=1000]
#
# Both servers run on loopback (127.0.0.x, ports picked free), one after the other, each under the same dnsperf
# command (UDP, 100 queries outstanding, the 1000 names in a loop, -v for per-query latencies).  triumvir runs
# in-process on a MemberTable of synthetic members (bench/dns_fixture.py); dnsmasq serves the same names and
# addresses from a hosts file.  Prints q/s and latency percentiles for each, and the ratio triumvir/reference.
# Targets (issue 4): ratio >= 0.6, triumvir p99 < 5 ms.
set -euo pipefail

SECONDS_RUN=${1:-20}
MEMBERS=${2:-1000}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
PY=${PY:-$REPO/.venv/bin/python}
[ -x "$PY" ] || PY=python3

for tool in dnsperf dnsmasq; do
  if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$tool" ]; then
    echo "dns_bench: $tool not found (apt-get install dnsperf dnsmasq-base); skipping" >&2
    exit 0
  fi
done
DNSMASQ=$(command -v dnsmasq || echo /usr/sbin/dnsmasq)

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

# A loopback address of our own and a port free for UDP and TCP on it.
read -r IP PORT REF_PORT < <("$PY" - <<'EOF'
import random, socket
ip = f"127.0.{random.randrange(201, 250)}.{random.randrange(2, 250)}"
ports = []
while len(ports) < 2:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        t.bind((ip, 0)); port = t.getsockname()[1]
        try:
            u.bind((ip, port))
        except OSError:
            continue
        ports.append(port)
print(ip, *ports)
EOF
)

percentiles() {  # $1: dnsperf -v output; prints "p50 p90 p99 p99.9" in ms
  "$PY" - "$1" <<'EOF'
import sys
lat = sorted(float(line.split()[-1]) for line in open(sys.argv[1]) if line.startswith("> "))
if not lat:
    print("n/a n/a n/a n/a"); sys.exit()
pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000
print(" ".join(f"{pick(q):.2f}" for q in (0.50, 0.90, 0.99, 0.999)))
EOF
}

run_dnsperf() {  # $1: label, $2: port -> writes $WORK/$1.out, $WORK/$1.stats
  dnsperf -s "$IP" -p "$2" -d "$WORK/queries.txt" -l "$SECONDS_RUN" -q 100 -v >"$WORK/$1.out" 2>"$WORK/$1.err" || true
  grep -E "Queries (sent|completed|lost)|Queries per second|Response codes|Average Latency" "$WORK/$1.out" >"$WORK/$1.stats" || true
}

qps_of() { awk '/Queries per second/ {print $4}' "$WORK/$1.stats"; }

# --- triumvir (in-process responder on a synthetic member table)
"$PY" "$HERE/dns_fixture.py" --host "$IP" --port "$PORT" --members "$MEMBERS" \
  --queries "$WORK/queries.txt" --hosts "$WORK/hosts" >"$WORK/fixture.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do grep -q READY "$WORK/fixture.log" && break; sleep 0.1; done
grep -q READY "$WORK/fixture.log" || { echo "dns_bench: fixture did not start:"; cat "$WORK/fixture.log"; exit 1; }
dig +short @"$IP" -p "$PORT" node1.node.consul >/dev/null 2>&1 || true
run_dnsperf triumvir "$PORT"
kill "${PIDS[0]}" && wait "${PIDS[0]}" 2>/dev/null || true
PIDS=()

# --- dnsmasq (reference): the same names from a hosts file, nothing forwarded
"$DNSMASQ" --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts --addn-hosts="$WORK/hosts" \
  --listen-address="$IP" --bind-interfaces --port="$REF_PORT" --local=/consul/ --cache-size=10000 \
  --pid-file= --user="$(id -un)" >"$WORK/dnsmasq.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do dig +short +time=1 +tries=1 @"$IP" -p "$REF_PORT" node1.node.consul 2>/dev/null | grep -q . && break; sleep 0.1; done
run_dnsperf dnsmasq "$REF_PORT"

T_QPS=$(qps_of triumvir); R_QPS=$(qps_of dnsmasq)
echo "DNS benchmark: dnsperf -l $SECONDS_RUN -q 100 (UDP), $MEMBERS names, server $IP"
printf "%-10s %12s %9s %9s %9s %9s   %s\n" server "q/s" "p50 ms" "p90 ms" "p99 ms" "p99.9 ms" "completed / lost"
for label in triumvir dnsmasq; do
  read -r p50 p90 p99 p999 < <(percentiles "$WORK/$label.out")
  done_=$(awk '/Queries completed/ {print $3}' "$WORK/$label.stats"); lost=$(awk '/Queries lost/ {print $3}' "$WORK/$label.stats")
  printf "%-10s %12.0f %9s %9s %9s %9s   %s / %s\n" "$label" "$(qps_of $label)" "$p50" "$p90" "$p99" "$p999" "$done_" "$lost"
done
"$PY" -c "t, r = float('${T_QPS:-0}'), float('${R_QPS:-0}'); print(f'ratio triumvir/dnsmasq: {t / r:.2f}x (target >= 0.60x)' if r else 'ratio: n/a')"
