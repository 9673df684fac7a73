"""The fixtures every test folder shares; the helpers themselves live in ``tests/helpers/``
(``helpers.runs``: composed configs, fake datasets, tiny runs, the installed command;
``helpers.kernel_paths``, ``helpers.neuron_cases``, ``helpers.timing_oracle``: the engine's)."""

from __future__ import annotations

import os

import pytest
import torch

# Triton's interpreter runs the GPU kernels' tests (tests/engine/test_triton.py) on CPU tensors; triton
# reads TRITON_INTERPRET when it is first imported, which any earlier test may cause, so it is set
# here, before every test module (only without a GPU, where nothing else runs Triton).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
from helpers.kernel_paths import pytest_terminal_summary  # noqa: F401  (says loudly when C++-path tests were skipped)
from helpers.runs import (  # noqa: F401  (also importable from conftest, as before)
    ANTLR_TRAIN,
    DATA_ROOT,
    REPO,
    cli_env,
    compose_config,
    run_cli,
    tiny_overrides,
    write_fake_data,
)


@pytest.fixture(autouse=True)
def no_locks_and_no_hydra_config():
    """``preflight.check_command`` run in-process locks the folders it claims and sets Hydra's
    global config; neither may leak into the next test (a later in-process run would report the
    earlier command's overrides as its own)."""
    yield
    from hydra.core.hydra_config import HydraConfig

    from antlr_exp.cli import preflight

    preflight.release_run_folders()
    HydraConfig.instance().cfg = None


@pytest.fixture
def one_thread():
    """torch on one thread for the test (the tests' runs are tiny), restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def data_roots(tmp_path_factory) -> dict:
    return write_fake_data(tmp_path_factory.mktemp("data"))
