"""Bad inputs raise errors that name the value and what is accepted."""

import pytest
import torch

from antlr_exp.engine.losses import count_loss, count_targets, latency_loss, no_spike_count_term, spike_train_loss
from antlr_exp.engine.network import SpikingNetwork
from antlr_exp.engine.neuron import NeuronParams
from antlr_exp.engine.spikes import decide
from antlr_exp.errors import ConfigError, InputError


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        ({"alpha_I": -0.5}, r"alpha_I=-0\.5.*\[0, 1\]"),
        ({"alpha_V": 1.5}, r"alpha_V=1\.5.*\[0, 1\]"),
        ({"theta": 0.0}, r"theta=0\.0.*> 0"),
        ({"beta_V": "big"}, r"beta_V='big'.*'auto' or a number"),
        ({"beta_bias": -1.0}, r"beta_bias=-1\.0"),
        ({"surrogate": "relu"}, r"surrogate='relu'.*exponential"),
        ({"vstar_min": -0.01}, r"vstar_min=-0\.01"),
    ],
)
def test_bad_neuron_parameters(kwargs, pattern):
    with pytest.raises(ConfigError, match=pattern):
        NeuronParams(**kwargs)


@pytest.mark.parametrize(
    "sizes,steps,rule,pattern",
    [
        ([784, 0, 10], 100, "antlr", r"sizes=\[784, 0, 10\]"),
        ([784], 100, "antlr", r"sizes=\[784\]"),
        ([4, 2], 0, "antlr", r"num_steps=0"),
        ([4, 2], 10, "slayer", r"method='slayer'.*activation, activation_rnn, timing, antlr"),
    ],
)
def test_bad_network_config(sizes, steps, rule, pattern):
    with pytest.raises(ConfigError, match=pattern):
        SpikingNetwork(sizes, steps, rule=rule)


def test_bad_lambda():
    with pytest.raises(ConfigError, match=r"lambda_tim=nan"):
        SpikingNetwork([4, 2], 10, lambda_tim=float("nan"))


def test_wrong_input_shapes():
    net = SpikingNetwork([6, 3, 2], 10)
    with pytest.raises(InputError, match=r"\(2, 10, 5\).*5 input neurons.*expects 6"):
        net(torch.zeros(2, 10, 5))
    with pytest.raises(InputError, match=r"\(2, 12, 6\).*12 steps.*num_steps=10"):
        net(torch.zeros(2, 12, 6))
    with pytest.raises(InputError, match=r"\(10, 6\)"):
        net(torch.zeros(10, 6))
    with pytest.raises(InputError, match=r"\(2, 10, 2, 2, 2\).*8 input neurons"):
        net(torch.zeros(2, 10, 2, 2, 2))


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("grad", [True, False])
def test_nan_and_inf_input(dense, grad):
    """Refused on every path: with autograd on the C++ path, the fused node's scan of the input
    checks it (sparse input: the event list; dense: the count only); otherwise the network does."""
    net = SpikingNetwork([6, 2], 10)
    x = torch.zeros(1, 10, 6)
    if dense:
        x[0, ::2] = 1.0  # half the entries: past the event-driven density
    with torch.set_grad_enabled(grad):
        for bad, word in ((float("nan"), "NaN"), (float("inf"), "inf"), (float("-inf"), "inf")):
            x[0, 3, 2] = bad
            with pytest.raises(InputError, match=word):
                net(x)


def test_bad_loss_inputs_and_decision():
    s = torch.zeros(2, 5, 3)
    with pytest.raises(InputError, match=r"target_counts has shape \(2, 4\).*\(2, 3\)"):
        count_loss(s, torch.zeros(2, 4))
    with pytest.raises(InputError, match=r"target_spikes has shape"):
        spike_train_loss(s, s, torch.zeros(2, 6, 3))
    with pytest.raises(InputError, match=r"labels has shape \(3,\)"):
        latency_loss(s, s, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ConfigError, match=r"decay=1\.5"):
        spike_train_loss(s, s, s, decay=1.5)
    with pytest.raises(ConfigError, match=r"decision='first'.*most_spike, earliest_spike"):
        decide(s, "first")


@pytest.mark.parametrize("grad", [True, False])
@pytest.mark.parametrize("shape", [(0, 40, 20), (0, 40, 4, 5)])
def test_an_empty_batch_is_refused(grad, shape):
    net = SpikingNetwork([20, 2], 40)
    with torch.set_grad_enabled(grad), pytest.raises(InputError) as caught:
        net(torch.zeros(shape))
    assert str(caught.value) == f"input has shape {shape}: the batch is empty; expected at least one sample"
    stacked = SpikingNetwork([20, 2], 40, trials=2)
    with pytest.raises(InputError, match=r"\(2, 0, 40, 20\): the batch is empty"):
        stacked(torch.zeros(2, 0, 40, 20))


def test_labels_out_of_range_or_not_integers_are_refused_by_every_loss():
    s = torch.zeros(3, 5, 2)
    for labels, pattern in (
        (torch.tensor([0, 1, 2]), r"labels must lie in 0\.\.1; got min 0, max 2"),
        (torch.tensor([0, -1, 1]), r"labels must lie in 0\.\.1; got min -1, max 1"),
        (torch.tensor([0.0, 1.0, 1.0]), r"labels has dtype torch\.float32: expected integer"),
        ([0, 1, 1], r"labels of type list"),
    ):
        for loss in (
            lambda: latency_loss(s, s, labels),
            lambda: no_spike_count_term(s, labels),
            lambda: count_targets(labels, 2, 1.0, 0.0),
        ):
            with pytest.raises(InputError, match=pattern):
                loss()


def test_infinite_surrogate_scale_and_negative_lambdas_are_refused():
    with pytest.raises(ConfigError, match=r"surrogate_a=inf: must be a finite number >= 0"):
        NeuronParams(surrogate_a=float("inf"))
    for key in ("lambda_act", "lambda_tim"):
        with pytest.raises(ConfigError, match=rf"method\.{key}=-1 is out of range; accepted: a number in \[0, inf\)"):
            SpikingNetwork([4, 2], 10, **{key: -1})
    net = SpikingNetwork([4, 2], 10)
    with pytest.raises(ConfigError, match=r"lambda_act=-0\.5"):
        net.set_rule("antlr", lambda_act=-0.5)
