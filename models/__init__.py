"""The three experiments' models, each a plain composition of tinygrad_ee ops.

No model here carries a hand-written derivative: the engine derives every gradient.
"""

from .autoencoder import SparseAutoencoder
from .language_model import FourGramLanguageModel
from .recurrent import CELLS, GRUCell, LSTMCell, RNNCell, SequenceClassifier

__all__ = [
    "CELLS",
    "FourGramLanguageModel",
    "GRUCell",
    "LSTMCell",
    "RNNCell",
    "SequenceClassifier",
    "SparseAutoencoder",
]
