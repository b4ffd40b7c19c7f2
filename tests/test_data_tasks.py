"""`data.tasks`: degradation ids, task groups, replication and the `--de_type` parser."""

import pytest

from data.tasks import (
    FIVE_TASK,
    THREE_TASK,
    parse_de_type,
    parse_replication,
    train_task,
)


def test_train_task_maps_noise_levels_to_one_folder():
    assert [train_task(t) for t in THREE_TASK] == ['derain', 'dehaze', 'denoise', 'denoise', 'denoise']


def test_parse_de_type_accepts_lists_commas_and_drops_repeats():
    assert parse_de_type(['derain', 'dehaze']) == ['derain', 'dehaze']
    assert parse_de_type('derain,dehaze  derain') == ['derain', 'dehaze']
    assert parse_de_type(list(FIVE_TASK)) == list(FIVE_TASK)


@pytest.mark.parametrize('tokens', [['derain', 'denoise'], 'rain', ['deblur', 'low_light']])
def test_parse_de_type_rejects_unknown_tokens_listing_the_valid_ones(tokens):
    with pytest.raises(ValueError, match=r'--de_type: unknown token.*valid tokens are: denoise_15 .* single'):
        parse_de_type(tokens)


def test_parse_de_type_rejects_an_empty_list():
    with pytest.raises(ValueError, match='--de_type: no token given'):
        parse_de_type([])


def test_parse_replication():
    assert parse_replication(['derain=100', 'dehaze=2']) == {'derain': 100, 'dehaze': 2}
    assert parse_replication('denoise_15=1,lowlight=3') == {'denoise_15': 1, 'lowlight': 3}
    for bad in ('derain', 'derain=0', 'derain=x', 'derain=-1'):
        with pytest.raises(ValueError, match='TOKEN=COUNT'):
            parse_replication(bad)
    with pytest.raises(ValueError, match='unknown token'):
        parse_replication('rain=3')
