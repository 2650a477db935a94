#!/usr/bin/env python3
"""Developer check: read a roformer-written TensorBoard event file with the `tensorboard` package.

    ROFORMER_TB_OUT=/tmp/tbcheck build/tensorboard_test --gtest_filter='*ExternalCheck*'
    VENV/bin/python tests/reference/check_tensorboard_events.py /tmp/tbcheck --expect-test-pattern

Uses tensorboard's own readers and prints every scalar: the record reader of the tensorflow-free
`tensorboard.compat` stub (it verifies the masked CRC32C of every length and payload and raises
DataLossError; we fail on that rather than let the loader stop silently at the first bad record),
LegacyEventFileLoader, and EventAccumulator (what TensorBoard's scalar dashboard reads). With --expect-test-pattern it also checks the values that
tests/unit/tensorboard_test.cc (WritePatternForExternalCheck) writes. Exit 0 = pass.
"""
import argparse
import glob
import math
import os
import sys


def find_files(path):
    if os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(path, "events.out.tfevents.*")))
        if not files:
            sys.exit(f"no events.out.tfevents.* in {path}")
        return files
    return [path]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("path", help="event file or run directory")
    ap.add_argument("--expect-test-pattern", action="store_true")
    args = ap.parse_args()
    try:
        import tensorboard
        from tensorboard.backend.event_processing import event_accumulator, event_file_loader
    except ImportError:
        print("SKIPPED: the tensorboard package is not installed (pip install tensorboard)")
        return 0
    print(f"tensorboard {tensorboard.__version__}")
    from tensorboard.compat.tensorflow_stub import errors, pywrap_tensorflow
    scalars = {}
    for f in find_files(args.path):
        reader = pywrap_tensorflow.PyRecordReader_New(f)
        records = 0
        while True:
            try:
                reader.GetNext()
            except errors.OutOfRangeError:
                break
            except errors.DataLossError as e:
                sys.exit(f"{f}: record {records}: {e}")
            records += 1
        print(f"{f}: {records} records, all length and data CRCs verified (compat PyRecordReader)")
        events = list(event_file_loader.LegacyEventFileLoader(f).Load())
        if not events or events[0].file_version != "brain.Event:2":
            sys.exit(f"{f}: first event is not file_version brain.Event:2")
        for ev in events[1:]:
            for v in ev.summary.value:
                scalars.setdefault(v.tag, []).append((ev.step, v.simple_value, ev.wall_time))
        if len(events) != records:
            sys.exit(f"{f}: LegacyEventFileLoader read {len(events)} events of {records} records")
        print(f"{f}: {len(events)} events (LegacyEventFileLoader)")
    # The accumulator is what the scalar dashboard reads (it goes through the data-compat layer).
    acc = event_accumulator.EventAccumulator(
        args.path if os.path.isdir(args.path) else args.path, size_guidance={"scalars": 0})
    acc.Reload()
    tags = acc.Tags()["scalars"]
    print(f"EventAccumulator scalar tags: {sorted(tags)}")
    for tag in sorted(scalars):
        pts = scalars[tag]
        got = [(e.step, e.value) for e in acc.Scalars(tag)]
        if got != [(s, v) for s, v, _ in pts]:
            sys.exit(f"tag {tag}: EventAccumulator disagrees with the raw loader")
        print(f"  {tag}: {len(pts)} points, first {pts[0][:2]}, last {pts[-1][:2]}")
    if args.expect_test_pattern:
        def f32(x):
            import struct
            return struct.unpack("f", struct.pack("f", x))[0]
        want = {"train/loss": [(s, 8.0 * math.exp(-0.02 * s)) for s in range(100)],
                "train/lr": [(s, 1e-4 * s / 100) for s in range(100)],
                "eval/mlm_acc": [(s, 0.004 * s) for s in range(0, 100, 25)]}
        if set(scalars) != set(want):
            sys.exit(f"tags {sorted(scalars)} != {sorted(want)}")
        for tag, pts in want.items():
            got = [(s, v) for s, v, _ in scalars[tag]]
            if [s for s, _ in got] != [s for s, _ in pts]:
                sys.exit(f"tag {tag}: steps differ")
            for (s, v), (_, w) in zip(got, pts):
                if abs(v - f32(w)) > 1e-6 * max(1.0, abs(w)):
                    sys.exit(f"tag {tag} step {s}: {v} != {w}")
        print("test pattern: OK")
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
