#!/usr/bin/env bash
# A rank that skips a collective must be named by the watchdog, and the job must exit non-zero
# within the timeout instead of hanging. The debug cross-check must catch a count mismatch.
set -uo pipefail
bin_dir=$(dirname "$1")
start=$(date +%s)
out=$(timeout 90 mpirun --oversubscribe -np 3 "$bin_dir/comm_check" skip 1 3 3 2>&1)
rc=$?
elapsed=$(( $(date +%s) - start ))
echo "$out" | grep -E "watchdog|Missing" | head -5
[ $rc -ne 0 ] || { echo "FAIL: job exited 0"; exit 1; }
[ $rc -ne 124 ] || { echo "FAIL: job hung until the test's timeout"; exit 1; }
grep -q "AllReduce #0" <<<"$out" || { echo "$out"; echo "FAIL: stalled op not named"; exit 1; }
grep -q "communicator 'world'" <<<"$out" || { echo "FAIL: communicator not named"; exit 1; }
grep -q "world rank 1 did not arrive" <<<"$out" || { echo "$out"; echo "FAIL: missing rank not named"; exit 1; }
[ $elapsed -lt 60 ] || { echo "FAIL: took ${elapsed}s"; exit 1; }
echo "watchdog: rc=$rc after ${elapsed}s"
out=$(timeout 60 mpirun --oversubscribe -np 2 "$bin_dir/comm_check" mismatch 1 2 2>&1)
rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] || { echo "$out"; echo "FAIL: mismatch rc=$rc"; exit 1; }
grep -q "collective mismatch on communicator 'world'" <<<"$out" || { echo "$out"; echo "FAIL: mismatch not reported"; exit 1; }
grep -q "x65" <<<"$out" || { echo "$out"; echo "FAIL: mismatching count not shown"; exit 1; }
echo "debug cross-check: rc=$rc"
