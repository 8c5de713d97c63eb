"""SeedCNN: the plain convolutional baseline (three conv blocks and a three-layer classifier).

::

    x (N, 3, 32, 32)
      -> features: [Conv3x3(pad 1) -> (BN) -> ReLU -> MaxPool2] with 32, 64, 128 channels
      -> (N, 128, 4, 4)
      -> classifier: Flatten -> Linear(2048, 1024) -> ReLU -> (Dropout) -> Linear(1024, 512) -> ReLU
                     -> (Dropout) -> Linear(512, 10)
      -> logits (N, 10)

The starting point ("seed") that the recurrent models are compared with.
"""
from __future__ import annotations

from .. import backend
from ..nn import Module
from .blocks import block_convs, check_widths, conv_stack, feature_map_size, image_hw, mlp_classifier, positive_int

__all__ = ["SeedCNN"]


class SeedCNN(Module):
    """Conv blocks -> Flatten -> fully connected layers -> logits (see the module docstring).

    Parameters
    ----------
    num_classes, in_channels : 10 and 3 for CIFAR-10.
    image_size : int or (H, W).
    widths : output channels of each conv block (each block halves H and W).
    hidden : sizes of the hidden fully connected layers (1024, 512).
    dropout : dropout probability after each hidden fully connected layer (0 disables it).
    batch_norm : BatchNorm2d after every convolution (the convolutions then have no bias).
    convs_per_block : 3x3 convolutions per block.
    rng, dtype : seed/Generator of the initial weights and dropout masks; parameter dtype.

    Shapes: x (N, in_channels, H, W) -> logits (N, num_classes); backward(dlogits) -> dx like x.
    """

    def __init__(self, num_classes=10, in_channels=3, image_size=32, widths=(32, 64, 128), hidden=(1024, 512),
                 dropout=0.0, batch_norm=False, convs_per_block=1, *, rng=None, dtype=None):
        super().__init__()
        name = type(self).__name__
        widths = check_widths(name, widths)
        hidden = tuple(positive_int(name, "each entry of hidden", h) for h in hidden)
        height, width = image_hw(name, image_size)
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"{name}: dropout must be in [0, 1), got {dropout!r}")
        rng = backend.make_rng(rng)
        self.config = dict(num_classes=positive_int(name, "num_classes", num_classes),
                           in_channels=positive_int(name, "in_channels", in_channels),
                           image_size=[height, width], widths=list(widths), hidden=list(hidden),
                           dropout=float(dropout), batch_norm=bool(batch_norm),
                           convs_per_block=list(block_convs(name, convs_per_block, len(widths))))
        map_h, map_w = feature_map_size(name, (height, width), len(widths))
        self.features = conv_stack(in_channels, widths, convs_per_block=convs_per_block, batch_norm=batch_norm,
                                   rng=rng, dtype=dtype)
        self.classifier = mlp_classifier(widths[-1] * map_h * map_w, hidden, num_classes, dropout=dropout,
                                         rng=rng, dtype=dtype)

    def forward(self, x):
        """x (N, C, H, W) -> logits (N, num_classes)."""
        return self.classifier(self.features(x))

    def backward(self, dlogits):
        """dlogits (N, num_classes) -> dx (N, C, H, W); parameter gradients are added into ``.grad``."""
        return self.features.backward(self.classifier.backward(dlogits))
