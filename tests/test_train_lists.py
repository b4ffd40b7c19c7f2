"""`data.train_lists` and `--data_lists`: the official training lists, how they are matched against a tree, what
is counted and reported, and the epoch they give.

The trees here hold empty files: matching, pairing and the epoch size read names only (nothing is decoded).
"""

import os
from pathlib import Path

import pytest

from data import check
from data.layouts import DataLayoutError, default_train_roots, shared_data
from data.tasks import DEFAULT_REPLICATION, THREE_TASK
from data.train_lists import LISTS, OFFICIAL_LISTS, list_path, list_paths, match_list, read_list
from data.train_set import TrainDataset
from options import parse_flags

SHARED_LISTS = shared_data().parent / 'lists'  # ../shared/lists, beside ../shared/data (DARCOT_SHARED_DATA)
COUNTS = {'denoise': 5_144, 'derain': 200, 'dehaze': 72_135}


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def write_lists(folder: Path, lists: dict[str, list[str]]) -> Path:
    """A lists folder laid out as data/lists, holding the lists of the given tasks; returns `folder`."""
    for task, names in lists.items():
        touch(folder / LISTS[task])
        (folder / LISTS[task]).write_text('\n'.join(names), encoding='utf-8')
    return folder


def haze_clean(name: str) -> str:
    """RESIDE OTS: the clean image of `synthetic/partK/XXXX_beta_A.jpg` is `original/XXXX.jpg`."""
    return f'original/{Path(name).name.split("_")[0]}.jpg'


def build_tree(train: Path, denoise: list[str], derain: list[str], dehaze: list[str]) -> dict[str, Path]:
    """Empty files in the training layout: denoise names alternately under BSD400/ and WED/ (matching by name
    looks anywhere below Denoise/), rainy files with their norain partners, hazy files with their clean scenes."""
    roots = default_train_roots(train)
    files = [roots['denoise'] / ('BSD400', 'WED')[i % 2] / name for i, name in enumerate(denoise)]
    files += [roots['derain'] / name for name in derain]
    files += [roots['derain'] / 'gt' / Path(name).name.replace('rain-', 'norain-') for name in derain]
    files += [roots['dehaze'] / name for name in dehaze]
    files += [roots['dehaze'] / clean for clean in {haze_clean(name) for name in dehaze}]
    for folder in {path.parent for path in files}:
        folder.mkdir(parents=True, exist_ok=True)
    for path in files:  # 80,000 files for the full lists: os.open, not Path.touch, keeps it to about a second
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
    return roots


@pytest.mark.parametrize('task', list(LISTS))
def test_the_copied_lists_are_the_official_ones(task):
    path = OFFICIAL_LISTS / LISTS[task]
    lines = path.read_bytes().split(b'\n')
    assert len(read_list(path)) == COUNTS[task] == len([line for line in lines if line])  # and no repeated name
    if not SHARED_LISTS.is_dir():
        pytest.skip(f'no official lists at {SHARED_LISTS} to compare with (set DARCOT_SHARED_DATA to the '
                    '../shared/data beside them)')
    assert path.read_bytes() == (SHARED_LISTS / LISTS[task]).read_bytes()


@pytest.fixture(scope='module')
def official_tree(tmp_path_factory) -> dict[str, Path]:
    """Every file the official lists name (and the clean partners), nothing else."""
    official = {task: list(read_list(OFFICIAL_LISTS / name)) for task, name in LISTS.items()}
    return build_tree(tmp_path_factory.mktemp('official') / 'Train', **official)


@pytest.mark.slow
def test_the_official_lists_give_the_papers_epoch(official_tree):
    # The official replication: each noise level x5, rain x360, haze x1.
    assert {t: DEFAULT_REPLICATION[t] for t in THREE_TASK} == {
        'derain': 360, 'dehaze': 1, 'denoise_15': 5, 'denoise_25': 5, 'denoise_50': 5}
    dataset = TrainDataset(official_tree, THREE_TASK, 32, lists=list_paths('official', THREE_TASK))
    assert len(dataset) == 5_144 * 5 * 3 + 200 * 360 + 72_135 == 221_295
    for task, match in dataset.list_matches.items():
        assert (len(match.kept), match.missing, match.unlisted) == (COUNTS[task], (), ()), task
        assert match.notes == []


@pytest.fixture
def small_tree(tmp_path) -> dict[str, Path]:
    """A few listed files of each task, plus unlisted ones: a BSD400 image under another name (117025.jpg, not
    the list's a117025.jpg), a rain pair beyond the list's 200 and a hazy scene the list leaves out."""
    roots = build_tree(tmp_path / 'Train', denoise=['a247012.jpg', '00012.bmp', '03000.bmp', '117025.jpg'],
                       derain=['rainy/rain-1.png', 'rainy/rain-2.png', 'rainy/rain-3.png', 'rainy/rain-201.png'],
                       dehaze=['synthetic/part1/0025_0.8_0.04.jpg', 'synthetic/part1/0025_0.8_0.06.jpg',
                               'synthetic/part1/0001_0.8_0.2.jpg'])
    (tmp_path / 'Test').mkdir()
    return roots


def test_missing_and_unlisted_files_are_counted_and_named(small_tree):
    match = match_list('denoise', small_tree['denoise'], OFFICIAL_LISTS / LISTS['denoise'])
    assert sorted(p.name for p in match.kept) == ['00012.bmp', '03000.bmp', 'a247012.jpg']  # in BSD400/ and WED/
    assert len(match.missing) == 5_141 and 'a247012.jpg' not in match.missing
    assert [p.relative_to(small_tree['denoise']).as_posix() for p in match.unlisted] == ['WED/117025.jpg']
    report = match.report()
    assert 'denoise: 3 of the 5144 names of' in report and 'matched by file name, anywhere below it' in report
    assert '5141 listed name(s) have no file below' in report and '... and 5136 more' in report
    assert 'a<id>.jpg' in report and '--data_lists none' in report
    assert '1 file(s) below' in report and 'WED/117025.jpg' in report
    assert '1 of these unlisted files are listed with an `a` in front (BSD400: 117025.jpg is listed as a117025.jpg)' \
        in report

    rain = match_list('derain', small_tree['derain'], OFFICIAL_LISTS / LISTS['derain'])
    assert (len(rain.kept), len(rain.missing)) == (3, 197)
    assert [p.name for p in rain.unlisted] == ['rain-201.png']  # below rainy/ only: gt/ is not searched
    haze = match_list('dehaze', small_tree['dehaze'], OFFICIAL_LISTS / LISTS['dehaze'])
    assert (len(haze.kept), len(haze.missing), len(haze.unlisted)) == (2, 72_133, 1)
    assert 'part1/0001_0.8_0.2.jpg' in haze.report() and 'matched by the path relative to it' in haze.report()


def test_the_lists_choose_the_training_files_and_none_takes_the_folders(small_tree):
    official = TrainDataset(small_tree, THREE_TASK, 32, replication={t: 1 for t in THREE_TASK},
                            lists=list_paths('official', THREE_TASK))
    assert {s.token: len(s.pairs) for s in official.sources} == {
        'derain': 3, 'dehaze': 2, 'denoise_15': 3, 'denoise_25': 3, 'denoise_50': 3}
    assert len(official) == 3 + 2 + 3 * 3
    assert list_paths('none', THREE_TASK) == {}
    scan = TrainDataset(small_tree, THREE_TASK, 32, replication={t: 1 for t in THREE_TASK},
                        lists=list_paths('none', THREE_TASK))
    assert len(scan) == 4 + 3 + 3 * 4 and scan.list_matches == {}


def test_a_listed_file_without_its_partner_is_still_an_error(small_tree):
    (small_tree['derain'] / 'gt/norain-2.png').unlink()
    (small_tree['derain'] / 'gt/norain-201.png').unlink()  # unlisted: its partner does not matter
    with pytest.raises(DataLayoutError, match=r'1 degraded file\(s\) .* no clean partner') as error:
        TrainDataset(small_tree, ['derain'], 32, lists=list_paths('official', ['derain']))
    assert 'rain-2.png' in str(error.value) and 'rain-201' not in str(error.value)


def test_a_task_with_no_listed_file_says_what_to_do(small_tree):
    for path in list(small_tree['denoise'].rglob('*.*')):
        path.rename(path.with_name('x' + path.name))  # a download whose names are none of the list's
    with pytest.raises(DataLayoutError, match=r'denoise: none of the 5144 names of .*denoise\.txt is below .*'
                                              r'Denoise .*4 image\(s\) there are not in the list.*--data_lists none'):
        TrainDataset(small_tree, ['denoise_25'], 32, lists=list_paths('official', ['denoise_25']))
    text, ok = check.run_check(small_tree['denoise'].parent, small_tree['denoise'].parent.parent / 'Test',
                               decode=False)
    assert not ok and 'PROBLEM none of the 5144 names' in text
    assert '3-task (--de_type derain dehaze denoise_15 denoise_25 denoise_50): no, needs denoise' in text


def test_data_check_reports_the_counts(small_tree, capsys):
    train = small_tree['denoise'].parent
    argv = ['--train_root', str(train), '--test_root', str(train.parent / 'Test'), '--no_decode']
    assert check.main(argv) == 0  # notes are no problem
    text = capsys.readouterr().out
    assert 'Denoise: 3 clean images; list: 3 of the 5144 names of' in text
    assert 'NOTE 5141 listed name(s) have no file below' in text and 'NOTE 1 file(s) below' in text
    assert 'Derain: 3 pairs; list: 3 of the 200 names' in text and 'NOTE 197 listed name(s)' in text
    assert 'Dehaze: 2 pairs; list: 2 of the 72135 names' in text and 'rain-201.png' in text
    assert '3-task (--de_type derain dehaze denoise_15 denoise_25 denoise_50): yes' in text
    assert 'NOTE lines: the training lists and the folders differ' in text
    check.main([*argv, '--data_lists', 'none'])
    text = capsys.readouterr().out
    assert 'Denoise: 4 clean images' in text and 'Derain: 4 pairs' in text and 'NOTE' not in text


def test_a_lists_folder_must_hold_every_list_the_tasks_need(tmp_path, capsys):
    folder = write_lists(tmp_path / 'mine', {'derain': ['rainy/rain-1.png']})
    assert list_paths(str(folder), ['derain', 'deblur']) == {'derain': folder / LISTS['derain']}
    assert list_path(str(folder), 'lowlight') is None  # no task of its own list: the folder scan
    assert parse_flags(['--data_lists', str(folder), '--de_type', 'derain']).data_lists == str(folder)
    with pytest.raises(SystemExit):
        parse_flags(['--data_lists', str(folder), '--de_type', 'derain', 'dehaze'])
    assert f'--data_lists {folder}: {folder / "hazy/hazy_outside.txt"} does not exist' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_flags(['--data_lists', str(tmp_path / 'absent')])
    assert 'no such folder' in capsys.readouterr().err
    assert parse_flags([]).data_lists == 'official' and parse_flags(['--preset', 'demo']).data_lists == 'none'


def test_the_trainer_reports_its_lists_at_start(tmp_path, capsys):
    import trainer
    from tests.fixtures import tiny_argv, write_tiny_data

    data = write_tiny_data(tmp_path / 'data')  # Denoise/clean0-2.png, Derain/rainy/rain-1,2.png
    lists = write_lists(tmp_path / 'lists', {'denoise': ['clean0.png', 'clean1.png', 'lost.png'],
                                             'derain': ['rainy/rain-1.png', 'rainy/rain-2.png']})
    trainer.main(tiny_argv(data, tmp_path / 'run', '--data_lists', str(lists), '--max_iters', '1'))
    out = capsys.readouterr()
    text = out.out + out.err
    assert 'training list of denoise: 2 of the 3 names of' in text
    assert '1 listed name(s) have no file below' in text and 'lost.png' in text
    assert '1 file(s) below' in text and 'clean2.png' in text
    assert 'training list of derain: 2 of the 2 names of' in text
