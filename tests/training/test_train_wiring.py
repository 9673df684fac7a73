"""What the training loop wires together, checked against hand computations: the timing rule's
no-spike penalty in the descended objective, the decision rules in the metrics, and the
single-spike restriction of a run whose network fires."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers.runs import compose_config, tiny_overrides

import antlr_exp.training.build as train_module
from antlr_exp.config import validate
from antlr_exp.data import load_task
from antlr_exp.engine.spikes import NetworkOutput
from antlr_exp.training import checkpoint as ckpt
from antlr_exp.training.build import load_data, resolve_device
from antlr_exp.training.metrics import SplitMeter
from antlr_exp.training.run import run
from antlr_exp.training.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: the runs are tiny


def timing_trainer(data_roots, tmp_path):
    """A Trainer of a tiny MNIST run with the timing rule (penalty p = 100), recording gradients."""
    cfg = compose_config(*tiny_overrides("mnist", data_roots), "method=timing", "trainer.record_gradients=true")
    validate(cfg)
    assert cfg.method.no_spike_penalty == 100.0
    torch.manual_seed(0)
    data = load_data(cfg)
    trainer = Trainer(cfg, tmp_path, data, resolve_device("cpu"))
    batch = [torch.stack(x) for x in zip(*[data.train[i] for i in range(8)])]
    return trainer, batch


def test_timing_run_descends_the_no_spike_penalty_of_a_silent_network(data_roots, tmp_path):
    """A silent network has no timing gradient at all, so what the step descends is the penalty
    alone: -(p / fan_in) on every incoming weight (silent on the whole batch), 0 on the biases,
    and Adam's first step then raises every weight by the learning rate."""
    trainer, (inputs, labels) = timing_trainer(data_roots, tmp_path)
    with torch.no_grad():
        for layer in trainer.net.layers:
            layer.weight.abs_().neg_()  # inhibitory only: nothing can fire
    before = [p.detach().clone() for p in trainer.net.parameters()]
    trainer._train_step(inputs, labels)
    [recorded] = trainer.gradients
    expected = []
    for layer in trainer.net.layers:
        n_out, n_in = layer.weight.shape
        expected += [torch.full((n_out * n_in,), -100.0 / n_in), torch.zeros(n_out)]
    torch.testing.assert_close(recorded, torch.cat(expected), rtol=1e-6, atol=0)
    lr = trainer.cfg.optimizer.lr
    for layer, old in zip(trainer.net.layers, before[0::2]):
        torch.testing.assert_close(layer.weight.detach() - old, torch.full_like(old, lr), rtol=1e-4, atol=1e-7)


def test_timing_step_gradient_is_loss_gradient_plus_penalty_of_the_silent_fraction(data_roots, tmp_path):
    """Some neurons fire on some samples: the step's gradient is the loss's own gradient plus
    -(p / fan_in) * (fraction of the batch on which the neuron stayed silent), counted here."""
    trainer, (inputs, labels) = timing_trainer(data_roots, tmp_path)
    with torch.no_grad():
        trainer.net.layers[0].weight.mul_(2.0).add_(0.005)
        trainer.net.layers[1].weight.mul_(4.0).add_(0.2)
    shadow = copy.deepcopy(trainer.net)
    out = shadow(inputs)
    trainer.objective.loss(out, labels).backward()
    loss_grad = torch.cat([p.grad.flatten() for p in shadow.parameters()])
    penalty = []
    for layer, spikes in zip(shadow.layers, out.spikes):
        counts = spikes.detach().sum(dim=1)  # [B, N]
        silent = torch.tensor(
            [
                sum(1 for b in range(counts.shape[0]) if counts[b, j] == 0) / counts.shape[0]
                for j in range(counts.shape[1])
            ]
        )
        assert ((silent > 0) & (silent < 1)).any(), "every layer needs neurons silent on part of the batch"
        penalty += [
            (-(100.0 / layer.in_features) * silent).repeat_interleave(layer.in_features),
            torch.zeros(layer.out_features),
        ]
    assert float(loss_grad.abs().max()) > 0, "the loss must have a gradient of its own"
    trainer._train_step(inputs, labels)
    [recorded] = trainer.gradients
    torch.testing.assert_close(recorded, loss_grad + torch.cat(penalty), rtol=1e-5, atol=1e-6)


# -- decisions ---------------------------------------------------------------------------------


def hand_decision(spikes, decision):
    """Prediction of one sample's output spikes [T, O] by the rules' words, in plain Python:
    most_spike: most spikes, ties to the earlier first spike, then the lower index;
    earliest_spike: earliest first spike, ties to the lower index; -1 when nothing fired."""
    steps, outputs = spikes.shape
    trains = [[t for t in range(steps) if spikes[t, o] > 0] for o in range(outputs)]
    if not any(trains):
        return -1
    if decision == "most_spike":
        return min(range(outputs), key=lambda o: (-len(trains[o]), trains[o][0] if trains[o] else steps, o))
    return min(range(outputs), key=lambda o: (trains[o][0] if trains[o] else steps, o))


def hand_outputs():
    """Five samples, T = 10, three outputs, labels [0, 1, 2, 0, 1]; one hidden layer of two."""
    out = torch.zeros(5, 10, 3)
    for b in (0, 1, 4):  # output 0 fires first (step 2), output 1 fires most (steps 5, 6, 7)
        out[b, 2, 0] = 1
        out[b, [5, 6, 7], 1] = 1
    out[2, [1, 3], 2] = out[2, 4, 0] = 1  # output 2 first and most
    hidden = torch.zeros(5, 10, 2)
    hidden[:, 0, 0] = 1
    hidden[:, 3, 1] = 1
    hidden[:, 9, :] = 1
    labels = torch.tensor([0, 1, 2, 0, 1])  # sample 3 is silent: wrong under both
    return NetworkOutput(
        [hidden, out], [hidden * torch.arange(10.0).view(1, -1, 1), out * torch.arange(10.0).view(1, -1, 1)], 10
    ), labels


@pytest.mark.parametrize("decision", ["most_spike", "earliest_spike"])
def test_meter_accuracy_and_spikes_to_decision_by_hand(decision):
    out, labels = hand_outputs()
    # by hand: most_spike predicts [1, 1, 2, -1, 1] (right on 1, 2, 4), earliest [0, 0, 2, -1, 0] (right on 0, 2)
    assert [hand_decision(out.output_spikes[b], "most_spike") for b in range(5)] == [1, 1, 2, -1, 1]
    assert [hand_decision(out.output_spikes[b], "earliest_spike") for b in range(5)] == [0, 0, 2, -1, 0]
    meter = SplitMeter(decision, has_labels=True)
    meter.update(out, labels, loss=0.25)
    metrics = meter.compute("val")
    assert metrics["val_accuracy_most_spike"] == pytest.approx(3 / 5)
    assert metrics["val_accuracy_earliest_spike"] == pytest.approx(2 / 5)
    assert metrics["val_accuracy"] == pytest.approx(3 / 5 if decision == "most_spike" else 2 / 5)
    assert metrics["val_loss"] == pytest.approx(0.25)
    # spikes per sample: hidden 4 and output 4, 0 on the silent sample; up to the decision step
    # (inclusive): the whole window for most_spike, the first output spike for earliest_spike
    assert metrics["val_hidden_spikes_per_sample"] == pytest.approx(4.0)
    assert metrics["val_output_spikes_per_sample"] == pytest.approx((4 + 4 + 3 + 0 + 4) / 5)
    if decision == "most_spike":
        assert metrics["val_hidden_spikes_to_decision_per_sample"] == pytest.approx(4.0)
        assert metrics["val_output_spikes_to_decision_per_sample"] == pytest.approx(15 / 5)
    else:  # first output spike at step 2 (samples 0, 1, 4), 1 (sample 2), none (sample 3: whole window)
        assert metrics["val_hidden_spikes_to_decision_per_sample"] == pytest.approx((1 + 1 + 1 + 4 + 1) / 5)
        assert metrics["val_output_spikes_to_decision_per_sample"] == pytest.approx((1 + 1 + 1 + 0 + 1) / 5)


def detector_weights(net):
    """784-10-10 weights for the fake digits (label k: a bright bar in rows 2+2k, 3+2k, columns
    4-23, firing at step 0): hidden k sums its bar, output k follows hidden k at once, and output
    0 also has a bias that makes it fire three times later on. So the earliest output is the
    label, and output 0 has the most spikes."""
    with torch.no_grad():
        w1 = torch.zeros(10, 28, 28)
        for k in range(10):
            w1[k, 2 + 2 * k : 4 + 2 * k, 4:24] = 0.7
        net.layers[0].weight.copy_(w1.view(10, 784))
        net.layers[0].bias.zero_()
        net.layers[1].weight.copy_(torch.eye(10) * 30.0)
        net.layers[1].bias.zero_()
        net.layers[1].bias[0] = 2.2
    return net


@pytest.mark.parametrize("method, loss", [("timing", "latency"), ("activation", "count")])
def test_run_reports_accuracy_of_each_decision_on_firing_outputs(method, loss, data_roots, tmp_path, monkeypatch):
    """A run whose outputs fire and whose two decisions disagree: the summary's accuracies equal
    the decisions made here by hand on the best checkpoint's outputs."""
    original = train_module.build_network
    monkeypatch.setattr(train_module, "build_network", lambda cfg, data: detector_weights(original(cfg, data)))
    cfg = compose_config(
        *tiny_overrides("mnist", data_roots),
        "task.hidden_sizes=[10]",
        "data.limit_test=30",
        "optimizer.lr=1e-6",
        f"method={method}",
        f"loss={loss}",
    )
    summary = run(cfg, tmp_path)
    data = load_task("mnist", root=str(data_roots["mnist"]), limit_train=16, limit_test=30, num_steps=30)
    net = original(cfg, data)
    net.load_state_dict(ckpt.load(tmp_path / "checkpoints" / "best.pt")["model"])
    inputs = torch.stack([data.test[i][0] for i in range(len(data.test))])
    labels = [int(data.test[i][1]) for i in range(len(data.test))]
    with torch.no_grad():
        spikes = net(inputs).output_spikes
    accuracy = {}
    for decision in ("most_spike", "earliest_spike"):
        predictions = [hand_decision(spikes[b], decision) for b in range(len(labels))]
        accuracy[decision] = sum(p == y for p, y in zip(predictions, labels)) / len(labels)
        assert summary[f"test_accuracy_{decision}"] == pytest.approx(accuracy[decision])
    assert accuracy["earliest_spike"] > 0.5 > accuracy["most_spike"] > 0, accuracy  # they disagree
    assert summary["decision"] == cfg.loss.decision
    assert summary["test_accuracy"] == pytest.approx(accuracy[cfg.loss.decision])


# -- single spike ------------------------------------------------------------------------------


@pytest.mark.parametrize("single_spike", [True, False])
def test_single_spike_run_fires_each_neuron_at_most_once(single_spike, data_roots, tmp_path, monkeypatch):
    """Strong weights make the hidden and output neurons fire repeatedly; with single_spike=true
    no neuron fires twice on any sample of any split the run simulates (seen through the
    metrics' input), and both layers still fire."""
    original = train_module.build_network

    def strong(cfg, data):
        net = original(cfg, data)
        with torch.no_grad():
            net.layers[0].weight.mul_(2.0).add_(0.05)
            net.layers[1].weight.mul_(4.0).add_(1.0)
        return net

    most = {"hidden": 0.0, "output": 0.0}
    total = {"hidden": 0.0, "output": 0.0}
    update = SplitMeter.update

    def spy(self, out, targets, loss, inputs=None):
        for key, spikes in (("hidden", out.spikes[0]), ("output", out.spikes[1])):
            most[key] = max(most[key], float(spikes.detach().sum(dim=1).max()))  # spikes of one neuron on one sample
            total[key] += float(spikes.detach().sum())
        return update(self, out, targets, loss, inputs)

    monkeypatch.setattr(train_module, "build_network", strong)
    monkeypatch.setattr(SplitMeter, "update", spy)
    summary = run(
        compose_config(
            *tiny_overrides("nmnist", data_roots), "method=activation", f"single_spike={str(single_spike).lower()}"
        ),
        tmp_path,
    )
    assert total["hidden"] > 0 and total["output"] > 0
    assert summary["test_hidden_spikes_per_sample"] > 0 and summary["test_output_spikes_per_sample"] > 0
    if single_spike:
        assert most == {"hidden": 1.0, "output": 1.0}
        assert summary["test_hidden_spikes_per_sample"] <= 32 and summary["test_output_spikes_per_sample"] <= 10
    else:  # the same run unrestricted: neurons fire more than once, so the check above can fail
        assert most["hidden"] >= 2 and most["output"] >= 2
