"""The networks of DA-RCOT: transport maps (MODELS) and the critic.

`MODELS` is an explicit table: the `--backbone` flag picks a row; every map returns `(restored, embedding)`.
"""

from .blocks import set_activation_checkpointing, start_near_identity
from .critic import Critic
from .mrcnet import LEFTOVER_PREFIXES, MRCNet, RCNet
from .restormer import Restormer

MODELS = {
    'MRCNet': MRCNet,
    'Restormer': Restormer,
    'RCNet': RCNet,
}

__all__ = ['MODELS', 'Critic', 'LEFTOVER_PREFIXES', 'MRCNet', 'RCNet', 'Restormer', 'set_activation_checkpointing',
           'start_near_identity']
