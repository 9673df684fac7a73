"""dL/dS and dL/dt_hat of every loss against the closed forms of Table 1 (float64)."""

import math

import pytest
import torch

from antlr_exp.engine.losses import (
    check_rule_loss,
    count_loss,
    count_targets,
    exponential_filter,
    label_spike_trains,
    latency_loss,
    no_spike_count_term,
    no_spike_weight_penalty,
    spike_train_loss,
)
from antlr_exp.engine.network import SpikingNetwork
from antlr_exp.engine.spikes import NetworkOutput
from antlr_exp.errors import ConfigError, InputError
from antlr_exp.reference_losses import conv_spike_train_loss


def leaf_outputs(batch=3, steps=30, outputs=4, rate=0.15, seed=0):
    g = torch.Generator().manual_seed(seed)
    spikes = (torch.rand(batch, steps, outputs, generator=g, dtype=torch.float64) < rate).double()
    times = spikes * torch.arange(steps, dtype=torch.float64).view(1, -1, 1)
    return spikes.requires_grad_(), times.requires_grad_()


def hand_count_targets(labels, num_outputs, n_true, n_false):
    """Targets written out by loops: n_true at the label's neuron, n_false at every other one."""
    return torch.tensor(
        [[n_true if o == label else n_false for o in range(num_outputs)] for label in labels], dtype=torch.float64
    )


# (n_true, n_false): the shipped defaults (1, 0) hide targets that drop n_false or n_true
COUNT_TARGETS = [(2.0, 0.0), (3.0, 1.5), (0.5, 2.0)]


@pytest.mark.parametrize("n_true, n_false", COUNT_TARGETS)
def test_count_loss_gradient_closed_form(n_true, n_false):
    """L = mean_b sum_o (sum_t S_o[t] - n_o)^2 / T and dL/dS_o[t] = 2 (sum_t S_o[t] - n_o) / (T B),
    with the targets n_o of count_targets (n_false != 0 included)."""
    spikes, times = leaf_outputs()
    labels = [0, 3, 1]
    target = count_targets(torch.tensor(labels), 4, n_true=n_true, n_false=n_false).double()
    loss = count_loss(spikes, target)
    (grad_s,) = torch.autograd.grad(loss, spikes)
    batch, steps = spikes.shape[:2]
    counts = spikes.detach().sum(dim=1)
    wanted = hand_count_targets(labels, 4, n_true, n_false)
    expected_loss = ((counts - wanted) ** 2).sum() / steps / batch
    assert abs(float(loss.detach()) - float(expected_loss)) < 1e-12
    expected = (2 * (counts - wanted) / steps / batch).unsqueeze(1).expand_as(spikes)
    torch.testing.assert_close(grad_s, expected)


@pytest.mark.parametrize("n_true, n_false", [(10.0, 0.0), *COUNT_TARGETS])
def test_count_targets(n_true, n_false):
    t = count_targets(torch.tensor([2, 0]), 3, n_true=n_true, n_false=n_false)
    assert t.tolist() == [[n_false, n_false, n_true], [n_true, n_false, n_false]]
    assert t.tolist() == hand_count_targets([2, 0], 3, n_true, n_false).tolist()


def test_label_spike_trains_hand_worked():
    t = label_spike_trains(torch.tensor([2, 0]), num_outputs=3, num_steps=5, label_steps=[1, 3], other_steps=[4])
    expected = torch.zeros(2, 5, 3)
    expected[0, 1, 2] = expected[0, 3, 2] = 1  # sample 0: label 2 fires at 1 and 3...
    expected[0, 4, 0] = expected[0, 4, 1] = 1  # ...the others at 4
    expected[1, 1, 0] = expected[1, 3, 0] = 1
    expected[1, 4, 1] = expected[1, 4, 2] = 1
    assert torch.equal(t, expected)
    silent = label_spike_trains(torch.tensor([1]), 3, 5, [0])
    assert silent.sum() == 1 and silent[0, 0, 1] == 1


def test_label_spike_trains_refuses_steps_outside_the_window():
    with pytest.raises(InputError, match=r"label_steps=\[5\].*0\.\.4"):
        label_spike_trains(torch.tensor([0]), 3, 5, [5])
    with pytest.raises(InputError, match="labels must lie in 0..2"):
        label_spike_trains(torch.tensor([3]), 3, 5, [1])


def test_spike_train_loss_gradients_closed_form():
    spikes, times = leaf_outputs(seed=1)
    g = torch.Generator().manual_seed(2)
    target = (torch.rand(spikes.shape, generator=g, dtype=torch.float64) < 0.1).double()
    decay = 0.9
    loss = spike_train_loss(spikes, times, target, decay=decay)
    grad_s, grad_t = torch.autograd.grad(loss, [spikes, times])
    batch, steps, outputs = spikes.shape
    horizon = steps + 200  # tau runs past T until kappa is negligible

    def kappa(k):
        return decay**k if k >= 0 else 0.0

    def kappa_dot(k):
        return (kappa(k + 1) - kappa(k - 1)) / 2

    s, tgt = spikes.detach(), target
    expected_loss = 0.0
    for b in range(batch):
        for o in range(outputs):
            d = [
                sum((s[b, t, o] - tgt[b, t, o]).item() * kappa(tau - t) for t in range(steps)) for tau in range(horizon)
            ]
            expected_loss += sum(v * v for v in d)
            for t in range(steps):
                es = 2 * sum(kappa(tau - t) * d[tau] for tau in range(horizon)) / batch
                et = -2 * sum(kappa_dot(tau - t) * d[tau] for tau in range(horizon)) / batch
                assert abs(float(grad_s[b, t, o]) - es) < 1e-9
                assert abs(float(grad_t[b, t, o]) - et) < 1e-9
    assert abs(float(loss.detach()) - expected_loss / batch) < 1e-6 * max(1.0, expected_loss)


def _graded_outputs(batch, steps, outputs, seed, dtype):
    """Spikes, times (t * S) and a target spike train; spikes also graded, as a layer may pass on."""
    g = torch.Generator().manual_seed(seed)
    spikes = (torch.rand(batch, steps, outputs, generator=g, dtype=torch.float64) < 0.2).double()
    spikes[0] *= torch.rand(steps, outputs, generator=g, dtype=torch.float64) * 2
    times = spikes * torch.arange(steps, dtype=torch.float64).view(1, -1, 1)
    target = (torch.rand(batch, steps, outputs, generator=g, dtype=torch.float64) < 0.1).double()
    return [x.to(dtype) for x in (spikes, times, target)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(
    "steps,decay", [(1, 0.9), (31, 0.9), (32, 0.5), (33, 0.9), (100, 0.9), (100, 0.1), (300, 0.95), (400, 0.97)]
)
def test_spike_train_loss_equals_the_convolution(steps, decay, dtype):
    """Loss and dL/dS, dL/dt_hat, dL/dS_target against the long convolution (float64 oracle whose
    kernel runs until 1e-15: it then agrees with the infinite tail to rounding)."""
    spikes, times, target = _graded_outputs(2, steps, 3, seed=steps, dtype=dtype)
    inputs = [x.clone().requires_grad_() for x in (spikes, times, target)]
    loss = spike_train_loss(*inputs[:2], inputs[2], decay=decay)
    ours = torch.autograd.grad(loss, inputs)
    oracle_inputs = [x.double().requires_grad_() for x in (spikes, times, target)]
    expected = conv_spike_train_loss(*oracle_inputs, decay=decay, cutoff=1e-15)
    theirs = torch.autograd.grad(expected, oracle_inputs)
    rtol = 1e-10 if dtype == torch.float64 else 2e-5
    assert loss.dtype == dtype
    assert abs(float(loss.detach()) - float(expected.detach())) <= rtol * float(expected.detach())
    scale = max(float(b.abs().max()) for b in theirs)  # (dL/dt_hat is exactly 0 at T = 1)
    assert theirs[0].abs().max() > 0 and (steps == 1 or theirs[1].abs().max() > 0)
    for a, b in zip(ours, theirs):
        assert a.dtype == dtype
        torch.testing.assert_close(a.double(), b, rtol=0, atol=rtol * scale)


@pytest.mark.parametrize("steps", [1, 32, 33, 1025, 1100])
def test_exponential_filter_equals_the_step_by_step_recursion(steps):
    """The blocked scan (two levels of blocks from T = 1025 on) against the plain loop, both directions."""
    x = torch.randn(2, steps, 3, generator=torch.Generator().manual_seed(steps), dtype=torch.float64)
    forward, backward = torch.zeros_like(x), torch.zeros_like(x)
    y = z = torch.zeros(2, 3, dtype=torch.float64)
    for t in range(steps):
        y = 0.97 * y + x[:, t]
        forward[:, t] = y
        z = 0.97 * z + x[:, steps - 1 - t]
        backward[:, steps - 1 - t] = z
    torch.testing.assert_close(exponential_filter(x, 0.97), forward, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(exponential_filter(x, 0.97, reverse=True), backward, rtol=1e-12, atol=1e-12)


def test_spike_train_loss_matches_the_truncated_convolution_of_before():
    """The infinite tail differs from the old kernel cut at 1e-6 by less than 1e-8 relative (T = 100)."""
    spikes, times, target = _graded_outputs(3, 100, 4, seed=7, dtype=torch.float64)
    ours = spike_train_loss(spikes, times.requires_grad_(), target)
    before = conv_spike_train_loss(spikes, times, target)
    assert abs(float(ours.detach()) - float(before.detach())) < 1e-8 * float(before.detach())


def test_spike_train_loss_without_times():
    """times None, or not requiring grad: the same loss and dL/dS, no spike-time gradient."""
    spikes, times, target = _graded_outputs(2, 50, 3, seed=9, dtype=torch.float64)
    results = []
    for t in (times.clone().requires_grad_(), times, None):
        s = spikes.clone().requires_grad_()
        loss = spike_train_loss(s, t, target)
        results.append((float(loss.detach()), torch.autograd.grad(loss, s)[0]))
    for value, grad in results[1:]:
        assert value == results[0][0]
        assert torch.equal(grad, results[0][1])


def test_spike_train_loss_finite_differences():
    """dL/dS and dL/dS_target by central differences of the loss itself (torch gradcheck), T across
    several scan blocks."""
    g = torch.Generator().manual_seed(11)
    spikes = torch.rand(2, 70, 2, generator=g, dtype=torch.float64).requires_grad_()
    target = torch.rand(2, 70, 2, generator=g, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda s, tg: spike_train_loss(s, None, tg, decay=0.8), (spikes, target))


def test_latency_loss_gradients_closed_form():
    spikes, times = leaf_outputs(batch=4, rate=0.1, seed=3)
    with torch.no_grad():
        spikes[1, :, 2] = 0  # a silent output neuron
        times[1, :, 2] = 0
    labels = torch.tensor([0, 2, 1, 3])
    beta = 1.0 / 6.0
    loss = latency_loss(spikes, times, labels, beta=beta)
    grad_s, grad_t = torch.autograd.grad(loss, [spikes, times], allow_unused=True)
    assert grad_s is None or float(grad_s.abs().max()) == 0.0
    batch, steps, outputs = spikes.shape
    expected_loss = 0.0
    for b in range(batch):
        first = []
        for o in range(outputs):
            fired = torch.nonzero(spikes[b, :, o].detach()).flatten()
            first.append(int(fired[0]) if fired.numel() else steps)
        z = [math.exp(-beta * f) for f in first]
        p = [v / sum(z) for v in z]
        expected_loss += -math.log(p[labels[b]])
        for o in range(outputs):
            for t in range(steps):
                expected = 0.0
                if first[o] < steps and t == first[o]:
                    expected = -beta * (p[o] - (1.0 if o == labels[b] else 0.0)) / batch
                assert abs(float(grad_t[b, t, o]) - expected) < 1e-12
    assert abs(float(loss.detach()) - expected_loss / batch) < 1e-12


def test_no_spike_count_term_gradient():
    spikes, _ = leaf_outputs(batch=3, rate=0.0)
    with torch.no_grad():
        spikes[0, 4, 1] = 1.0  # sample 0: target neuron 1 fired once
        spikes[2, 4, 0] = spikes[2, 9, 0] = 1.0  # sample 2: target neuron 0 fired twice
    labels = torch.tensor([1, 2, 0])  # sample 1: target neuron 2 silent
    lam = 0.1
    for squared, slope in ((False, 1.0), (True, 2.0)):
        term = no_spike_count_term(spikes, labels, lam, squared=squared)
        (grad,) = torch.autograd.grad(term, spikes)
        assert abs(float(term.detach()) - lam / 3) < 1e-15  # the same value either way
        expected = torch.zeros_like(grad)
        # default: the authors' gradient -lambda_ns / B at every step of the silent label neuron;
        # the paper's squared form gives twice that
        expected[1, :, 2] = -slope * lam / 3
        torch.testing.assert_close(grad, expected)


def test_no_spike_weight_penalty_gradient():
    torch.manual_seed(0)
    net = SpikingNetwork([5, 4, 2], 10).double()
    hidden = torch.zeros(4, 10, 4, dtype=torch.float64)
    hidden[0, 3, 0] = hidden[1, 3, 0] = hidden[2, 1, 1] = 1  # neuron 0 silent on 2/4, neuron 1 on 3/4
    output = torch.zeros(4, 10, 2, dtype=torch.float64)
    output[:, 5, 1] = 1  # output 0 always silent
    out = type("Out", (), {"spikes": [hidden, output]})()
    p = 100.0
    no_spike_weight_penalty(net, out, p).backward()
    frac_hidden = torch.tensor([0.5, 0.75, 1.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(net.layers[0].weight.grad, (-(p / 5) * frac_hidden).unsqueeze(1).expand(4, 5))
    torch.testing.assert_close(
        net.layers[1].weight.grad, (-(p / 4) * torch.tensor([1.0, 0.0], dtype=torch.float64)).unsqueeze(1).expand(2, 4)
    )
    assert net.layers[0].bias.grad is None or float(net.layers[0].bias.grad.abs().max()) == 0


def test_no_spike_weight_penalty_until_all_fired_per_trial():
    """Hand-worked, two stacked trials of two samples: each trial counts silence up to the step at
    which its own batch's last output first fired (the whole window where one never fired), as
    two runs of their own would."""
    p, steps = 100.0, 10
    net = SpikingNetwork([5, 4, 2], steps, trials=2).double()
    output = torch.zeros(4, steps, 2, dtype=torch.float64)  # rows 0-1: trial 0, rows 2-3: trial 1
    output[0, 2, 0] = output[0, 4, 1] = output[1, 3, 0] = output[1, 6, 1] = 1  # trial 0: all fired at step 6
    output[2, 1, 0] = output[3, 1, 0] = output[3, 1, 1] = 1  # trial 1: output 1 silent on row 2
    hidden = torch.zeros(4, steps, 4, dtype=torch.float64)
    hidden[0, 8, 0] = hidden[2, 8, 0] = 1  # neuron 0: after trial 0's stop, inside trial 1's window
    hidden[1, 6, 1] = hidden[3, 9, 1] = 1  # neuron 1: at trial 0's last counted step; late in trial 1
    hidden[:, 0, 2] = 1  # neuron 2 fires on every sample; neuron 3 never
    out = NetworkOutput([hidden, output], [hidden, output], steps, trials=2)
    no_spike_weight_penalty(net, out, p, until_all_fired=True).backward()
    frac_hidden = torch.tensor([[1.0, 0.5, 0.0, 1.0], [0.5, 0.5, 0.0, 1.0]], dtype=torch.float64)
    frac_output = torch.tensor([[0.0, 0.0], [0.0, 0.5]], dtype=torch.float64)
    torch.testing.assert_close(net.layers[0].weight.grad, (-(p / 5) * frac_hidden).unsqueeze(-1).expand(2, 4, 5))
    torch.testing.assert_close(net.layers[1].weight.grad, (-(p / 4) * frac_output).unsqueeze(-1).expand(2, 2, 4))


@pytest.mark.parametrize(
    "rule,loss",
    [("timing", "count"), ("activation", "latency"), ("activation_rnn", "latency")],
)
def test_impossible_rule_loss_pairs_raise(rule, loss):
    with pytest.raises(ConfigError, match=f"method={rule}.*loss={loss}"):
        check_rule_loss(rule, loss)


def test_possible_pairs_pass_and_unknown_names_raise():
    for rule in ("activation", "activation_rnn", "timing", "antlr"):
        check_rule_loss(rule, "spike_train")
    check_rule_loss("antlr", "count")
    check_rule_loss("antlr", "latency")
    with pytest.raises(ConfigError, match="loss='mse'.*count, spike_train, latency"):
        check_rule_loss("antlr", "mse")
    with pytest.raises(ConfigError, match="lambda_tim=0"):
        check_rule_loss("antlr", "latency", lambda_act=1.0, lambda_tim=0.0)
