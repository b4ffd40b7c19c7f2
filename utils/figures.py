"""Figures: matplotlib drawn off-screen, written as PNG files atomically.

A figure is attached to the Agg canvas directly instead of going through pyplot, so no backend is chosen for the
whole process and no display is needed. Every figure of the project starts from `new_figure` (an exact size in
pixels, one Axes with its title, axis labels and a grid) and is written by `write_png` through `utils.atomic`;
`colour` gives the k-th category of a figure its colour, from one palette for all of them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from utils.atomic import write_atomically

DPI = 100
_PALETTE = colormaps['tab10'].colors


def colour(index: int) -> tuple[float, float, float]:
    """The RGB colour (0-1) of the `index`-th category; after ten the palette repeats."""
    return _PALETTE[index % len(_PALETTE)]


def new_figure(size: tuple[int, int], title: str, xlabel: str, ylabel: str) -> tuple[Figure, Axes]:
    """A figure of `size` = (width, height) pixels with one gridded Axes. Its layout is constrained, so that a
    legend placed beside the Axes is kept inside the figure."""
    figure = Figure(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI, layout='constrained')
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(True, alpha=0.35)
    return figure, axes


def write_png(figure: Figure, path: str | Path) -> np.ndarray:
    """Renders `figure` into `path` (PNG, written atomically); returns the H x W x 3 uint8 RGB pixels written."""
    # The canvas's own print_png, not savefig: savefig would take a cropping or a dpi from a matplotlibrc
    write_atomically(path, figure.canvas.print_png)
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()
