"""`data.check`: the report on a user's tree: what it found, what is wrong, and what it can train and test. The
synthetic trees are not the paper's data, so they are checked without the training lists (tests/test_train_lists.py
checks with them)."""

from data import check
from tests.fixtures import make_test_tree, make_train_tree, write_pair


def test_a_complete_tree_reports_counts_sizes_and_both_task_groups(tmp_path):
    make_train_tree(tmp_path / 'Train')
    make_test_tree(tmp_path / 'Test')
    text, ok = check.run_check(tmp_path / 'Train', tmp_path / 'Test', data_lists='none')
    assert ok and 'No problem found.' in text
    assert 'Derain: 3 pairs, 24x20' in text and 'Denoise: 2 clean images, 2 sizes, 24x20 to 18x30' in text
    assert 'Rain100L: 2 pairs' in text and 'mixed' in text
    assert text.count('3-task (--de_type derain dehaze denoise_15 denoise_25 denoise_50): yes') == 2
    assert text.count('5-task (--de_type denoise_25 derain dehaze deblur lowlight): yes') == 2
    assert check.main(['--train_root', str(tmp_path / 'Train'), '--test_root', str(tmp_path / 'Test'),
                       '--data_lists', 'none']) == 0


def test_problems_are_listed_and_make_the_check_fail(tmp_path, capsys):
    roots = make_train_tree(tmp_path / 'Train')
    (roots['derain'] / 'rainy/rain-2.png').write_bytes(b'')
    write_pair(roots['lowlight'] / 'low/5.png', roots['lowlight'] / 'high/6.png', 3)
    write_pair(None, roots['deblur'] / 'sharp/GOPR0372_07_00/000048.png', 4, (8, 8))
    write_pair(roots['single'] / 'degraded/y.png', roots['single'] / 'target/y.png', 5)
    write_pair(None, roots['single'] / 'target/y.png', 6, (9, 9))
    assert check.main(['--train_root', str(tmp_path / 'Train'), '--test_root', str(tmp_path / 'Test'),
                       '--data_lists', 'none']) == 1
    text = capsys.readouterr().out
    assert 'PROBLEM unreadable:' in text and 'rain-2.png: the file is empty' in text
    assert 'have no clean partner' in text and 'low/5.png' in text and 'high/6.png' in text
    assert 'no degraded partner' in text and '000048.png' in text
    assert 'PROBLEM sizes differ:' in text and 'y.png 9x9' in text
    assert '3-task (--de_type derain dehaze denoise_15 denoise_25 denoise_50): no, needs derain' in text
    assert 'Test data' in text and 'does not exist' in text and 'Expected layout' in text


def test_missing_tasks_say_which_groups_cannot_run(tmp_path):
    roots = make_train_tree(tmp_path / 'Train')
    for task in ('deblur', 'lowlight'):
        for path in sorted(roots[task].rglob('*'), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
    make_test_tree(tmp_path / 'Test')
    text, ok = check.run_check(tmp_path / 'Train', tmp_path / 'Test', decode=False, data_lists='none')
    assert ok  # nothing found is wrong; some is missing
    assert 'deblur    ' in text and 'Deblur/blur does not exist' in text
    assert '3-task (--de_type derain dehaze denoise_15 denoise_25 denoise_50): yes' in text
    assert '5-task (--de_type denoise_25 derain dehaze deblur lowlight): no, needs deblur, lowlight' in text


def test_an_empty_tree_fails(tmp_path):
    text, ok = check.run_check(tmp_path / 'Train', tmp_path / 'Test')
    assert not ok and 'no data at all' in text
