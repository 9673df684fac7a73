"""antlr_exp.load_run: a run's network, neuron parameters, config and data settings.

The oracle of a loaded network is the run's own test: the loaded network, evaluated on the data
its settings load, must give the test loss, accuracy and spike counts its summary.json holds.
"""

from __future__ import annotations

import json

import pytest
import torch
from helpers.runs import compose_config, tiny_overrides

import antlr_exp
from antlr_exp.errors import ConfigError
from antlr_exp.training import checkpoint as ckpt
from antlr_exp.training.evaluation import evaluate
from antlr_exp.training.metrics import SplitMeter
from antlr_exp.training.objective import Objective
from antlr_exp.training.run import run

pytestmark = pytest.mark.usefixtures("one_thread")

COMPARED = ("test_loss", "test_accuracy", "test_hidden_spikes_per_sample", "test_synops_per_sample")


def retest(loaded) -> dict:
    """The loaded network's test metrics on the data its settings load."""
    data = loaded.data.load()
    meter = SplitMeter(loaded.config.loss.decision, data.target_kind == "label")
    objective = Objective(loaded.config, data.num_outputs)
    return evaluate(
        loaded.network, data.test, objective, meter, loaded.data.test_batch_size, torch.device("cpu"), "test"
    )


def assert_same_test(metrics: dict, summary: dict) -> None:
    for key in COMPARED:
        if summary.get(key) is not None:
            assert metrics[key] == pytest.approx(summary[key], rel=1e-6), key


@pytest.fixture(scope="module")
def stacked(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stacked")
    torch.set_num_threads(1)
    run(compose_config(*tiny_overrides("matching", {}), "trials=2", "task.hidden_sizes=[8]"), folder)
    return folder


def test_a_plain_run_loads_with_its_data_settings(data_roots, tmp_path):
    run(compose_config(*tiny_overrides("mnist", data_roots), "seed=5", "dtype=float64"), tmp_path)
    loaded = antlr_exp.load_run(tmp_path)
    assert loaded is not None and loaded.trial is None
    assert loaded.checkpoint == tmp_path / "checkpoints" / "best.pt"
    assert loaded.network.sizes == [784, 32, 10] and loaded.network.layers[0].weight.dtype == torch.float64
    assert loaded.neuron == loaded.network.params and isinstance(loaded.neuron.beta_V, float)
    assert loaded.config.seed == 5 and loaded.config.task.name == "mnist"
    settings = loaded.data
    assert (settings.task, settings.root, settings.seed, settings.limit_test) == (
        "mnist",
        str(data_roots["mnist"]),
        5,
        8,
    )
    assert (settings.num_steps, settings.test_batch_size) == (30, 8)
    assert_same_test(retest(loaded), json.loads((tmp_path / "summary.json").read_text()))


def test_a_stacked_run_loads_each_trial_from_its_folder_and_from_last_pt(stacked):
    last = ckpt.load(stacked / "checkpoints" / "last.pt")["model"]
    for k in range(2):
        folder = stacked / f"seed_{k}"
        best = ckpt.load(folder / "checkpoints" / "best.pt")["model"]
        for loaded in (antlr_exp.load_run(folder), antlr_exp.load_run(stacked, trial=k)):
            assert loaded.config.seed == k and loaded.config.trials == 1
            for key, value in best.items():
                assert torch.equal(loaded.network.state_dict()[key], value), key
            assert_same_test(retest(loaded), json.loads((folder / "summary.json").read_text()))
        from_last = antlr_exp.load_run(stacked / "checkpoints" / "last.pt", trial=k)
        assert from_last.trial == k and from_last.config.seed == k and from_last.network.trials == 1
        for key, value in last.items():
            assert torch.equal(from_last.network.state_dict()[key], value[k]), key


def one_line_error(path, **kwargs) -> str:
    with pytest.raises(ConfigError) as error:
        antlr_exp.load_run(path, **kwargs)
    message = str(error.value)
    assert "\n" not in message
    return message


def test_what_is_not_a_run_is_one_line(stacked, tmp_path):
    (tmp_path / "empty").mkdir()
    assert "is not a run folder" in one_line_error(tmp_path / "empty")
    assert "does not exist" in one_line_error(tmp_path / "nowhere")
    assert "trial=0..1" in one_line_error(stacked)
    assert "trial=0..1" in one_line_error(stacked / "checkpoints" / "last.pt")
    assert "trial=0..1" in one_line_error(stacked, trial=2)
    assert "trial=0..1" in one_line_error(stacked / "checkpoints" / "last.pt", trial=5)
    assert "holds one network" in one_line_error(stacked / "seed_1", trial=1)
    assert "accepted: None or a trial index" in one_line_error(stacked, trial=-1)
    cut = tmp_path / "cut.pt"
    cut.write_bytes((stacked / "seed_0" / "checkpoints" / "best.pt").read_bytes()[:300])
    assert "truncated or corrupt" in one_line_error(cut)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    assert "is not a checkpoint of antlr-train" in one_line_error(foreign)
