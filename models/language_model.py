"""4-gram word-embedding language model (experiment 2).

Three context words -> one shared embedding (a plain lookup) -> the three vectors
concatenated (3D) -> P sigmoid units (dropout while training, if asked) -> a softmax
over the vocabulary.
"""

from __future__ import annotations

import numbers

import numpy as np

from tinygrad_ee import Tensor, dropout, nn, no_grad


class FourGramLanguageModel(nn.Module):
    """Predicts the fourth word from three. Word indices are 0-based here.

    Weights and biases start from N(0, 0.01^2).
    """

    def __init__(
        self,
        vocab_size: int = 250,
        embedding_dim: int = 32,
        hidden_size: int = 256,
        context_size: int = 3,
        device: str = "cpu",
        dtype: str = "float32",
        dropout: float = 0.0,
    ) -> None:
        if not 0 <= dropout < 1:
            raise ValueError(f"language model: dropout must lie in [0, 1), got {dropout!r}")
        self.context_size, self.dropout = context_size, dropout
        common = {"init": "normal", "std": 0.01, "device": device, "dtype": dtype}
        self.embedding = nn.Embedding(vocab_size, embedding_dim, **common)
        self.hidden = nn.Linear(context_size * embedding_dim, hidden_size, **common)
        self.output = nn.Linear(hidden_size, vocab_size, **common)

    def logits(self, context: Tensor, key: Tensor | None = None) -> Tensor:
        """context (N, 3) integer word indices -> next-word logits (N, vocab_size).

        With a ``key`` (one integer; training) and ``dropout`` > 0, each hidden unit is
        dropped with probability ``dropout`` (`tinygrad_ee.dropout`); without one, none."""
        if context.ndim != 2 or context.shape[1] != self.context_size:
            raise ValueError(
                f"language model: context must have shape (N, {self.context_size}), "
                f"got {context.shape}"
            )
        n = context.shape[0]
        vectors = self.embedding(context)  # (N, 3, D)
        joined = vectors.reshape(n, -1)  # the three vectors side by side: (N, 3D)
        hidden = self.hidden(joined).sigmoid()  # (N, P)
        if key is not None and self.dropout:
            hidden = dropout(hidden, key, p=self.dropout)
        return self.output(hidden)

    def log_probs(self, context: Tensor) -> Tensor:
        """(N, 3) -> log P(next word | context), (N, vocab_size)."""
        return self.logits(context).log_softmax(axis=1)

    def loss(self, context: Tensor, targets: Tensor, key: Tensor | None = None) -> Tensor:
        """Mean cross-entropy of targets (N,) given context (N, 3) (``key``: `logits`)."""
        return nn.cross_entropy(self.logits(context, key), targets)

    def top_k(self, context: Tensor, k: int = 10):
        """The k most probable next words, most probable first.

        Returns host arrays (indices (N, k) int, probabilities (N, k) float). ``k`` must
        be a positive integer; a k above the vocabulary size gives all V words, (N, V).
        """
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError(f"top_k: k must be a positive integer, got {k!r}")
        with no_grad():
            probabilities = self.logits(context).softmax(axis=1).numpy()
        order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
        return order, np.take_along_axis(probabilities, order, axis=1)
