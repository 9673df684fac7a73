"""The rules in the cases the main gradient tests do not reach: ANTLR with lambdas other than 0
and 1 through several layers, and the two branches of V* (the reset factor after a spike on the
step before, the clamp at vstar_min). Float64, on both kernel paths."""

import pytest
import torch
from helpers.kernel_paths import kernel_path  # noqa: F401  (autouse: every test runs on both paths)
from helpers.neuron_cases import NEURONS
from helpers.timing_oracle import direct_antlr_gradients, direct_timing_gradients, simulate_layer, single_neuron_times
from test_gradients import finite_difference, library_timing_grads, relative_error_and_cosine, timing_setup

from antlr_exp.engine.losses import spike_train_loss
from antlr_exp.engine.network import SpikingNetwork
from antlr_exp.engine.neuron import NeuronParams


def network_with(sizes, steps, weights, biases, rule, params=None, **kw):
    net = SpikingNetwork(sizes, steps, params or NeuronParams(), rule=rule, **kw).double()
    with torch.no_grad():
        for layer, w, b in zip(net.layers, weights, biases):
            layer.weight.copy_(w)
            layer.bias.copy_(b)
    return net


@pytest.mark.parametrize("neuron", NEURONS)
@pytest.mark.parametrize("lambda_act, lambda_tim", [(0.3, 2.5), (1.7, 0.4)])
def test_antlr_with_lambdas_equals_weighted_sum_of_the_parts_by_loops(lambda_act, lambda_tim, neuron):
    """Three layers, spike-train loss: the engine's ANTLR gradients equal eqs. 7/10 by loops with
    dL/dV = lambda_act * sigma(V) dL/dS + lambda_tim * (-dL/dt / V*) at every layer (the paper's
    neuron constants and two sets where beta_V != beta_bias, alpha_I != alpha_V, theta != 1)."""
    sizes, steps = [8, 6, 5, 3], 60
    params, x, weights, biases = timing_setup(sizes, steps, seed=0, neuron=NEURONS[neuron])
    biases[1] += 0.02
    biases[0] += 0.05  # every layer's bias gradient is nonzero
    target = torch.zeros(1, steps, sizes[-1], dtype=torch.float64)
    target[0, [15, 30, 45], [0, 1, 2]] = 1.0
    net = network_with(sizes, steps, weights, biases, "antlr", params, lambda_act=lambda_act, lambda_tim=lambda_tim)
    out = net(x.unsqueeze(0))
    spike_train_loss(out.output_spikes, out.output_times, target).backward()
    # dL/dS and dL/dt_hat of the output layer, from the loss alone
    s_out = out.output_spikes.detach().clone().requires_grad_()
    t_out = out.output_times.detach().clone().requires_grad_()
    spike_train_loss(s_out, t_out, target).backward()
    direct_w, direct_b, direct_s = direct_antlr_gradients(
        x, weights, biases, params, s_out.grad[0], t_out.grad[0], lambda_act, lambda_tim
    )
    for ours, theirs in zip(out.spikes, direct_s):
        assert torch.equal(ours[0].detach(), theirs)
        assert theirs.sum() >= 2, "every layer must spike for the timing part to mean something"
    for layer, dw, db in zip(net.layers, direct_w, direct_b):
        assert dw.abs().max() > 0 and db.abs().max() > 0
        torch.testing.assert_close(layer.weight.grad, dw, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(layer.bias.grad, db, rtol=1e-9, atol=1e-12)


def vstar_case():
    """One layer of three neurons over 60 steps, by design:

    neuron 0: a strong input at steps 20-22 makes it fire on three consecutive steps (V* after a
        spike is V[t] itself: the reset factor (1 - S[t-1]) zeroes V[t-1]; without it V* would
        be about -0.59 and 0);
    neuron 1: one input spike at step 0 with weight just above threshold: V creeps over it at
        step 59 by 0.0068 < vstar_min = 0.01 (the clamp);
    neuron 2: ordinary crossings (V* about 0.07).
    """
    steps = 60
    params = NeuronParams().resolve(steps)
    x = torch.zeros(steps, 3, dtype=torch.float64)
    x[0, 0] = 1
    x[[20, 21, 22], 1] = 1
    x[[5, 35], 2] = 1
    w = torch.tensor([[0.5, 45.0, 0.8], [1.003, 0.0, 0.0], [0.9, 0.3, 2.0]], dtype=torch.float64)
    b = torch.zeros(3, dtype=torch.float64)
    return steps, params, x, w, b


def vstars(x, w, b, params):
    """{(neuron, step): V*} from a loop simulation, V* = V[t] - (1 - S[t-1]) V[t-1], unclamped."""
    V, S = simulate_layer(lambda t: w @ x[t], w.shape[0], x.shape[0], params, b)
    return {
        (j, t): float(V[t, j] - (V[t - 1, j] * (1 - S[t - 1, j]) if t > 0 else 0.0))
        for t, j in torch.nonzero(S).tolist()
    }


def test_vstar_case_hits_both_branches():
    steps, params, x, w, b = vstar_case()
    found = vstars(x, w, b, params)
    assert sorted(found) == [(0, 20), (0, 21), (0, 22), (1, 59), (2, 16), (2, 43)]
    assert found[(1, 59)] < params.vstar_min
    assert all(v > 1.0 for (j, t), v in found.items() if (j, t) in ((0, 21), (0, 22)))


def test_vstar_reset_and_clamp_match_loops_and_finite_differences():
    """Timing rule, loss sum_k c_k t_hat_k over every spike: equal to eqs. 7/10 by loops; on the
    unclamped spikes (coefficient of the clamped one set to 0) equal to finite differences of
    the interpolated crossing times with frozen slopes."""
    steps, params, x, w, b = vstar_case()
    spikes = sorted(vstars(x, w, b, params))
    g = torch.Generator().manual_seed(3)
    for clamped_coef in (0.0, 1.3):
        coef = {k: float(torch.randn((), generator=g, dtype=torch.float64)) for k in spikes}
        coef[(1, 59)] = clamped_coef
        coef_tensor = torch.zeros(steps, 3, dtype=torch.float64)
        for (j, t), c in coef.items():
            coef_tensor[t, j] = c
        net, out = library_timing_grads([3, 3], steps, params, x, [w], [b], coef_tensor)
        direct_w, direct_b = direct_timing_gradients(x, [w], [b], params, coef_tensor * out.output_spikes[0].detach())
        torch.testing.assert_close(net.layers[0].weight.grad, direct_w[0], rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(net.layers[0].bias.grad, direct_b[0], rtol=1e-9, atol=1e-12)
        if clamped_coef == 0.0:
            slopes = {}
            base = single_neuron_times(x, w, b, params, slopes)
            assert sorted(base) == spikes

            def loss(tensors):
                times = single_neuron_times(x, tensors[0], b, params, slopes)
                assert set(times) == set(base), "finite-difference step changed the spike pattern"
                return sum(coef[k] * times[k] for k in times)

            (fd,) = finite_difference(loss, [w])
            rel, cos = relative_error_and_cosine(net.layers[0].weight.grad, fd)
            assert rel < 1e-6, (rel, cos)


def test_vstar_clamp_closed_form():
    """The clamped spike alone (loss c * t_hat of neuron 1 at step 59, its only spike):
    dL/dw_1i = -c / vstar_min * sum over input spikes tau of eps[59 - tau], and
    dL/db_1 = -c / vstar_min * beta_bias * sum_{k<60} alpha_V^k, with
    eps[k] = beta_I beta_V (k + 1) alpha^k for alpha_I = alpha_V = alpha."""
    steps, params, x, w, b = vstar_case()
    c = 0.7
    coef = torch.zeros(steps, 3, dtype=torch.float64)
    coef[59, 1] = c
    net, out = library_timing_grads([3, 3], steps, params, x, [w], [b], coef)
    assert out.output_spikes[0, :, 1].nonzero().flatten().tolist() == [59]
    alpha = params.alpha_V
    assert params.alpha_I == alpha
    eps = lambda k: params.beta_I * params.beta_V * (k + 1) * alpha**k  # noqa: E731
    dv = -c / params.vstar_min
    expected = torch.zeros(3, 3, dtype=torch.float64)
    for tau, i in torch.nonzero(x).tolist():
        expected[1, i] += dv * eps(59 - tau)
    torch.testing.assert_close(net.layers[0].weight.grad, expected, rtol=1e-10, atol=1e-12)
    expected_bias = torch.tensor([0.0, dv * params.beta_bias * (1 - alpha**60) / (1 - alpha), 0.0], dtype=torch.float64)
    torch.testing.assert_close(net.layers[0].bias.grad, expected_bias, rtol=1e-10, atol=1e-12)
