#!/usr/bin/env python3
"""Independent NumPy reference for the ThiNet criterion (Luo, Wu & Lin, ICCV 2017).

Writes thinet.json next to this script: fixed inputs (drawn here from a seeded NumPy
generator, stored as float32 values) and, for each case, ThiNet's greedy removal order
and the least-squares scales of the kept channels for every kept count. The Swift test
Tests/PruneKitTests/ThiNetTests.swift reads the file and checks the plugin against it.

It shares no code or shortcut with the Swift plugin: contributions come from an explicit
zero-padded loop over the receptive field, the greedy evaluates
sum_samples (sum_{j in T+{c}} xhat_j)^2 directly (not through the Gram matrix), and the
ridge least squares is solved with numpy.linalg.lstsq on the augmented system
[X_S; sqrt(lam) I] w ~ [yhat; sqrt(lam) 1] (not through the normal equations).
Every output of every image is used (the plugin's samples-per-image=0).

Re-run (numpy only):  python3 Tests/Fixtures/Reference/thinet.py
"""
import json
import os

import numpy as np

RIDGE = 1e-6  # the plugin's default, relative to the mean diagonal of X_S^T X_S


def conv_contributions(x, w, stride, padding, groups):
    """x [C, N, H, W], w [O, C/g, kh, kw] -> [m, C], rows in (image, out channel, row, col) order."""
    c, n, h, wd = x.shape
    o, cg, kh, kw = w.shape
    og = o // groups
    xp = np.zeros((c, n, h + 2 * padding, wd + 2 * padding))
    xp[:, :, padding:padding + h, padding:padding + wd] = x
    ho = (h + 2 * padding - kh) // stride + 1
    wo = (wd + 2 * padding - kw) // stride + 1
    rows = []
    for i in range(n):
        for k in range(o):
            g = k // og
            for r in range(ho):
                for q in range(wo):
                    row = np.zeros(c)
                    for cl in range(cg):
                        ch = g * cg + cl
                        patch = xp[ch, i, r * stride:r * stride + kh, q * stride:q * stride + kw]
                        row[ch] = float(np.sum(patch * w[k, cl]))
                    rows.append(row)
    return np.array(rows)


def linear_contributions(x, w, channels):
    """x [N, F], w [O, F]; channel c is the block of F/C features -> [m, C], rows (image, output)."""
    n, f = x.shape
    block = f // channels
    rows = []
    for i in range(n):
        for k in range(w.shape[0]):
            rows.append([float(np.dot(w[k, c * block:(c + 1) * block], x[i, c * block:(c + 1) * block]))
                         for c in range(channels)])
    return np.array(rows)


def greedy_order(xhat):
    """Algorithm 1 of the paper, run until one channel is left; returns the removal order."""
    c = xhat.shape[1]
    removed, order = [], []
    while len(removed) < c - 1:
        values = {}
        for cand in range(c):
            if cand in removed:
                continue
            values[cand] = float(np.sum(xhat[:, removed + [cand]].sum(axis=1) ** 2))
        best = min(values, key=lambda k: (values[k], k))
        others = sorted(v for k, v in values.items() if k != best)
        if others:  # a fixture with near-ties would test rounding, not the algorithm
            assert others[0] - values[best] > 1e-4 * max(1.0, abs(values[best])), (values, best)
        removed.append(best)
        order.append(best)
    return order


def scales(xhat, kept, ridge):
    yhat = xhat.sum(axis=1)  # y - b
    xs = xhat[:, kept]
    lam = ridge * float(np.mean(np.sum(xs * xs, axis=0)))
    a = np.vstack([xs, np.sqrt(lam) * np.eye(len(kept))])
    b = np.concatenate([yhat, np.sqrt(lam) * np.ones(len(kept))])
    w, *_ = np.linalg.lstsq(a, b, rcond=None)
    return w


def f32(a):
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def case(name, kind, x, w, channels, stride=1, padding=0, groups=1):
    if kind == "conv":
        xhat = conv_contributions(x, w, stride, padding, groups)
    else:
        xhat = linear_contributions(x, w, channels)
    order = greedy_order(xhat)
    last = [c for c in range(channels) if c not in order]
    result = {"name": name, "kind": kind, "channels": channels, "stride": stride, "padding": padding,
              "groups": groups, "input_shape": list(x.shape), "input": x.ravel().tolist(),
              "weight_shape": list(w.shape), "weight": w.ravel().tolist(), "samples": int(xhat.shape[0]),
              "order": order, "kept": {}, "scales": {}}
    for k in range(1, channels):
        # Keeping k: the channel never removed and the last k - 1 removed.
        kept = sorted((order[len(order) - (k - 1):] if k > 1 else []) + last)
        result["kept"][str(k)] = kept
        result["scales"][str(k)] = scales(xhat, kept, RIDGE).tolist()
    return result


def main():
    rng = np.random.default_rng(2017)
    cases = []
    # A strided, padded convolution reading 4 channels (the kind ThiNet was written for).
    # Channel scales differ so that the greedy has clear choices.
    x = f32(rng.standard_normal((4, 2, 5, 5)) * np.array([1.0, 0.3, 2.0, 0.7])[:, None, None, None])
    w = f32(rng.standard_normal((3, 4, 3, 3)) * 0.5)
    cases.append(case("conv-stride2-pad1", "conv", x, w, 4, stride=2, padding=1))
    # A grouped convolution: each channel reaches only its group's outputs.
    x = f32(np.maximum(rng.standard_normal((4, 2, 4, 4)), 0) * np.array([1.5, 0.4, 1.0, 0.2])[:, None, None, None])
    w = f32(rng.standard_normal((4, 2, 3, 3)))
    cases.append(case("conv-groups2", "conv", x, w, 4, stride=1, padding=1, groups=2))
    # A linear layer after a flatten: 3 channels of 4 features each.
    x = f32(rng.standard_normal((5, 12)) * np.repeat([0.5, 2.0, 1.0], 4))
    w = f32(rng.standard_normal((2, 12)))
    cases.append(case("linear-after-flatten", "linear", x, w, 3))
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "thinet.json")
    with open(out, "w") as fh:
        json.dump({"generator": "Tests/Fixtures/Reference/thinet.py", "numpy": np.__version__, "ridge": RIDGE,
                   "cases": cases}, fh, indent=1)
        fh.write("\n")
    for c in cases:
        print(c["name"], "samples", c["samples"], "order", c["order"], "scales", c["scales"])


if __name__ == "__main__":
    main()
