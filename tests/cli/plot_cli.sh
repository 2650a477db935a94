#!/bin/bash
# label: unit
# `roformer plot`: two fake run dirs -> a multi-panel PNG via gnuplot (PNG signature, > 5 KB), and
# clear errors for a missing/empty metrics.jsonl and a missing gnuplot. Prints SKIPPED and exits 0
# only when gnuplot is not installed.
set -euo pipefail
BIN="$1"
SRC="$2"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# Expects exit code 2 and the given text in stderr.
expect_error() {
  local want="$1"; shift
  set +e
  "$@" > "$TMP/out.txt" 2> "$TMP/err.txt"
  local rc=$?
  set -e
  [ "$rc" -eq 2 ] || fail "expected exit 2, got $rc for: $* ($(cat "$TMP/err.txt"))"
  grep -qF -- "$want" "$TMP/err.txt" || fail "stderr lacks '$want': $(cat "$TMP/err.txt")"
}

# Two runs in the trainer's format: train records every 10 steps, eval records every 50; run_b
# also has a record with a printf-style nan (a diverged step) that must not break plotting.
python3 - "$TMP" <<'PY'
import json, math, os, sys
root = sys.argv[1]
for name, scale in (("run_a", 1.0), ("run_b", 1.3)):
    d = os.path.join(root, name)
    os.makedirs(d)
    with open(os.path.join(d, "metrics.jsonl"), "w") as f:
        for step in range(10, 1001, 10):
            loss = scale * (2 + 8 * math.exp(-step / 200))
            f.write(json.dumps({"step": step, "loss": loss, "mlm_loss": loss * 0.95,
                                "mlm_acc": 1 - loss / 12, "lr": 1e-4 * min(1, step / 100),
                                "tokens_per_s": 5000 + 100 * math.sin(step)}) + "\n")
            if step % 50 == 0:
                f.write(json.dumps({"step": step, "eval_mlm_loss": loss * 1.05,
                                    "eval_mlm_acc": 1 - loss / 11}) + "\n")
        if name == "run_b":
            f.write('{"step":1010,"loss":nan,"mlm_loss":nan,"mlm_acc":0,"lr":1e-4,"tokens_per_s":5000}\n')
PY
mkdir -p "$TMP/empty_run" "$TMP/no_metrics"
: > "$TMP/empty_run/metrics.jsonl"

expect_error "no_metrics/metrics.jsonl" "$BIN" plot "$TMP/run_a" "$TMP/no_metrics" --out "$TMP/x.png"
expect_error "empty_run/metrics.jsonl: no metric records" "$BIN" plot "$TMP/empty_run" --out "$TMP/x.png"
expect_error "missing required flag --out" "$BIN" plot "$TMP/run_a"
printf '{"step":1,"loss":1}\n{"step":2,"loss":\n' > "$TMP/empty_run/metrics.jsonl"
expect_error "empty_run/metrics.jsonl:2:" "$BIN" plot "$TMP/empty_run" --out "$TMP/x.png"
# No gnuplot in PATH -> a clear error (the binary itself needs no PATH).
expect_error "gnuplot not found" env PATH="$TMP/nobin" "$BIN" plot "$TMP/run_a" --out "$TMP/x.png"

if ! command -v gnuplot > /dev/null 2>&1; then
  echo "SKIPPED: gnuplot is not installed (apt-get install gnuplot-nox); PNG output not tested"
  exit 0
fi

"$BIN" plot "$TMP/run_a" "$TMP/run_b" --out "$TMP/plots/loss.png" > "$TMP/out.txt" \
  || fail "roformer plot failed: $(cat "$TMP/out.txt")"
grep -q "5 panels, 2 runs" "$TMP/out.txt" || fail "unexpected output: $(cat "$TMP/out.txt")"
PNG="$TMP/plots/loss.png"
[ -f "$PNG" ] || fail "no PNG written"
[ "$(head -c 8 "$PNG" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ] || fail "not a PNG"
SIZE=$(stat -c %s "$PNG")
[ "$SIZE" -gt 5120 ] || fail "PNG too small: $SIZE bytes"

# Explicit metrics; a metric no run has is skipped with a warning.
"$BIN" plot "$TMP/run_a" --out "$TMP/one.png" --metrics eval_mlm_acc,nope 2> "$TMP/err.txt" \
  > "$TMP/out.txt" || fail "plot --metrics failed: $(cat "$TMP/err.txt")"
grep -q "no run has metric 'nope'" "$TMP/err.txt" || fail "no warning for unknown metric"
grep -q "1 panel, 1 run" "$TMP/out.txt" || fail "unexpected output: $(cat "$TMP/out.txt")"
expect_error "none of the metrics" "$BIN" plot "$TMP/run_a" --out "$TMP/none.png" --metrics nope
echo "OK: $PNG $SIZE bytes"
