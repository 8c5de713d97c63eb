"""ReNetLayer: two bidirectional GRU sweeps over a grid of patches (Visin et al. 2015; docs/derivations.md §RN).

::

    x (N, C, H, W)
      -> patches of ph x pw, every row of patches a sequence     (J, N·I, C·ph·pw)    I = H/ph, J = W/pw
      -> horizontal: bidirectional GRU along each row            (J, N·I, 2·hidden)
      -> regroup by column                                       (I, N·J, 2·hidden)
      -> vertical: bidirectional GRU along each column           (I, N·J, 2·hidden)
      -> feature map                                             (N, 2·hidden, I, J)

Each output position has, through the two sweeps, seen the whole image: the
horizontal sweep summarises its row in both directions, the vertical one
combines those row summaries along the column in both directions. The patch
grid replaces pooling (a 2x2 patch halves H and W, like MaxPool2d(2)).

The sweeps are two ordinary :class:`~minigru.nn.GRU` layers (children
``horizontal`` and ``vertical``), so their parameters are torch's
(``horizontal.weight_ih_l0``, ``horizontal.weight_ih_l0_reverse``, ...) and all
rows (or columns) of all images run as ONE batch of the GRU kernel.
"""
from __future__ import annotations

from .. import functional as F
from .._checks import check_image_input, pair, positive_int
from .gru import GRU
from .module import Module

__all__ = ["ReNetLayer"]


class ReNetLayer(Module):
    """A ReNet layer: (N, in_channels, H, W) -> (N, 2·hidden_size, H/ph, W/pw) (see the module docstring).

    Parameters
    ----------
    in_channels : C of the input.
    hidden_size : units of each GRU direction; the output has 2·hidden_size channels.
    patch_size : int or (ph, pw), non-overlapping patches; H and W must be multiples of it.
    bias, reset_after : the GRUs' (reset_after=True is torch's convention, so a torch twin is two nn.GRU).
    rng : Generator or int seed of the initial weights; dtype : parameter dtype.
    """

    def __init__(self, in_channels, hidden_size, patch_size=(2, 2), bias=True, reset_after=True, *, rng=None,
                 dtype=None):
        super().__init__()
        self.in_channels = positive_int("ReNetLayer", "in_channels", in_channels)
        self.hidden_size = positive_int("ReNetLayer", "hidden_size", hidden_size)
        self.patch_size = pair(patch_size, "patch_size")
        if min(self.patch_size) < 1:
            raise ValueError(f"ReNetLayer: patch_size must be positive, got {patch_size!r}")
        ph, pw = self.patch_size
        self.horizontal = GRU(in_channels * ph * pw, hidden_size, bias=bias, bidirectional=True,
                              reset_after=reset_after, rng=rng, dtype=dtype)
        # one Generator for both GRUs: an int seed would give the vertical GRU the same first draws
        self.vertical = GRU(2 * hidden_size, hidden_size, bias=bias, bidirectional=True, reset_after=reset_after,
                            rng=self.horizontal.rng, dtype=dtype)

    @property
    def out_channels(self) -> int:
        return 2 * self.hidden_size

    def output_size(self, image_size):
        """(I, J) = (H/ph, W/pw) for an input of size (H, W); a ValueError if the patches do not tile it."""
        try:
            return F.patch_grid(image_size, self.patch_size)
        except ValueError as err:
            raise ValueError(f"ReNetLayer with patch_size={self.patch_size}: {err}") from None

    def forward(self, x):
        """x (N, C, H, W) -> (N, 2·hidden_size, H/ph, W/pw)."""
        check_image_input(self, x, self.in_channels, self.horizontal.weight_ih_l0.dtype)
        images = x.shape[0]
        rows, _ = self.output_size(x.shape[-2:])
        seq_rows, patch_cache = F.patch_rows_forward(x, self.patch_size)      # RN1
        h_rows, _ = self.horizontal(seq_rows)                                  # RN3
        seq_cols, regroup_cache = F.rows_to_columns_forward(h_rows, images, rows)   # RN4
        h_cols, _ = self.vertical(seq_cols)                                    # RN5
        out, image_cache = F.columns_to_image_forward(h_cols, images)          # RN6
        self._save_cache((patch_cache, regroup_cache, image_cache))
        return out

    def backward(self, dout):
        """dout (N, 2·hidden_size, I, J) -> dx (N, C, H, W); the GRUs' parameter gradients are added."""
        patch_cache, regroup_cache, image_cache = self._pop_cache()
        dh_cols = F.columns_to_image_backward(dout, image_cache)
        dseq_cols, _ = self.vertical.backward(dh_cols)
        dh_rows = F.rows_to_columns_backward(dseq_cols, regroup_cache)
        dseq_rows, _ = self.horizontal.backward(dh_rows)
        return F.patch_rows_backward(dseq_rows, patch_cache)

    def extra_repr(self):
        s = f"{self.in_channels}, {self.hidden_size}, patch_size={self.patch_size}"
        if not self.horizontal.bias:
            s += ", bias=False"
        return s + ("" if self.horizontal.reset_after else ", reset_after=False")
