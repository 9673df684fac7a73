"""Stacked trials (``trials=K``): every trial of one K-trial run is the run of its own seed.

Each check runs K = 3 stacked trials and the 3 separate runs in float64, and compares each trial's
folder with the separate run's: the metrics (1e-9 relative), the spike counts (exactly), the test
summary and the best weights. The networks are made to fire (lower threshold), so the spike
counts, the losses and the accuracies all depend on each trial's own weights and data.
"""

from __future__ import annotations

import csv
import json
import logging
import math

import pytest
import torch
from helpers.runs import compose_config, tiny_overrides

from antlr_exp.errors import ConfigError
from antlr_exp.training import checkpoint as ckpt
from antlr_exp.training.run import run

K, SEED = 3, 5
SPIKE_COLUMNS = ("spikes_per_sample",)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: the runs are tiny


def read_rows(folder):
    with open(folder / "metrics.csv") as stream:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(stream)]


def overrides_for(task, method, single, data_roots, steps=12):
    over = [
        *tiny_overrides(task, data_roots, steps=steps),
        f"method={method}",
        f"single_spike={str(single).lower()}",
        "dtype=float64",
        "neuron.theta=0.1",
    ]
    if task == "matching":
        over += ["task.hidden_sizes=[20,20]", "trainer.val_every_n_steps=4"]
    else:
        over += [
            "data.limit_train=24",
            "trainer.max_steps=null",
            "trainer.max_epochs=4",
            "task.num_steps=40",
            "trainer.lr_decay_epochs=2",
        ]
    return over


def close(a, b, rel=1e-9):
    return a == b or abs(a - b) <= rel * max(abs(a), abs(b), 1e-12)


def assert_same_run(stacked_dir, single_dir):
    rows_a, rows_b = read_rows(stacked_dir), read_rows(single_dir)
    assert [r["step"] for r in rows_a] == [r["step"] for r in rows_b]
    for a, b in zip(rows_a, rows_b):
        assert set(a) == set(b)
        for key in a:
            if key == "time_s":
                continue
            if key.endswith(SPIKE_COLUMNS) or "accuracy" in key:
                assert a[key] == b[key], key
            else:
                assert close(a[key], b[key]), (key, a[key], b[key])
    sa = json.loads((stacked_dir / "summary.json").read_text())
    sb = json.loads((single_dir / "summary.json").read_text())
    assert sa["seed"] == sb["seed"]
    for key, value in sb.items():
        if key in ("train_time_s",) or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        assert close(sa[key], value), (key, sa[key], value)
    wa = ckpt.load(stacked_dir / "checkpoints" / "best.pt")["model"]
    wb = ckpt.load(single_dir / "checkpoints" / "best.pt")["model"]
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.allclose(wa[key], wb[key], rtol=1e-9, atol=1e-12), key
    return rows_b


CASES = [("matching", m, s) for m in ("activation", "activation_rnn", "timing", "antlr") for s in (False, True)] + [
    ("mnist", m, s) for m in ("activation", "timing", "antlr") for s in (False, True)
]


@pytest.mark.parametrize("task, method, single", CASES)
def test_every_trial_equals_its_own_run(task, method, single, data_roots, tmp_path):
    over = overrides_for(task, method, single, data_roots)
    stacked = run(compose_config(*over, f"seed={SEED}", f"trials={K}"), tmp_path / "stacked")
    assert stacked["seeds"] == [SEED + k for k in range(K)]
    fired = out_fired = 0.0
    for k in range(K):
        single_dir = tmp_path / f"single_{k}"
        run(compose_config(*over, f"seed={SEED + k}"), single_dir)
        rows = assert_same_run(tmp_path / "stacked" / f"seed_{SEED + k}", single_dir)
        fired += sum(r["val_hidden_spikes_per_sample"] for r in rows)
        out_fired += sum(r["val_output_spikes_per_sample"] for r in rows)
    assert fired > 0 and out_fired > 0, "the networks must fire for the comparison to mean anything"
    # the trials are different runs: their losses differ
    losses = [read_rows(tmp_path / "stacked" / f"seed_{SEED + k}")[-1]["train_loss"] for k in range(K)]
    assert len(set(losses)) == K


def test_trials_differ_from_repeating_one_seed(data_roots, tmp_path):
    """Each trial gets its own data order and matching problem, not trial 0's."""
    over = overrides_for("matching", "antlr", False, data_roots)
    run(compose_config(*over, "seed=0", "trials=2"), tmp_path / "stacked")
    a = read_rows(tmp_path / "stacked" / "seed_0")
    b = read_rows(tmp_path / "stacked" / "seed_1")
    assert a[-1]["val_loss"] != b[-1]["val_loss"]


class Killed(Exception):
    pass


def test_killed_stacked_run_resumes_bit_identically(data_roots, tmp_path, monkeypatch):
    # 24 images in batches of 8: 3 steps per epoch, 4 epochs, a checkpoint every 2 steps; the
    # kill falls in the middle of epoch 2, after the learning rate changed at epoch 2
    over = overrides_for("mnist", "antlr", False, data_roots) + ["trainer.val_every_n_steps=2"]
    cfg = [*over, "seed=0", f"trials={K}"]
    run(compose_config(*cfg), tmp_path / "full")

    saves = []
    real_save = ckpt.save_atomic

    def save_then_die(payload, path):
        real_save(payload, path)
        if path.name == ckpt.LAST:
            saves.append(path)
            if len(saves) == 3:
                raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(ckpt, "save_atomic", save_then_die)
        with pytest.raises(Killed):
            run(compose_config(*cfg), tmp_path / "killed")
    assert not (tmp_path / "killed" / "trials.json").exists()
    torch.manual_seed(4321)
    run(compose_config(*cfg, "resume=true"), tmp_path / "killed")
    for k in range(K):
        a, b = tmp_path / "full" / f"seed_{k}", tmp_path / "killed" / f"seed_{k}"
        strip = lambda rows: [{c: v for c, v in r.items() if c != "time_s"} for r in rows]  # noqa: E731
        assert strip(read_rows(a)) == strip(read_rows(b))
        assert [r["step"] for r in read_rows(a)] == [2, 4, 6, 8, 10, 12]
        wa = ckpt.load(a / "checkpoints" / "best.pt")["model"]
        wb = ckpt.load(b / "checkpoints" / "best.pt")["model"]
        assert all(torch.equal(wa[key], wb[key]) for key in wa)
    la = ckpt.load(tmp_path / "full" / "checkpoints" / "last.pt")
    lb = ckpt.load(tmp_path / "killed" / "checkpoints" / "last.pt")
    assert all(torch.equal(la["model"][key], lb["model"][key]) for key in la["model"])


def test_trials_that_do_not_fit_are_refused_before_training(data_roots, tmp_path, monkeypatch):
    from antlr_exp.training import build as train_module

    loaded = []
    real_load = train_module.load_data
    monkeypatch.setattr(train_module, "load_data", lambda cfg: loaded.append(cfg.seed) or real_load(cfg))
    monkeypatch.setattr(train_module, "available_memory", lambda device: 50 * 2**20)  # 50 MiB free
    over = overrides_for("mnist", "antlr", False, data_roots)
    with pytest.raises(ConfigError, match=r"trials=400: needs about .* GiB .* use trials=\d+ or fewer"):
        run(compose_config(*over, "trials=400", "dtype=float32"), tmp_path / "big")
    assert loaded == [0], "only the first trial's data is read before the refusal"
    assert not (tmp_path / "big" / "checkpoints").exists()
    # the estimate grows linearly in K: the same run with few trials fits
    per_trial = train_module.memory_estimate(compose_config(*over), real_load(compose_config(*over)), 1)
    assert math.isclose(
        train_module.memory_estimate(compose_config(*over), real_load(compose_config(*over)), 10),
        10 * per_trial,
        rel_tol=1e-12,
    )


@pytest.mark.parametrize(
    "bad, words",
    [
        (["trials=0"], "trials=0"),
        (["trials=2", "trainer.record_gradients=true"], "record_gradients"),
        (["dtype=float16"], "dtype='float16'"),
    ],
)
def test_bad_trial_settings_are_refused(bad, words, data_roots, tmp_path):
    from antlr_exp.config import validate

    with pytest.raises(ConfigError, match=words):
        validate(compose_config(*tiny_overrides("matching", data_roots), *bad))


@pytest.mark.parametrize("method", ["antlr", "timing"])
def test_training_early_stop_changes_no_result(method, data_roots, tmp_path, monkeypatch):
    """latency loss: with and without the training early stop, the same weights, validation and
    test metrics (float64); only the training spike counts (over the simulated steps) and the
    number of simulated steps differ."""
    from antlr_exp.training import build as train_module

    real_build = train_module.build_network

    def excitable(*args, **kwargs):  # every output fires on every sample: the early stop happens
        net = real_build(*args, **kwargs)
        with torch.no_grad():
            for layer in net.layers:
                layer.weight.add_(0.3)
        return net

    monkeypatch.setattr(train_module, "build_network", excitable)
    over = [*overrides_for("mnist", method, False, data_roots), "loss=latency", "task.num_steps=60"]
    if method == "timing":
        over.append("method.penalty_window=early_stop")
    runs = {}
    for early in (True, False):
        if method == "timing" and not early:
            continue
        runs[early] = run(
            compose_config(*over, f"trainer.train_early_stop={str(early).lower()}"), tmp_path / str(early)
        )
    rows = read_rows(tmp_path / "True")
    assert all(r["train_simulated_steps"] < 60 for r in rows), "the outputs fire early here"
    if method == "timing":
        return
    full_rows = read_rows(tmp_path / "False")
    assert all(r["train_simulated_steps"] == 60 for r in full_rows)
    for a, b in zip(rows, full_rows):
        for key in a:
            if key.startswith("val_") or key in ("train_loss", "step", "epoch", "lr") or "accuracy_earliest" in key:
                assert close(a[key], b[key], 1e-12), key
    for key, value in runs[False].items():
        if key.startswith("test_"):
            assert close(runs[True][key], value, 1e-12), key


def test_penalty_window_early_stop_needs_the_training_early_stop(data_roots):
    from antlr_exp.config import validate
    from antlr_exp.training.early_stop import train_early_stop

    base = overrides_for("mnist", "timing", False, data_roots)
    with pytest.raises(ConfigError, match="penalty_window=early_stop with loss=spike_train"):
        validate(
            compose_config(*tiny_overrides("matching", data_roots), "method=timing", "method.penalty_window=early_stop")
        )
    # the penalty over the whole window needs every step: no early stop then
    assert not train_early_stop(compose_config(*base))
    assert train_early_stop(compose_config(*base, "method.penalty_window=early_stop"))
    assert train_early_stop(compose_config(*overrides_for("mnist", "antlr", False, data_roots)))
    assert not train_early_stop(compose_config(*overrides_for("mnist", "activation", False, data_roots)))


def test_would_stop_early_by_hand():
    from antlr_exp.engine.spikes import NetworkOutput
    from antlr_exp.training.early_stop import would_stop_early

    def out(first_steps, steps=60):
        spikes = torch.zeros(2, steps, 3)
        for (b, o), t in first_steps.items():
            spikes[b, t, o] = 1.0
        return NetworkOutput([spikes], [spikes], steps)

    everyone = {(b, o): 5 + 3 * b + o for b in range(2) for o in range(3)}  # all fire by step 10
    assert would_stop_early(out(everyone))
    assert not would_stop_early(out({k: v for k, v in everyone.items() if k != (1, 2)}))  # one silent
    assert not would_stop_early(out({**everyone, (1, 2): 55}))  # fires in the last chunk: no saving
    assert would_stop_early(out({**everyone, (1, 2): 49}))  # the stop would fall at step 50 of 60


def test_steps_after_a_step_that_could_not_stop_run_the_whole_window(data_roots, tmp_path, monkeypatch):
    """While no stop is possible the plain pass runs (no chunking cost); once a step shows a stop
    would be possible, the chunked pass runs again."""
    from antlr_exp.engine.network import SpikingNetwork
    from antlr_exp.training.build import load_trials, resolve_device
    from antlr_exp.training.trainer import Trainer

    cfg = compose_config(*overrides_for("mnist", "antlr", False, data_roots), "loss=latency", "data.limit_train=48")
    datas, net = load_trials(cfg)
    trainer = Trainer(cfg, tmp_path, datas, resolve_device("cpu"), net=net)
    calls, possible = [], iter([False, False, True])
    real_forward = SpikingNetwork.forward
    monkeypatch.setattr(
        SpikingNetwork,
        "forward",
        lambda self, x, early_stop=False, chunk=10: (
            calls.append(early_stop) or real_forward(self, x, early_stop, chunk)
        ),
    )
    monkeypatch.setattr("antlr_exp.training.trainer.stop_flag", lambda out: next(possible))
    batches = trainer._epoch_batches()
    for _ in range(5):
        trainer._train_step(*next(batches))
        if calls[-1]:  # this network is silent: a chunked step runs to the end, so no stop next
            assert trainer.stop_possible is False
    # chunked first (it runs to the end here); then plain while the (patched) check says no, and
    # chunked again after it says yes
    assert calls == [True, False, False, False, True]


def test_checkpoint_keeps_the_early_stop_choice(data_roots, tmp_path):
    """A resumed run takes the same pass (chunked or whole window) the uninterrupted one would."""
    from antlr_exp.training.build import load_trials, resolve_device
    from antlr_exp.training.trainer import Trainer

    cfg = compose_config(*overrides_for("mnist", "antlr", False, data_roots), "loss=latency")
    datas, net = load_trials(cfg)
    trainer = Trainer(cfg, tmp_path, datas, resolve_device("cpu"), net=net)
    trainer.stop_possible, trainer.simulated_steps = False, [40, 30]
    resumed = Trainer(
        cfg, tmp_path, datas, resolve_device("cpu"), resume_from=trainer._payload(), net=load_trials(cfg)[1]
    )
    assert resumed.stop_possible is False and resumed.simulated_steps == [40, 30]


def test_a_stacked_run_logs_one_line_per_evaluation_point(data_roots, tmp_path, caplog):
    """Without a progress bar: one INFO line per evaluation point with the mean over the trials."""
    import logging

    over = overrides_for("matching", "antlr", False, data_roots)  # 12 steps, an evaluation every 4
    with caplog.at_level(logging.INFO, logger="antlr_exp"):
        run(compose_config(*over, "trials=3"), tmp_path)
    lines = [r.getMessage() for r in caplog.records if "step " in r.getMessage() and "/12" in r.getMessage()]
    assert [line.split(": step ")[1].split(" ")[0] for line in lines] == ["4/12", "8/12", "12/12"]
    mean_val = sum(read_rows(tmp_path / f"seed_{s}")[0]["val_loss"] for s in range(3)) / 3
    assert lines[0].startswith("mean of 3 trials: ") and f"val_loss {mean_val:.4g}" in lines[0]


def test_stacked_evaluation_feeds_test_batch_size_samples_over_all_trials(data_roots):
    """With K trials, one evaluation forward holds about ``test_batch_size`` samples in all (each
    trial ceil(test_batch_size / K) of its own), not K times that: N-MNIST's 16 trials would
    otherwise need 16 x 256 recordings of 300 steps at once. The metrics equal those of one
    sample per trial and forward."""
    from antlr_exp.training.build import load_trials
    from antlr_exp.training.evaluation import evaluate_trials
    from antlr_exp.training.metrics import SplitMeter
    from antlr_exp.training.objective import Objective

    cfg = compose_config(*overrides_for("mnist", "antlr", False, data_roots), "trials=3", "data.limit_test=10")
    datas, net = load_trials(cfg)
    objective = Objective(cfg, datas[0].num_outputs)
    seen = []
    forward = net.forward
    net.forward = lambda x, **kw: seen.append(x.shape[0] * x.shape[1]) or forward(x, **kw)
    sets = [data.test for data in datas]
    batched = evaluate_trials(
        net, sets, objective, SplitMeter(cfg.loss.decision, True, 3), 6, torch.device("cpu"), "test"
    )
    assert max(seen) == 6 and sum(seen) == 3 * len(sets[0]), seen  # 2 samples per trial and forward
    seen.clear()
    one = evaluate_trials(net, sets, objective, SplitMeter(cfg.loss.decision, True, 3), 3, torch.device("cpu"), "test")
    assert max(seen) == 3
    assert any(row["test_accuracy"] > 0 for row in one), "the trials must fire for the comparison to mean anything"
    for a, b in zip(batched, one):
        assert set(a) == set(b)
        assert all(close(a[key], b[key]) for key in a), (a, b)


def test_a_trial_whose_output_layer_falls_silent_is_named_once(data_roots, tmp_path, caplog):
    # theta = 1000: no neuron can fire, so both trials' outputs stay silent from the first epoch
    silent = compose_config(
        *tiny_overrides("mnist", data_roots, steps=4), "trials=2", "neuron.theta=1000", "trainer.val_every_n_steps=1"
    )
    with caplog.at_level(logging.WARNING, logger="antlr_exp.train"):
        run(silent, tmp_path / "silent")
    warnings = [r.getMessage() for r in caplog.records if "output layer fired" in r.getMessage()]
    assert sorted(w.split(": its output")[0] for w in warnings) == [  # each trial's folder, once, 4 points
        f"{tmp_path / 'silent' / 'seed_0'} (trial seed 0)",
        f"{tmp_path / 'silent' / 'seed_1'} (trial seed 1)",
    ]
    assert all("0 spikes per training sample in the steps up to 1," in w and "at least 100 %" in w for w in warnings)
    caplog.clear()
    # one run: its folder, which names the job in a sweep's shared console
    single = compose_config(
        *tiny_overrides("mnist", data_roots, steps=2), "neuron.theta=1000", "trainer.val_every_n_steps=1"
    )
    with caplog.at_level(logging.WARNING, logger="antlr_exp.train"):
        run(single, tmp_path / "single")
    warnings = [r.getMessage() for r in caplog.records if "output layer fired" in r.getMessage()]
    assert [w.split(": its output")[0] for w in warnings] == [str(tmp_path / "single")]
    caplog.clear()
    # theta = 0.01: every neuron fires, no warning
    firing = compose_config(*tiny_overrides("mnist", data_roots, steps=2), "trials=2", "neuron.theta=0.01")
    with caplog.at_level(logging.WARNING, logger="antlr_exp.train"):
        summary = run(firing, tmp_path / "firing")
    assert all(s["test_output_spikes_per_sample"] > 1 for s in summary["summaries"])
    assert not [r for r in caplog.records if "output layer fired" in r.getMessage()]
