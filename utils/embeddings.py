"""Degradation awareness as a picture (`test.py --dump_embeddings`): the residual embedding R4 of every test
image, pooled over space, labelled by its degradation.

Writes, below the output folder, TensorBoard's embedding projector data (`projector/`, open it with
`tensorboard --logdir <folder>/projector`), the 2-D coordinates (`embeddings_2d.csv`) and a scatter plot
coloured by degradation (`embeddings_2d.png`, drawn with OpenCV): the paper's degradation-awareness figure.
The 2-D map is t-SNE where scikit-learn is installed (optional, not in requirements.txt) and there are
enough images, PCA otherwise; the plot's title says which.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from data.image_io import write_rgb

# Distinct colours (RGB) for up to 10 degradations; more labels reuse them.
_PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
            (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))
_CANVAS, _MARGIN, _LEGEND = 720, 48, 200
_MIN_TSNE = 8  # below this many images t-SNE says nothing that PCA does not


def degradation_label(row: dict) -> str:
    """The colour label of an image: its task, with the noise level for denoising (`denoise σ25`)."""
    return row['task'] if row['sigma'] is None else f'{row["task"]} σ{row["sigma"]}'


def pca_2d(matrix: np.ndarray) -> np.ndarray:
    """N x D -> N x 2: the projection on the two leading principal axes (zeros where they do not exist)."""
    centred = matrix - matrix.mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    points = centred @ axes[:2].T
    return np.pad(points, ((0, 0), (0, 2 - points.shape[1])))


def project_2d(matrix: np.ndarray) -> tuple[np.ndarray, str]:
    """N x D -> (N x 2, method): t-SNE where scikit-learn is installed and N >= 8, else PCA."""
    if len(matrix) >= _MIN_TSNE:
        try:
            from sklearn.manifold import TSNE
        except ImportError:
            pass
        else:
            tsne = TSNE(n_components=2, perplexity=min(30.0, (len(matrix) - 1) / 3), init='pca', random_state=0)
            return tsne.fit_transform(matrix), 't-SNE'
    return pca_2d(matrix), 'PCA'


def scatter_plot(points: np.ndarray, labels: Sequence[str], title: str) -> np.ndarray:
    """An RGB uint8 scatter plot of N x 2 points, one colour per label, with a legend."""
    canvas = np.full((_CANVAS, _CANVAS + _LEGEND, 3), 255, np.uint8)
    low, high = points.min(axis=0), points.max(axis=0)
    scale = (_CANVAS - 2 * _MARGIN) / np.maximum(high - low, 1e-12)
    names = list(dict.fromkeys(labels))
    colours = {name: _PALETTE[i % len(_PALETTE)] for i, name in enumerate(names)}
    for (x, y), label in zip(points, labels, strict=True):
        centre = (int(_MARGIN + (x - low[0]) * scale[0]), int(_CANVAS - _MARGIN - (y - low[1]) * scale[1]))
        cv2.circle(canvas, centre, 6, colours[label], -1, cv2.LINE_AA)
    cv2.putText(canvas, title, (_MARGIN, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 1, cv2.LINE_AA)
    for i, name in enumerate(names):
        top = _MARGIN + 28 * i
        cv2.circle(canvas, (_CANVAS + 12, top), 7, colours[name], -1, cv2.LINE_AA)
        # Hershey fonts have no Greek letters.
        cv2.putText(canvas, name.replace('σ', 'sigma '), (_CANVAS + 26, top + 6), cv2.FONT_HERSHEY_SIMPLEX, 0.55,
                    (0, 0, 0), 1, cv2.LINE_AA)
    return canvas


def write_embeddings(rows: Sequence[dict], output_dir: str | Path) -> list[Path]:
    """Writes the projector data, the 2-D coordinates and the plot of `evaluate(embeddings=...)` rows."""
    from torch.utils.tensorboard import SummaryWriter

    if len(rows) < 2:
        raise ValueError(f'--dump_embeddings needs at least 2 test images, got {len(rows)}')
    output_dir = Path(output_dir)
    matrix = np.stack([row['embedding'] for row in rows]).astype(np.float64)
    labels = [degradation_label(row) for row in rows]
    with SummaryWriter(output_dir / 'projector') as writer:
        writer.add_embedding(torch.from_numpy(matrix), metadata=[[label, row['set'], row['name']]
                                                                 for label, row in zip(labels, rows, strict=True)],
                             metadata_header=['degradation', 'set', 'image'], tag='residual_embedding_R4')
    points, method = project_2d(matrix)
    table = output_dir / 'embeddings_2d.csv'
    with open(table, 'w', newline='', encoding='utf-8') as handle:
        writer = csv.writer(handle)
        writer.writerow(['degradation', 'set', 'image', 'x', 'y'])
        writer.writerows([label, row['set'], row['name'], x, y]
                         for label, row, (x, y) in zip(labels, rows, points, strict=True))
    plot = output_dir / 'embeddings_2d.png'
    write_rgb(plot, scatter_plot(points, labels, f'residual embedding R4, {method}, {len(rows)} images'))
    return [output_dir / 'projector', table, plot]
