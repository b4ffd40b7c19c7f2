"""The networks of DA-RCOT: transport maps (MODELS) and the critic.

`MODELS` is an explicit table: the `--backbone` flag picks a row; every map returns `(restored, embedding)`.
A map built from an official class names the official modules it leaves out in `leftover_prefixes`.
"""

from .blocks import set_activation_checkpointing, start_near_identity
from .critic import Critic
from .mrcnet import MRCNet, RCNet
from .promptir import PromptIR
from .restormer import Restormer

MODELS = {
    'MRCNet': MRCNet,
    'Restormer': Restormer,
    'RCNet': RCNet,
    'PromptIR': PromptIR,
}

__all__ = ['MODELS', 'Critic', 'MRCNet', 'PromptIR', 'RCNet', 'Restormer', 'set_activation_checkpointing',
           'start_near_identity']
