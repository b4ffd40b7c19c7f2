"""The figure helper: exact pixel sizes, the PNG holds the pixels returned, and a write cut short leaves the
previous figure whole."""

import matplotlib
import numpy as np
import pytest

from data.image_io import read_rgb
from utils.figures import colour, new_figure, write_png


@pytest.mark.parametrize('size, settings', [((900, 500), {}),
                                            ((333, 211), {'savefig.bbox': 'tight', 'savefig.dpi': 50})])
def test_the_png_has_the_size_asked_for_and_the_pixels_returned(tmp_path, size, settings):
    figure, axes = new_figure(size, 'a title', 'x (s)', 'y (dB)')
    axes.plot([0, 1, 2], [3, 1, 2], color=colour(0))
    with matplotlib.rc_context(settings):  # what a user's matplotlibrc may set
        pixels = write_png(figure, tmp_path / 'figure.png')
    assert pixels.shape == (size[1], size[0], 3) and pixels.dtype == np.uint8
    assert np.array_equal(read_rgb(tmp_path / 'figure.png'), pixels)
    assert (pixels == 255).all(axis=2).mean() > 0.5  # a white background ...
    line = np.isclose(pixels / 255, colour(0), atol=0.02).all(axis=2)
    assert line.sum() > 50  # ... with the line drawn in its colour
    assert [p.name for p in tmp_path.iterdir()] == ['figure.png']  # no temporary left behind
    assert (axes.get_title(), axes.get_xlabel(), axes.get_ylabel()) == ('a title', 'x (s)', 'y (dB)')
    assert all(gridline.get_visible() for gridline in axes.xaxis.get_gridlines())


def test_a_failed_write_keeps_the_previous_figure(tmp_path, monkeypatch):
    path = tmp_path / 'figure.png'
    first = write_png(new_figure((200, 150), 'first', 'x', 'y')[0], path)
    figure = new_figure((200, 150), 'second', 'x', 'y')[0]

    def cut(handle):
        handle.write(b'\x89PNG\r\n')  # the start of a PNG, then the renderer fails
        raise RuntimeError('renderer failed')

    monkeypatch.setattr(figure.canvas, 'print_png', cut)
    with pytest.raises(RuntimeError, match='renderer failed'):
        write_png(figure, path)
    assert np.array_equal(read_rgb(path), first)
    assert [p.name for p in tmp_path.iterdir()] == ['figure.png']


def test_colours_repeat_after_ten_categories():
    assert colour(0) != colour(1) and len({colour(k) for k in range(10)}) == 10
    assert colour(10) == colour(0)
