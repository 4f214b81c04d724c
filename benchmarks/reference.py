"""Hand-derived NumPy reference for one training step of each model of docs/experiments.md.

Every function here is forward + backward written out by hand, with no autograd, so it
serves two purposes: a *correctness* reference for the engine's models (same parameter
names and layouts, same loss) and a *speed* reference (what plain NumPy manages for the
same arithmetic). The gradients are themselves checked against finite differences in
``tests/test_reference.py``.

Conventions shared by all models:

- rows are samples; a dense layer is ``x @ W + b`` with ``W`` of shape (in, out);
- the dtype follows the inputs (float32 in, float32 out; float64 in, float64 out): only
  Python scalars meet arrays, and NumPy 2 keeps those "weak", so nothing is upcast;
- losses are means over the batch and are returned as Python floats;
- ``*_loss_and_grads`` return ``(loss, grads)``, ``grads`` a dict with the params' keys.

Notation in comments: ``dX`` is dJ/dX for the scalar loss J.

Timing note: the recurrent steps are ~150 small (32 x 128 x G 128) matmuls each way. With a
multi-threaded BLAS on a machine whose cores are busy with anything else, those calls can
become 10-40x slower (measured: LSTM step 60 ms -> 2.2 s on 2 shared cores). For stable
figures pin the BLAS to one thread (``python -m benchmarks`` does, by default).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

Params = dict[str, np.ndarray]

RECURRENT_CELLS = ("rnn", "lstm", "gru")
GATES = {"rnn": 1, "lstm": 4, "gru": 3}  # blocks of H columns in Wx, Wh and b
HEAD_SIZES = (70, 30)  # the MLP on the last hidden state: H -> 70 -> 30 -> K
CLIP_LOW = 1e-6  # rho_hat is clipped into [CLIP_LOW, 1 - CLIP_LOW] inside the KL term


# --------------------------------------------------------------------------- helpers


def sigmoid(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Logistic function, written as 0.5 tanh(z / 2) + 0.5.

    Why this form: tanh never overflows, so it is stable for inputs of any magnitude
    (1 / (1 + exp(-z)) warns for z < -88 in float32), and it is one transcendental pass
    plus two in-place ops -- measured 3-6x faster than the exp(-|z|) + where formulation.
    Its absolute error is one ulp of 0.5, which is all the models need (they never take
    the log of a sigmoid output except through the clipped KL term).
    """
    out = np.multiply(z, 0.5, out=out)
    np.tanh(out, out=out)
    out *= 0.5
    out += 0.5
    return out


def softmax_cross_entropy(logits: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of integer ``targets`` (N,) under ``logits`` (N, K), and dlogits.

    log p = z - max(z) - log sum exp(z - max(z)): the max shift keeps exp from overflowing.
    dJ/dz = (softmax(z) - onehot(target)) / N.
    """
    n = logits.shape[0]
    rows = np.arange(n)
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    sum_exp = exp.sum(axis=1, keepdims=True)
    log_p_target = shifted[rows, targets] - np.log(sum_exp[:, 0])
    loss = -float(log_p_target.mean())
    dlogits = exp / sum_exp  # softmax
    dlogits[rows, targets] -= 1
    dlogits *= 1.0 / n
    return loss, dlogits


def scatter_add_rows(indices: np.ndarray, values: np.ndarray, num_rows: int) -> np.ndarray:
    """``out[indices[k]] += values[k]`` for every k (repeats add up); out is (num_rows, D).

    Why bincount on flattened (row, column) positions: measured on the LM's backward
    (600 indices into 250 rows, D = 8..32), it is 2-3.5x faster than ``np.add.at``,
    2-4x faster than one bincount per column or a sort + ``np.add.reduceat``, and 5-10x
    faster than a one-hot matmul. bincount sums in float64; we cast back to the input dtype.
    """
    d = values.shape[1]
    flat = (indices[:, None] * d + np.arange(d)).ravel()
    summed = np.bincount(flat, weights=values.ravel(), minlength=num_rows * d)
    return summed.reshape(num_rows, d).astype(values.dtype, copy=False)


def _uniform(rng: np.random.Generator, bound: float, shape, dtype) -> np.ndarray:
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def _xavier(rng: np.random.Generator, fan_in: int, fan_out: int, dtype) -> np.ndarray:
    """Xavier/Glorot uniform: U(-a, a) with a = sqrt(6 / (fan_in + fan_out))."""
    return _uniform(rng, math.sqrt(6.0 / (fan_in + fan_out)), (fan_in, fan_out), dtype)


# --------------------------------------------------------------------------- optimiser


class SGDMomentum:
    """SGD with momentum, in place on a params dict: v <- momentum v - lr g; p <- p + v.

    One velocity per parameter, created (zeros, the param's dtype) on the first step.
    ``clip_norm``: if given, the gradients are scaled down together so that their global
    L2 norm is at most ``clip_norm`` before the update (optional, for vanilla RNNs).
    """

    def __init__(self, lr: float, momentum: float, clip_norm: float | None = None):
        self.lr = lr
        self.momentum = momentum
        self.clip_norm = clip_norm
        self.velocity: Params = {}

    def step(self, params: Params, grads: Params) -> None:
        scale = 1.0
        if self.clip_norm is not None:
            norm = math.sqrt(sum(float(np.vdot(g, g)) for g in grads.values()))
            if norm > self.clip_norm:
                scale = self.clip_norm / norm
        for name, p in params.items():
            v = self.velocity.get(name)
            if v is None:
                v = self.velocity[name] = np.zeros_like(p)
            v *= self.momentum
            v -= (self.lr * scale) * grads[name]
            p += v


# --------------------------------------------------------------------------- experiment 1


def init_autoencoder(
    hidden_size: int, rng: np.random.Generator, dtype=np.float32, input_size: int = 256
) -> Params:
    """Params of the sparse autoencoder input_size -> hidden_size -> input_size.

    encoder.weight (I, H), encoder.bias (H,), decoder.weight (H, I), decoder.bias (I,),
    all U(-w0, w0) with w0 = sqrt(6 / (I + H)) as docs/experiments.md says (biases included).
    """
    w0 = math.sqrt(6.0 / (input_size + hidden_size))
    return {
        "encoder.weight": _uniform(rng, w0, (input_size, hidden_size), dtype),
        "encoder.bias": _uniform(rng, w0, (hidden_size,), dtype),
        "decoder.weight": _uniform(rng, w0, (hidden_size, input_size), dtype),
        "decoder.bias": _uniform(rng, w0, (input_size,), dtype),
    }


def autoencoder_loss_and_grads(
    params: Params, x: np.ndarray, lam: float, beta: float, rho: float
) -> tuple[float, Params]:
    """Sparse-autoencoder loss J and its gradients, for a batch ``x`` (N, I) (I = 256 here).

    h = sigmoid(x W1 + b1)                      (N, H)
    o = sigmoid(h W2 + b2)                      (N, I)
    q = clip(mean over the batch of h, 1e-6, 1 - 1e-6)       (H,)
    J = 1/(2N) sum_n ||x_n - o_n||^2 + lam/2 (||W1||_F^2 + ||W2||_F^2) + beta sum_b KL(rho || q_b)
    KL(rho || q) = rho log(rho / q) + (1 - rho) log((1 - rho) / (1 - q))
    """
    w1, b1 = params["encoder.weight"], params["encoder.bias"]
    w2, b2 = params["decoder.weight"], params["decoder.bias"]
    n = x.shape[0]

    # forward
    h = sigmoid(x @ w1 + b1)
    o = sigmoid(h @ w2 + b2)
    q_raw = h.mean(axis=0)
    q = np.clip(q_raw, CLIP_LOW, 1.0 - CLIP_LOW)
    diff = o - x
    reconstruction = 0.5 / n * float(np.vdot(diff, diff))
    decay = 0.5 * lam * (float(np.vdot(w1, w1)) + float(np.vdot(w2, w2)))
    kl = rho * np.log(rho / q) + (1.0 - rho) * np.log((1.0 - rho) / (1.0 - q))
    loss = reconstruction + decay + beta * float(kl.sum())

    # backward through the decoder: dJ/do = (o - x) / N, sigmoid' = o (1 - o)
    dz2 = diff * (o * (1.0 - o))
    dz2 *= 1.0 / n
    dw2 = h.T @ dz2 + lam * w2
    db2 = dz2.sum(axis=0)

    # dh gets the reconstruction path plus the sparsity path. d KL / dq = -rho/q +
    # (1-rho)/(1-q); the clip passes the gradient only inside the interval; dq/dh = 1/N
    # for every row, so that term is the same (H,) row broadcast over the batch.
    dq = beta * (-rho / q + (1.0 - rho) / (1.0 - q))
    dq *= (q_raw >= CLIP_LOW) & (q_raw <= 1.0 - CLIP_LOW)
    dh = dz2 @ w2.T
    dh += dq * (1.0 / n)
    dz1 = dh * (h * (1.0 - h))
    dw1 = x.T @ dz1 + lam * w1
    db1 = dz1.sum(axis=0)

    grads = {"encoder.weight": dw1, "encoder.bias": db1, "decoder.weight": dw2, "decoder.bias": db2}
    return loss, grads


def autoencoder_forward(params: Params, x: np.ndarray) -> np.ndarray:
    """Inference only: the reconstruction o = sigmoid(sigmoid(x W1 + b1) W2 + b2), (N, I)."""
    h = sigmoid(x @ params["encoder.weight"] + params["encoder.bias"])
    return sigmoid(h @ params["decoder.weight"] + params["decoder.bias"])


def autoencoder_step(
    params: Params, optimizer: SGDMomentum, x: np.ndarray, lam: float, beta: float, rho: float
) -> float:
    """One training step (loss + gradients + update in place); returns the loss before it."""
    loss, grads = autoencoder_loss_and_grads(params, x, lam, beta, rho)
    optimizer.step(params, grads)
    return loss


# --------------------------------------------------------------------------- experiment 2


def init_language_model(
    vocab: int, dim: int, hidden: int, rng: np.random.Generator, dtype=np.float32
) -> Params:
    """Params of the 4-gram LM, all N(0, 0.01^2), as docs/experiments.md says.

    embedding.weight (V, D), hidden.weight (3D, P), hidden.bias (P,),
    output.weight (P, V), output.bias (V,).
    """
    shapes = {
        "embedding.weight": (vocab, dim),
        "hidden.weight": (3 * dim, hidden),
        "hidden.bias": (hidden,),
        "output.weight": (hidden, vocab),
        "output.bias": (vocab,),
    }
    return {name: rng.normal(0.0, 0.01, size=s).astype(dtype) for name, s in shapes.items()}


def language_model_loss_and_grads(
    params: Params, context: np.ndarray, targets: np.ndarray
) -> tuple[float, Params]:
    """Mean cross-entropy of the 4-gram LM and its gradients.

    context (N, 3) int in [0, V) (0-based), targets (N,) int in [0, V).

        e = [E[c0], E[c1], E[c2]]       (N, 3D)
        h = sigmoid(e Wh + bh)          (N, P)
        logits = h Wo + bo              (N, V)
    """
    emb, wh, bh = params["embedding.weight"], params["hidden.weight"], params["hidden.bias"]
    wo, bo = params["output.weight"], params["output.bias"]
    n, width = context.shape
    vocab, dim = emb.shape

    # forward: E[context] is (N, 3, D); its row-major reshape *is* the concatenation
    e = emb[context].reshape(n, width * dim)
    h = sigmoid(e @ wh + bh)
    loss, dlogits = softmax_cross_entropy(h @ wo + bo, targets)

    # backward
    dwo = h.T @ dlogits
    dbo = dlogits.sum(axis=0)
    dz = dlogits @ wo.T
    dz *= h * (1.0 - h)
    dwh = e.T @ dz
    dbh = dz.sum(axis=0)
    # de (N, 3D) -> (3N, D), one row per looked-up index, in the same order as context.ravel()
    de = (dz @ wh.T).reshape(n * width, dim)
    demb = scatter_add_rows(context.ravel(), de, vocab)

    grads = {
        "embedding.weight": demb,
        "hidden.weight": dwh,
        "hidden.bias": dbh,
        "output.weight": dwo,
        "output.bias": dbo,
    }
    return loss, grads


def language_model_logits(params: Params, context: np.ndarray) -> np.ndarray:
    """Inference only: next-word logits (N, V) for context (N, 3), as in the loss above."""
    n, width = context.shape
    e = params["embedding.weight"][context].reshape(n, -1)
    h = sigmoid(e @ params["hidden.weight"] + params["hidden.bias"])
    return h @ params["output.weight"] + params["output.bias"]


def language_model_step(
    params: Params, optimizer: SGDMomentum, context: np.ndarray, targets: np.ndarray
) -> float:
    """One training step (loss + gradients + update in place); returns the loss before it."""
    loss, grads = language_model_loss_and_grads(params, context, targets)
    optimizer.step(params, grads)
    return loss


# --------------------------------------------------------------------------- experiment 3


def init_recurrent(
    cell: str,
    input_size: int,
    hidden_size: int,
    classes: int,
    rng: np.random.Generator,
    dtype=np.float32,
) -> Params:
    """Params of the recurrent classifier: Xavier-uniform weights, zero biases.

    cell.input_weight (C, G H), cell.hidden_weight (H, G H), cell.bias (G H,) with G = 1
    (rnn), 4 (lstm: blocks i, f, g, o) or 3 (gru: blocks z, r, n); each gate block is
    initialised as its own (fan_in, H) matrix. Head: head.0 (H, 70), head.1 (70, 30),
    head.2 (30, K), each with a bias.
    """
    if cell not in GATES:
        raise ValueError(f"cell must be one of {RECURRENT_CELLS}, got {cell!r}")
    g = GATES[cell]
    params = {
        "cell.input_weight": np.concatenate(
            [_xavier(rng, input_size, hidden_size, dtype) for _ in range(g)], axis=1
        ),
        "cell.hidden_weight": np.concatenate(
            [_xavier(rng, hidden_size, hidden_size, dtype) for _ in range(g)], axis=1
        ),
        "cell.bias": np.zeros(g * hidden_size, dtype),
    }
    sizes = (hidden_size, *HEAD_SIZES, classes)
    for k, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        params[f"head.{k}.weight"] = _xavier(rng, fan_in, fan_out, dtype)
        params[f"head.{k}.bias"] = np.zeros(fan_out, dtype)
    return params


def _head_loss_and_grads(
    params: Params, h_last: np.ndarray, targets: np.ndarray, grads: Params
) -> tuple[float, np.ndarray]:
    """MLP head (Linear, ReLU, Linear, ReLU, Linear) + cross-entropy; fills ``grads``.

    Returns the loss and dJ/dh_T (B, H), which seeds back-propagation through time.
    """
    w0, b0 = params["head.0.weight"], params["head.0.bias"]
    w1, b1 = params["head.1.weight"], params["head.1.bias"]
    w2, b2 = params["head.2.weight"], params["head.2.bias"]
    a1 = np.maximum(h_last @ w0 + b0, 0)
    a2 = np.maximum(a1 @ w1 + b1, 0)
    loss, dlogits = softmax_cross_entropy(a2 @ w2 + b2, targets)

    grads["head.2.weight"] = a2.T @ dlogits
    grads["head.2.bias"] = dlogits.sum(axis=0)
    dz2 = dlogits @ w2.T
    dz2 *= a2 > 0  # ReLU' (taken as 0 at the kink)
    grads["head.1.weight"] = a1.T @ dz2
    grads["head.1.bias"] = dz2.sum(axis=0)
    dz1 = dz2 @ w1.T
    dz1 *= a1 > 0
    grads["head.0.weight"] = h_last.T @ dz1
    grads["head.0.bias"] = dz1.sum(axis=0)
    return loss, dz1 @ w0.T


def recurrent_loss_and_grads(
    cell: str, params: Params, x: np.ndarray, targets: np.ndarray
) -> tuple[float, Params]:
    """Mean cross-entropy of the recurrent classifier and its gradients (full BPTT).

    x (B, T, C) float, targets (B,) int in [0, K). h_0 = c_0 = 0; the head reads h_T.

    Layout, for speed: the sequence is processed time-major. All T input projections
    x_t Wx + b are one (T B, C) @ (C, G H) matmul before the loop; the loop does only the
    recurrent matmul h_{t-1} Wh (and its transpose going back); the per-step gradients of
    the pre-activations are stored (T, B, G H) so that dWx, dWh and db are each one matmul
    or sum after the loop, rather than T small ones.
    """
    if cell not in GATES:
        raise ValueError(f"cell must be one of {RECURRENT_CELLS}, got {cell!r}")
    wx, wh, b = params["cell.input_weight"], params["cell.hidden_weight"], params["cell.bias"]
    batch, steps, channels = x.shape
    hidden = wh.shape[0]
    dtype = np.result_type(x, wh)

    # (B, T, C) -> (T, B, C) contiguous, so that x_proj[t] and the stored arrays are
    # contiguous (B, .) blocks; the copy is of x only (C = 3 in the experiment), cheap.
    x_tm = np.ascontiguousarray(x.transpose(1, 0, 2)).reshape(steps * batch, channels)
    x_proj = x_tm @ wx
    x_proj += b  # in place: a second (T B, G H) temporary costs more than the matmul
    x_proj = x_proj.reshape(steps, batch, -1)

    # hs[t] = h_t for t = 0..T (hs[0] = h_0 = 0): hs[:-1] are the h_{t-1} of every step.
    hs = np.zeros((steps + 1, batch, hidden), dtype)
    forward, backward = _CELLS[cell]
    cache = forward(x_proj, wh, hs)

    grads: Params = {}
    loss, dh_last = _head_loss_and_grads(params, hs[-1], targets, grads)

    # d_in: dJ/d(x_t Wx + b), d_rec: dJ/d(h_{t-1} Wh); both (T, B, G H). They coincide for
    # rnn and lstm; gru scales the n block of the recurrent one by r.
    d_in, d_rec = backward(dh_last, wh, hs, cache)
    h_prev = hs[:-1].reshape(steps * batch, hidden)
    grads["cell.input_weight"] = x_tm.T @ d_in.reshape(steps * batch, -1)
    grads["cell.hidden_weight"] = h_prev.T @ d_rec.reshape(steps * batch, -1)
    grads["cell.bias"] = d_in.sum(axis=(0, 1))
    return loss, {name: grads[name] for name in params}


# Each cell is a (forward, backward) pair over time-major arrays:
#   forward(x_proj, wh, hs) -> cache: x_proj (T, B, G H) holds x_t Wx + b; it fills hs[1:].
#   backward(dh_T, wh, hs, cache) -> (d_in, d_rec), both (T, B, G H), as described above.
# Why the backward passes look the way they do: per step they do only what depends on the
# incoming gradient. Every *local* derivative (sigmoid' = s (1 - s), tanh' = 1 - t^2 and the
# products that multiply them) depends only on forward values, so it is computed for all T
# steps at once, in a few large vectorised ops, before the loop; the loop then multiplies
# it by dh / dc in place: per step ~5 small ops plus one matmul instead of ~15. The other
# measured choice: the transposed Wh is made contiguous once, because (B, G H) @ Wh.T through
# a strided view was ~1.5x slower than through a contiguous copy (64 vs 43 us, float32).
# At the experiment's sizes (H = 128, T = 150, B = 32) the per-step matmuls and tanh evaluations
# dominate; these two choices took the float32 backward passes from 3.7 / 21 / 18 ms to
# 1.8 / 17 / 15 ms (rnn / lstm / gru, one BLAS thread, 2-core machine; +-20 % noise).


def _rnn_forward(x_proj, wh, hs):
    """h_t = tanh(x_t Wx + b + h_{t-1} Wh), written into hs[t + 1]."""
    pre = np.empty_like(hs[0])
    for t in range(x_proj.shape[0]):
        np.matmul(hs[t], wh, out=pre)
        pre += x_proj[t]
        np.tanh(pre, out=hs[t + 1])
    return None


def _rnn_backward(dh, wh, hs, cache):
    """da_t = dh_t (1 - h_t^2);  dh_{t-1} = da_t Wh^T."""
    da = 1.0 - hs[1:] * hs[1:]  # tanh' for every step; becomes da in place
    wh_t = np.ascontiguousarray(wh.T)  # a contiguous B operand: measured ~30 % faster matmul
    dh = dh.copy()
    for t in reversed(range(da.shape[0])):
        da[t] *= dh
        np.matmul(da[t], wh_t, out=dh)
    return da, da


def _lstm_forward(x_proj, wh, hs):
    """a = x_t Wx + b + h_{t-1} Wh = [a_i, a_f, a_g, a_o];  i, f, o = sigmoid, g = tanh;
    c_t = f c_{t-1} + i g;  h_t = o tanh(c_t)."""
    steps, batch, width = x_proj.shape
    hid = width // 4
    gates = np.empty_like(x_proj)  # activated [i, f, g, o] of every step
    cs = np.zeros((steps + 1, batch, hid), x_proj.dtype)  # cs[0] = c_0 = 0
    tanh_cs = np.empty((steps, batch, hid), x_proj.dtype)
    ig = np.empty((batch, hid), x_proj.dtype)
    for t in range(steps):
        act = gates[t]
        np.matmul(hs[t], wh, out=act)
        act += x_proj[t]
        i, f, g, o = (act[:, k * hid : (k + 1) * hid] for k in range(4))
        sigmoid(act[:, : 2 * hid], out=act[:, : 2 * hid])  # i and f, adjacent: one call
        np.tanh(g, out=g)
        sigmoid(o, out=o)
        np.multiply(f, cs[t], out=cs[t + 1])
        np.multiply(i, g, out=ig)
        cs[t + 1] += ig
        np.tanh(cs[t + 1], out=tanh_cs[t])
        np.multiply(o, tanh_cs[t], out=hs[t + 1])
    return gates, cs, tanh_cs


def _lstm_backward(dh, wh, hs, cache):
    """Going back through step t, with dc the gradient c_{t+1} sent to c_t:
    dc += dh o (1 - tanh(c_t)^2)             (h_t = o tanh(c_t))
    da_i = dc g i (1 - i);   da_f = dc c_{t-1} f (1 - f);   da_g = dc i (1 - g^2)
    da_o = dh tanh(c_t) o (1 - o);   dc_{t-1} = dc f;   dh_{t-1} = da Wh^T."""
    gates, cs, tanh_cs = cache
    steps, batch, width = gates.shape
    hid = width // 4
    i, f, g, o = (gates[..., k * hid : (k + 1) * hid] for k in range(4))  # (T, B, H) each
    # local[t] holds the factors that multiply dc (blocks i, f, g) or dh (block o); the loop
    # turns it into da in place. Written via (T, B, 4, H) so a block is a (T, B, H) view.
    local = np.empty_like(gates)
    blocks = local.reshape(steps, batch, 4, hid)
    np.multiply(g, i * (1.0 - i), out=blocks[:, :, 0])
    np.multiply(cs[:-1], f * (1.0 - f), out=blocks[:, :, 1])
    np.multiply(i, 1.0 - g * g, out=blocks[:, :, 2])
    np.multiply(tanh_cs, o * (1.0 - o), out=blocks[:, :, 3])
    dc_from_dh = o * (1.0 - tanh_cs * tanh_cs)

    wh_t = np.ascontiguousarray(wh.T)
    dh = dh.copy()
    dc = np.zeros_like(dh)  # nothing flows into c_T from after the last step
    for t in reversed(range(steps)):
        dc += dh * dc_from_dh[t]
        blocks[t, :, :3] *= dc[:, None, :]  # i, f, g
        blocks[t, :, 3] *= dh  # o
        dc *= f[t]
        np.matmul(local[t], wh_t, out=dh)
    return local, local


def _gru_forward(x_proj, wh, hs):
    """With [z, r, n] blocks of x_t Wx + b and of h_{t-1} Wh:
    z, r = sigmoid(x_z|r + (h Wh)_z|r);  n = tanh(x_n + r (h Wh)_n);  h_t = (1 - z) h + z n."""
    steps, batch, width = x_proj.shape
    hid = width // 3
    zr = np.empty((steps, batch, 2 * hid), x_proj.dtype)
    ns = np.empty((steps, batch, hid), x_proj.dtype)
    hn = np.empty((steps, batch, hid), x_proj.dtype)  # (h_{t-1} Wh)_n, needed for dr
    rec = np.empty((batch, width), x_proj.dtype)
    for t in range(steps):
        h = hs[t]
        np.matmul(h, wh, out=rec)
        rec += x_proj[t]  # only the z and r blocks use this sum ...
        sigmoid(rec[:, : 2 * hid], out=zr[t])
        z, r = zr[t, :, :hid], zr[t, :, hid:]
        np.subtract(rec[:, 2 * hid :], x_proj[t, :, 2 * hid :], out=hn[t])  # ... n needs it apart
        np.multiply(r, hn[t], out=ns[t])
        ns[t] += x_proj[t, :, 2 * hid :]
        np.tanh(ns[t], out=ns[t])
        # h_t = h + z (n - h): the same value as (1 - z) h + z n, one op fewer
        np.subtract(ns[t], h, out=hs[t + 1])
        hs[t + 1] *= z
        hs[t + 1] += h
    return zr, ns, hn


def _gru_backward(dh, wh, hs, cache):
    """Going back through step t (h = h_{t-1}):
    dn = dh z (1 - n^2);   dz = dh (n - h) z (1 - z);   dr = dn (h Wh)_n r (1 - r)
    the input projection gets [dz, dr, dn], the recurrent one [dz, dr, dn r], and
    dh_{t-1} = dh (1 - z) + [dz, dr, dn r] Wh^T."""
    zr, ns, hn = cache
    steps, batch, _ = zr.shape
    hid = dh.shape[1]
    z, r = zr[..., :hid], zr[..., hid:]
    # local factors for every step (see _lstm_backward); d_rec becomes the gradient in place
    d_rec = np.empty((steps, batch, 3 * hid), dh.dtype)
    np.multiply(ns - hs[:-1], z * (1.0 - z), out=d_rec[..., :hid])  # z: times dh
    np.multiply(hn, r * (1.0 - r), out=d_rec[..., hid : 2 * hid])  # r: times dn
    np.multiply(z, 1.0 - ns * ns, out=d_rec[..., 2 * hid :])  # n: times dh
    one_minus_z = 1.0 - z
    dn = np.empty((steps, batch, hid), dh.dtype)  # dn before the r scaling, for d_in

    wh_t = np.ascontiguousarray(wh.T)
    dh = dh.copy()
    through_wh = np.empty_like(dh)
    for t in reversed(range(steps)):
        step = d_rec[t]
        step[:, :hid] *= dh
        np.multiply(step[:, 2 * hid :], dh, out=dn[t])
        step[:, hid : 2 * hid] *= dn[t]
        np.multiply(dn[t], r[t], out=step[:, 2 * hid :])
        np.matmul(step, wh_t, out=through_wh)
        dh *= one_minus_z[t]
        dh += through_wh
    d_in = np.concatenate([d_rec[..., : 2 * hid], dn], axis=-1)
    return d_in, d_rec


_CELLS: dict[str, tuple[Callable, Callable]] = {
    "rnn": (_rnn_forward, _rnn_backward),
    "lstm": (_lstm_forward, _lstm_backward),
    "gru": (_gru_forward, _gru_backward),
}


def recurrent_logits(cell: str, params: Params, x: np.ndarray) -> np.ndarray:
    """Inference only: class logits (B, K) for x (B, T, C), through the same forward pass
    as `recurrent_loss_and_grads` (which also keeps what backward needs)."""
    wx, wh, b = params["cell.input_weight"], params["cell.hidden_weight"], params["cell.bias"]
    batch, steps, channels = x.shape
    x_tm = np.ascontiguousarray(x.transpose(1, 0, 2)).reshape(steps * batch, channels)
    x_proj = x_tm @ wx
    x_proj += b
    hs = np.zeros((steps + 1, batch, wh.shape[0]), np.result_type(x, wh))
    _CELLS[cell][0](x_proj.reshape(steps, batch, -1), wh, hs)
    a1 = np.maximum(hs[-1] @ params["head.0.weight"] + params["head.0.bias"], 0)
    a2 = np.maximum(a1 @ params["head.1.weight"] + params["head.1.bias"], 0)
    return a2 @ params["head.2.weight"] + params["head.2.bias"]


def recurrent_step(
    cell: str, params: Params, optimizer: SGDMomentum, x: np.ndarray, targets: np.ndarray
) -> float:
    """One training step (loss + gradients + update in place); returns the loss before it."""
    loss, grads = recurrent_loss_and_grads(cell, params, x, targets)
    optimizer.step(params, grads)
    return loss
