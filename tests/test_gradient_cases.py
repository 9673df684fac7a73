"""The rules in the cases the main gradient tests do not reach: ANTLR with lambdas other than 0
and 1 through several layers, and the two branches of V* (the reset factor after a spike on the
step before, the clamp at vstar_min). Float64, on both kernel paths."""

import pytest
import torch

from antlr_exp.losses import spike_train_loss
from antlr_exp.network import SpikingNetwork
from antlr_exp.neuron import NeuronParams
from kernel_paths import kernel_path  # noqa: F401  (autouse: every test runs on both paths)
from test_gradients import finite_difference, library_timing_grads, relative_error_and_cosine, timing_setup
from timing_oracle import direct_antlr_gradients, direct_timing_gradients, single_neuron_times


def network_with(sizes, steps, weights, biases, rule, **kw):
    net = SpikingNetwork(sizes, steps, NeuronParams(), rule=rule, **kw).double()
    with torch.no_grad():
        for layer, w, b in zip(net.layers, weights, biases):
            layer.weight.copy_(w)
            layer.bias.copy_(b)
    return net


@pytest.mark.parametrize("lambda_act, lambda_tim", [(0.3, 2.5), (1.7, 0.4)])
def test_antlr_with_lambdas_equals_weighted_sum_of_the_parts_by_loops(lambda_act, lambda_tim):
    """Three layers, spike-train loss: the engine's ANTLR gradients equal eqs. 7/10 by loops with
    dL/dV = lambda_act * sigma(V) dL/dS + lambda_tim * (-dL/dt / V*) at every layer."""
    sizes, steps = [8, 6, 5, 3], 60
    params, x, weights, biases = timing_setup(sizes, steps, seed=0)
    biases[1] += 0.02
    target = torch.zeros(1, steps, sizes[-1], dtype=torch.float64)
    target[0, [15, 30, 45], [0, 1, 2]] = 1.0
    net = network_with(sizes, steps, weights, biases, "antlr", lambda_act=lambda_act, lambda_tim=lambda_tim)
    out = net(x.unsqueeze(0))
    spike_train_loss(out.output_spikes, out.output_times, target).backward()
    # dL/dS and dL/dt_hat of the output layer, from the loss alone
    s_out = out.output_spikes.detach().clone().requires_grad_()
    t_out = out.output_times.detach().clone().requires_grad_()
    spike_train_loss(s_out, t_out, target).backward()
    direct_w, direct_b, direct_s = direct_antlr_gradients(
        x, weights, biases, params, s_out.grad[0], t_out.grad[0], lambda_act, lambda_tim)
    for ours, theirs in zip(out.spikes, direct_s):
        assert torch.equal(ours[0].detach(), theirs)
        assert theirs.sum() >= 2, "every layer must spike for the timing part to mean something"
    for layer, dw, db in zip(net.layers, direct_w, direct_b):
        assert dw.abs().max() > 0
        torch.testing.assert_close(layer.weight.grad, dw, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(layer.bias.grad, db, rtol=1e-9, atol=1e-12)
