"""The `--de_type` tokens: degradation ids, task groups and per-task replication.

A token names one kind of training pair. The three noise levels are separate tokens (and ids) that share one
folder of clean images; every other token has its own folder of degraded/clean pairs (see `data.layouts`).
"""

from collections.abc import Iterable

DE_TYPES: dict[str, int] = {
    'denoise_15': 0,
    'denoise_25': 1,
    'denoise_50': 2,
    'derain': 3,
    'dehaze': 4,
    'deblur': 5,
    'lowlight': 6,
    'single': 7,
}
NOISE_SIGMAS: dict[str, int] = {'denoise_15': 15, 'denoise_25': 25, 'denoise_50': 50}
NOISE_IDS = tuple(DE_TYPES[token] for token in NOISE_SIGMAS)  # (0, 1, 2)

THREE_TASK = ('derain', 'dehaze', 'denoise_15', 'denoise_25', 'denoise_50')
FIVE_TASK = ('denoise_25', 'derain', 'dehaze', 'deblur', 'lowlight')
# Every task with all three noise levels: the demo's training set and the CPU study's.
ALL_TOKENS = (*THREE_TASK, 'deblur', 'lowlight')

# How many times each token's list is repeated in one epoch, as in the paper's code: it balances a few hundred
# rain pairs against tens of thousands of hazy ones.
DEFAULT_REPLICATION: dict[str, int] = {
    'denoise_15': 5,
    'denoise_25': 5,
    'denoise_50': 5,
    'derain': 360,
    'dehaze': 1,
    'deblur': 35,
    'lowlight': 150,
    'single': 5,
}


def train_task(token: str) -> str:
    """The training-root key (`data.layouts.default_train_roots`) that holds a token's images."""
    return 'denoise' if token in NOISE_SIGMAS else token


def _split(tokens: str | Iterable[str]) -> list[str]:
    """Tokens from a string or a list of strings; commas and whitespace both separate."""
    parts = [tokens] if isinstance(tokens, str) else list(tokens)
    return [t for part in parts for t in part.replace(',', ' ').split()]


def parse_de_type(tokens: str | Iterable[str]) -> list[str]:
    """Validate `--de_type` tokens; keeps their order and drops repeats.

    Raises:
        ValueError: on an unknown token or an empty list, listing the valid tokens.
    """
    valid = ' '.join(DE_TYPES)
    found = _split(tokens)
    unknown = [t for t in found if t not in DE_TYPES]
    if unknown:
        raise ValueError(f'--de_type: unknown token(s) {", ".join(unknown)}; valid tokens are: {valid}')
    if not found:
        raise ValueError(f'--de_type: no token given; valid tokens are: {valid}')
    return list(dict.fromkeys(found))


def parse_replication(spec: str | Iterable[str]) -> dict[str, int]:
    """Parse replication overrides such as `derain=100 dehaze=2` (or comma separated) into a dict.

    Raises:
        ValueError: on a malformed entry, an unknown token or a count below 1.
    """
    out: dict[str, int] = {}
    for entry in _split(spec):
        token, sep, count = entry.partition('=')
        if not sep or not count.isdigit() or int(count) < 1:
            raise ValueError(f'replication: {entry!r} is not TOKEN=COUNT with COUNT >= 1 (e.g. derain=100)')
        out[parse_de_type([token])[0]] = int(count)
    return out
