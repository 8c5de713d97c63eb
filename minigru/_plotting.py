"""Figures for plot_history and minigru.interpret: written to a file, or shown in a notebook.

matplotlib is optional and imported only here, only when a figure is made.
With a ``path`` the figure uses the Agg renderer and never touches pyplot's
interactive backend (so it works on a server without a display); without
one it comes from pyplot, so that a notebook shows it.
"""
from __future__ import annotations

import os


def new_figure(figsize, path):
    """An empty Figure of ``figsize`` inches: Agg-backed if it will be saved to ``path``, else pyplot's."""
    if path is not None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415  (optional dependency)
        from matplotlib.figure import Figure  # noqa: PLC0415
        fig = Figure(figsize=figsize)
        FigureCanvasAgg(fig)
        return fig
    import matplotlib.pyplot as plt  # noqa: PLC0415
    return plt.figure(figsize=figsize)


def finish_figure(fig, path, title):
    """Add the ``title`` (if any), tighten the layout and save to ``path`` (if any); returns ``fig``."""
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(os.fspath(path), dpi=100)
    return fig
