"""`data.tasks`: degradation ids, task groups, replication and the `--de_type` parser."""

import pytest

from data.tasks import (
    DE_TYPES,
    DEFAULT_REPLICATION,
    FIVE_TASK,
    NOISE_IDS,
    NOISE_SIGMAS,
    THREE_TASK,
    parse_de_type,
    parse_replication,
    train_task,
)


def test_ids_and_groups_are_the_papers():
    assert DE_TYPES == {'denoise_15': 0, 'denoise_25': 1, 'denoise_50': 2, 'derain': 3, 'dehaze': 4, 'deblur': 5,
                        'lowlight': 6, 'single': 7}
    assert NOISE_IDS == tuple(DE_TYPES[t] for t in NOISE_SIGMAS) == (0, 1, 2)
    assert set(THREE_TASK) == {'derain', 'dehaze', 'denoise_15', 'denoise_25', 'denoise_50'}
    assert set(FIVE_TASK) == {'denoise_25', 'derain', 'dehaze', 'deblur', 'lowlight'}
    assert DEFAULT_REPLICATION == {'denoise_15': 5, 'denoise_25': 5, 'denoise_50': 5, 'derain': 360, 'dehaze': 1,
                                   'deblur': 35, 'lowlight': 150, 'single': 5}


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
