#!/usr/bin/env python3
"""CAN reference values for tests/unit/can_test.cc.

Our numpy transcription of the reference code in shared/research/seeds.md §6.3 (kexue.fm 8728):
top-k entropy uncertainty normalised by log k, confident = uncertainty < threshold, and for each
uncertain sample separately: stack the ORIGINAL confident rows with it, repeat `iters` times
{Y = Y**alpha; Y /= Y.mean(0); Y *= prior; Y /= Y.sum(1)}, keep the last row.

Run: VENV/bin/python tests/reference/can_reference.py   (needs numpy)
"""
import numpy as np

np.set_printoptions(precision=17)


def uncertainty(y_pred, k):
    y_topk = np.sort(y_pred, axis=1)[:, -k:]
    y_topk = y_topk / y_topk.sum(axis=1, keepdims=True)
    return -(y_topk * np.log(y_topk)).sum(axis=1) / np.log(k)


def can(y_pred, prior, k=3, threshold=0.9, iters=1, alpha=1.0):
    unc = uncertainty(y_pred, k)
    conf = y_pred[unc < threshold]
    out = y_pred.copy()
    for i in np.where(unc >= threshold)[0]:
        Y = np.concatenate([conf, y_pred[i][None]], axis=0)
        for _ in range(iters):
            Y = Y ** alpha
            Y /= Y.mean(axis=0, keepdims=True)
            Y *= prior[None]
            Y /= Y.sum(axis=1, keepdims=True)
        out[i] = Y[-1]
    return unc, out


PROBS = np.array([
    [0.90, 0.05, 0.05],
    [0.10, 0.80, 0.10],
    [0.05, 0.15, 0.80],
    [0.40, 0.35, 0.25],
    [0.30, 0.30, 0.40],
    [0.34, 0.33, 0.33],
])
TRAIN_LABELS = [0, 0, 0, 0, 0, 1, 1, 1, 2, 2]  # prior [0.5, 0.3, 0.2]
LABELS = [0, 1, 2, 1, 0, 0]

PROBS4 = np.array([
    [0.70, 0.20, 0.05, 0.05],
    [0.05, 0.05, 0.10, 0.80],
    [0.45, 0.40, 0.10, 0.05],
    [0.10, 0.15, 0.40, 0.35],
    [0.25, 0.25, 0.25, 0.25],
])
PRIOR4 = np.array([0.1, 0.2, 0.3, 0.4])

if __name__ == '__main__':
    prior = np.bincount(TRAIN_LABELS, minlength=3) / len(TRAIN_LABELS)
    print('prior', prior)
    unc, out = can(PROBS, prior)
    print('case A (k=3, tau=0.9, iters=1, alpha=1)')
    print('uncertainty', repr(unc))
    print('after', repr(out))
    print('argmax before', PROBS.argmax(1), 'after', out.argmax(1))
    unc, out = can(PROBS4, PRIOR4, k=2, threshold=0.9, iters=3, alpha=0.8)
    print('case B (k=2, tau=0.9, iters=3, alpha=0.8)')
    print('uncertainty', repr(unc))
    print('after', repr(out))
