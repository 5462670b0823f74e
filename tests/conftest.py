"""Shared fixtures."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def one_thread():
    """Tiny matmuls: 1 thread avoids OpenMP overhead (large on a loaded machine)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def studio_runs(tmp_path_factory):
    """A tiny translator, series autoencoder and captioner, trained once for the studio tests."""
    from studio_runs import make_runs

    return make_runs(tmp_path_factory.mktemp("studio"))


@pytest.fixture(scope="session")
def studio_transformer_run(tmp_path_factory):
    """A tiny Transformer translator for the studio tests."""
    from studio_runs import make_transformer_run

    return make_transformer_run(tmp_path_factory.mktemp("studio_trf"))
