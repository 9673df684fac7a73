"""The training loop end to end, in-process, on tiny fake data (seconds each)."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from helpers.runs import compose_config, tiny_overrides

from antlr_exp.config import metric_names, validate
from antlr_exp.data import load_task
from antlr_exp.engine.losses import latency_loss, no_spike_count_term
from antlr_exp.engine.spikes import decide
from antlr_exp.errors import ConfigError
from antlr_exp.training import checkpoint as ckpt
from antlr_exp.training.build import build_network, load_data, resolve_device
from antlr_exp.training.run import run
from antlr_exp.training.trainer import Trainer

VALID = (
    [("matching", m, "spike_train") for m in ("activation", "activation_rnn", "timing", "antlr")]
    + [(t, m, "count") for t in ("mnist", "nmnist") for m in ("activation", "activation_rnn", "antlr")]
    + [(t, m, "latency") for t in ("mnist", "nmnist") for m in ("timing", "antlr")]
    + [("mnist", m, "spike_train") for m in ("activation", "timing", "antlr")]
    + [("nmnist", "antlr", "spike_train")]
)
SPIKE_KEYS = (
    "hidden_spikes_per_sample",
    "output_spikes_per_sample",
    "hidden_spikes_to_decision_per_sample",
    "output_spikes_to_decision_per_sample",
)


def read_metrics(run_dir):
    with open(run_dir / "metrics.csv") as stream:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(stream)]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: the runs are tiny


@pytest.mark.parametrize("task, method, loss", VALID)
def test_every_valid_method_task_loss_trains(task, method, loss, data_roots, tmp_path):
    labelled_spike_train = ["loss.label_steps=[10]"] if loss == "spike_train" and task != "matching" else []
    cfg = compose_config(*tiny_overrides(task, data_roots), f"method={method}", f"loss={loss}", *labelled_spike_train)
    summary = run(cfg, tmp_path)
    assert set(metric_names(cfg, "test")) <= set(summary)  # what the config checks accept is recorded
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    assert (summary["task"], summary["method"], summary["loss_name"], summary["steps"]) == (task, method, loss, 2)
    rows = read_metrics(tmp_path)
    assert [row["step"] for row in rows] == [2.0] and set(metric_names(cfg, "val")) <= set(rows[0])
    assert (tmp_path / "checkpoints" / "last.pt").is_file() and (tmp_path / "checkpoints" / "best.pt").is_file()
    for split in ("test", "val"):
        assert math.isfinite(summary[f"{split}_loss"])
        for key in SPIKE_KEYS:
            assert summary[f"{split}_{key}"] >= 0
        for kind in ("hidden", "output"):
            assert (
                summary[f"{split}_{kind}_spikes_to_decision_per_sample"] <= summary[f"{split}_{kind}_spikes_per_sample"]
            )
    if task == "matching":
        assert summary["test_accuracy"] is None
    else:
        for key in ("test_accuracy", "test_accuracy_most_spike", "test_accuracy_earliest_spike"):
            assert 0.0 <= summary[key] <= 1.0
        decision = {"count": "most_spike", "latency": "earliest_spike", "spike_train": "most_spike"}[loss]
        assert summary["test_accuracy"] == summary[f"test_accuracy_{decision}"]


def run_and_rerun_test_split(cfg, data_roots, tmp_path):
    """Train a tiny MNIST run; then its summary, and the best checkpoint's outputs and labels on
    the test split computed here, outside the runner."""
    summary = run(cfg, tmp_path)
    data = load_task("mnist", root=str(data_roots["mnist"]), limit_train=16, limit_test=8, num_steps=30)
    net = build_network(cfg, data)
    net.load_state_dict(ckpt.load(tmp_path / "checkpoints" / "best.pt")["model"])
    inputs = torch.stack([data.test[i][0] for i in range(len(data.test))])
    labels = torch.stack([data.test[i][1] for i in range(len(data.test))])
    with torch.no_grad():
        return summary, net(inputs), labels


@pytest.mark.parametrize("method", ["antlr", "timing"])
def test_reported_test_metrics_match_a_direct_computation(method, data_roots, tmp_path):
    cfg = compose_config(*tiny_overrides("mnist", data_roots, steps=4), f"method={method}")
    summary, out, labels = run_and_rerun_test_split(cfg, data_roots, tmp_path)
    loss = latency_loss(out.output_spikes, out.output_times, labels, beta=1 / 6)
    if method == "antlr":  # the paper's no-spike count term is part of ANTLR's loss...
        loss = loss + no_spike_count_term(out.output_spikes, labels, lambda_ns=0.1)
    # ...while the timing rule's no-spike weight penalty is not reported
    assert summary["test_loss"] == pytest.approx(float(loss), rel=1e-5)
    assert summary["test_hidden_spikes_per_sample"] == pytest.approx(float(out.spikes[0].sum()) / len(labels))
    assert summary["test_output_spikes_per_sample"] == pytest.approx(float(out.spikes[1].sum()) / len(labels))
    for decision in ("most_spike", "earliest_spike"):
        expected = float((decide(out.output_spikes, decision) == labels).float().mean())
        assert summary[f"test_accuracy_{decision}"] == pytest.approx(expected)


def test_spike_train_loss_on_labels_matches_a_hand_made_target(data_roots, tmp_path):
    cfg = compose_config(
        *tiny_overrides("mnist", data_roots, steps=3),
        "method=antlr",
        "loss=spike_train",
        "loss.label_steps=[5,12]",
        "loss.other_steps=[20]",
    )
    summary, out, labels = run_and_rerun_test_split(cfg, data_roots, tmp_path)
    target = torch.zeros(len(labels), 30, 10)
    target[:, 20, :] = 1.0
    for i, label in enumerate(labels.tolist()):
        target[i, 20, label] = 0.0
        target[i, 5, label] = target[i, 12, label] = 1.0
    # the loss by its definition: sum over outputs and tau of (kappa * (S - S_target))^2, kappa = 0.9^k
    kappa = 0.9 ** torch.arange(200, dtype=torch.float64)
    diff = (out.output_spikes.double() - target.double()).permute(0, 2, 1)  # [B, O, T]
    filtered = torch.stack([(diff[..., : tau + 1] * kappa[: tau + 1].flip(0)).sum(-1) for tau in range(30)], -1)
    tail = filtered[..., -1:] * 0.9 ** torch.arange(1, 170, dtype=torch.float64)  # after the window: decay only
    expected = (filtered.pow(2).sum((1, 2)) + tail.pow(2).sum((1, 2))).mean()
    assert summary["test_loss"] == pytest.approx(float(expected), rel=1e-4)
    assert summary["test_accuracy"] == pytest.approx(
        float((decide(out.output_spikes, "most_spike") == labels).float().mean())
    )


def test_best_validation_checkpoint_is_the_one_tested(tmp_path):
    # matching: train, val and test are the same problem, so the test loss must equal the best validation loss
    cfg = compose_config(*tiny_overrides("matching", {}, steps=12), "trainer.val_every_n_steps=3", "optimizer.lr=0.05")
    summary = run(cfg, tmp_path)
    rows = read_metrics(tmp_path)
    assert [row["step"] for row in rows] == [3, 6, 9, 12]
    best = min(rows, key=lambda row: row["val_loss"])
    assert summary["best_step"] == best["step"] and summary["val_loss"] == pytest.approx(best["val_loss"])
    assert summary["test_loss"] == pytest.approx(best["val_loss"], rel=1e-6)


def test_same_seed_repeats_and_another_seed_differs(data_roots, tmp_path):
    overrides = tiny_overrides("mnist", data_roots, steps=3)
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        run(compose_config(*overrides, f"seed={seed}"), tmp_path / name)
        runs[name] = ckpt.load(tmp_path / name / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(runs["a"][k], runs["b"][k]) for k in runs["a"])
    assert not torch.equal(runs["a"]["layers.0.weight"], runs["c"]["layers.0.weight"])


class Killed(Exception):
    """Stands for the process dying right after a checkpoint was written."""


def _kill_after_checkpoints(monkeypatch, count):
    original, written = ckpt.save_atomic, []

    def save_then_die(payload, path):
        original(payload, path)
        if path.name == ckpt.LAST:
            written.append(path)
            if len(written) == count:
                raise Killed

    monkeypatch.setattr(ckpt, "save_atomic", save_then_die)


@pytest.mark.parametrize("kill_after", [1, 2])
def test_resume_after_kill_matches_uninterrupted_run(kill_after, data_roots, tmp_path, monkeypatch):
    # 24 samples in batches of 8: 3 steps per epoch, 3 epochs; checkpoints every 2 steps, so
    # the kills fall in the middle of epochs 1 and 2; the learning rate halves after epoch 2.
    overrides = [
        *tiny_overrides("mnist", data_roots),
        "data.limit_train=24",
        "trainer.max_steps=null",
        "trainer.max_epochs=3",
        "trainer.val_every_n_steps=2",
        "trainer.lr_decay_epochs=2",
        "trainer.lr_decay_factor=0.5",
    ]
    full = run(compose_config(*overrides), tmp_path / "full")

    with monkeypatch.context() as patch:
        _kill_after_checkpoints(patch, kill_after)
        with pytest.raises(Killed):
            run(compose_config(*overrides), tmp_path / "killed")
    assert not (tmp_path / "killed" / "summary.json").exists()
    assert len(read_metrics(tmp_path / "killed")) == kill_after
    torch.manual_seed(1234)  # whatever the process did meanwhile must not matter
    resumed = run(compose_config(*overrides, "resume=true"), tmp_path / "killed")

    strip = lambda rows: [{k: v for k, v in row.items() if k != "time_s"} for row in rows]  # noqa: E731
    assert strip(read_metrics(tmp_path / "killed")) == strip(read_metrics(tmp_path / "full"))
    assert [row["step"] for row in read_metrics(tmp_path / "full")] == [2, 4, 6, 8, 9]
    assert [row["lr"] for row in read_metrics(tmp_path / "full")] == [1e-3, 1e-3, 1e-3, 5e-4, 5e-4]
    for name in ("last.pt", "best.pt"):
        a = ckpt.load(tmp_path / "full" / "checkpoints" / name)["model"]
        b = ckpt.load(tmp_path / "killed" / "checkpoints" / name)["model"]
        assert all(torch.equal(a[k], b[k]) for k in a)
    drop = ("train_time_s", "started_at", "ended_at", "run_dir")  # times and folder differ by nature
    assert {k: v for k, v in resumed.items() if k not in drop} == {k: v for k, v in full.items() if k not in drop}


def test_resume_needs_the_same_run(data_roots, tmp_path):
    with pytest.raises(ConfigError, match="resume=true but .*last.pt does not exist"):
        run(compose_config(*tiny_overrides("matching", data_roots), "resume=true"), tmp_path)
    run(compose_config(*tiny_overrides("matching", data_roots)), tmp_path)
    with pytest.raises(ConfigError, match="method.name='antlr' but this command gives method.name='timing'"):
        run(compose_config(*tiny_overrides("matching", data_roots), "method=timing", "resume=true"), tmp_path)


def test_learning_rate_steps_down_every_lr_decay_epochs(data_roots, tmp_path):
    overrides = [
        *tiny_overrides("mnist", data_roots),
        "trainer.max_steps=null",
        "trainer.max_epochs=3",
        "trainer.lr_decay_epochs=1",
        "trainer.lr_decay_factor=0.5",
    ]
    run(compose_config(*overrides), tmp_path)
    rows = read_metrics(tmp_path)
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    assert [row["lr"] for row in rows] == pytest.approx([1e-3, 5e-4, 2.5e-4])


def test_gradients_are_clipped_element_wise(data_roots, tmp_path):
    cfg = compose_config(*tiny_overrides("mnist", data_roots), "method=activation", "optimizer.grad_clip_value=1e-4")
    validate(cfg)
    torch.manual_seed(0)
    data = load_data(cfg)
    trainer = Trainer(cfg, tmp_path, data, resolve_device("cpu"))
    inputs, labels = (torch.stack(x) for x in zip(*[data.train[i] for i in range(8)]))
    trainer._train_step(inputs, labels)
    grads = torch.cat([p.grad.flatten() for p in trainer.net.parameters()])
    assert grads.abs().max() == pytest.approx(1e-4)  # some element was clipped, none is beyond


def test_evaluate_mode_reproduces_the_test_metrics(data_roots, tmp_path):
    trained = run(compose_config(*tiny_overrides("mnist", data_roots, steps=3), "method=timing"), tmp_path / "train")
    # evaluate= takes task, network, method and loss from the checkpoint: nothing to repeat but data.root
    evaluated = run(
        compose_config(f"evaluate={tmp_path / 'train'}", f"data.root={data_roots['mnist']}", "data.limit_test=8"),
        tmp_path / "eval",
    )
    assert evaluated["method"] == "timing" and evaluated["evaluated_checkpoint"].endswith("best.pt")
    for key, value in trained.items():
        if key.startswith("test_"):
            assert evaluated[key] == pytest.approx(value), key
    with pytest.raises(ConfigError, match="evaluate="):
        run(compose_config(f"evaluate={tmp_path / 'nothing'}"), tmp_path / "eval2")


@pytest.mark.parametrize("task,trials", [("mnist", 1), ("mnist", 3), ("matching", 4)])
def test_epoch_batches_are_what_a_dataloader_gives_in_each_trials_order(task, trials, data_roots, tmp_path):
    """The training batches (built without DataLoaders) against DataLoaders over each trial's own
    epoch order, drawn from a generator seeded as the trial's; over three epochs, the last one
    entered part way (as after a resume), and for the one-sample matching task, whose stacked
    batch is made once."""
    from torch.utils.data import DataLoader

    from antlr_exp.training.build import load_trials

    overrides = [*tiny_overrides(task, data_roots), f"trials={trials}"]
    if task == "mnist":
        overrides.append("trainer.batch_size=5")  # 16 training images: a short last batch
    cfg = compose_config(*overrides)
    validate(cfg)
    datas, net = load_trials(cfg)
    trainer = Trainer(cfg, tmp_path, datas, resolve_device("cpu"), net=net)
    shuffles = [torch.Generator().manual_seed(int(cfg.seed) + k) for k in range(trials)]
    for epoch in range(3):
        start = 1 if epoch == 2 and task == "mnist" else 0  # the third epoch resumes after a batch
        for state in trainer.states:
            state.batch_in_epoch = start
        got = list(trainer._epoch_batches())
        loaders = []
        for data, shuffle in zip(datas, shuffles):
            order = torch.randperm(len(data.train), generator=shuffle)[start * trainer.batch_size :].tolist()
            loaders.append(DataLoader(data.train, batch_size=trainer.batch_size, sampler=order))
        expected = list(zip(*loaders))
        assert len(got) == len(expected) > 0
        for (inputs, targets), batches in zip(got, expected):
            want_inputs = batches[0][0] if trials == 1 else torch.stack([b[0] for b in batches])
            want_targets = batches[0][1] if trials == 1 else torch.cat([b[1] for b in batches])
            assert torch.equal(inputs, want_inputs) and torch.equal(targets, want_targets)
        for state in trainer.states:
            state.epoch_order = None  # the next epoch draws a new order
