"""ReNet: an image classifier made of GRU sweeps instead of convolutions (Visin et al. 2015).

::

    x (N, 3, 32, 32)
      -> features: ReNetLayer(3, 32, patch 2x2)       (N, 64, 16, 16)    one per entry of hidden_sizes
                   ReNetLayer(64, 32, patch 2x2)      (N, 64, 8, 8)
      -> classifier: Flatten -> [Linear -> ReLU -> (Dropout)] per entry of fc_hidden -> Linear
      -> logits (N, 10)

Every ReNetLayer cuts its input into patches and runs a bidirectional GRU
along each row of patches, then another along each column (see
:mod:`minigru.nn.renet`), so each output position depends on the whole
image, where a 3x3 convolution sees 9 pixels. ``backward(dlogits)`` returns
the gradient with respect to the image.
"""
from __future__ import annotations

import numbers

from .. import backend
from ..nn import Module, ReNetLayer, Sequential
from .blocks import image_hw, mlp_classifier, positive_int

__all__ = ["ReNet"]


class ReNet(Module):
    """ReNet layers -> Flatten -> fully connected layers -> logits (see the module docstring).

    Parameters
    ----------
    num_classes, in_channels : 10 and 3 for CIFAR-10.
    image_size : int or (H, W); every layer's patch size must divide the size it receives.
    hidden_sizes : GRU units per direction of each ReNet layer (its output has twice as many channels).
    patch_sizes : one patch size (int or (ph, pw)) for every layer, or a list with one per layer.
    fc_hidden : sizes of hidden fully connected layers before the output layer (none by default).
    dropout : dropout probability after each hidden fully connected layer (0 disables it).
    reset_after : the GRUs' convention (True: torch's).
    rng, dtype : seed/Generator of the initial weights and dropout masks; parameter dtype.

    Shapes: x (N, in_channels, H, W) -> logits (N, num_classes); backward(dlogits) -> dx like x.
    ``config`` holds the constructor arguments (without rng and dtype), enough to rebuild the model.
    """

    def __init__(self, num_classes=10, in_channels=3, image_size=32, hidden_sizes=(32, 32), patch_sizes=2,
                 fc_hidden=(), dropout=0.0, reset_after=True, *, rng=None, dtype=None):
        super().__init__()
        name = type(self).__name__
        if isinstance(hidden_sizes, numbers.Integral):
            hidden_sizes = (hidden_sizes,)
        hidden_sizes = tuple(positive_int(name, "each entry of hidden_sizes", h) for h in hidden_sizes)
        if not hidden_sizes:
            raise ValueError(f"{name}: hidden_sizes must list at least one layer")
        patches = _patch_list(name, patch_sizes, len(hidden_sizes))
        fc_hidden = tuple(positive_int(name, "each entry of fc_hidden", h) for h in fc_hidden)
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"{name}: dropout must be in [0, 1), got {dropout!r}")
        height, width = image_hw(name, image_size)
        rng = backend.make_rng(rng)
        self.config = dict(num_classes=positive_int(name, "num_classes", num_classes),
                           in_channels=positive_int(name, "in_channels", in_channels),
                           image_size=[height, width], hidden_sizes=list(hidden_sizes),
                           patch_sizes=[list(p) for p in patches], fc_hidden=list(fc_hidden),
                           dropout=float(dropout), reset_after=bool(reset_after))
        self.image_size = (height, width)
        layers, channels = [], in_channels
        for i, (hidden, (ph, pw)) in enumerate(zip(hidden_sizes, patches)):
            if height % ph or width % pw:
                raise ValueError(f"{name}: ReNet layer {i} receives {height}x{width} feature maps, which "
                                 f"{ph}x{pw} patches do not tile; change image_size or patch_sizes")
            layers.append(ReNetLayer(channels, hidden, (ph, pw), reset_after=reset_after, rng=rng, dtype=dtype))
            channels, height, width = 2 * hidden, height // ph, width // pw
        self.features = Sequential(*layers)
        self.classifier = mlp_classifier(channels * height * width, fc_hidden, num_classes, dropout=dropout,
                                         rng=rng, dtype=dtype)

    def forward(self, x):
        """x (N, C, H, W) -> logits (N, num_classes)."""
        if x.ndim == 4 and tuple(x.shape[2:]) != self.image_size:
            raise ValueError(f"ReNet was built for {self.image_size[0]}x{self.image_size[1]} images "
                             f"(image_size), got input of shape {tuple(x.shape)}")
        return self.classifier(self.features(x))

    def backward(self, dlogits):
        """dlogits (N, num_classes) -> dx (N, C, H, W); parameter gradients are added into ``.grad``."""
        return self.features.backward(self.classifier.backward(dlogits))


def _patch_list(owner, patch_sizes, layers):
    """One (ph, pw) per layer from an int, a pair, or a list of those."""
    def one(p):
        if isinstance(p, numbers.Integral):
            p = (p, p)
        ph, pw = p
        return positive_int(owner, "patch height", ph), positive_int(owner, "patch width", pw)

    if isinstance(patch_sizes, numbers.Integral) or (len(patch_sizes) == 2 and all(
            isinstance(v, numbers.Integral) for v in patch_sizes)):
        return [one(patch_sizes)] * layers
    patches = [one(p) for p in patch_sizes]
    if len(patches) != layers:
        raise ValueError(f"{owner}: patch_sizes lists {len(patches)} sizes for {layers} ReNet layers")
    return patches
