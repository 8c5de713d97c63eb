"""Models built from minigru's layers: SeedCNN, CNNGRU, WhitenedCNNGRU, RowGRU, ReNet, ConvGRUPredictor, and the
registry of the classifiers' CLI names.

>>> from minigru.models import build_model, CNNGRU
>>> model = build_model("cnn-gru-bn", rng=0)        # the accuracy preset      # doctest: +SKIP
>>> model = CNNGRU(widths=(32, 64), hidden_size=64, bidirectional=True, rng=0)  # doctest: +SKIP

See docs/models.md for the architectures, shapes and parameter counts.
"""
from .blocks import ImageToSequence, conv_block, conv_stack
from .cnn_gru import CNNGRU, CNNGRU_PRESETS
from .convgru_predictor import ConvGRUPredictor, fit_next_frame, next_frame_pairs
from .head import READOUTS, RecurrentClassifier
from .renet import ReNet
from .registry import MODELS, ModelSpec, build_model, default_recipe, get_spec, load_trained, model_names
from .row_gru import RowGRU
from .seed_cnn import SeedCNN
from .whitened_cnn_gru import WhitenedCNNGRU

__all__ = ["SeedCNN", "CNNGRU", "CNNGRU_PRESETS", "WhitenedCNNGRU", "RowGRU", "ReNet", "ConvGRUPredictor",
           "fit_next_frame", "next_frame_pairs", "ImageToSequence", "RecurrentClassifier", "READOUTS",
           "conv_block", "conv_stack", "MODELS", "ModelSpec", "build_model", "default_recipe", "get_spec",
           "load_trained", "model_names"]
