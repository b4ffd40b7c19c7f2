"""Reports of evaluation records (summary.json, results.md beside the paper, console table) and the
degradation-awareness outputs of --dump_embeddings."""

import json
import math
import sys

import numpy as np
import pytest

from data.image_io import read_rgb
from utils.embeddings import degradation_label, pca_2d, project_2d, scatter_figure, write_embeddings
from utils.report import PAPER_AVERAGES, console_table, markdown_report, measured_average, paper_result, write_reports


def record(task, name, sigma=None, psnr=30.0, ssim=0.9, **extra):
    return {'task': task, 'set': name, 'sigma': sigma, 'protocol': 'pad', 'y_channel': False, 'n_images': 2,
            'psnr': psnr, 'ssim': ssim, 'lpips': None, 'fid': None, 'input_psnr': 20.0, 'input_ssim': 0.5,
            'offset': -0.5, 'input_offset': 2.0, 'seconds_per_image': 0.1,
            'not_computed': {'lpips': 'not requested', 'fid': 'not requested'}, **extra}


FIVE_TASKS = [record('dehaze', 'SOTS', psnr=31.0, ssim=0.97), record('derain', 'Rain100L', psnr=38.0, ssim=0.98),
              record('denoise', 'CBSD68', 25, psnr=31.0, ssim=0.88), record('deblur', 'GoPro', psnr=28.0, ssim=0.87),
              record('lowlight', 'LOL', psnr=23.0, ssim=0.84)]


def test_sets_meet_the_papers_numbers_by_task_name_and_sigma():
    assert paper_result(record('denoise', 'bsd68', 15), '3 tasks').psnr == 33.98
    assert paper_result(record('denoise', 'CBSD68', 50), '3 tasks').ssim == 0.801
    assert paper_result(record('denoise', 'bsd68', 15), '5 tasks') is None
    assert paper_result(record('denoise', 'kodak24', 25), '5 tasks') is None
    assert paper_result(record('derain', 'Rain12'), '3 tasks') is None
    assert paper_result(record('derain', 'Rain100L'), '5 tasks').psnr == 37.87
    assert paper_result(record('lowlight', 'lowlight'), '5 tasks').psnr == 23.25
    assert paper_result(record('mixed', 'mixed'), '5 tasks') is None


def test_averages_only_when_every_set_of_a_setting_was_measured():
    assert measured_average(FIVE_TASKS, '5 tasks') == pytest.approx((30.2, 0.908))
    assert measured_average(FIVE_TASKS, '3 tasks') is None
    assert measured_average(FIVE_TASKS[1:], '5 tasks') is None


def test_markdown_puts_the_papers_numbers_beside_the_measured_ones():
    text = markdown_report(FIVE_TASKS + [record('mixed', 'mixed', not_computed={'lpips': 'no lpips here'})],
                           'ckpt.pth (MRCNet)')
    lines = text.splitlines()
    assert 'Checkpoint: ckpt.pth (MRCNet)' in text and 'Protocol pad' in text and 'RGB PSNR/SSIM' in text
    gopro = next(line for line in lines if line.startswith('| deblur'))
    assert '28.00 / 0.870' in gopro and '| +2.0 / -0.5 |' in gopro and gopro.endswith('| 28.68 / 0.872 |')
    dehaze = next(line for line in lines if line.startswith('| dehaze'))
    assert '31.26 / 0.977' in dehaze and '30.96 / 0.975' in dehaze
    assert '| 5 tasks | 30.20 / 0.908 | 30.40 / 0.911 | 25.57 |' in lines
    assert '| 3 tasks | — (not every set measured) | 32.60 / 0.917 | 30.20 |' in lines
    assert "paper's columns" in text and '- LPIPS not computed: no lpips here' in text
    assert PAPER_AVERAGES['3 tasks'] == (32.60, 0.917)
    y_text = markdown_report([record('derain', 'Rain100L', y_channel=True)], 'x')
    assert 'Y (BT.601' in y_text and 'the paper reports RGB' in y_text


def test_summary_json_and_console_table(tmp_path):
    records = FIVE_TASKS[:2] + [record('mixed', 'mixed', psnr=math.inf)]
    summary, markdown = write_reports(records, tmp_path / 'results', 'ckpt.pth')
    loaded = json.loads(summary.read_text())
    assert [r['set'] for r in loaded] == ['SOTS', 'Rain100L', 'mixed']
    assert loaded[0]['sigma'] is None and loaded[0]['lpips'] is None and loaded[2]['psnr'] is None
    assert {'task', 'set', 'sigma', 'protocol', 'n_images', 'psnr', 'ssim', 'lpips'} <= set(loaded[0])
    assert markdown.read_text().startswith('# DA-RCOT evaluation')
    assert not list((tmp_path / 'results').glob('.*'))
    table = console_table(FIVE_TASKS[2:3]).splitlines()
    assert 'input PSNR' in table[0] and 'restored PSNR' in table[0]
    assert table[2].split() == ['denoise/CBSD68_sigma25', '2', '20.00', '0.500', '31.00', '0.880', '11.00']


def test_pca_keeps_planar_data_and_orders_the_axes():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(50, 2)) * [10.0, 1.0]
    rotation = np.linalg.qr(rng.normal(size=(6, 6)))[0][:2]
    projected = pca_2d(points @ rotation + 3.0)  # 6-D data that lives in a plane

    def distances(x):
        return np.linalg.norm(x[:, None] - x[None], axis=-1)

    np.testing.assert_allclose(distances(projected), distances(points), atol=1e-9)  # an isometry of the plane
    covariance = np.cov(projected, rowvar=False)
    assert covariance[0, 0] > covariance[1, 1] and abs(covariance[0, 1]) < 1e-9
    assert pca_2d(np.ones((3, 1))).shape == (3, 2)


def test_embedding_outputs(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'sklearn', None)  # PCA whether or not scikit-learn is installed
    monkeypatch.setitem(sys.modules, 'sklearn.manifold', None)
    rng = np.random.default_rng(0)
    rows = [{'task': task, 'set': 'x', 'sigma': sigma, 'name': f'{task}{k}', 'embedding': rng.normal(size=16) + shift}
            for shift, (task, sigma) in enumerate([('denoise', 25), ('derain', None), ('dehaze', None)])
            for k in range(4)]
    assert degradation_label(rows[0]) == 'denoise σ=25' and degradation_label(rows[4]) == 'derain'
    points, method = project_2d(np.stack([row['embedding'] for row in rows]))
    assert method == 'PCA'
    projector, table, plot = write_embeddings(rows, tmp_path)
    assert (projector / 'projector_config.pbtxt').is_file()
    metadata = next(projector.rglob('metadata.tsv')).read_text().splitlines()
    assert metadata[0].split('\t') == ['degradation', 'set', 'image'] and len(metadata) == 13
    tensors = np.loadtxt(next(projector.rglob('tensors.tsv')), delimiter='\t')
    assert tensors.shape == (12, 16)
    lines = table.read_text().splitlines()
    assert len(lines) == 13 and lines[1].startswith('denoise σ=25,x,denoise0,')
    np.testing.assert_allclose(np.loadtxt(lines[1:], delimiter=',', usecols=(3, 4)), points, rtol=1e-12)
    image = read_rgb(plot)
    assert image.shape == (720, 900, 3) and len(np.unique(image.reshape(-1, 3), axis=0)) > 20  # not blank
    assert sorted(p.name for p in tmp_path.iterdir()) == ['embeddings_2d.csv', 'embeddings_2d.png', 'projector']
    with pytest.raises(ValueError, match='at least 2'):
        write_embeddings(rows[:1], tmp_path / 'one')


@pytest.mark.parametrize('method, axis', [('PCA', 'principal axis 2 (embedding units)'),
                                          ('t-SNE', 't-SNE axis 2 (no unit)')])
def test_the_scatter_plot_draws_each_degradation_where_its_points_are(method, axis):
    points = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [-1.0, 0.5], [6.0, -2.0]])
    labels = ['derain', 'denoise σ=15', 'derain', 'denoise σ=15', 'dehaze']
    axes = scatter_figure(points, labels, method).axes[0]
    drawn = {collection.get_label(): np.asarray(collection.get_offsets()).tolist() for collection in axes.collections}
    assert drawn == {'derain': [[0.0, 1.0], [4.0, 5.0]], 'denoise σ=15': [[2.0, 3.0], [-1.0, 0.5]],
                     'dehaze': [[6.0, -2.0]]}
    colours = [tuple(collection.get_facecolor()[0]) for collection in axes.collections]
    assert len(set(colours)) == 3
    legend = axes.get_legend()
    assert [text.get_text() for text in legend.get_texts()] == ['derain', 'denoise σ=15', 'dehaze']
    assert legend.get_title().get_text() == 'degradation' and axes.get_ylabel() == axis
    assert axes.get_title() == f'residual embedding R4 of 5 test images, {method}'


def test_tsne_is_used_where_scikit_learn_is_installed(monkeypatch):
    import types

    class StandInTSNE:
        def __init__(self, n_components, perplexity, init, random_state):
            assert n_components == 2 and perplexity < 8 / 3 + 1e-9

        def fit_transform(self, matrix):
            return matrix[:, :2]

    manifold = types.ModuleType('sklearn.manifold')
    manifold.TSNE = StandInTSNE
    monkeypatch.setitem(sys.modules, 'sklearn', types.ModuleType('sklearn'))
    monkeypatch.setitem(sys.modules, 'sklearn.manifold', manifold)
    matrix = np.arange(8 * 5, dtype=float).reshape(8, 5) ** 1.5
    points, method = project_2d(matrix)
    assert method == 't-SNE' and np.array_equal(points, matrix[:, :2])
    assert project_2d(matrix[:7])[1] == 'PCA'  # too few images for t-SNE
