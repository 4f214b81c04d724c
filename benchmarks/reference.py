"""Hand-derived NumPy reference for one training step of each of the five models.

Every function here is forward + backward written out by hand, with no autograd: the
*speed* reference, what plain NumPy manages for the same arithmetic as the engine's
models (same parameter names and layouts, same loss). Its gradients are checked against
finite differences and against the plain oracle of the tests (tests/oracle.py, which the
engine's models are tested against) in ``tests/test_benchmarks_reference.py``.

Conventions shared by all models:

- rows are samples; a dense layer is ``x @ W + b`` with ``W`` of shape (in, out) (the
  recurrent loops work on transposed arrays inside, see `recurrent_loss_and_grads`);
- the dtype follows the inputs (float32 in, float32 out; float64 in, float64 out): only
  Python scalars meet arrays, and NumPy 2 keeps those "weak", so nothing is upcast;
- losses are means over the batch and are returned as Python floats;
- ``*_loss_and_grads`` return ``(loss, grads)``, ``grads`` a dict with the params' keys.

Notation in comments: ``dX`` is dJ/dX for the scalar loss J.

Speed: this is the floor the engine is measured against, so it is written the fastest
way we found in NumPy (in place, preallocated scratch, local derivatives computed in the
forward pass, one product per weight gradient); "How the hand-derived reference is made
fast" in docs/performance.md lists the choices and their measured effect. The recurrent
steps are ~150 small (128 x 32 x G 128) matmuls each way: with a multi-threaded BLAS on a
machine whose cores are busy with anything else, those calls can become 10-40x slower
(measured: LSTM step 60 ms -> 2.2 s on 2 shared cores). For stable figures pin the BLAS
to one thread (``python -m benchmarks`` does, by default).
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
SLOPE_CHUNK = 16  # recurrent steps whose tanh' is computed together (see `_chunks`)


# --------------------------------------------------------------------------- helpers


def sigmoid(
    z: np.ndarray,
    out: np.ndarray | None = None,
    slope: np.ndarray | None = None,
    work: np.ndarray | None = None,
) -> np.ndarray:
    """Logistic function 1 / (1 + e^-z), with full relative precision in both tails.

    With e = exp(-|z|) and r = 1 / (1 + e): sigmoid(z) = r for z >= 0 and e r for z < 0
    (e never overflows, and e r keeps its relative precision far into the left tail,
    where 0.5 tanh(z / 2) + 0.5 rounds to 0). ``slope`` (optional) receives the derivative
    sigmoid(z) sigmoid(-z), which is (e r) r on both sides. This is the engine's
    formulation, the same operations in the same order: the values agree bit for bit.

    ``out``, ``slope`` and ``work`` (scratch) are arrays of z's shape and dtype, made when
    not given; ``out`` may be ``z`` itself. Returns ``out``.
    """
    work = np.empty_like(z) if work is None else work
    out = np.empty_like(z) if out is None else out
    e = np.abs(z, out=work)
    np.greater_equal(z, 0, out=out)  # 1 or 0; the last read of z, so out may be z
    np.negative(e, out=e)
    np.exp(e, out=e)
    # where(z >= 0, r, e r) as max(e, [z >= 0]) r: 1 r or e r, the same values bit for
    # bit, without a data-dependent branch (copyto(where=) on a random mask: ~6x slower)
    np.maximum(e, out, out=out)
    r = np.add(e, 1, out=work if slope is None else slope)
    np.reciprocal(r, out=r)
    out *= r
    if slope is not None:
        er = np.multiply(e, r, out=e)
        np.multiply(er, r, out=slope)
    return out


def tanh_slope(
    z: np.ndarray, out: np.ndarray | None = None, work: np.ndarray | None = None
) -> np.ndarray:
    """tanh'(z) = 1 - tanh(z)^2 = sech(z)^2, with full relative precision in both tails.

    With e = exp(-|z|): sech(z) = 2 e / (1 + e^2), computed as 4 (e / (1 + e^2))^2. Where
    tanh(z) rounds to +-1 (float32: from |z| ~ 9 on, where sech(z)^2 is 6e-8), 1 - tanh(z)^2
    is exactly 0; nothing here overflows, and no intermediate is far smaller than the
    result. This is the engine's formulation, the same operations in the same order:
    the values agree bit for bit.

    ``out`` and ``work`` (scratch) are arrays of z's shape and dtype, made when not given;
    ``out`` may be ``z`` itself. Returns ``out``.
    """
    work = np.empty_like(z) if work is None else work
    e = np.abs(z, out=out)
    np.negative(e, out=e)
    np.exp(e, out=e)
    square = np.multiply(e, e, out=work)
    square += 1
    half_sech = np.divide(e, square, out=e)
    np.multiply(half_sech, half_sech, out=half_sech)
    half_sech *= 4
    return half_sech


class _Workspace:
    """Scratch arrays kept from one call to the next, one per name, remade when the
    shape or dtype changes.

    Why: a recurrent step needs several arrays of T x (G) H x B (up to ~10 MB each), the
    language model a few of N x V. Made afresh on every call, their pages are mapped and
    zeroed again each time (measured: 200-5,500 page faults per step). Only scratch lives
    here: every array a function returns is its own. Not thread-safe.
    """

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        array = self._arrays.get(name)
        if array is None or array.shape != shape or array.dtype != dtype:
            array = self._arrays[name] = np.empty(shape, dtype)
        return array


_WORKSPACE = _Workspace()


def softmax_cross_entropy(logits: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of integer ``targets`` (N,) under ``logits`` (N, K), and dlogits.

    log p = z - max(z) - log sum exp(z - max(z)): the max shift keeps exp from overflowing.
    dJ/dz = (softmax(z) - onehot(target)) / N. Works in place: ``logits`` becomes dlogits.
    """
    n = logits.shape[0]
    rows = np.arange(n)
    logits -= np.maximum.reduce(logits, axis=1, keepdims=True)
    shifted_target = logits[rows, targets]
    exp = np.exp(logits, out=logits)
    sum_exp = np.add.reduce(exp, axis=1, keepdims=True)
    loss = float(np.add.reduce(np.log(sum_exp[:, 0]) - shifted_target)) / n
    exp *= np.reciprocal(sum_exp * n)  # softmax / N, in one pass over the (N, K) array
    exp[rows, targets] -= 1.0 / n
    return loss, exp


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
    L2 norm is at most ``clip_norm`` before the update (optional; meant for vanilla RNNs).
    """

    def __init__(self, lr: float, momentum: float, clip_norm: float | None = None):
        self.lr = lr
        self.momentum = momentum
        self.clip_norm = clip_norm
        self.velocity: Params = {}
        self._scaled: Params = {}  # lr g, per parameter: no temporary per step

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
                self._scaled[name] = np.empty_like(p)
            v *= self.momentum
            v -= np.multiply(grads[name], self.lr * scale, out=self._scaled[name])
            p += v


# --------------------------------------------------------------------------- experiment 1


def init_autoencoder(
    hidden_size: int, rng: np.random.Generator, dtype=np.float32, input_size: int = 256
) -> Params:
    """Params of the sparse autoencoder input_size -> hidden_size -> input_size.

    encoder.weight (I, H), encoder.bias (H,), decoder.weight (H, I), decoder.bias (I,),
    all U(-w0, w0) with w0 = sqrt(6 / (I + H)) (biases included).
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

    # forward, keeping each layer's sigmoid' for backward (in place: no temporaries)
    h = x @ w1
    h += b1
    slope1 = np.empty_like(h)
    sigmoid(h, out=h, slope=slope1)
    o = h @ w2
    o += b2
    slope2 = np.empty_like(o)
    sigmoid(o, out=o, slope=slope2)
    q_raw = np.add.reduce(h, axis=0)  # (cheaper than h.mean(), a Python-level wrapper)
    q_raw *= 1.0 / n
    q = np.minimum(np.maximum(q_raw, CLIP_LOW), 1.0 - CLIP_LOW)
    diff = np.subtract(o, x, out=o)
    reconstruction = 0.5 / n * float(np.vdot(diff, diff))
    decay = 0.5 * lam * (float(np.vdot(w1, w1)) + float(np.vdot(w2, w2)))
    kl = rho * np.log(rho / q) + (1.0 - rho) * np.log((1.0 - rho) / (1.0 - q))
    loss = reconstruction + decay + beta * float(np.add.reduce(kl))

    # backward through the decoder: dJ/do = (o - x) / N
    dz2 = np.multiply(diff, slope2, out=slope2)
    dz2 *= 1.0 / n
    dw2 = h.T @ dz2
    dw2 += lam * w2
    db2 = np.add.reduce(dz2, axis=0)

    # dh gets the reconstruction path plus the sparsity path. d KL / dq = -rho/q +
    # (1-rho)/(1-q); the clip passes the gradient only where it left q as it was; dq/dh
    # = 1/N for every row, so that term is the same (H,) row broadcast over the batch.
    dq = (1.0 - rho) / (1.0 - q)
    dq -= rho / q
    dq *= q == q_raw
    dq *= beta / n
    dh = dz2 @ w2.T
    dh += dq
    dz1 = np.multiply(dh, slope1, out=slope1)
    dw1 = x.T @ dz1
    dw1 += lam * w1
    db1 = np.add.reduce(dz1, axis=0)

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
    """Params of the 4-gram LM, all N(0, 0.01^2).

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
    get, dtype = _WORKSPACE.get, np.result_type(emb, wh, wo)

    # forward: E[context] is (N, 3, D); its row-major reshape *is* the concatenation
    e = np.take(emb, context, axis=0, out=get("lm.e", (n, width, dim), emb.dtype))
    e = e.reshape(n, width * dim)
    h = np.matmul(e, wh, out=get("lm.h", (n, wh.shape[1]), dtype))
    h += bh
    slope = get("lm.slope", h.shape, dtype)
    sigmoid(h, out=h, slope=slope, work=get("lm.work", h.shape, dtype))
    logits = np.matmul(h, wo, out=get("lm.logits", (n, vocab), dtype))
    logits += bo
    loss, dlogits = softmax_cross_entropy(logits, targets)

    # backward
    dwo = h.T @ dlogits
    dbo = np.add.reduce(dlogits, axis=0)
    dz = np.matmul(dlogits, wo.T, out=get("lm.dz", h.shape, dtype))
    dz *= slope
    dwh = e.T @ dz
    dbh = np.add.reduce(dz, axis=0)
    # de (N, 3D) -> (3N, D), one row per looked-up index, in the same order as context.ravel()
    de = np.matmul(dz, wh.T, out=get("lm.de", e.shape, dtype)).reshape(n * width, dim)
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
    _check_cell(cell)
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
    grads["head.2.bias"] = np.add.reduce(dlogits, axis=0)
    dz2 = dlogits @ w2.T
    dz2 *= a2 > 0  # ReLU' (taken as 0 at the kink)
    grads["head.1.weight"] = a1.T @ dz2
    grads["head.1.bias"] = np.add.reduce(dz2, axis=0)
    dz1 = dz2 @ w1.T
    dz1 *= a1 > 0
    grads["head.0.weight"] = h_last.T @ dz1
    grads["head.0.bias"] = np.add.reduce(dz1, axis=0)
    return loss, dz1 @ w0.T


def recurrent_loss_and_grads(
    cell: str, params: Params, x: np.ndarray, targets: np.ndarray
) -> tuple[float, Params]:
    """Mean cross-entropy of the recurrent classifier and its gradients (full BPTT).

    x (B, T, C) float, targets (B,) int in [0, K). h_0 = c_0 = 0; the head reads h_T.

    Layout, for speed: time-major and transposed (a column per sample), so that every
    gate block of a step is one contiguous (H, B) array. Slot t of ``xh`` (T + 1,
    C + 1 + H, B) holds [x_t; 1; h_{t-1}]: each step is one matmul of the stacked
    weights [Wx; b; Wh]^T with its slot (input projection and bias included), and after
    the backward loop one product of xh with the pre-activation gradients of all T
    steps gives dWx, db and dWh together.
    """
    _check_cell(cell)
    channels = x.shape[2]
    xh = _stacked_inputs(x, params)
    forward, backward = _CELLS[cell]
    cache = forward(params, xh, True)
    grads: Params = {}
    h_last = xh[-1, channels + 1 :].T
    loss, dh_last = _head_loss_and_grads(params, h_last, targets, grads)
    d_pre = backward(params, xh, cache, np.ascontiguousarray(dh_last.T))
    cell_grads = _cell_gradients(cell, xh, d_pre)
    grads["cell.input_weight"] = cell_grads[:channels]
    grads["cell.bias"] = cell_grads[channels]
    grads["cell.hidden_weight"] = cell_grads[channels + 1 :]
    return loss, {name: grads[name] for name in params}


def recurrent_logits(cell: str, params: Params, x: np.ndarray) -> np.ndarray:
    """Inference only: class logits (B, K) for x (B, T, C), through the same forward pass
    as `recurrent_loss_and_grads` without what only backward needs."""
    _check_cell(cell)
    xh = _stacked_inputs(x, params)
    _CELLS[cell][0](params, xh, False)
    h_last = xh[-1, x.shape[2] + 1 :].T
    a1 = np.maximum(h_last @ params["head.0.weight"] + params["head.0.bias"], 0)
    a2 = np.maximum(a1 @ params["head.1.weight"] + params["head.1.bias"], 0)
    return a2 @ params["head.2.weight"] + params["head.2.bias"]


def _check_cell(cell: str) -> None:
    if cell not in GATES:
        raise ValueError(f"cell must be one of {RECURRENT_CELLS}, got {cell!r}")


def _stacked_inputs(x: np.ndarray, params: Params) -> np.ndarray:
    """xh (T + 1, C + 1 + H, B): slot t is [x_t; 1; h_{t-1}] (a column per sample), with
    h_0 = 0; the forward pass fills the h rows of slots 1..T (slot T holds only h_T)."""
    batch, steps, channels = x.shape
    wh = params["cell.hidden_weight"]
    dtype = np.result_type(x, wh)
    xh = _WORKSPACE.get("xh", (steps + 1, channels + 1 + wh.shape[0], batch), dtype)
    np.copyto(xh[:steps, :channels], x.transpose(1, 2, 0))
    xh[:, channels] = 1
    xh[0, channels + 1 :] = 0
    return xh


def _stacked_weights(params: Params) -> np.ndarray:
    """[Wx; b; Wh]^T, (G H, C + 1 + H): the weights of one step's xh slot."""
    wx, b, wh = params["cell.input_weight"], params["cell.bias"], params["cell.hidden_weight"]
    return np.ascontiguousarray(np.concatenate([wx, b[None], wh]).T)


def _cell_gradients(cell: str, xh: np.ndarray, d_pre: np.ndarray) -> np.ndarray:
    """[dWx; db; dWh] (C + 1 + H, G H) from d_pre (T, G' H, B), the pre-activation
    gradients of every step: one product over all T B columns.

    Both operands are first copied to (rows, T, B), so that a row holds every column of
    every step (LSTM, float32: ~3.5 ms). Keeping them in that layout throughout, so that
    no copy is needed, made the per-step ops strided and cost more (measured: ~+5 ms)."""
    steps, width, batch = d_pre.shape
    x_all = _WORKSPACE.get("x_all", (xh.shape[1], steps, batch), xh.dtype)
    np.copyto(x_all, xh[:steps].transpose(1, 0, 2))
    d_all = _WORKSPACE.get("d_all", (width, steps, batch), xh.dtype)
    np.copyto(d_all, d_pre.transpose(1, 0, 2))
    x_all, d_all = x_all.reshape(xh.shape[1], -1), d_all.reshape(width, -1)
    if cell == "rnn":
        return x_all @ d_all.T
    hid = width // 4
    if cell == "lstm":  # back from the loop's gate order [o, i, f, g] to [i, f, g, o]
        return np.roll(x_all @ d_all.T, -hid, axis=1)
    # gru: d_pre[t] = [dz, dr, dn r, dn]; dWh takes dn r, dWx and db take dn
    grads = x_all @ d_all[: 3 * hid].T
    inputs = xh.shape[1] - hid
    np.matmul(x_all[:inputs], d_all[3 * hid :].T, out=grads[:inputs, 2 * hid :])
    return grads


# Each cell is a (forward, backward) pair over xh (see `recurrent_loss_and_grads`):
#   forward(params, xh, train) -> cache: fills the h rows of xh[1:]; with train, also
#     the *local* derivative factors of every step (below);
#   backward(params, xh, cache, dh_T) -> d_pre (T, G H, B) (GRU: (T, 4 H, B), see there):
#     dJ/d(pre-activations), for the weight-gradient product.
# Per step the backward does only what depends on the incoming gradient. Every local
# derivative (sigmoid' = sigmoid(z) sigmoid(-z) and tanh' = sech(z)^2, both from
# exp(-|z|) of the pre-activation z as in the engine, and the forward values that multiply
# them) depends on forward values only, so the forward computes it right after the
# values it needs, while they are in cache, into one slot per step of a
# (T, ., B) array; the loop multiplies it by dh or dc in place and hands it to the
# matmul. (Computing them for all T steps at once after the forward pass reads every
# forward value back from memory: measured slower at these sizes. The RNN and the GRU
# compute tanh' a few steps at a time: see `_chunks`.)


def _chunks(steps: int) -> list[slice]:
    """range(steps) cut into slices of SLOPE_CHUNK steps (the last one may be shorter).

    Why: the RNN's and the GRU's tanh' are computed a chunk of steps at a time, from the
    pre-activations kept for them, right after the chunk's forward steps (still in
    cache): 8 calls per chunk, not per step. Measured against step by step: RNN training
    step 9 % faster, GRU ~1 %; all T steps at once after the loop: RNN ~5 % slower again.
    The LSTM (one call per step for a_g and c_t, see there) gains nothing from it."""
    return [slice(start, min(start + SLOPE_CHUNK, steps)) for start in range(0, steps, SLOPE_CHUNK)]


def _rnn_forward(params, xh, train):
    """h_t = tanh(a_t), a_t = [Wx; b; Wh]^T [x_t; 1; h_{t-1}], written into xh[t + 1];
    with train, returns tanh'(a_t) of every step (T, H, B), computed by `_chunks`."""
    w = _stacked_weights(params)
    hs = xh[:, -w.shape[0] :]
    steps, get = xh.shape[0] - 1, _WORKSPACE.get
    pre = get("rnn.pre", hs[1:].shape, xh.dtype) if train else hs[1:]
    work = get("rnn.work", pre[:SLOPE_CHUNK].shape, xh.dtype) if train else None
    for chunk in _chunks(steps):
        for t in range(chunk.start, chunk.stop):
            np.matmul(w, xh[t], out=pre[t])
            np.tanh(pre[t], out=hs[t + 1])
        if train:
            tanh_slope(pre[chunk], out=pre[chunk], work=work[: chunk.stop - chunk.start])
    return pre if train else None


def _rnn_backward(params, xh, slope, dh):
    """da_t = dh_t tanh'(a_t);  dh_{t-1} = Wh da_t (in place: slope becomes da)."""
    wh = params["cell.hidden_weight"]
    for t in reversed(range(slope.shape[0])):
        slope[t] *= dh
        np.matmul(wh, slope[t], out=dh)
    return slope


def _lstm_forward(params, xh, train):
    """[a_i; a_f; a_g; a_o] = [Wx; b; Wh]^T [x_t; 1; h_{t-1}];  i, f, o = sigmoid,
    g = tanh;  c_t = f c_{t-1} + i g;  h_t = o tanh(c_t).

    The loop keeps the gate blocks in the order [o, i, f, g] (the weights rolled by one
    block), so that the three sigmoids are one call on a (3 H, B) block and the blocks
    that backward multiplies by dc ([i, f, g]) are adjacent. It stores per step only
    what backward reads, in one (6 H, B) slot (see `_lstm_backward`); the rest lives in
    small arrays that stay in cache.
    """
    steps, batch = xh.shape[0] - 1, xh.shape[2]
    hid = params["cell.hidden_weight"].shape[0]
    w = np.roll(_stacked_weights(params), hid, axis=0)  # [i, f, g, o] -> [o, i, f, g]
    hs = xh[:, -hid:]
    get, dtype = _WORKSPACE.get, xh.dtype
    # [a_o; a_i; a_f; a_g; c_t]: c_t is copied next to a_g, for one tanh' call on both
    pre = get("lstm.pre", (5 * hid, batch), dtype)
    slope, work = (get(f"lstm.{n}", (3 * hid, batch), dtype) for n in ("slope", "work"))
    tmp = get("lstm.tmp", (hid, batch), dtype)
    tanh_slopes = get("lstm.tanh_slopes", (2 * hid, batch), dtype)  # [a_g; c_t]'s
    # u = [tanh(c_t); g; c_{t-1}], in the order of the sigmoids whose slopes they multiply;
    # two of them in turn, as c_t is the next step's c_{t-1}
    u_pair = get("lstm.u", (2, 3 * hid, batch), dtype)
    u_pair[0, 2 * hid :] = 0
    if train:
        saved = get("lstm.saved", (steps, 6 * hid, batch), dtype)
    else:
        saved = get("lstm.slot", (1, 6 * hid, batch), dtype)  # one slot for every step
    for t in range(steps):
        u, u_next = u_pair[t % 2], u_pair[(t + 1) % 2]
        tanh_c, g, c_prev, c = u[:hid], u[hid : 2 * hid], u[2 * hid :], u_next[2 * hid :]
        slot = saved[t if train else 0]
        np.matmul(w, xh[t], out=pre[: 4 * hid])
        # [o; i; f] into rows 2H..5H: f stays there for backward, i and o are overwritten
        sig = slot[2 * hid : 5 * hid]
        sigmoid(pre[: 3 * hid], out=sig, slope=slope if train else None, work=work)
        o, i, f = slot[2 * hid : 3 * hid], slot[3 * hid : 4 * hid], slot[4 * hid : 5 * hid]
        np.tanh(pre[3 * hid : 4 * hid], out=g)
        np.multiply(f, c_prev, out=c)
        np.multiply(i, g, out=tmp)
        c += tmp
        np.tanh(c, out=tanh_c)
        np.multiply(o, tanh_c, out=hs[t + 1])
        if train:
            np.copyto(pre[4 * hid :], c)
            tanh_slope(pre[3 * hid :], out=tanh_slopes, work=work[: 2 * hid])
            np.multiply(o, tanh_slopes[hid:], out=slot[5 * hid :])  # tanh'(c_t)
            np.multiply(i, tanh_slopes[:hid], out=i)  # tanh'(a_g)
            np.multiply(slope, u, out=slot[: 3 * hid])  # o is dead: its rows are reused
    return saved if train else None


def _lstm_backward(params, xh, saved, dh):
    """Going back through step t, with dc the gradient c_{t+1} sent to c_t:
    dc += dh o tanh'(c_t);   da_o = dh o' tanh(c_t);
    [da_i; da_f; da_g] = dc [i' g; f' c_{t-1}; i tanh'(a_g)];
    dc_{t-1} = dc f;   dh_{t-1} = Wh da   (blocks in the loop's order [o, i, f, g]).

    saved[t] = [o' tanh(c_t); i' g; f' c_{t-1}; i tanh'(a_g); f; o tanh'(c_t)]: its
    first four blocks, times dh (o) or dc (i, f, g), become da in place.
    """
    steps, width, batch = saved.shape
    hid = width // 6
    blocks = saved.reshape(steps, 6, hid, batch)  # a view: blocks[t, k] is block k
    wh = np.roll(params["cell.hidden_weight"], hid, axis=1)
    dc = np.zeros_like(dh)  # nothing flows into c_T from after the last step
    tmp = np.empty_like(dh)
    for t in reversed(range(steps)):
        np.multiply(dh, blocks[t, 5], out=tmp)
        dc += tmp
        blocks[t, 0] *= dh
        blocks[t, 1:4] *= dc
        dc *= blocks[t, 4]  # f
        np.matmul(wh, saved[t, : 4 * hid], out=dh)
    return saved[:, : 4 * hid]


def _gru_forward(params, xh, train):
    """With [z; r; n] blocks:  z, r = sigmoid(Wx^T x + b + Wh^T h_{t-1})_{z, r};
    n = tanh(a_n), a_n = (Wx^T x + b)_n + r (Wh^T h_{t-1})_n;  h_t = (1 - z) h_{t-1} + z n.

    One matmul per step gives [a_z; a_r; (Wh^T h)_n]: the stacked weights' n block has
    zero columns for x and b, whose n part is one product for all steps beforehand.
    """
    steps, width, batch = xh.shape[0] - 1, xh.shape[1], xh.shape[2]
    hid = params["cell.hidden_weight"].shape[0]
    inputs = width - hid  # C + 1
    get, dtype = _WORKSPACE.get, xh.dtype
    w = _stacked_weights(params)
    x_n = get("gru.x_n", (steps, hid, batch), dtype)
    np.matmul(w[2 * hid :, :inputs], xh[:steps, :inputs], out=x_n)
    w[2 * hid :, :inputs] = 0
    hs = xh[:, -hid:]
    pre = get("gru.pre", (3 * hid, batch), dtype)
    zr = get("gru.zr", (steps, 2 * hid, batch), dtype)
    slope, work = (get(f"gru.{n}", (2 * hid, batch), dtype) for n in ("slope", "work"))
    n, tmp = (get(f"gru.{k}", (hid, batch), dtype) for k in ("n", "tmp"))
    # local[t] = [z' (n - h_{t-1}); r' (Wh^T h)_n; z tanh'(a_n); -]: times dh, dn, dh;
    # backward turns it into [dz; dr; dn r; dn] in place
    local = get("gru.local", (steps, 4 * hid, batch), dtype) if train else None
    chunk_work = get("gru.chunk_work", x_n[:SLOPE_CHUNK].shape, dtype) if train else None
    for chunk in _chunks(steps):
        for t in range(chunk.start, chunk.stop):
            np.matmul(w, xh[t], out=pre)
            sigmoid(pre[: 2 * hid], out=zr[t], slope=slope if train else None, work=work)
            z, r = zr[t, :hid], zr[t, hid:]
            h, h_wh_n = hs[t], pre[2 * hid :]
            a_n = x_n[t]  # x_n[t] becomes a_n, kept for tanh'
            a_n += np.multiply(r, h_wh_n, out=tmp)
            np.tanh(a_n, out=n)
            # n - h goes where a_r was (used up), next to (Wh^T h)_n: one call for both
            n_minus_h = np.subtract(n, h, out=pre[hid : 2 * hid])
            np.multiply(z, n_minus_h, out=hs[t + 1])
            hs[t + 1] += h
            if train:
                np.multiply(slope, pre[hid:], out=local[t, : 2 * hid])
        if train:
            a_n = x_n[chunk]
            tanh_slope(a_n, out=a_n, work=chunk_work[: chunk.stop - chunk.start])
            np.multiply(zr[chunk, :hid], a_n, out=local[chunk, 2 * hid : 3 * hid])
    return zr, local


def _gru_backward(params, xh, cache, dh):
    """Going back through step t (h = h_{t-1}):
    dz = dh z' (n - h);   dn = dh z tanh'(a_n);   dr = dn r' (Wh^T h)_n;
    the recurrent product gets [dz; dr; dn r] (its n block is scaled by r), the input
    projection [dz; dr; dn]; dh_{t-1} = dh (1 - z) + Wh [dz; dr; dn r]."""
    zr, local = cache
    steps, width, batch = local.shape
    hid = width // 4
    one_minus_z = _WORKSPACE.get("gru.one_minus_z", (steps, hid, batch), dh.dtype)
    np.subtract(1, zr[:, :hid], out=one_minus_z)
    wh = params["cell.hidden_weight"]
    through_wh = np.empty_like(dh)
    for t in reversed(range(steps)):
        loc = local[t]
        dn = loc[3 * hid :]
        loc[:hid] *= dh
        np.multiply(loc[2 * hid : 3 * hid], dh, out=dn)
        loc[hid : 2 * hid] *= dn
        np.multiply(dn, zr[t, hid:], out=loc[2 * hid : 3 * hid])
        np.matmul(wh, loc[: 3 * hid], out=through_wh)
        dh *= one_minus_z[t]
        dh += through_wh
    return local


_CELLS: dict[str, tuple[Callable, Callable]] = {
    "rnn": (_rnn_forward, _rnn_backward),
    "lstm": (_lstm_forward, _lstm_backward),
    "gru": (_gru_forward, _gru_backward),
}


def recurrent_step(
    cell: str, params: Params, optimizer: SGDMomentum, x: np.ndarray, targets: np.ndarray
) -> float:
    """One training step (loss + gradients + update in place); returns the loss before it."""
    loss, grads = recurrent_loss_and_grads(cell, params, x, targets)
    optimizer.step(params, grads)
    return loss
