"""Shared fixtures."""

import pytest
import torch


@pytest.fixture(scope='module')
def one_thread():
    """One intra-op thread: on a small shared CPU, more threads make tiny convolutions many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
