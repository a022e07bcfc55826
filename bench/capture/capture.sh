#!/usr/bin/env bash
# Capture real serf/memberlist traffic on loopback for tests/fixtures.
# Usage: bench/capture/capture.sh OUTDIR [extra serf agent flags, e.g. -disable-compression]
# Starts three serf agents on 127.0.0.1-3 (ports 17946-17948), joins, sends a user event, makes s3 leave
# gracefully, kill -9's s2, waits for failure detection, then stops s1.  Every process is stopped by PID.
set -u
OUT=${1:?outdir}; shift
EXTRA=("$@")
mkdir -p "$OUT"
timeout 60 tcpdump -i lo -U -s 0 -w "$OUT/cap.pcap" 'port 17946 or port 17947 or port 17948' \
    >"$OUT/tcpdump.log" 2>&1 &
TCPDUMP=$!
sleep 1.5
serf agent -node=s1 -bind=127.0.0.1:17946 -rpc-addr=127.0.0.1:17373 -tag role=node -tag dc=east \
    -log-level=debug "${EXTRA[@]}" >"$OUT/s1.log" 2>&1 &
S1=$!
serf agent -node=s2 -bind=127.0.0.2:17947 -rpc-addr=127.0.0.1:17374 -tag role=web \
    -log-level=debug "${EXTRA[@]}" >"$OUT/s2.log" 2>&1 &
S2=$!
serf agent -node=s3 -bind=127.0.0.3:17948 -rpc-addr=127.0.0.1:17375 -tag role=db -tag zone=z3 \
    -log-level=debug "${EXTRA[@]}" >"$OUT/s3.log" 2>&1 &
S3=$!
echo "pids tcpdump=$TCPDUMP s1=$S1 s2=$S2 s3=$S3" >"$OUT/pids"
sleep 2
serf join -rpc-addr=127.0.0.1:17374 127.0.0.1:17946 >"$OUT/join2.log" 2>&1
sleep 1
serf join -rpc-addr=127.0.0.1:17375 127.0.0.1:17946 >"$OUT/join3.log" 2>&1
sleep 4
serf event -rpc-addr=127.0.0.1:17373 deploy v1 >"$OUT/event.log" 2>&1
sleep 3
serf members -rpc-addr=127.0.0.1:17373 >"$OUT/members_before.txt" 2>&1
serf leave -rpc-addr=127.0.0.1:17375 >"$OUT/leave3.log" 2>&1
sleep 3
kill -9 "$S2"
sleep 14
serf members -rpc-addr=127.0.0.1:17373 >"$OUT/members_after.txt" 2>&1
serf leave -rpc-addr=127.0.0.1:17373 >"$OUT/leave1.log" 2>&1
sleep 1
for p in $S1 $S2 $S3; do kill "$p" 2>/dev/null; done
sleep 1
kill -INT "$TCPDUMP" 2>/dev/null
wait "$TCPDUMP" 2>/dev/null
echo done
