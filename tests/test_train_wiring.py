"""What the training loop wires together, checked against hand computations: the timing rule's
no-spike penalty in the descended objective, the decision rules in the metrics, and the
single-spike restriction of a run whose network fires."""

from __future__ import annotations

import copy

import pytest
import torch

from antlr_exp import checkpoint as ckpt
from antlr_exp.config import validate
from antlr_exp.data import load_task
from antlr_exp.metrics import SplitMeter
from antlr_exp.network import NetworkOutput
from antlr_exp.train import Trainer, build_network, load_data, resolve_device, run
from conftest import compose_config, tiny_overrides


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
        silent = torch.tensor([sum(1 for b in range(counts.shape[0]) if counts[b, j] == 0) / counts.shape[0]
                               for j in range(counts.shape[1])])
        assert ((silent > 0) & (silent < 1)).any(), "every layer needs neurons silent on part of the batch"
        penalty += [(-(100.0 / layer.in_features) * silent).repeat_interleave(layer.in_features),
                    torch.zeros(layer.out_features)]
    assert float(loss_grad.abs().max()) > 0, "the loss must have a gradient of its own"
    trainer._train_step(inputs, labels)
    [recorded] = trainer.gradients
    torch.testing.assert_close(recorded, loss_grad + torch.cat(penalty), rtol=1e-5, atol=1e-6)
