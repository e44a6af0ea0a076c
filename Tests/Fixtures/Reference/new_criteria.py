#!/usr/bin/env python3
"""Independent reference values for the `fpgm`, `lamp`, `snip` and `hrank` criteria (NumPy, float64).

A tiny fixed model and batch, written out with the expected scores to new_criteria.json,
which Tests/PruneKitTests/NewCriteriaTests.swift reads:

    input [6, 1, 7, 5] (NCHW, bytes 0…255, normalised (p/255 − 0.5) / 0.25)
    conv   1→4, 3×3, padding 1, bias   ("features.0", PyTorch layout [O, C, kh, kw])
    ReLU                                ("features.1")
    global average pool                 ("pool")
    linear 4→3                          ("classifier", [out, in])
    loss: cross-entropy of the labels, mean over the batch

Every weight is a float32 value (rounded, then widened), so this script and PruneKit score
exactly the same numbers. The forward and backward passes are written here from the
definitions, with no code shared with PruneKit, and each criterion straight from its paper:

    fpgm   (He et al. 2019)   s_j = Σ_k ‖W_j − W_k‖ over the layer's filters (ℓ2 and ℓ1)
    lamp   (Lee et al. 2021)  score(u) = w_u² / Σ_{v: w_v² ≥ w_u²} w_v², per layer, by a double loop
    snip   (Lee et al. 2019)  |w ⊙ ∂L/∂w| / Σ over all prunable weights (and unnormalised)
    hrank  (Lin et al. 2020)  mean over examples of the rank of each channel's post-ReLU map,
                              rank = #σ > σ_max · max(H, W) · eps(float32), σ from LAPACK's SVD

The batch is redrawn until every rank is robust: no pre-activation within 1e-3 of 0 (so
PruneKit's float32 ReLU zeroes the same entries), every singular value either below
1e-9 · σ_max or above 1e-3 · σ_max, and the rank unchanged when the map's non-zero entries
are perturbed by a relative 1e-5 (far more than float32 rounding) — so float32
arithmetic anywhere cannot move a rank across the tolerance. The float32 SVD (what
torch.linalg.matrix_rank runs on a float32 map) is checked to give the same ranks.

Re-run (only needed when the model or the formulas change):
    python3 Tests/Fixtures/Reference/new_criteria.py
"""
import json
import os

import numpy as np

rng = np.random.default_rng(20190616)
N, C, H, W, K = 6, 4, 7, 5, 3
MEAN, STD = 0.5, 0.25
EPS32 = float(np.finfo(np.float32).eps)


def f32(a):
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def draw():
    pixels = rng.integers(0, 256, size=(N, 1, H, W))
    labels = rng.integers(0, K, size=N)
    w1 = f32(np.round(rng.normal(0, 0.5, size=(C, 1, 3, 3)), 2))
    # Biases from positive to strongly negative: maps from full rank to mostly zero rows.
    b1 = f32(np.round(np.array([0.4, -0.3, -0.9, -1.6]) + rng.normal(0, 0.1, size=C), 3))
    w2 = f32(np.round(rng.normal(0, 0.8, size=(K, C)), 2))
    b2 = f32(np.round(rng.normal(0, 0.1, size=K), 3))
    # Exact ties for lamp: a weight of the same magnitude as another, with the other sign,
    # and one zero.
    w1[1, 0, 0, 0] = -w1[0, 0, 1, 1]
    w1[3, 0, 2, 2] = 0.0
    w2[2, 1] = -w2[0, 3]
    return pixels, labels, w1, b1, w2, b2


def conv3x3_pad1(x, w, b):
    n, _, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    y = np.zeros((n, w.shape[0], h, wd))
    for o in range(w.shape[0]):
        for i in range(h):
            for j in range(wd):
                y[:, o, i, j] = np.sum(xp[:, :, i:i + 3, j:j + 3] * w[o][None], axis=(1, 2, 3)) + b[o]
    return y


def conv3x3_pad1_weight_grad(x, dy):
    # ∂L/∂w[o, c, a, b] = Σ_{n,i,j} dy[n, o, i, j] · xpad[n, c, i + a, j + b]
    n, _, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    g = np.zeros((dy.shape[1], x.shape[1], 3, 3))
    for a in range(3):
        for b in range(3):
            g[:, :, a, b] = np.einsum("noij,ncij->oc", dy, xp[:, :, a:a + h, b:b + wd])
    return g


def tol(s, shape):
    return s.max() * max(shape) * EPS32 if s.size else 0.0


def rank64(m):
    s = np.linalg.svd(m, compute_uv=False)
    return int((s > tol(s, m.shape)).sum())


def rank32(m):
    s = np.linalg.svd(m.astype(np.float32), compute_uv=False).astype(np.float64)
    return int((s > tol(s, m.shape)).sum())


def rank_is_robust(m):
    if not m.any():
        return True
    s = np.linalg.svd(m, compute_uv=False)
    smax = s.max()
    if np.any((s > 1e-9 * smax) & (s < 1e-3 * smax)):
        return False
    r = rank64(m)
    for _ in range(10):
        noisy = m * (1 + 1e-5 * rng.standard_normal(m.shape))
        if rank64(noisy) != r:
            return False
    return rank32(m) == r


def forward(pixels, w1, b1, w2, b2):
    x = (pixels / 255.0 - MEAN) / STD
    pre = conv3x3_pad1(x, w1, b1)
    z = np.maximum(pre, 0)
    pooled = z.mean(axis=(2, 3))
    logits = pooled @ w2.T + b2
    return x, pre, z, pooled, logits


attempts = 0
while True:
    attempts += 1
    pixels, labels, w1, b1, w2, b2 = draw()
    x, pre, z, pooled, logits = forward(pixels, w1, b1, w2, b2)
    if np.min(np.abs(pre)) <= 1e-3:
        continue
    if not all(rank_is_robust(z[n, c]) for n in range(N) for c in range(C)):
        continue
    if np.min(np.abs(logits)) <= 1e-3:
        continue
    ranks = np.array([[rank64(z[n, c]) for c in range(C)] for n in range(N)])
    # Worth testing: channels of different mean rank, and some rank-deficient maps.
    if len(set(ranks.mean(axis=0).round(6))) == C and ranks.min() < min(H, W) - 1:
        break

# Backward of the mean cross-entropy over the batch.
p = np.exp(logits - logits.max(axis=1, keepdims=True))
p /= p.sum(axis=1, keepdims=True)
dlogits = (p - np.eye(K)[labels]) / N                 # ∂C/∂logits, C = mean loss
g2 = dlogits.T @ pooled                               # [K, C]
dpooled = dlogits @ w2                                # [N, C]
dz = dpooled[:, :, None, None] / (H * W) * np.ones_like(z)
dpre = dz * (pre > 0)
g1 = conv3x3_pad1_weight_grad(x, dpre)                # [C, 1, 3, 3]


def fpgm(wmat, norm):
    rows = wmat.reshape(wmat.shape[0], -1)
    d = rows[:, None, :] - rows[None, :, :]
    dist = np.sqrt((d ** 2).sum(axis=2)) if norm == "l2" else np.abs(d).sum(axis=2)
    return dist.sum(axis=1)


def lamp(wmat):
    sq = wmat.reshape(-1) ** 2
    out = np.zeros_like(sq)
    for u in range(sq.size):
        denom = sq[sq >= sq[u]].sum()
        out[u] = sq[u] / denom if denom > 0 else 0.0
    return out


snip_raw = {"features.0": np.abs(w1 * g1).reshape(-1), "classifier": np.abs(w2 * g2).reshape(-1)}
snip_total = sum(v.sum() for v in snip_raw.values())

out = {
    "note": "generated by new_criteria.py; do not edit by hand",
    "count": N, "imageShape": [1, H, W], "classCount": K, "mean": MEAN, "std": STD,
    "pixels": pixels.reshape(-1).tolist(), "labels": labels.tolist(),
    "conv_weight": w1.reshape(-1).tolist(), "conv_bias": b1.tolist(),
    "fc_weight": w2.reshape(-1).tolist(), "fc_bias": b2.tolist(),
    "fpgm_l2": {"features.0": fpgm(w1, "l2").tolist(), "classifier": fpgm(w2, "l2").tolist()},
    "fpgm_l1": {"features.0": fpgm(w1, "l1").tolist(), "classifier": fpgm(w2, "l1").tolist()},
    "lamp": {"features.0": lamp(w1).tolist(), "classifier": lamp(w2).tolist()},
    "snip": {k: v.tolist() for k, v in snip_raw.items()},
    "snip_normalised": {k: (v / snip_total).tolist() for k, v in snip_raw.items()},
    "hrank": {
        "features.0": ranks.mean(axis=0).tolist(),
        # Logits [N, K]: 1 × 1 maps, rank 1 where non-zero (none is within 1e-3 of zero).
        "classifier": (logits != 0).mean(axis=0).tolist(),
    },
    "hrank_ranks": {"features.0": ranks.T.tolist()},   # [C][N]
}
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "new_criteria.json")
with open(path, "w") as f:
    json.dump(out, f, indent=1)
    f.write("\n")
print("wrote", path, "after", attempts, "draws")
for key in ["fpgm_l2", "lamp", "snip_normalised", "hrank"]:
    print(key, {k: np.round(v, 5).tolist()[:8] for k, v in out[key].items()})
print("ranks [C][N]", out["hrank_ranks"])
