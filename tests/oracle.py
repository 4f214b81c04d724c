"""The models' losses and gradients derived by hand, in plain NumPy: the correctness
oracle the engine's models are tested against (tests/test_models_vs_oracle.py), itself
checked against finite differences (tests/test_oracle.py).

Written to be read, not to be fast: one formula a line, every intermediate kept, the
recurrent cells stepped through time in Python loops. (benchmarks/reference.py is the
tuned hand-derived step the engine is timed against.) Parameters are dicts of arrays
keyed as the models' ``state_dict()``; each function returns (loss, gradients), the
gradients keyed the same way. Work in float64.
"""

from __future__ import annotations

import numpy as np


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(z / 2))  # = 1 / (1 + exp(-z)), without overflow


def cross_entropy(logits: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean of -log softmax(logits)[n, targets[n]] over the N rows, and its gradient
    with respect to the logits (N, K): (softmax - one_hot) / N."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(len(targets))
    grad = np.exp(log_p)
    grad[rows, targets] -= 1
    return float(-log_p[rows, targets].mean()), grad / len(targets)


def autoencoder(p: dict, x: np.ndarray, lam: float, beta: float, rho: float):
    """J of models.SparseAutoencoder for x (N, I): reconstruction, weight decay and the
    sparsity penalty beta sum_b KL(rho || q_b), q = the mean hidden activation (H,)."""
    n = len(x)
    h = sigmoid(x @ p["encoder.weight"] + p["encoder.bias"])  # (N, H)
    o = sigmoid(h @ p["decoder.weight"] + p["decoder.bias"])  # (N, I)
    q = h.mean(axis=0)
    kl = rho * np.log(rho / q) + (1 - rho) * np.log((1 - rho) / (1 - q))
    squares = (p["encoder.weight"] ** 2).sum() + (p["decoder.weight"] ** 2).sum()
    loss = ((x - o) ** 2).sum() / (2 * n) + lam / 2 * squares + beta * kl.sum()

    d_o = (o - x) / n
    d_a2 = d_o * o * (1 - o)  # through the output sigmoid
    d_h = d_a2 @ p["decoder.weight"].T + beta * (-rho / q + (1 - rho) / (1 - q)) / n
    d_a1 = d_h * h * (1 - h)
    grads = {
        "encoder.weight": x.T @ d_a1 + lam * p["encoder.weight"],
        "encoder.bias": d_a1.sum(axis=0),
        "decoder.weight": h.T @ d_a2 + lam * p["decoder.weight"],
        "decoder.bias": d_a2.sum(axis=0),
    }
    return float(loss), grads


def language_model(p: dict, context: np.ndarray, targets: np.ndarray):
    """Cross-entropy of models.FourGramLanguageModel: context (N, 3) word indices ->
    embeddings side by side (N, 3D) -> sigmoid layer (N, P) -> logits (N, V)."""
    n, words = context.shape
    embedding = p["embedding.weight"]
    e = embedding[context].reshape(n, -1)
    s = sigmoid(e @ p["hidden.weight"] + p["hidden.bias"])
    loss, d_logits = cross_entropy(s @ p["output.weight"] + p["output.bias"], targets)

    d_s = d_logits @ p["output.weight"].T
    d_a = d_s * s * (1 - s)
    d_e = (d_a @ p["hidden.weight"].T).reshape(n, words, -1)
    d_embedding = np.zeros_like(embedding)
    np.add.at(d_embedding, context, d_e)  # a word used several times: its rows add up
    grads = {
        "embedding.weight": d_embedding,
        "hidden.weight": e.T @ d_a,
        "hidden.bias": d_a.sum(axis=0),
        "output.weight": s.T @ d_logits,
        "output.bias": d_logits.sum(axis=0),
    }
    return loss, grads


def sequence_classifier(cell: str, p: dict, x: np.ndarray, targets: np.ndarray):
    """Cross-entropy of models.SequenceClassifier (without standardisation): the cell
    ("rnn", "lstm" or "gru", equations in models/recurrent.py) over x (B, T, C), then
    the head: ReLU layers and a last linear layer to the logits (B, K)."""
    wx, wh, b = p["cell.input_weight"], p["cell.hidden_weight"], p["cell.bias"]
    steps, size = x.shape[1], wh.shape[0]
    hs = [np.zeros((len(x), size))]  # h_0 ... h_T
    cs = [np.zeros((len(x), size))]  # the LSTM's c_0 ... c_T
    saved = []  # each step's gates
    for t in range(steps):
        h = hs[-1]
        if cell == "rnn":
            hs.append(np.tanh(x[:, t] @ wx + b + h @ wh))
        elif cell == "lstm":
            a = np.split(x[:, t] @ wx + b + h @ wh, 4, axis=1)
            i, f, g, o = sigmoid(a[0]), sigmoid(a[1]), np.tanh(a[2]), sigmoid(a[3])
            cs.append(f * cs[-1] + i * g)
            hs.append(o * np.tanh(cs[-1]))
            saved.append((i, f, g, o))
        else:
            ax, ah = np.split(x[:, t] @ wx + b, 3, axis=1), np.split(h @ wh, 3, axis=1)
            z, r = sigmoid(ax[0] + ah[0]), sigmoid(ax[1] + ah[1])
            candidate = np.tanh(ax[2] + r * ah[2])
            hs.append((1 - z) * h + z * candidate)
            saved.append((z, r, candidate, ah[2]))

    layers = sorted({int(key.split(".")[1]) for key in p if key.startswith("head.")})
    inputs = [hs[-1]]  # each head layer's input
    for k in layers[:-1]:
        inputs.append(np.maximum(inputs[-1] @ p[f"head.{k}.weight"] + p[f"head.{k}.bias"], 0))
    last = layers[-1]
    loss, d_out = cross_entropy(
        inputs[-1] @ p[f"head.{last}.weight"] + p[f"head.{last}.bias"], targets
    )

    grads = {}
    for k in reversed(layers):
        layer_input = inputs[k]
        grads[f"head.{k}.weight"] = layer_input.T @ d_out
        grads[f"head.{k}.bias"] = d_out.sum(axis=0)
        d_in = d_out @ p[f"head.{k}.weight"].T
        d_out = d_in * (layer_input > 0) if k > 0 else d_in  # through the ReLU before it

    dh, dc = d_out, np.zeros_like(d_out)
    d_wx, d_wh, d_b = np.zeros_like(wx), np.zeros_like(wh), np.zeros_like(b)
    for t in reversed(range(steps)):
        h_before = hs[t]
        if cell == "rnn":
            d_x_part = d_h_part = dh * (1 - hs[t + 1] ** 2)
            dh_direct = 0
        elif cell == "lstm":
            i, f, g, o = saved[t]
            tanh_c = np.tanh(cs[t + 1])
            dc = dc + dh * o * (1 - tanh_c**2)
            d_gates = [dc * g * i * (1 - i), dc * cs[t] * f * (1 - f), dc * i * (1 - g**2)]
            d_gates.append(dh * tanh_c * o * (1 - o))
            d_x_part = d_h_part = np.concatenate(d_gates, axis=1)
            dc, dh_direct = dc * f, 0
        else:
            z, r, candidate, h_n = saved[t]
            d_candidate = dh * z * (1 - candidate**2)
            d_z = dh * (candidate - h_before) * z * (1 - z)
            d_r = d_candidate * h_n * r * (1 - r)
            d_x_part = np.concatenate([d_z, d_r, d_candidate], axis=1)
            d_h_part = np.concatenate([d_z, d_r, d_candidate * r], axis=1)
            dh_direct = dh * (1 - z)
        d_wx += x[:, t].T @ d_x_part
        d_b += d_x_part.sum(axis=0)
        d_wh += h_before.T @ d_h_part
        dh = dh_direct + d_h_part @ wh.T
    grads.update({"cell.input_weight": d_wx, "cell.hidden_weight": d_wh, "cell.bias": d_b})
    return loss, grads
