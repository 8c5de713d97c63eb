"""ConvGRUPredictor: next-frame prediction with a convolutional GRU, and a small training loop for it.

::

    video (N, T, C, H, W), frames in [0, 1]
      -> encoder: Conv2d 3x3 (pad 1) -> ReLU, on every frame      (N, T, E, H, W)
      -> convgru: ConvGRU(E, hidden_channels, kernel_size)         (N, T, hidden, H, W)
      -> decoder: Conv2d 1x1, on every frame                       (N, T, C, H, W) logits
      -> sigmoid (unless logits=True)                              (N, T, C, H, W) in (0, 1)

Output ``t`` is the prediction of frame ``t + 1`` from frames ``0..t``: the
ConvGRU's state at step t has seen nothing later. Train it on
``inputs, targets = next_frame_pairs(video)`` with ``BCEWithLogitsLoss``
(``logits=True``, numerically the better choice) or ``MSELoss``, as
:func:`fit_next_frame` does.
"""
from __future__ import annotations

from .. import backend
from .._checks import positive_int
from ..functional import sigmoid
from ..nn import BCEWithLogitsLoss, Conv2d, ConvGRU, Module, MSELoss, ReLU, Sigmoid, no_grad
from ..optim import Adam

__all__ = ["ConvGRUPredictor", "next_frame_pairs", "fit_next_frame"]


class ConvGRUPredictor(Module):
    """Encoder conv -> ConvGRU -> 1x1 conv decoder -> sigmoid: frame t+1 from frames <= t.

    Parameters
    ----------
    in_channels : channels of a frame (1 for make_moving_shapes' default).
    hidden_channels, kernel_size, num_layers, reset_after : the ConvGRU's (kernel_size odd).
    encoder_channels : output channels of the 3x3 encoder convolution; 0 feeds the frames to the ConvGRU directly.
    logits : return the decoder's logits instead of sigmoid probabilities (train with BCEWithLogitsLoss).
    rng, dtype : seed/Generator of the initial weights; parameter dtype.

    Shapes: video (N, T, C, H, W) -> (N, T, C, H, W); backward(dout) -> dvideo (N, T, C, H, W).
    """

    def __init__(self, in_channels=1, hidden_channels=16, kernel_size=3, num_layers=1, encoder_channels=16,
                 reset_after=False, logits=False, *, rng=None, dtype=None):
        super().__init__()
        name = type(self).__name__
        rng = backend.make_rng(rng)
        self.config = dict(in_channels=positive_int(name, "in_channels", in_channels),
                           hidden_channels=positive_int(name, "hidden_channels", hidden_channels),
                           kernel_size=kernel_size, num_layers=positive_int(name, "num_layers", num_layers),
                           encoder_channels=int(encoder_channels), reset_after=bool(reset_after),
                           logits=bool(logits))
        self.logits = bool(logits)
        channels = in_channels
        if encoder_channels:
            self.encoder = Conv2d(in_channels, encoder_channels, 3, padding=1, rng=rng, dtype=dtype)
            self.encoder_act = ReLU()
            channels = encoder_channels
        self.convgru = ConvGRU(channels, hidden_channels, kernel_size, num_layers=num_layers, batch_first=True,
                               reset_after=reset_after, rng=rng, dtype=dtype)
        self.decoder = Conv2d(hidden_channels, in_channels, 1, rng=rng, dtype=dtype)
        if not self.logits:
            self.sigmoid = Sigmoid()

    def forward(self, video):
        """video (N, T, C, H, W) -> predictions (N, T, C, H, W); output t predicts frame t+1."""
        if video.ndim != 5:
            raise ValueError(f"ConvGRUPredictor expected a video batch (N, T, C, H, W), got shape {tuple(video.shape)}")
        N, T = video.shape[:2]
        x = video
        if "encoder" in self._modules:
            x = self.encoder_act(self.encoder(video.reshape((N * T,) + tuple(video.shape[2:]))))
            x = x.reshape((N, T) + tuple(x.shape[1:]))
        states, _ = self.convgru(x)                                # (N, T, hidden, H, W)
        frames = self.decoder(states.reshape((N * T,) + tuple(states.shape[2:])))
        out = frames.reshape((N, T) + tuple(frames.shape[1:]))
        self._save_cache((N, T))
        return out if self.logits else self.sigmoid(out)

    def backward(self, dout):
        """dout (N, T, C, H, W) -> dvideo (N, T, C, H, W); parameter gradients are added into ``.grad``."""
        N, T = self._pop_cache()
        if not self.logits:
            dout = self.sigmoid.backward(dout)
        dstates = self.decoder.backward(dout.reshape((N * T,) + tuple(dout.shape[2:])))
        dx, _ = self.convgru.backward(dstates.reshape((N, T) + tuple(dstates.shape[1:])))
        if "encoder" in self._modules:
            dframes = self.encoder.backward(self.encoder_act.backward(dx.reshape((N * T,) + tuple(dx.shape[2:]))))
            dx = dframes.reshape((N, T) + tuple(dframes.shape[1:]))
        return dx

    def predict(self, video):
        """Probabilities of frames 1..T from video (N, T, C, H, W), without keeping anything for backward."""
        with no_grad():
            out = self.forward(video)
        if self.logits:
            out = sigmoid(out)
        return out


def next_frame_pairs(video):
    """(inputs, targets) = (video[:, :-1], video[:, 1:]): every frame but the last, and the frame after each."""
    if video.ndim != 5 or video.shape[1] < 2:
        raise ValueError(f"next_frame_pairs needs a video batch (N, T >= 2, C, H, W), got shape {tuple(video.shape)}")
    return video[:, :-1], video[:, 1:]


def fit_next_frame(model, videos, *, epochs=1, batch_size=8, lr=3e-3, loss="bce", optimizer=None, seed=0,
                   verbose=False):
    """Train ``model`` (a ConvGRUPredictor) to predict the next frame of ``videos`` (N, T, C, H, W).

    ``loss``: ``"bce"`` (BCEWithLogitsLoss; the model must have ``logits=True``) or ``"mse"``
    (MSELoss on the model's outputs, sigmoid probabilities by default). ``optimizer``: any
    minigru optimizer (default Adam(lr)). The batches are shuffled with ``seed``; ``verbose``
    prints one line per epoch.

    The loop is :class:`minigru.train.Trainer`'s, without classification metrics
    (``metrics=None``): a DataLoader yields ``next_frame_pairs`` of the videos, the
    Trainer does forward, loss, backward and step. Returns a dict with
    ``"batch_loss"`` (every batch's loss), ``"epoch_loss"`` (their mean per epoch, weighted
    by batch size), ``"seconds"`` (wall time per epoch) and ``"trainer"`` (to go on training
    or to save a checkpoint).
    """
    from ..data import DataLoader  # noqa: PLC0415  (models do not depend on data and train at import)
    from ..train import Trainer  # noqa: PLC0415

    if loss not in ("bce", "mse"):
        raise ValueError(f"fit_next_frame: loss must be 'bce' or 'mse', got {loss!r}")
    if loss == "bce" and not getattr(model, "logits", False):
        raise ValueError("fit_next_frame: loss='bce' trains on logits; build the model with logits=True "
                         "(or use loss='mse')")
    criterion = BCEWithLogitsLoss() if loss == "bce" else MSELoss()
    optimizer = optimizer or Adam(model.parameters(), lr=lr)
    dtype = next(model.parameters()).dtype
    videos = backend.to_numpy(videos)       # batches are gathered on the host, then moved to the model's backend
    if videos.ndim != 5:
        raise ValueError(f"fit_next_frame: videos must have shape (N, T, C, H, W), got {tuple(videos.shape)}")
    batch_size = positive_int("fit_next_frame", "batch_size", batch_size)
    loader = DataLoader(next_frame_pairs(videos), batch_size=batch_size, shuffle=True, seed=seed, dtype=dtype,
                        backend=model.backend)
    batch_losses = []

    def report(trainer, record):
        print(f"epoch {record['epoch']}: loss {record['train_loss']:.4f} ({record['seconds']:.1f} s)")

    trainer = Trainer(model, optimizer, criterion, metrics=None, progress=False,
                      on_epoch_end=report if verbose else None,
                      on_batch_end=lambda trainer, value: batch_losses.append(value))
    history = trainer.fit(loader, epochs)
    return {"batch_loss": batch_losses, "epoch_loss": list(history.train_loss), "seconds": list(history.seconds),
            "trainer": trainer}
