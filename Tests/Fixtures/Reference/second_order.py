#!/usr/bin/env python3
"""Independent reference values for the `synflow`, `obd` and `grasp` criteria (NumPy, float64).

The criteria built on PruneKit's open evidence API (each runs passes of its own over the
model). They are checked on the tiny model and batch of new_criteria.json (written by
new_criteria.py; see there):

    input [6, 1, 7, 5], conv 1→4 3×3 padding 1 + bias, ReLU, global average pool, linear 4→3

The forward pass, the backward pass and the Hessian–vector product are written here from
their definitions, sharing no code with PruneKit:

    synflow (Tanaka et al. 2020)  every parameter → |·|; R = Σ outputs on one all-ones input;
                                  s = |θ · ∂R/∂θ| for the conv and linear weights
    obd     (LeCun et al. 1990)   s = ½ · F_ii · w², F_ii = mean over the 6 examples of
                                  (∂ℓ_n/∂w_i)², ℓ_n example n's own cross-entropy
    grasp   (Wang et al. 2020)    g = Σ_b ∇L_b over two batches of 3 (L_b the batch-mean
                                  cross-entropy of logits / T, T = 200 and T = 1);
                                  s = θ ⊙ Hg (PruneKit keeps the highest; the paper removes
                                  the highest −θ ⊙ Hg). Hg EXACTLY, by Pearlmutter's R-operator
                                  (forward-mode differentiation of the backward pass), not by
                                  finite differences as PruneKit does — and checked here
                                  against central differences in float64.

Batches of 3: g = Σ_b (1/3) Σ_{n∈b} ∇ℓ_n = (1/3) Σ_n ∇ℓ_n whatever the shuffle, and likewise Hg.

Re-run (only needed when the model or the formulas change):
    python3 Tests/Fixtures/Reference/second_order.py
"""
import json
import os

import numpy as np

here = os.path.dirname(os.path.abspath(__file__))
ref = json.load(open(os.path.join(here, "new_criteria.json")))
N = ref["count"]
_, H, W = ref["imageShape"]
K = ref["classCount"]
C = 4
pixels = np.array(ref["pixels"], dtype=np.float64).reshape(N, 1, H, W)
labels = np.array(ref["labels"])
x_all = (pixels / 255.0 - ref["mean"]) / ref["std"]
w1 = np.array(ref["conv_weight"]).reshape(C, 1, 3, 3)
b1 = np.array(ref["conv_bias"])
w2 = np.array(ref["fc_weight"]).reshape(K, C)
b2 = np.array(ref["fc_bias"])
BATCH = 3


def conv(x, w, b):
    """3×3, padding 1, stride 1: y[n,o,i,j] = Σ_{c,a,b} w[o,c,a,b] · xpad[n,c,i+a,j+b] + b[o]."""
    n, _, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    y = np.zeros((n, w.shape[0], h, wd))
    for a in range(3):
        for c in range(3):
            y += np.einsum("oi,nihw->nohw", w[:, :, a, c], xp[:, :, a:a + h, c:c + wd])
    return y + b[None, :, None, None]


def conv_weight_grad(x, dy):
    n, _, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    g = np.zeros((dy.shape[1], x.shape[1], 3, 3))
    for a in range(3):
        for c in range(3):
            g[:, :, a, c] = np.einsum("nohw,nihw->oi", dy, xp[:, :, a:a + h, c:c + wd])
    return g


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def grads(x, y, W1, B1, W2, B2, T=1.0, v=None):
    """∂L/∂(W1, W2) of the mean cross-entropy of logits / T over the batch; with a
    direction v = (V1, V2) on the weights, also the exact Hessian–vector product H·v."""
    n = x.shape[0]
    pre = conv(x, W1, B1)
    on = (pre > 0).astype(np.float64)
    z = pre * on
    p = z.mean(axis=(2, 3))
    logits = p @ W2.T + B2
    s = softmax(logits / T)
    dl = (s - np.eye(K)[y]) / (n * T)
    g2 = dl.T @ p
    dz = (dl @ W2)[:, :, None, None] / (H * W) * np.ones_like(z)
    g1 = conv_weight_grad(x, dz * on)
    if v is None:
        return g1, g2
    V1, V2 = v
    # R-operator: R{·} = d/dr (·)(θ + r·v) at r = 0. ReLU's mask is locally constant.
    r_pre = conv(x, V1, np.zeros(C))
    r_z = r_pre * on
    r_p = r_z.mean(axis=(2, 3))
    r_logits = r_p @ W2.T + p @ V2.T
    r_u = r_logits / T
    r_s = s * (r_u - (s * r_u).sum(axis=1, keepdims=True))     # (diag(s) − s sᵀ) · R{u}
    r_dl = r_s / (n * T)
    r_g2 = r_dl.T @ p + dl.T @ r_p
    r_dz = (r_dl @ W2 + dl @ V2)[:, :, None, None] / (H * W) * np.ones_like(z)
    r_g1 = conv_weight_grad(x, r_dz * on)
    return (g1, g2), (r_g1, r_g2)


# synflow: |θ|-network on one all-ones example, R = Σ outputs, ∂R/∂θ by hand.
ones = np.ones((1, 1, H, W))
A1, A2, AB1, AB2 = np.abs(w1), np.abs(w2), np.abs(b1), np.abs(b2)
pre = conv(ones, A1, AB1)
on = (pre > 0).astype(np.float64)
z = pre * on
pooled = z.mean(axis=(2, 3))
R = float((pooled @ A2.T + AB2).sum())
dlogits = np.ones((1, K))
sg2 = dlogits.T @ pooled
sdz = (dlogits @ A2)[:, :, None, None] / (H * W) * np.ones_like(z)
sg1 = conv_weight_grad(ones, sdz * on)
synflow = {"features.0": np.abs(A1 * sg1).reshape(-1), "classifier": np.abs(A2 * sg2).reshape(-1)}

# obd: per-example gradients (batches of one).
sq1, sq2 = np.zeros_like(w1), np.zeros_like(w2)
for n in range(N):
    g1, g2 = grads(x_all[n:n + 1], labels[n:n + 1], w1, b1, w2, b2)
    sq1 += g1 ** 2
    sq2 += g2 ** 2
obd = {"features.0": (0.5 * sq1 / N * w1 ** 2).reshape(-1), "classifier": (0.5 * sq2 / N * w2 ** 2).reshape(-1)}


def grasp(T):
    # Σ over two batches of 3 of batch-mean gradients = (1/3) Σ_n per-example gradients.
    def batched(v=None):
        acc = None
        for start in range(0, N, BATCH):
            out = grads(x_all[start:start + BATCH], labels[start:start + BATCH], w1, b1, w2, b2, T, v)
            acc = out if acc is None else summed(acc, out)
        return acc

    def summed(a, b):
        if isinstance(a[0], tuple):
            return tuple(summed(p, q) for p, q in zip(a, b))
        return tuple(p + q for p, q in zip(a, b))

    g = batched()
    _, hg = batched(g)
    # Self-check: central differences of the gradient along g, in float64.
    eps = 1e-5 * np.sqrt((w1 ** 2).sum() + (w2 ** 2).sum()) / np.sqrt((g[0] ** 2).sum() + (g[1] ** 2).sum())

    def grad_at(shift):
        acc = None
        for start in range(0, N, BATCH):
            out = grads(x_all[start:start + BATCH], labels[start:start + BATCH],
                        w1 + shift * g[0], b1, w2 + shift * g[1], b2, T)
            acc = out if acc is None else tuple(p + q for p, q in zip(acc, out))
        return acc
    plus, minus = grad_at(eps), grad_at(-eps)
    for exact, p, m in zip(hg, plus, minus):
        fd = (p - m) / (2 * eps)
        assert np.allclose(fd, exact, rtol=1e-5, atol=1e-9 * np.abs(exact).max()), (fd, exact)
    return {"features.0": (w1 * hg[0]).reshape(-1), "classifier": (w2 * hg[1]).reshape(-1)}


out = {
    "note": "generated by second_order.py from new_criteria.json; do not edit by hand",
    "synflow_R": R,
    "synflow": {k: v.tolist() for k, v in synflow.items()},
    "obd": {k: v.tolist() for k, v in obd.items()},
    "grasp_T200": {k: v.tolist() for k, v in grasp(200.0).items()},
    "grasp_T1": {k: v.tolist() for k, v in grasp(1.0).items()},
}
path = os.path.join(here, "second_order.json")
with open(path, "w") as f:
    json.dump(out, f, indent=1)
    f.write("\n")
print("wrote", path, "R =", R)
for key in ["synflow", "obd", "grasp_T200", "grasp_T1"]:
    print(key, {k: np.round(v, 8).tolist()[:6] for k, v in out[key].items()})
