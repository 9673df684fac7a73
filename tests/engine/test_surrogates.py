"""Every surrogate shape: its closed form, and the engine's activation rules with it against the
autograd reference (whose surrogates are written separately), on both kernel paths."""

import math

import pytest
import torch
from helpers.kernel_paths import kernel_path  # noqa: F401  (autouse: every test runs on both paths)

from antlr_exp.engine.losses import spike_train_loss
from antlr_exp.engine.network import SpikingNetwork
from antlr_exp.engine.neuron import NeuronParams
from antlr_exp.engine.reference import reference_forward, reference_surrogate
from antlr_exp.engine.surrogate import SURROGATES

A, B = 0.7, 2.5  # not the defaults (1, 3), so that a swapped or dropped parameter shows


def closed_form(name, u, a, b):
    """sigma(u) by the textbook formula, one float at a time."""
    if name == "exponential":
        return a * math.exp(-b * abs(u))
    if name == "fast_sigmoid":
        return a / (1 + b * abs(u)) ** 2
    if name == "triangle":
        return a * max(0.0, 1 - b * abs(u))
    s = 1 / (1 + math.exp(-b * u))
    return 4 * a * s * (1 - s)


def smooth_step(name, u, a, b):
    """The smooth step F whose derivative the surrogate is (so F' = sigma)."""
    if name == "exponential":
        return (a / b) * torch.sign(u) * (1 - torch.exp(-b * u.abs()))
    if name == "fast_sigmoid":
        return a * u / (1 + b * u.abs())
    if name == "triangle":
        inside = a * (u - b * u * u.abs() / 2)
        return torch.where(u.abs() < 1 / b, inside, a * torch.sign(u) / (2 * b))
    return (4 * a / b) * torch.sigmoid(b * u)


U = [-1.3, -0.5, -0.39, -0.1, -0.013, 0.0, 0.02, 0.25, 0.41, 0.7, 2.0]


@pytest.mark.parametrize("name", ["exponential", "fast_sigmoid", "triangle", "sigmoid"])
def test_surrogate_equals_its_closed_form_and_the_derivative_of_its_step(name):
    assert set(SURROGATES) == {"exponential", "fast_sigmoid", "triangle", "sigmoid"}
    u = torch.tensor(U, dtype=torch.float64)
    expected = torch.tensor([closed_form(name, x, A, B) for x in U], dtype=torch.float64)
    torch.testing.assert_close(SURROGATES[name](u.clone(), A, B), expected, rtol=1e-12, atol=1e-15)
    params = NeuronParams(surrogate=name, surrogate_a=A, surrogate_b=B, theta=1.0)
    torch.testing.assert_close(reference_surrogate(u + 1.0, params), expected, rtol=1e-12, atol=1e-15)
    # F' by autograd, away from u = 0 where sign() has no derivative
    away = torch.tensor([x for x in U if x != 0.0], dtype=torch.float64, requires_grad=True)
    (derivative,) = torch.autograd.grad(smooth_step(name, away, A, B).sum(), away)
    torch.testing.assert_close(SURROGATES[name](away.detach().clone(), A, B), derivative, rtol=1e-12, atol=1e-15)
    assert float(expected.max()) == pytest.approx(A)  # peak a at u = 0


@pytest.mark.parametrize("rule, reset_paths", [("activation", False), ("activation_rnn", True)])
@pytest.mark.parametrize("name", ["exponential", "fast_sigmoid", "triangle", "sigmoid"])
def test_activation_rules_with_each_surrogate_equal_autograd_reference(name, rule, reset_paths):
    sizes, steps = [10, 12, 4], 30
    torch.manual_seed(0)
    neuron = NeuronParams(surrogate=name, surrogate_a=A, surrogate_b=B)
    net = SpikingNetwork(sizes, steps, neuron, rule=rule).double()
    with torch.no_grad():
        for layer in net.layers:
            layer.weight.mul_(6.0).add_(0.4)
            layer.bias.uniform_(0.0, 0.6)
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(2, steps, sizes[0], generator=g, dtype=torch.float64) < 0.2).double()
    target = (torch.rand(2, steps, sizes[-1], generator=g, dtype=torch.float64) < 0.05).double()
    out = net(x)
    spike_train_loss(out.output_spikes, None, target).backward()

    weights = [l.weight.detach().clone().requires_grad_() for l in net.layers]
    biases = [l.bias.detach().clone().requires_grad_() for l in net.layers]
    ref_spikes, potentials = reference_forward(x, weights, biases, net.params, reset_paths=reset_paths)
    spike_train_loss(ref_spikes[-1], None, target).backward()
    for ours, theirs in zip(out.spikes, ref_spikes):
        assert torch.equal(ours.detach(), theirs.detach()) and theirs.sum() > 0
    if name == "triangle":  # the support 1/b must be reached for the shape to matter
        assert any(bool(((v.detach() - 1.0).abs() > 1 / B).any()) for v in potentials)
    for layer, w, b in zip(net.layers, weights, biases):
        assert w.grad.abs().max() > 0
        torch.testing.assert_close(layer.weight.grad, w.grad, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(layer.bias.grad, b.grad, rtol=1e-9, atol=1e-12)
