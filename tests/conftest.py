"""Fixtures shared by several test modules."""

import pytest
import torch


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's tiny networks on one intra-op thread (a module opts in with
    `pytestmark = pytest.mark.usefixtures("one_torch_thread")`): on an oversubscribed CI box the threads of these
    tiny convolutions fight each other (1 thread was ~10x faster than 2 here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
