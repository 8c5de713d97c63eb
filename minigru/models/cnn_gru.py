"""CNNGRU: a convolutional backbone whose feature-map columns a GRU reads as a sequence.

::

    x (N, 3, 32, 32)
      -> features: conv blocks [Conv3x3 -> (BN) -> ReLU] x convs_per_block -> MaxPool2   (one block per width)
      -> (N, C, H', W')                       e.g. (N, 128, 4, 4) with widths (32, 64, 128)
      -> to_sequence (columns)                (T=W', N, C*H')  e.g. 4 steps of 512 features
      -> gru (optionally bidirectional, num_layers)
      -> readout: final state (both directions' final states concatenated if bidirectional), or the mean
      -> (dropout) -> fc                      (N, num_classes) logits

The convolutions see local texture; the GRU reads the image left to right,
one column of high-level features per step, and carries what it has seen in
its state. ``backward(dlogits)`` runs the children backward in reverse order
and returns the gradient with respect to the input image (for saliency maps).
See docs/models.md for shapes, parameter counts and the design choices.
"""
from __future__ import annotations

from .. import backend
from .blocks import (ImageToSequence, block_convs, check_widths, conv_stack, feature_map_size, image_hw,
                     positive_int)
from .head import RecurrentClassifier

__all__ = ["CNNGRU", "CNNGRU_PRESETS"]

CNNGRU_PRESETS = {
    # The plain recipe: the SeedCNN backbone, no batch norm, a small unidirectional GRU.
    "default": dict(widths=(32, 64, 128), convs_per_block=1, batch_norm=False, hidden_size=128,
                    num_layers=1, bidirectional=False, dropout=0.0, readout="final"),
    # The accuracy preset (registry name "cnn-gru-bn"): VGG-style blocks with batch norm, one convolution at
    # 32x32 and two at 16x16 and 8x8 (where convolutions are cheaper per parameter), widths 32-64-128 ->
    # a 128x4x4 map read as 4 columns of 512 features by a bidirectional GRU (docs/models.md).
    "best": dict(widths=(32, 64, 128), convs_per_block=(1, 2, 2), batch_norm=True, hidden_size=192,
                 num_layers=1, bidirectional=True, dropout=0.2, readout="final"),
}


class CNNGRU(RecurrentClassifier):
    """Conv backbone -> columns as a sequence -> GRU -> Linear (see the module docstring).

    Parameters
    ----------
    num_classes : classes to score (10 for CIFAR-10).
    in_channels : image channels (3).
    image_size : int or (H, W); must leave at least one pixel after the pooling of every block.
    widths : output channels of each conv block; each block halves H and W.
    convs_per_block : 3x3 convolutions per block (1: SeedCNN's blocks; 2: VGG's).
    batch_norm : BatchNorm2d after every convolution (the convolutions then have no bias).
    hidden_size, num_layers, bidirectional, reset_after : the GRU's (torch's meaning; reset_after=False
        is Cho et al.'s convention).
    dropout : dropout probability before the final Linear (0 disables it).
    readout : ``"final"`` (final hidden state(s)) or ``"mean"`` (mean of the outputs over time).
    rng : Generator or int seed for every initial weight and the dropout masks.
    dtype : parameter dtype (float32 default; float64 for gradient checks).

    Shapes: x (N, in_channels, H, W) -> logits (N, num_classes); backward(dlogits) -> dx (N, in_channels, H, W).
    ``config`` holds the constructor arguments (without rng and dtype), enough to rebuild the model.
    """

    def __init__(self, num_classes=10, in_channels=3, image_size=32, widths=(32, 64, 128), convs_per_block=1,
                 batch_norm=False, hidden_size=128, num_layers=1, bidirectional=False, dropout=0.0,
                 reset_after=True, readout="final", *, rng=None, dtype=None):
        super().__init__()
        name = type(self).__name__
        widths = check_widths(name, widths)
        height, width = image_hw(name, image_size)
        rng = backend.make_rng(rng)
        self.config = dict(num_classes=positive_int(name, "num_classes", num_classes),
                           in_channels=positive_int(name, "in_channels", in_channels),
                           image_size=[height, width], widths=list(widths),
                           convs_per_block=list(block_convs(name, convs_per_block, len(widths))),
                           batch_norm=bool(batch_norm), hidden_size=int(hidden_size), num_layers=int(num_layers),
                           bidirectional=bool(bidirectional), dropout=float(dropout),
                           reset_after=bool(reset_after), readout=readout)
        map_h, map_w = feature_map_size(name, (height, width), len(widths))
        self.sequence_length = map_w
        self.features = conv_stack(in_channels, widths, convs_per_block=convs_per_block, batch_norm=batch_norm,
                                   rng=rng, dtype=dtype)
        self.to_sequence = ImageToSequence("columns")
        self._build_head(widths[-1] * map_h, hidden_size, num_layers, bidirectional, dropout, reset_after,
                         readout, num_classes, rng, dtype)

    @classmethod
    def preset(cls, name: str = "best", **overrides) -> "CNNGRU":
        """A CNNGRU from :data:`CNNGRU_PRESETS` (``"default"`` or ``"best"``), with any argument overridden."""
        if name not in CNNGRU_PRESETS:
            raise ValueError(f"unknown CNNGRU preset {name!r}; choose one of {sorted(CNNGRU_PRESETS)}")
        return cls(**{**CNNGRU_PRESETS[name], **overrides})

    def forward(self, x):
        """x (N, C, H, W) -> logits (N, num_classes)."""
        fmap = self.features(x)              # (N, C', H', W')
        seq = self.to_sequence(fmap)         # (W', N, C'*H')
        return self._head_forward(seq)

    def backward(self, dlogits):
        """dlogits (N, num_classes) -> dx (N, C, H, W); parameter gradients are added into ``.grad``."""
        dseq = self._head_backward(dlogits)
        dfmap = self.to_sequence.backward(dseq)
        return self.features.backward(dfmap)

    def extra_repr(self):
        return f"readout={self.readout!r}, sequence_length={self.sequence_length}"
