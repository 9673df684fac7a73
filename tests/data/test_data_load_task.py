"""load_task: task names, options, defaults and the errors a user sees."""

import pytest

from antlr_exp.data import load_task
from antlr_exp.data.common import split_train_val
from antlr_exp.errors import ConfigError, DatasetNotFoundError


def test_unknown_task_names_the_value_and_the_choices():
    with pytest.raises(ConfigError) as caught:
        load_task("cifar10")
    message = str(caught.value)
    assert "'cifar10'" in message
    for name in ("'matching'", "'mnist'", "'nmnist'"):
        assert name in message


def test_unknown_option_names_the_option_and_the_accepted_ones():
    with pytest.raises(ConfigError) as caught:
        load_task("matching", t_max=24)
    message = str(caught.value)
    assert "'t_max'" in message and "'num_inputs'" in message and "'target_spikes'" in message


def test_mnist_option_checks_come_before_file_access(tmp_path):
    with pytest.raises(ConfigError, match="'bin_us'"):
        load_task("mnist", root=tmp_path, bin_us=1000)
    with pytest.raises(ConfigError, match="limit_test=-1"):
        load_task("mnist", root=tmp_path, limit_test=-1)


def test_default_num_steps_of_matching():
    assert load_task("matching").num_steps == 100


@pytest.mark.parametrize("name, folder", [("mnist", "data/mnist"), ("nmnist", "data/nmnist")])
def test_default_root_is_relative_to_the_working_directory(tmp_path, monkeypatch, name, folder):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ANTLR_EXP_DATA", raising=False)
    with pytest.raises(DatasetNotFoundError) as caught:
        load_task(name, cache_dir=tmp_path / "cache") if name == "nmnist" else load_task(name)
    assert str(tmp_path / folder) in str(caught.value)


@pytest.mark.parametrize("size, val", [(60_000, 10_000), (24_345, 4_057), (1_000, 166), (5, 0)])
def test_validation_share_is_one_sixth(size, val):
    train_ids, val_ids = split_train_val(size, seed=0, purpose="test")
    assert len(val_ids) == val and len(train_ids) == size - val
    assert sorted(train_ids.tolist() + val_ids.tolist()) == list(range(size))


@pytest.mark.parametrize("name", ["mnist", "nmnist"])
def test_default_root_follows_ANTLR_EXP_DATA(tmp_path, monkeypatch, name):
    monkeypatch.setenv("ANTLR_EXP_DATA", str(tmp_path / "elsewhere"))
    with pytest.raises(DatasetNotFoundError) as caught:
        load_task(name, cache_dir=tmp_path / "cache") if name == "nmnist" else load_task(name)
    assert str(tmp_path / "elsewhere" / name) in str(caught.value)
