#!/usr/bin/env bash
# Second scenario: four serf agents (127.0.0.1-4, ports 17946-17949), probe.py talking to s1 with
# triumvir's encoder, a serf query, then s4 frozen with SIGSTOP (suspect, indirect pings, nacks, TCP ping)
# and thawed with SIGCONT (refutation).  Every process is stopped by its PID.
set -u
OUT=${1:?outdir}; shift
EXTRA=("$@")
HERE=$(cd "$(dirname "$0")" && pwd)
PY=${PY:-$HERE/../../.venv/bin/python}
mkdir -p "$OUT"
timeout 90 tcpdump -i lo -U -s 0 -w "$OUT/cap.pcap" 'portrange 17946-17950' >"$OUT/tcpdump.log" 2>&1 &
TCPDUMP=$!
sleep 1.5
PIDS=()
for i in 1 2 3 4; do
    serf agent -node=s$i -bind=127.0.0.$i:1794$((5 + i)) -rpc-addr=127.0.0.1:1737$((2 + i)) -tag role=r$i \
        -log-level=debug "${EXTRA[@]}" >"$OUT/s$i.log" 2>&1 &
    PIDS+=($!)
done
echo "pids tcpdump=$TCPDUMP agents=${PIDS[*]}" >"$OUT/pids"
sleep 2
for i in 2 3 4; do serf join -rpc-addr=127.0.0.1:1737$((2 + i)) 127.0.0.1:17946 >>"$OUT/join.log" 2>&1; done
sleep 3
"$PY" "$HERE/probe.py" 127.0.0.1 17946 "$OUT/probe.json" >"$OUT/probe.log" 2>&1
sleep 2
serf query -rpc-addr=127.0.0.1:17373 -timeout=2s whoami hi >"$OUT/query.log" 2>&1
sleep 1
kill -STOP "${PIDS[3]}"
sleep 5
serf members -rpc-addr=127.0.0.1:17373 >"$OUT/members_stopped.txt" 2>&1
kill -CONT "${PIDS[3]}"
sleep 5
serf members -rpc-addr=127.0.0.1:17373 >"$OUT/members_after.txt" 2>&1
for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
sleep 2
for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
kill -INT "$TCPDUMP" 2>/dev/null
wait "$TCPDUMP" 2>/dev/null
echo done
