"""Your own data by config: ``task=custom task.options.loader=module:function``.

A loader module written here into a temporary folder (put on the Python path, and on PYTHONPATH
for the installed command) returns a TaskData; the tool must run on it unchanged, and refuse bad
returns with one line before training."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys

import pytest
from helpers.runs import ANTLR_TRAIN, cli_env

from antlr_exp.data import load_task
from antlr_exp.errors import ConfigError, InputError

#: The user's loader module. ``bad`` picks one broken return; ``plain`` a Dataset that is not a
#: TensorDataset (checked item by item); ``grow`` gives seed s s more training samples.
LOADER = """
import torch
from torch.utils.data import Dataset, TensorDataset

from antlr_exp.data import TaskData


class Items(Dataset):
    def __init__(self, inputs, targets):
        self.inputs, self.targets = inputs, targets

    def __len__(self):
        return len(self.inputs)

    def __getitem__(self, index):
        return self.inputs[index], self.targets[index]


def load(seed=0, num_steps=20, n=60, classes=3, inputs=12, kind="label", bad=None, plain=False, grow=False):
    generator = torch.Generator().manual_seed(0)

    def split(count):
        labels = torch.arange(count) % classes
        x = (torch.rand(count, num_steps, inputs, generator=generator) < 0.05).float()
        for c in range(classes):
            x[labels == c, 1 + c, c::classes] = 1
        y = labels
        if kind == "spike_train":
            y = torch.zeros(count, num_steps, classes)
            y[torch.arange(count), 8, labels] = 1
        if bad == "shape":
            x = x[:, :, :-1]
        if bad == "dtype":
            x = x.long()
        if bad == "label_dtype":
            y = y.int()
        if bad == "label_range":
            y = y.clone()
            y[-1] = classes
        if bad == "nan":
            x[count // 2, 3, 0] = float("nan")
        if bad == "empty":
            x, y = x[:0], y[:0]
        return (Items if plain else TensorDataset)(x, y)

    if bad == "type":
        return [split(n), split(n)]
    steps = num_steps + 1 if bad == "steps" else num_steps
    return TaskData(split(n + (seed if grow else 0)), None, split(n // 3), (inputs,), steps, classes, kind)
"""
SPEC = "userdata:load"


@pytest.fixture(scope="module")
def loader_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("userpkg")
    (folder / "userdata.py").write_text(LOADER)
    (folder / "broken_loader.py").write_text("import a_package_that_is_not_there\n\ndef load():\n    pass\n")
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))
    for name in ("userdata", "broken_loader"):
        sys.modules.pop(name, None)


def custom(loader_folder, seed=0, **kwargs):
    options = {key: kwargs.pop(key) for key in ("limit_train", "limit_test", "target_kind") if key in kwargs}
    return load_task("custom", loader=SPEC, kwargs=kwargs, num_steps=20, seed=seed, **options)


def rows(dataset) -> set:
    """Each item's inputs as bytes (the samples of the toy data are distinct)."""
    return {dataset[i][0].numpy().tobytes() for i in range(len(dataset))}


def test_the_loaders_taskdata_with_a_validation_split_drawn_by_the_seed(loader_folder):
    import userdata

    whole = userdata.load(n=60)  # what the loader itself returns, before antlr-exp holds out validation
    data = custom(loader_folder, n=60)
    assert (data.input_shape, data.num_steps, data.num_outputs, data.target_kind) == ((12,), 20, 3, "label")
    assert len(data.val) == 60 // 6 and len(data.train) == 60 - 60 // 6 and len(data.test) == 20
    assert rows(data.train) | rows(data.val) == rows(whole.train) and not rows(data.train) & rows(data.val)
    assert rows(data.test) == rows(whole.test)
    other = custom(loader_folder, seed=1, n=60)
    assert rows(other.val) != rows(data.val)  # the trial's seed draws its own split
    limited = custom(loader_folder, n=60, limit_train=7, limit_test=4)
    assert (len(limited.train), len(limited.val), len(limited.test)) == (7, 4, 4)
    assert rows(limited.train) <= rows(data.train) and rows(limited.test) <= rows(whole.test)


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"bad": "type"}, ConfigError, ["returned a list", "TaskData"]),
        ({"bad": "shape"}, InputError, ["train split", "shape [20, 11]", "[20, 12]"]),
        ({"bad": "dtype"}, InputError, ["dtype torch.int64", "float tensor"]),
        ({"bad": "label_dtype"}, InputError, ["label of dtype torch.int32", "int64 scalar"]),
        ({"bad": "label_range"}, InputError, ["split whose item", "has label 3", "0..2"]),
        ({"bad": "label_range", "plain": True}, InputError, ["has label 3", "0..2"]),
        ({"bad": "nan"}, InputError, ["train split whose item", "non-finite", "finite 0/1"]),
        ({"bad": "nan", "plain": True}, InputError, ["train split whose item", "non-finite"]),
        ({"bad": "empty"}, ConfigError, ["0 samples"]),
        ({"bad": "steps"}, ConfigError, ["num_steps=21", "task.num_steps=20"]),
        ({"kind": "spike_train"}, ConfigError, ["target_kind='spike_train'", "task.options.target_kind=label"]),
        ({"sizes": 3}, ConfigError, ["task.options.kwargs", "'sizes'", "num_steps, n, classes"]),
    ],
)
def test_a_bad_return_is_one_line(loader_folder, kwargs, error, words):
    with pytest.raises(error) as raised:
        custom(loader_folder, **kwargs)
    message = str(raised.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize("plain", [False, True])
def test_a_bad_item_is_named_by_its_index_in_what_the_loader_returned(loader_folder, plain):
    # the NaN is the loader's train item 30 (of 60), and the bad label its item 59; whichever of
    # the two splits drawn from it holds them, at whatever position, the error names those indices
    for seed in range(4):
        for bad, words in (("nan", "train split whose item 30 has non-finite"), ("label_range", "whose item 59 has")):
            with pytest.raises(InputError) as raised:
                custom(loader_folder, seed=seed, n=60, bad=bad, plain=plain)
            assert words in str(raised.value), (seed, str(raised.value))
            assert "train split" in str(raised.value)


@pytest.mark.parametrize(
    "spec, words",
    [
        ("broken_loader:load", ["module broken_loader cannot be imported", "a_package_that_is_not_there"]),
        ("no_such_module:load", ["module no_such_module cannot be imported"]),
        ("userdata:nothing", ["has no 'nothing'"]),
        ("userdata:torch", ["module, not a function"]),
        ("userdata", ["names no function"]),
    ],
)
def test_a_loader_that_cannot_be_found_is_one_line(loader_folder, spec, words):
    with pytest.raises(ConfigError) as raised:
        load_task("custom", loader=spec, num_steps=20)
    for word in words:
        assert word in str(raised.value), str(raised.value)


def test_a_plain_dataset_is_checked_item_by_item_and_trains(loader_folder):
    data = custom(loader_folder, plain=True, kind="spike_train", target_kind="spike_train")
    assert data.target_kind == "spike_train" and data.train[0][1].shape == (20, 3)


def test_the_examples_loader_gives_its_taskdata():
    from helpers.runs import REPO

    sys.path.insert(0, str(REPO / "examples"))
    try:
        data = load_task("custom", loader="own_data:load", num_steps=40)
    finally:
        sys.path.remove(str(REPO / "examples"))
        sys.modules.pop("own_data", None)
    assert (len(data.train), len(data.val), len(data.test)) == (500, 100, 120)
    assert data.train[0][0].shape == (40, 20) and data.num_outputs == 2


# ---------------------------------------------------------------------------------------------
# Through the installed command


def antlr(command: str, arguments: list, cwd, loader_folder) -> subprocess.CompletedProcess:
    env = dict(cli_env(), PYTHONPATH=f"{loader_folder}:{cli_env().get('PYTHONPATH', '')}")
    program = ANTLR_TRAIN.with_name(command)
    return subprocess.run([str(program), *arguments], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


TINY = [
    "task=custom",
    f"task.options.loader={SPEC}",
    "task.num_steps=20",
    "task.hidden_sizes=[16]",
    "trainer.batch_size=8",
    "trainer.test_batch_size=16",
    "trainer.progress_bar=false",
]
#: 12 inputs, 16 hidden, 3 outputs, with biases
PARAMETERS = (12 + 1) * 16 + (16 + 1) * 3


@pytest.mark.slow
def test_every_rule_single_spike_trials_in_a_sweep_then_report_and_plot(loader_folder, tmp_path):
    sweep = tmp_path / "sweep"
    methods = ["activation", "activation_rnn", "timing", "antlr"]
    result = antlr(
        "antlr-train",
        ["-m", *TINY, f"method={','.join(methods)}", "single_spike=false,true", "trials=2", "trainer.max_steps=3",
         f"hydra.sweep.dir={sweep}"],
        tmp_path,
        loader_folder,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert len(jobs) == 8
    for job in jobs:
        stacked = json.loads((job / "trials.json").read_text())
        assert stacked["seeds"] == [0, 1]
        for trial in stacked["summaries"]:
            assert trial["task"] == "custom" and trial["steps"] == 3 and trial["num_parameters"] == PARAMETERS
            assert 0 <= trial["test_accuracy"] <= 1
    assert {json.loads((job / "seed_1" / "summary.json").read_text())["method"] for job in jobs} == set(methods)
    assert f"antlr-report {sweep}:" in result.stdout  # the sweep ends with the report's table
    report = antlr("antlr-report", [str(sweep), "--format", "json"], tmp_path, loader_folder)
    assert report.returncode == 0, report.stderr
    table = json.loads(report.stdout)
    table_rows = table["rows"] if isinstance(table, dict) else table
    assert len(table_rows) == 8  # one row per method and single_spike, the two seeds averaged
    plot = antlr("antlr-plot", [str(sweep)], tmp_path, loader_folder)
    assert plot.returncode == 0, plot.stderr
    assert (sweep / "accuracy_vs_spikes.png").is_file() and (sweep / "loss_curves.png").is_file()


@pytest.mark.slow
def test_resume_evaluate_and_spike_train_targets(loader_folder, tmp_path):
    run = tmp_path / "run"
    first = antlr("antlr-train", [*TINY, "trainer.max_steps=2", f"hydra.run.dir={run}"], tmp_path, loader_folder)
    assert first.returncode == 0, first.stderr
    resumed = antlr(
        "antlr-train", [*TINY, "trainer.max_steps=9", "resume=true", f"hydra.run.dir={run}"], tmp_path, loader_folder
    )
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads((run / "summary.json").read_text())
    # 50 training samples (60 less 10 held out), batches of 8: 7 steps an epoch
    with open(run / "metrics.csv") as stream:
        steps = [int(row["step"]) for row in csv.DictReader(stream)]
    assert summary["steps"] == 9 and math.ceil(50 / 8) in steps  # the end of the first epoch
    evaluated = tmp_path / "evaluated"
    result = antlr("antlr-train", [f"evaluate={run}", f"hydra.run.dir={evaluated}"], tmp_path, loader_folder)
    assert result.returncode == 0, result.stderr
    again = json.loads((evaluated / "summary.json").read_text())
    assert again["task"] == "custom" and again["test_accuracy"] == pytest.approx(summary["test_accuracy"])
    trains = tmp_path / "trains"
    spike_trains = [
        "task.options.target_kind=spike_train", "+task.options.kwargs.kind=spike_train", "loss=spike_train",
        "trainer.monitor=val_loss", "trainer.monitor_mode=min", "trainer.max_steps=2", f"hydra.run.dir={trains}",
    ]  # fmt: skip
    result = antlr("antlr-train", [*TINY, *spike_trains], tmp_path, loader_folder)
    assert result.returncode == 0, result.stderr
    assert json.loads((trains / "summary.json").read_text())["loss_name"] == "spike_train"


@pytest.mark.slow
@pytest.mark.parametrize(
    "arguments, words, folder",
    [
        (["task.options.loader=broken_loader:load"], ["module broken_loader cannot be imported"], False),
        (["task.options.loader=userdata.nothing"], ["has no 'nothing'"], False),
        (["task.options.target_kind=spikes"], ["task.options.target_kind='spikes'", "label, spike_train"], False),
        (["+task.options.kwargs.sizes=3"], ["task.options.kwargs={'sizes': 3}", "'sizes'"], False),
        (["task.options.kwargs.n=3"], ["'n'", "+task.options.kwargs.n=..."], False),
        (["+task.options.kwargs.bad=type"], ["returned a list"], True),
        (["+task.options.kwargs.bad=label_range"], ["has label 3", "0..2"], True),
        (["+task.options.kwargs.n=0"], ["0 samples"], True),
        (["+task.options.kwargs.grow=true", "trials=2"], ["seed 1 has train samples 51", "50"], True),
    ],
)
def test_bad_input_through_the_command_is_one_line_before_training(loader_folder, tmp_path, arguments, words, folder):
    run = tmp_path / "run"
    result = antlr("antlr-train", [*TINY, *arguments, f"hydra.run.dir={run}"], tmp_path, loader_folder)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("antlr-train: error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    # refused up front: no folder; refused once the data is read: nothing trained
    assert run.exists() == folder and not (run / "checkpoints").exists()
