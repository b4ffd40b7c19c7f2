"""Degradation awareness as a picture (`test.py --dump_embeddings`): the residual embedding R4 of every test
image, pooled over space, labelled by its degradation.

Writes, below the output folder, TensorBoard's embedding projector data (`projector/`, open it with
`tensorboard --logdir <folder>/projector`), the 2-D coordinates (`embeddings_2d.csv`) and a scatter plot
coloured by degradation (`embeddings_2d.png`, drawn with matplotlib through `utils.figures`): the paper's
degradation-awareness figure. The 2-D map is t-SNE where scikit-learn is installed (optional, not in
requirements.txt) and there are enough images, PCA otherwise; the plot's title and axes say which.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from utils.atomic import write_text_atomically
from utils.figures import colour, new_figure, write_png

# The axes of each 2-D map: PCA keeps the embedding's own units, t-SNE's coordinates have none.
_AXES = {'PCA': 'principal axis {} (embedding units)', 't-SNE': 't-SNE axis {} (no unit)'}
_MIN_TSNE = 8  # below this many images t-SNE says nothing that PCA does not


def degradation_label(row: dict) -> str:
    """The colour label of an image: its task, with the noise level for denoising (`denoise σ=25`)."""
    return row['task'] if row['sigma'] is None else f'{row["task"]} σ={row["sigma"]}'


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


def scatter_figure(points: np.ndarray, labels: Sequence[str], method: str, size: tuple[int, int] = (900, 720)
                   ) -> Figure:
    """N x 2 points made by `method` ('PCA' or 't-SNE'), one colour and one legend entry per label, in the order
    the labels first appear."""
    figure, axes = new_figure(size, f'residual embedding R4 of {len(points)} test images, {method}',
                              _AXES[method].format(1), _AXES[method].format(2))
    labels = np.asarray(labels)
    for index, name in enumerate(dict.fromkeys(labels)):
        chosen = points[labels == name]
        axes.scatter(chosen[:, 0], chosen[:, 1], s=40, color=colour(index), edgecolors='white', linewidths=0.5,
                     label=name)
    axes.legend(title='degradation', loc='upper left', bbox_to_anchor=(1.01, 1.0), fontsize='small')
    return figure


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
    table, text = output_dir / 'embeddings_2d.csv', io.StringIO(newline='')
    writer = csv.writer(text)
    writer.writerow(['degradation', 'set', 'image', 'x', 'y'])
    writer.writerows([label, row['set'], row['name'], x, y]
                     for label, row, (x, y) in zip(labels, rows, points, strict=True))
    write_text_atomically(table, text.getvalue())
    plot = output_dir / 'embeddings_2d.png'
    write_png(scatter_figure(points, labels, method), plot)
    return [output_dir / 'projector', table, plot]
