"""RowGRU: a GRU that reads the raw image one pixel row per time step.

::

    x (N, 3, 32, 32)
      -> to_sequence (rows)       (T=32, N, 96): step t is row t, its 3 channels x 32 pixels
      -> gru (hidden_size, optionally bidirectional / stacked)
      -> readout: final state (both directions' final states if bidirectional), or the mean over time
      -> (dropout) -> fc          (N, num_classes)

The classic "image as a sequence" exercise (as row-by-row MNIST): no
convolution at all, so every spatial pattern has to be learned by the
recurrence. It shows what the GRU alone can do, and why CNNGRU puts
convolutions in front of it.
"""
from __future__ import annotations

from .. import backend
from .blocks import ImageToSequence, image_hw, positive_int
from .head import RecurrentClassifier

__all__ = ["RowGRU"]


class RowGRU(RecurrentClassifier):
    """Image rows as a sequence -> GRU -> Linear (see the module docstring).

    Parameters
    ----------
    num_classes, in_channels : 10 and 3 for CIFAR-10.
    image_size : int or (H, W): H steps of in_channels*W features.
    hidden_size, num_layers, bidirectional, reset_after : the GRU's.
    dropout : dropout probability before the final Linear (0 disables it).
    readout : ``"final"`` or ``"mean"`` (see :mod:`minigru.models.head`).
    rng, dtype : seed/Generator of the initial weights and dropout masks; parameter dtype.

    Shapes: x (N, in_channels, H, W) -> logits (N, num_classes); backward(dlogits) -> dx like x.
    """

    def __init__(self, num_classes=10, in_channels=3, image_size=32, hidden_size=128, num_layers=1,
                 bidirectional=False, dropout=0.0, reset_after=True, readout="final", *, rng=None, dtype=None):
        super().__init__()
        name = type(self).__name__
        height, width = image_hw(name, image_size)
        rng = backend.make_rng(rng)
        self.config = dict(num_classes=positive_int(name, "num_classes", num_classes),
                           in_channels=positive_int(name, "in_channels", in_channels),
                           image_size=[height, width], hidden_size=int(hidden_size), num_layers=int(num_layers),
                           bidirectional=bool(bidirectional), dropout=float(dropout),
                           reset_after=bool(reset_after), readout=readout)
        self.image_shape = (int(in_channels), height, width)
        self.to_sequence = ImageToSequence("rows")
        self._build_head(in_channels * width, hidden_size, num_layers, bidirectional, dropout, reset_after,
                         readout, num_classes, rng, dtype)

    def forward(self, x):
        """x (N, C, H, W) -> logits (N, num_classes)."""
        if x.ndim == 4 and tuple(x.shape[1:]) != self.image_shape:
            channels, height, width = self.image_shape
            raise ValueError(f"RowGRU was built for {height}x{width} images with {channels} channels "
                             f"(N, {channels}, {height}, {width}), got input of shape {tuple(x.shape)}")
        return self._head_forward(self.to_sequence(x))

    def backward(self, dlogits):
        """dlogits (N, num_classes) -> dx (N, C, H, W); parameter gradients are added into ``.grad``."""
        return self.to_sequence.backward(self._head_backward(dlogits))
