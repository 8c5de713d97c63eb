"""WhitenedCNNGRU: an airbench-style backbone (frozen patch-whitening conv, conv-BN-ReLU blocks) read by a GRU.

::

    x (N, 3, 32, 32)
      -> whiten: PatchWhitening 2x2, fixed filters from the data (+ negated copies)
           whiten_stride=2 (cnn-gru-fast): non-overlapping patches                   (N, 24, 16, 16)
           whiten_stride=1 (airbench, cnn-gru-hour): overlapping patches            (N, 24, 31, 31)
      -> whiten_relu: ReLU
      -> features, one block per width:
           Conv3x3 -> BN -> MaxPool2 -> ReLU  [-> Conv3x3 -> BN -> ReLU] x (convs - 1)
                        16 -> 8 -> 4 with widths (64, 128); 31 -> 15 -> 7 -> 3 with (64, 256, 256)
      -> to_sequence (columns)          (T=W', N, C'*H')   e.g. 4 steps of 128*4 features
      -> gru (bidirectional by default) -> readout -> (dropout) -> fc      (N, num_classes)

Two choices from Keller Jordan's airbench make it train in few epochs: the
first layer whitens the 2x2 patches of the training images (eqs. WH1-WH2;
it is fixed, so nothing has to learn what a decorrelated input looks like),
and each block pools right after its first convolution, so its further
convolutions run at a quarter of the cost. With stride 2 the whitening is a
lossless "patchify" stem (each 2x2x3 patch becomes its 12 whitened
coordinates): no trained convolution runs at the full 32x32 size, where
im2col's copies cost most on a CPU. The GRU reads the final feature map
column by column, left to right (and right to left), as in CNNGRU.

The whitening filters come from the data: call
``model.initialize_from_data(images)`` (normalised training images, a few
thousand suffice) before training; ``minigru train`` does it. They are saved
in ``state_dict`` as buffers, so a loaded model needs nothing else.
"""
from __future__ import annotations

from .. import backend
from ..nn import GELU, BatchNorm2d, Conv2d, MaxPool2d, PatchWhitening, ReLU, Sequential, init
from .._checks import positive_int
from .blocks import ImageToSequence, block_convs, check_widths, image_hw
from .head import RecurrentClassifier

__all__ = ["WhitenedCNNGRU", "pool_first_block", "ACTIVATIONS"]

ACTIVATIONS = {"relu": ReLU, "gelu": lambda: GELU(approximate="tanh")}
"""The ``activation`` choices: ReLU, or airbench's GELU in PyTorch's tanh form (eq. A5, a few ufunc passes)."""


def pool_first_block(in_channels: int, out_channels: int, convs: int, *, bn_momentum=0.1, activation="relu",
                     rng=None, dtype=None) -> list:
    """Conv3x3 -> BN -> MaxPool2 -> ReLU, then (convs - 1) x [Conv3x3 -> BN -> ReLU] at the pooled size.

    (N, in_channels, H, W) -> (N, out_channels, H // 2, W // 2). The convolutions have no bias (the batch
    norm's shift replaces it). ReLU after the pooling equals ReLU before it (docs/models.md, "The conv block");
    ``activation="gelu"`` puts GELU in each ReLU's place, after the pooling as in airbench (GELU is not
    monotonic, so there the order is a choice, airbench's). ``bn_momentum`` is the batch norms' ``momentum``
    (torch's meaning: the weight of each batch in the running statistics).
    """
    act = ACTIVATIONS[activation]
    layers = [Conv2d(in_channels, out_channels, 3, padding=1, bias=False, rng=rng, dtype=dtype),
              BatchNorm2d(out_channels, momentum=bn_momentum, dtype=dtype), MaxPool2d(2), act()]
    for _ in range(convs - 1):
        layers += [Conv2d(out_channels, out_channels, 3, padding=1, bias=False, rng=rng, dtype=dtype),
                   BatchNorm2d(out_channels, momentum=bn_momentum, dtype=dtype), act()]
    return layers


class WhitenedCNNGRU(RecurrentClassifier):
    """Patch whitening -> ReLU -> pool-first conv blocks -> columns -> GRU -> Linear (module docstring).

    Parameters
    ----------
    num_classes, in_channels, image_size : 10, 3 and 32 for CIFAR-10.
    whiten : True: the fixed whitening layer; False (an ablation): a trained Conv2d of the same shape instead.
    whiten_kernel : k of the k x k whitening patches (2, as airbench).
    whiten_eps : ε of eq. WH1 (in units of the normalised input's variance).
    whiten_stride : 1 (airbench: overlapping patches, output (H - k + 1)) or k (non-overlapping patches: a
        "patchify" stem, k times smaller and still lossless, so that no trained convolution runs at full size).
    widths : output channels of each block; each block halves the whitened map (H and W).
    convs_per_block : convolutions per block (an int, or one per block); the first runs before the pooling.
    hidden_size, num_layers, bidirectional, reset_after : the GRU's, with torch's meaning. ``reset_after=True``
        (the default) is torch's and cuDNN's convention: n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)).
    dropout : before the final Linear (0 disables it).
    readout : ``"final"`` or ``"mean"`` (see :mod:`minigru.models.head`).
    input_grad : False skips the gradient with respect to the image (``backward`` returns None): the first
        Conv2d then skips its input gradient too, since the fixed whitening below it needs none. A training
        speed option; ``minigru.interpret`` switches it on for saliency maps.
    dirac_init : airbench's initialisation: each block convolution's first ``in_channels`` filters start as the
        identity (:func:`minigru.nn.init.dirac_`), so that at first a block passes its input through (the rest
        keep torch's default draw). False (the default): torch's default draw for every filter.
    bn_momentum : the batch norms' ``momentum``, torch's meaning (0.1, torch's default; airbench uses 0.4, so
        that the running statistics follow the weights closely, which its lookahead needs).
    activation : ``"relu"`` (the default) or ``"gelu"``: airbench's GELU, in PyTorch's tanh form, after the
        whitening and in every block (:data:`ACTIVATIONS`).
    rng, dtype : initial weights and dropout masks; parameter dtype.

    Shapes: x (N, in_channels, H, W) -> logits (N, num_classes); backward(dlogits) -> dx like x.
    """

    def __init__(self, num_classes=10, in_channels=3, image_size=32, whiten=True, whiten_kernel=2, whiten_eps=5e-4,
                 whiten_stride=1, widths=(32, 64, 128), convs_per_block=1, hidden_size=128, num_layers=1,
                 bidirectional=True, dropout=0.0, reset_after=True, readout="final", input_grad=True,
                 dirac_init=False, bn_momentum=0.1, activation="relu", *, rng=None, dtype=None):
        super().__init__()
        name = type(self).__name__
        widths = check_widths(name, widths)
        convs = block_convs(name, convs_per_block, len(widths))
        height, width = image_hw(name, image_size)
        kernel = positive_int(name, "whiten_kernel", whiten_kernel)
        stride = positive_int(name, "whiten_stride", whiten_stride)
        map_h, map_w = (height - kernel) // stride + 1, (width - kernel) // stride + 1
        for _ in widths:
            map_h, map_w = map_h // 2, map_w // 2
        if map_h < 1 or map_w < 1:
            raise ValueError(f"{name}: a {height}x{width} image is too small for a {kernel}x{kernel} whitening "
                             f"and {len(widths)} blocks that each halve it; use fewer widths")
        if activation not in ACTIVATIONS:
            raise ValueError(f"{name}: activation must be one of {', '.join(map(repr, ACTIVATIONS))}, "
                             f"got {activation!r}")
        rng = backend.make_rng(rng)
        self.config = dict(num_classes=positive_int(name, "num_classes", num_classes),
                           in_channels=positive_int(name, "in_channels", in_channels),
                           image_size=[height, width], whiten=bool(whiten), whiten_kernel=kernel,
                           whiten_eps=float(whiten_eps), whiten_stride=stride,
                           widths=list(widths), convs_per_block=list(convs), hidden_size=int(hidden_size),
                           num_layers=int(num_layers), bidirectional=bool(bidirectional), dropout=float(dropout),
                           reset_after=bool(reset_after), readout=readout, input_grad=bool(input_grad),
                           dirac_init=bool(dirac_init), bn_momentum=float(bn_momentum), activation=activation)
        self.sequence_length = map_w
        if whiten:
            self.whiten = PatchWhitening(in_channels, kernel, stride, eps=whiten_eps, negate=True, dtype=dtype)
        else:   # the ablation: an ordinary, trained convolution of the same shape in its place
            self.whiten = Conv2d(in_channels, 2 * in_channels * kernel * kernel, kernel, stride, bias=False,
                                 input_grad=bool(input_grad), rng=rng, dtype=dtype)
        self.whiten_relu = ACTIVATIONS[activation]()     # (named for the ReLU it usually is)
        layers, channels = [], self.whiten.out_channels
        for out_channels, count in zip(widths, convs):
            layers += pool_first_block(channels, out_channels, count, bn_momentum=bn_momentum,
                                       activation=activation, rng=rng, dtype=dtype)
            channels = out_channels
        self.features = Sequential(*layers)
        if dirac_init:
            for conv in (layer for layer in layers if isinstance(layer, Conv2d)):
                init.dirac_(conv.weight.data[:conv.in_channels])     # a view: fills those filters in place
        # A fixed whitening needs no gradient, so without an input gradient the first block's Conv2d needs none.
        self.features[0].input_grad = bool(input_grad) or not whiten
        self.to_sequence = ImageToSequence("columns")
        self._build_head(widths[-1] * map_h, hidden_size, num_layers, bidirectional, dropout, reset_after,
                         readout, num_classes, rng, dtype)

    def initialize_from_data(self, x) -> "WhitenedCNNGRU":
        """Fit the whitening filters to images ``x`` (N, C, H, W), normalised as in training; returns self.

        (Nothing to do with ``whiten=False``, whose first convolution is trained instead.)
        """
        if isinstance(self.whiten, PatchWhitening):
            self.whiten.fit(x)
        return self

    def forward(self, x):
        """x (N, C, H, W) -> logits (N, num_classes)."""
        fmap = self.features(self.whiten_relu(self.whiten(x)))     # (N, C', H', W')
        return self._head_forward(self.to_sequence(fmap))

    def backward(self, dlogits):
        """dlogits (N, num_classes) -> dx (N, C, H, W), or None with ``input_grad=False``; parameter gradients
        are added into ``.grad``."""
        dfmap = self.to_sequence.backward(self._head_backward(dlogits))
        dwhite = self.features.backward(dfmap)
        if dwhite is None:                       # input_grad=False: the first convolution stopped the chain
            return None
        return self.whiten.backward(self.whiten_relu.backward(dwhite))

    def extra_repr(self):
        return f"readout={self.readout!r}, sequence_length={self.sequence_length}"
