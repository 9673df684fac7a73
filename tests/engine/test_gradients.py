"""Gradients of every rule against independent computations, in float64."""

import pytest
import torch
from helpers.kernel_paths import kernel_path  # noqa: F401  (autouse: every test runs on both paths)
from helpers.neuron_cases import NEURONS
from helpers.timing_oracle import direct_timing_gradients, interpolated_network_times, single_neuron_times

import antlr_exp.engine.synapses as synapses
from antlr_exp.engine.losses import count_loss, spike_train_loss
from antlr_exp.engine.network import SpikingNetwork
from antlr_exp.engine.neuron import NeuronParams
from antlr_exp.engine.reference import reference_forward


def make_net(sizes, steps, rule, single_spike=False, seed=0, scale=6.0, neuron=None, **kw):
    torch.manual_seed(seed)
    net = SpikingNetwork(
        sizes, steps, NeuronParams(single_spike=single_spike, **(neuron or {})), rule=rule, **kw
    ).double()
    with torch.no_grad():
        for layer in net.layers:
            layer.weight.mul_(scale).add_(0.4)
            layer.bias.uniform_(0.0, 0.6)
    return net


def random_spikes(shape, rate, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g, dtype=torch.float64) < rate).double()


def grads(net):
    return [p.grad.detach().clone() for p in net.parameters()]


def reference_grads(net, x, loss_fn, reset_paths):
    weights = [l.weight.detach().clone().requires_grad_() for l in net.layers]
    biases = [l.bias.detach().clone().requires_grad_() for l in net.layers]
    spikes, _ = reference_forward(x, weights, biases, net.params, reset_paths=reset_paths)
    loss_fn(spikes[-1]).backward()
    out = []
    for w, b in zip(weights, biases):
        out += [w.grad, b.grad]
    return spikes, out


LOSSES = {
    "spike_train": lambda target: lambda s, t=None: spike_train_loss(s, t, target),
    "count": lambda target: lambda s, t=None: count_loss(s, target.sum(dim=1)),
}


@pytest.mark.parametrize("neuron", NEURONS)
@pytest.mark.parametrize("single_spike", [False, True])
@pytest.mark.parametrize("loss_name", ["spike_train", "count"])
@pytest.mark.parametrize("rule,reset_paths", [("activation", False), ("activation_rnn", True)])
def test_activation_rules_equal_autograd_reference(rule, reset_paths, loss_name, single_spike, neuron):
    steps = 40
    net = make_net([12, 20, 15, 4], steps, rule, single_spike, neuron=NEURONS[neuron])
    x = random_spikes((3, steps, 12), 0.15, seed=1)
    target = random_spikes((3, steps, 4), 0.05, seed=2)
    loss_fn = LOSSES[loss_name](target)
    out = net(x)
    loss_fn(out.output_spikes, out.output_times).backward()
    ours = grads(net)
    ref_spikes, theirs = reference_grads(net, x, loss_fn, reset_paths)
    for a, b in zip(out.spikes, ref_spikes):
        assert torch.equal(a.detach(), b.detach())
        assert a.sum() > 0, "every layer must spike for the test to mean something"
    for a, b in zip(ours, theirs):
        assert b.abs().max() > 0
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-12)


def test_reset_paths_change_the_gradient():
    """The two activation rules differ (so the tests above can tell them apart)."""
    steps = 40
    x = random_spikes((3, steps, 12), 0.15, seed=1)
    target = random_spikes((3, steps, 4), 0.05, seed=2)
    results = []
    for rule in ("activation", "activation_rnn"):
        net = make_net([12, 20, 15, 4], steps, rule)
        out = net(x)
        spike_train_loss(out.output_spikes, None, target).backward()
        results.append(grads(net))
    assert not torch.allclose(results[0][0], results[1][0])


def timing_setup(sizes, steps, seed, single_spike=False, input_window=25, scale=(2.5, 1.5, 1.5), neuron=None):
    torch.manual_seed(seed)
    params = NeuronParams(single_spike=single_spike, **(neuron or {})).resolve(steps)
    x = torch.zeros(steps, sizes[0], dtype=torch.float64)
    for i in range(sizes[0]):
        x[torch.randint(0, input_window, (2,)), i] = 1
    weights = [torch.rand(n_out, n_in, dtype=torch.float64) * s for n_in, n_out, s in zip(sizes[:-1], sizes[1:], scale)]
    biases = [torch.zeros(n, dtype=torch.float64) for n in sizes[1:]]
    return params, x, weights, biases


def library_timing_grads(sizes, steps, params, x, weights, biases, coef, rule="timing", **kw):
    """The library's gradients of sum(coef * output times), its network built with ``params``
    (resolved: the same numbers, "auto" scales included)."""
    net = SpikingNetwork(sizes, steps, params, rule=rule, **kw).double()
    with torch.no_grad():
        for layer, w, b in zip(net.layers, weights, biases):
            layer.weight.copy_(w)
            layer.bias.copy_(b)
    out = net(x.unsqueeze(0))
    (out.output_times[0] * coef).sum().backward()
    return net, out


@pytest.mark.parametrize("neuron", NEURONS)
@pytest.mark.parametrize("single_spike", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_timing_equals_direct_evaluation_of_eq7_eq10(seed, single_spike, neuron):
    sizes, steps = [8, 6, 5, 3], 60
    params, x, weights, biases = timing_setup(sizes, steps, seed, single_spike, neuron=NEURONS[neuron])
    biases[1] += 0.02
    g = torch.Generator().manual_seed(seed + 10)
    coef = torch.randn(steps, sizes[-1], generator=g, dtype=torch.float64)
    net, out = library_timing_grads(sizes, steps, params, x, weights, biases, coef)
    assert all(s.sum() >= 2 for s in out.spikes)
    grad_t = coef * out.output_spikes[0].detach()
    direct_w, direct_b = direct_timing_gradients(x, weights, biases, params, grad_t)
    for layer, dw, db in zip(net.layers, direct_w, direct_b):
        assert dw.abs().max() > 0
        torch.testing.assert_close(layer.weight.grad, dw, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(layer.bias.grad, db, rtol=1e-9, atol=1e-12)


def finite_difference(loss, tensors, h=1e-6):
    grads_fd = []
    for index, tensor in enumerate(tensors):
        fd = torch.zeros_like(tensor)
        for k in range(tensor.numel()):
            delta = torch.zeros_like(tensor).view(-1)
            delta[k] = h
            plus = [t + delta.view_as(t) if j == index else t for j, t in enumerate(tensors)]
            minus = [t - delta.view_as(t) if j == index else t for j, t in enumerate(tensors)]
            fd.view(-1)[k] = (loss(plus) - loss(minus)) / (2 * h)
        grads_fd.append(fd)
    return grads_fd


def relative_error_and_cosine(a, b):
    rel = float((a - b).norm() / b.norm())
    cos = float(torch.dot(a.flatten(), b.flatten()) / (a.norm() * b.norm()))
    return rel, cos


# Two finite-difference oracles on linearly interpolated crossing times
#   t~ = t - (V[t] - theta) / (V[t] - (1 - S[t-1]) V[t-1]).
# (a) With every crossing slope frozen at its base value, t~ is exactly the paper's local
#     linearization (dt/dV = -1/V*), so the finite difference must equal the rule up to the
#     finite-difference error (seen: about 1e-9): relative error < 1e-6. This checks the windows, the kernel and
#     its derivative, and the chain through layers independently of the implementation.
# (b) With free slopes, the finite difference also sees how the slope itself moves, a term the
#     rule neglects by design. Its relative size is about ((V[t]-theta)/V*) * (dV*/dw)/(dV[t]/dw):
#     a few percent for slow crossings, but of order one when an input spike arrives in the very
#     step of the crossing (V[t-1] does not see it). Over these seeds it stays below 45 %, with
#     cosine > 0.9; a wrong sign, a missing window or a factor 2 gives errors of 100 % or a
#     negative cosine, so the free-slope check is a sanity bound, and (a) is the exact check.
# Both checks with the paper's neuron constants; the exact one (a) also with the other constants
# of tests/helpers/neuron_cases.py (the free-slope bound of (b) was measured at the paper's constants).
FD_CASES = [(seed, frozen, "paper") for frozen in (True, False) for seed in (0, 1, 2)]
FD_CASES += [(0, True, neuron) for neuron in NEURONS if neuron != "paper"]
FROZEN_RELATIVE_TOLERANCE = 1e-6
FREE_RELATIVE_TOLERANCE = 0.5
FREE_COSINE_MIN = 0.9


def _assert_fd_agreement(ours, fd, frozen):
    rel, cos = relative_error_and_cosine(ours, fd)
    if frozen:
        assert rel < FROZEN_RELATIVE_TOLERANCE, (rel, cos)
    else:
        assert rel < FREE_RELATIVE_TOLERANCE and cos > FREE_COSINE_MIN, (rel, cos)


@pytest.mark.parametrize("seed,frozen,neuron", FD_CASES)
def test_timing_single_neuron_matches_finite_difference_of_interpolated_times(seed, frozen, neuron):
    steps, n_in = 80, 10
    params, x, (w,), (b,) = timing_setup([n_in, 1], steps, seed, input_window=30, scale=(1.2,), neuron=NEURONS[neuron])
    slopes = {} if frozen else None
    base = single_neuron_times(x, w, b, params, slopes)
    assert len(base) >= 2, "need a few output spikes"
    coef = {k: float(c) for k, c in zip(sorted(base), torch.linspace(-1.0, 1.5, len(base)))}

    def loss(tensors):
        times = single_neuron_times(x, tensors[0], b, params, slopes)
        assert set(times) == set(base), "finite-difference step changed the spike pattern"
        return sum(coef[k] * times[k] for k in times)

    (fd,) = finite_difference(loss, [w])
    coef_tensor = torch.zeros(steps, 1, dtype=torch.float64)
    for (j, t), c in coef.items():
        coef_tensor[t, j] = c
    net, _ = library_timing_grads([n_in, 1], steps, params, x, [w], [b], coef_tensor)
    _assert_fd_agreement(net.layers[0].weight.grad, fd, frozen)


@pytest.mark.parametrize("seed,frozen,neuron", FD_CASES)
def test_timing_network_matches_finite_difference_of_interpolated_times(seed, frozen, neuron):
    sizes, steps = [8, 6, 2], 60
    params, x, weights, biases = timing_setup(sizes, steps, seed, neuron=NEURONS[neuron])
    slopes = {} if frozen else None
    hidden_base, out_base = interpolated_network_times(x, weights, biases, params, slopes=slopes)
    assert len(out_base) >= 2 and len(hidden_base) >= 4
    g = torch.Generator().manual_seed(seed)
    coef = {k: float(torch.randn((), generator=g, dtype=torch.float64)) for k in sorted(out_base)}

    def loss(tensors):
        hidden, out = interpolated_network_times(x, tensors, biases, params, hidden_base, slopes)
        assert set(out) == set(out_base) and set(hidden) == set(hidden_base), "spike pattern changed"
        return sum(coef[k] * out[k] for k in out)

    fd = finite_difference(loss, weights)
    coef_tensor = torch.zeros(steps, sizes[-1], dtype=torch.float64)
    for (o, t), c in coef.items():
        coef_tensor[t, o] = c
    net, _ = library_timing_grads(sizes, steps, params, x, weights, biases, coef_tensor)
    for layer, f in zip(net.layers, fd):
        _assert_fd_agreement(layer.weight.grad, f, frozen)


def _run_rule(rule, x, target, sizes, steps, **kw):
    net = make_net(sizes, steps, rule, **kw)
    out = net(x)
    spike_train_loss(out.output_spikes, out.output_times, target).backward()
    return grads(net)


@pytest.mark.parametrize("single_spike", [False, True])
def test_antlr_limits_equal_activation_and_timing_exactly(single_spike):
    sizes, steps = [12, 20, 15, 4], 40
    x = random_spikes((3, steps, 12), 0.15, seed=1)
    target = random_spikes((3, steps, 4), 0.05, seed=2)
    act = _run_rule("activation", x, target, sizes, steps, single_spike=single_spike)
    tim = _run_rule("timing", x, target, sizes, steps, single_spike=single_spike)
    antlr_10 = _run_rule("antlr", x, target, sizes, steps, single_spike=single_spike, lambda_act=1.0, lambda_tim=0.0)
    antlr_01 = _run_rule("antlr", x, target, sizes, steps, single_spike=single_spike, lambda_act=0.0, lambda_tim=1.0)
    for a, b in zip(antlr_10, act):
        assert torch.equal(a, b)
    for a, b in zip(antlr_01, tim):
        assert torch.equal(a, b)
    assert any(not torch.allclose(a, b) for a, b in zip(act, tim))


def test_antlr_one_layer_is_the_sum_of_both_rules():
    sizes, steps = [12, 4], 40
    x = random_spikes((3, steps, 12), 0.3, seed=3)
    target = random_spikes((3, steps, 4), 0.05, seed=4)
    act = _run_rule("activation", x, target, sizes, steps, scale=4.0)
    tim = _run_rule("timing", x, target, sizes, steps, scale=4.0)
    both = _run_rule("antlr", x, target, sizes, steps, scale=4.0, lambda_act=1.0, lambda_tim=1.0)
    for a, t, s in zip(act, tim, both):
        assert a.abs().max() > 0 and t.abs().max() > 0
        torch.testing.assert_close(s, a + t, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("rule", ["activation", "activation_rnn", "timing", "antlr"])
def test_event_driven_and_dense_products_agree(rule, monkeypatch):
    sizes, steps = [12, 20, 4], 40
    x = random_spikes((3, steps, 12), 0.02, seed=5)  # sparse input
    target = random_spikes((3, steps, 4), 0.05, seed=6)
    results = []
    for density in (0.0, 1.1):  # 0: always dense; 1.1: always event-driven
        monkeypatch.setattr(synapses, "SPARSE_DENSITY", density)
        results.append(_run_rule(rule, x * 2.0, target, sizes, steps, scale=8.0))  # graded input values too
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_float32_matches_float64_in_forward_and_gradient():
    sizes, steps = [12, 20, 4], 40
    x = random_spikes((3, steps, 12), 0.15, seed=1)
    target = random_spikes((3, steps, 4), 0.05, seed=2)
    net64 = make_net(sizes, steps, "antlr")
    net32 = make_net(sizes, steps, "antlr").float()
    out64, out32 = net64(x), net32(x.float())
    spike_train_loss(out64.output_spikes, out64.output_times, target).backward()
    spike_train_loss(out32.output_spikes, out32.output_times, target.float()).backward()
    for a, b in zip(out64.spikes, out32.spikes):
        assert torch.equal(a.float(), b)
    for a, b in zip(net64.parameters(), net32.parameters()):
        torch.testing.assert_close(b.grad.double(), a.grad, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("neuron", NEURONS)
@pytest.mark.parametrize("single_spike", [False, True])
@pytest.mark.parametrize("rule", ["activation", "activation_rnn", "timing", "antlr"])
def test_cpp_kernels_and_pytorch_path_agree(rule, single_spike, neuron, monkeypatch, kernel_path):
    if kernel_path != "cpp":
        pytest.skip("compares the two paths once")
    sizes, steps = [12, 20, 15, 4], 40
    x = random_spikes((3, steps, 12), 0.15, seed=1)
    target = random_spikes((3, steps, 4), 0.05, seed=2)
    results = []
    for mode in ("auto", "python"):
        monkeypatch.setenv("ANTLR_EXP_KERNELS", mode)
        net = make_net(sizes, steps, rule, single_spike, neuron=NEURONS[neuron])
        out = net(x)
        spike_train_loss(out.output_spikes, out.output_times, target).backward()
        results.append(([s.detach() for s in out.spikes], grads(net)))
    assert all(s.sum() > 0 for s in results[1][0]), "every layer must fire for the test to mean something"
    for a, b in zip(results[0][0], results[1][0]):
        assert torch.equal(a, b)
    for a, b in zip(results[0][1], results[1][1]):
        # the two paths round differently where a product has no factor 1 (beta_I != 1): within
        # a few ulps of the largest entry
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12 * float(b.abs().max()))
