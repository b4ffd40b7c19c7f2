"""`python -m study` on a minimal budget: two variants, two iterations, a tiny model and a tiny data set; the
table, the plot, the TensorBoard logs and STUDY.md's section come out, and a rerun reuses finished runs."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import study.runner
from data.image_io import read_rgb, write_rgb
from options import check_map_size, parse_flags
from study import report
from study.__main__ import main as study_main
from study.report import curve_figure, update_section
from study.runner import trainer_argv
from study.variants import MAIN_VARIANTS, SCALES, VARIANTS, Scale, runs


@pytest.fixture(scope='module', autouse=True)
def restore_threads():
    """`python -m study` sets torch's intra-op threads (1 on a CPU); give the next tests theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _tiny_scale(root: Path) -> Scale:
    rng = np.random.default_rng(0)
    for index in range(2):
        smooth = np.kron(rng.random((10, 10, 3)), np.ones((8, 8, 1)))  # 80 x 80, enough for 32 x 32 patches
        write_rgb(root / 'Train' / 'Denoise' / f'{index}.png', (smooth * 255).astype(np.uint8))
    write_rgb(root / 'Test' / 'denoise' / 'tiny' / 'a.png', (rng.random((40, 48, 3)) * 255).astype(np.uint8))
    flags = ('--preset', 'tiny', '--data_lists', 'none', '--batchSize', '2', '--de_type', 'denoise_25',
             '--log_every', '1', '--save_every', '1000', '--image_every', '1000')
    return Scale('tiny', flags, val_tasks=('denoise',), iters=2, val_every=1, seeds=(0, 1), val_images=1,
                 device='cpu', prepare=lambda work: (['--data_root', str(root / 'Train')], root / 'Test'))


def test_two_variants_give_table_plot_and_section(tmp_path, monkeypatch):
    scale = _tiny_scale(tmp_path / 'data')
    study_md = tmp_path / 'STUDY.md'
    study_md.write_text('# Study\n\nhand-written text\n', encoding='utf-8')
    argv = ['--variants', 'DA-RCOT', 'L1-only', '--seeds', '0', '--out', str(tmp_path / 'out'),
            '--plot', str(tmp_path / 'plot.png'), '--study_md', str(study_md)]
    drawn, to_tensorboard = [], report.to_tensorboard

    def record_the_plot(runs, rgb, log_dir):
        drawn.append(rgb)
        to_tensorboard(runs, rgb, log_dir)

    monkeypatch.setattr(report, 'to_tensorboard', record_the_plot)
    summaries = study_main(argv, scale=scale)

    assert [(s['variant'], s['seed']) for s in summaries] == [('DA-RCOT', 0), ('L1-only', 0)]
    for summary in summaries:
        assert summary['iterations'] == 2 and summary['parameters'] > 0
        assert [p['step'] for p in summary['curve']] == [1, 2]
        assert 0 < summary['curve'][0]['train_seconds'] < summary['curve'][1]['train_seconds']
        assert set(summary['final']) == {'denoise/tiny_sigma25'}
    text = study_md.read_text(encoding='utf-8')
    assert text.startswith('# Study\n\nhand-written text\n')
    rows = [line for line in text.splitlines() if line.startswith('| ') and not line.startswith('| ---')]
    assert [row.split(' | ')[0] for row in rows] == ['| variant', '| degraded input', '| DA-RCOT', '| L1-only']
    assert 'denoise/tiny_sigma25' in rows[0] and '![validation PSNR against training time](plot.png)' in text
    image = read_rgb(tmp_path / 'plot.png')
    assert np.array_equal(image, drawn[0]) and image.shape == (500, 900, 3)  # the pixels TensorBoard got
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 20  # text, lines, grid: not a blank canvas
    assert not list(tmp_path.glob('.*'))  # written through a hidden temporary that was renamed into place
    assert list((tmp_path / 'out' / 'tensorboard').glob('events.out.tfevents.*'))
    assert len(json.loads((tmp_path / 'out' / 'results.json').read_text())) == 2

    # A rerun reuses the finished runs: nothing is trained again.
    def no_training(argv):
        raise AssertionError('trained a run that had a summary')

    monkeypatch.setattr(study.runner.trainer, 'main', no_training)
    assert study_main(argv, scale=scale) == summaries
    assert study_md.read_text(encoding='utf-8').count('<!-- study:tiny -->') == 1
    with pytest.raises(SystemExit, match='another command line'):  # another budget in the same folders
        study_main([*argv, '--iters', '3'], scale=scale)


def _summary(variant, seed, curve, input_psnr=(20.0, 24.0)):
    return {'variant': variant, 'seed': seed, 'curve': [{'train_seconds': t, 'mean_psnr': y} for t, y in curve],
            'final': {f'set{k}': {'input_psnr': value} for k, value in enumerate(input_psnr)}}


def test_the_curves_plot_each_runs_validations_and_the_input_level():
    summaries = [_summary('DA-RCOT', 0, [(1.5, 21.0), (3.0, 22.5)]), _summary('DA-RCOT', 1, [(1.7, 20.5), (3.2, 23.0)]),
                 _summary('L1-only', 0, [(0.5, 19.0), (1.0, 19.5), (1.5, 18.0)])]
    axes = curve_figure(summaries, 'tiny: mean validation PSNR vs training time').axes[0]
    *runs, level = axes.get_lines()
    assert [(list(line.get_xdata()), list(line.get_ydata())) for line in runs] == \
        [([1.5, 3.0], [21.0, 22.5]), ([1.7, 3.2], [20.5, 23.0]), ([0.5, 1.0, 1.5], [19.0, 19.5, 18.0])]
    assert runs[0].get_color() == runs[1].get_color() != runs[2].get_color()  # one colour per variant
    assert list(level.get_ydata()) == [22.0, 22.0] and level.get_linestyle() == '--'  # mean of 20 and 24 dB
    assert [text.get_text() for text in axes.get_legend().get_texts()] == \
        ['DA-RCOT (seeds 0,1)', 'L1-only (seed 0)', 'degraded input']
    assert axes.get_xlabel() == 'training time (s, validation excluded)' and '(dB)' in axes.get_ylabel()
    assert axes.get_title() == 'tiny: mean validation PSNR vs training time' and axes.get_xlim()[0] == 0


def test_main_variants_take_every_seed():
    planned = runs(SCALES['demo'], ('DA-RCOT', 'RCNet', 'Restormer'), (0, 1, 2))
    assert planned == [('DA-RCOT', 0), ('DA-RCOT', 1), ('DA-RCOT', 2), ('RCNet', 0),
                       ('Restormer', 0), ('Restormer', 1), ('Restormer', 2)]
    assert set(MAIN_VARIANTS) <= set(VARIANTS)


@pytest.mark.parametrize('scale', sorted(SCALES))
def test_every_variant_of_every_scale_parses(scale, tmp_path):
    """The trainer accepts each run's command line (the paper scale's too: it is documented, not run here); the map
    sizes once per distinct map (building a paper-size one takes seconds)."""
    checked = set()
    for variant in VARIANTS:
        argv = trainer_argv(replace(SCALES[scale], device='cpu'), variant, 0, ['--data_root', str(tmp_path)],
                            tmp_path, tmp_path / variant, iters=SCALES[scale].iters, val_every=1, minutes=None)
        config = parse_flags(argv)
        map_spec = (config.backbone, repr(config.model_args))
        if map_spec not in checked:
            check_map_size(config)
            checked.add(map_spec)
        assert config.seed == 0 and config.log_dir == str(tmp_path / variant / 'log')
        assert (config.objective == 'l1') == (variant == 'L1-only')
        assert config.no_fourier == (variant == 'no-Fourier')
        assert (config.pairnum == 0) == (variant == 'unpaired')


def test_update_section_replaces_only_its_scale(tmp_path):
    path = tmp_path / 'STUDY.md'
    update_section(path, 'demo', 'first')
    update_section(path, 'shared', 'other')
    update_section(path, 'demo', 'second')
    text = path.read_text(encoding='utf-8')
    assert 'second' in text and 'first' not in text and 'other' in text
    assert text.index('study:demo') < text.index('study:shared')
