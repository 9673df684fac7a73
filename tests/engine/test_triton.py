"""The Triton backend (antlr_exp.engine.backends.triton) against the plain PyTorch path of the layer.

Without a GPU they run on CPU tensors in Triton's interpreter: TRITON_INTERPRET=1 has to be set
before the kernels are defined, so this module sets it before it imports them (it changes
nothing for the other tests: the default kernel choice never uses Triton on CPU). With a GPU
and no TRITON_INTERPRET, the same tests run compiled on CUDA tensors.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
pytest.importorskip("triton", reason="triton is not installed (torch's Linux wheels bring it)")

from helpers.neuron_cases import NEURONS, OTHER_NEURONS  # noqa: E402

from antlr_exp.engine.backends import SURROGATE_CODES, select  # noqa: E402
from antlr_exp.engine.lif import LIFState  # noqa: E402
from antlr_exp.engine.losses import spike_train_loss  # noqa: E402
from antlr_exp.engine.network import SpikingNetwork  # noqa: E402
from antlr_exp.engine.neuron import NeuronParams  # noqa: E402
from antlr_exp.engine.rules import RuleConfig  # noqa: E402
from antlr_exp.errors import ConfigError  # noqa: E402

tk = pytest.importorskip("antlr_exp.engine.backends.triton", reason="triton does not import")
if not tk.INTERPRETED and not torch.cuda.is_available():
    pytest.skip(
        "antlr_exp.engine.backends.triton was imported before TRITON_INTERPRET=1 was set and there is no GPU "
        "(run this file in a process of its own)",
        allow_module_level=True,
    )
DEVICE = "cpu" if tk.INTERPRETED else "cuda"
pytestmark = pytest.mark.slow  # the kernels run in Triton's interpreter (see pyproject's markers)
STEPS = 30

RULES = [
    ("activation", 1.0, 1.0),
    ("activation_rnn", 1.0, 1.0),
    ("timing", 1.0, 1.0),
    ("antlr", 1.0, 1.0),
    ("antlr", 0.3, 2.5),
]


def random_spikes(shape, rate, seed, dtype):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g, dtype=torch.float64) < rate).to(dtype).to(DEVICE)


def run_network(mode, monkeypatch, rule, lambda_act, lambda_tim, single_spike, dtype, neuron="paper", fused=True):
    """Spikes of both layers and the parameter gradients of a 10-16-4 network under the spike-train
    loss (``fused=False``: one autograd node per layer, where the backend has a fused backward)."""
    monkeypatch.setenv("ANTLR_EXP_KERNELS", mode)
    torch.manual_seed(0)
    net = SpikingNetwork(
        [10, 16, 4],
        STEPS,
        NeuronParams(single_spike=single_spike, **NEURONS[neuron]),
        rule=rule,
        lambda_act=lambda_act,
        lambda_tim=lambda_tim,
    ).to(dtype=dtype, device=DEVICE)
    net.fused = fused
    with torch.no_grad():
        for layer in net.layers:
            layer.weight.mul_(6.0).add_(0.4)
            layer.bias.uniform_(0.0, 0.6)
    x = random_spikes((3, STEPS, 10), 0.15, seed=1, dtype=dtype)
    target = random_spikes((3, STEPS, 4), 0.05, seed=2, dtype=dtype)
    out = net(x)
    spike_train_loss(out.output_spikes, out.output_times, target).backward()
    return [s.detach() for s in out.spikes], [p.grad.detach().clone() for p in net.parameters()]


def _tolerances(dtype):
    return {"rtol": 1e-4, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-12}


# every rule, mode and dtype with the paper's neuron constants; the other constants (beta_V !=
# beta_bias, alpha_I != alpha_V, theta != 1: tests/helpers/neuron_cases.py) through both adjoints (the SRM
# one under ANTLR with lambdas, the RNN one single-spike) in float64 only: the interpreter is slow
# the SRM-based rules train through the fused backward (tests/engine/test_triton_fused.py) and, with
# fused=False, through one node per layer (the srm adjoint kernel)
NETWORK_CASES = [
    (*rule, single, dtype, "paper", fused)
    for rule in RULES
    for single in (False, True)
    for dtype in (torch.float32, torch.float64)
    for fused in ((True, False) if rule[0] != "activation_rnn" else (True,))
]
NETWORK_CASES += [
    (*rule, single, torch.float64, neuron, False)
    for neuron in OTHER_NEURONS
    for rule, single in ((("antlr", 0.3, 2.5), False), (("activation_rnn", 1.0, 1.0), True))
]


@pytest.mark.parametrize("rule,lambda_act,lambda_tim,single_spike,dtype,neuron,fused", NETWORK_CASES)
def test_network_forward_and_gradients_equal_the_pytorch_path(
    rule, lambda_act, lambda_tim, single_spike, dtype, neuron, fused, monkeypatch
):
    ours = run_network("triton", monkeypatch, rule, lambda_act, lambda_tim, single_spike, dtype, neuron, fused)
    theirs = run_network("python", monkeypatch, rule, lambda_act, lambda_tim, single_spike, dtype, neuron)
    for a, b in zip(ours[0], theirs[0]):
        assert b.sum() > 0, "every layer must fire for the test to mean something"
        assert torch.equal(a, b)
    for a, b in zip(ours[1], theirs[1]):
        assert b.abs().max() > 0
        torch.testing.assert_close(a, b, **_tolerances(dtype))


def test_the_triton_path_is_the_one_taken(monkeypatch):
    """ANTLR_EXP_KERNELS=triton runs the Triton kernels (counted): the fused backward for ANTLR, the
    per-layer adjoint with net.fused = False and for activation_rnn; auto does not on CPU."""
    from antlr_exp.engine.backends import triton_fused

    calls = []
    for module, name in (
        (tk, "lif_forward"),
        (tk, "srm_adjoint"),
        (tk, "rnn_adjoint"),
        (triton_fused, "fused_adjoint"),
    ):
        original = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _f=original, _n=name, **k: (calls.append(_n), _f(*a, **k))[1])
    run_network("triton", monkeypatch, "antlr", 1.0, 1.0, False, torch.float32)
    assert calls == ["lif_forward"] * 2 + ["fused_adjoint"] * 2
    calls.clear()
    run_network("triton", monkeypatch, "antlr", 1.0, 1.0, False, torch.float32, fused=False)
    run_network("triton", monkeypatch, "activation_rnn", 1.0, 1.0, False, torch.float32)
    assert calls.count("lif_forward") == 4 and calls.count("srm_adjoint") == 2 and calls.count("rnn_adjoint") == 2
    assert "fused_adjoint" not in calls
    if DEVICE == "cpu":
        calls.clear()
        run_network("auto", monkeypatch, "antlr", 1.0, 1.0, False, torch.float32)
        assert calls == []


@pytest.mark.parametrize("single_spike", [False, True])
def test_simulation_from_a_state_with_currents(single_spike, monkeypatch):
    """simulate_lif from a nonzero state, keeping the currents: every output and the final state."""
    params = NeuronParams(single_spike=single_spike).resolve(STEPS)
    g = torch.Generator().manual_seed(3)
    batch, n = 3, 7
    drive = (torch.rand(STEPS, batch, n, generator=g, dtype=torch.float64) * 0.6).to(DEVICE)
    bias = (torch.rand(n, generator=g, dtype=torch.float64) * 0.2).to(DEVICE)
    state = LIFState(
        torch.rand(batch, n, generator=g, dtype=torch.float64).to(DEVICE),
        torch.rand(batch, n, generator=g, dtype=torch.float64).to(DEVICE),
        (torch.rand(batch, n, generator=g) < 0.7).double().to(DEVICE),
        (torch.rand(batch, n, generator=g) < 0.7).double().to(DEVICE) if single_spike else None,
    )
    results = []
    for mode in ("triton", "python"):
        potential, spikes, times, final, currents = select(DEVICE, mode).simulate_lif(drive, bias, params, state, True)
        results.append([potential, spikes, times, currents, *(x for x in final if x is not None)])
    assert results[1][1].sum() > 0
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("surrogate", sorted(SURROGATE_CODES))
@pytest.mark.parametrize("rule,lambda_act,lambda_tim", RULES)
def test_adjoint_equals_the_pytorch_path_for_every_surrogate(surrogate, rule, lambda_act, lambda_tim, monkeypatch):
    """The backends' adjoint on a random forward pass (without single-spike mode some neurons fire at
    consecutive steps): G, H and the lam_V sums, with dL/dS and dL/dt_hat both given and each
    left out, single-spike off and on."""
    cfg = RuleConfig(rule, lambda_act, lambda_tim)
    for single in (False, True):
        params = NeuronParams(surrogate=surrogate, single_spike=single).resolve(STEPS)
        g = torch.Generator().manual_seed(4)
        drive = torch.rand(STEPS, 2, 9, generator=g, dtype=torch.float64) * 0.5
        drive[:, :, :2] *= 100  # neurons 0, 1 fire early (and, single-spike off, at consecutive steps)
        drive = drive.to(DEVICE)
        bias = torch.zeros(9, dtype=torch.float64, device=DEVICE)
        potential, spikes, _, _, current = select(DEVICE, "python").simulate_lif(drive, bias, params, keep_current=True)
        assert spikes[:, :, 2:].sum() > 0 and (single or (spikes[1:] * spikes[:-1]).sum() > 0)
        grad_s = torch.randn(spikes.shape, generator=g, dtype=torch.float64).to(DEVICE)
        grad_t = torch.randn(spikes.shape, generator=g, dtype=torch.float64).to(DEVICE) * spikes
        for gs, gt in ((grad_s, grad_t), (None, grad_t), (grad_s, None)):
            results = []
            for mode in ("triton", "python"):
                results.append(
                    select(DEVICE, mode).adjoint(
                        gs, gt, potential, spikes, current, params, cfg, want_h=cfg.tim_weight != 0
                    )
                )
            ours, theirs = results
            expect_gradient = (gs is not None and cfg.act_weight != 0) or (gt is not None and cfg.tim_weight != 0)
            assert bool(theirs[0].abs().max() > 0) == expect_gradient
            for a, b in zip(ours, theirs):
                if b is None:
                    assert a is None
                else:
                    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_kernel_choice_errors(monkeypatch):
    monkeypatch.setenv("ANTLR_EXP_KERNELS", "gpu")
    with pytest.raises(ConfigError, match="ANTLR_EXP_KERNELS='gpu': accepted are auto, cpp, triton, python"):
        select(DEVICE)
    with pytest.raises(ConfigError, match="kernels='gpu': accepted are auto, cpp, triton, python"):
        select(DEVICE, "gpu")
    monkeypatch.setenv("ANTLR_EXP_KERNELS", "python")
    assert select(DEVICE).name == "python"
    assert select(DEVICE, "triton").name == "triton" and select(DEVICE, "triton").ops is tk
    monkeypatch.setenv("ANTLR_EXP_KERNELS", "triton")
    assert select(DEVICE).name == "triton" and select(DEVICE).capabilities.has_fused


def run_stacked(mode, monkeypatch, rule, single_spike, early_stop, trials=2, batch=3):
    """A stacked network of ``trials`` trials (each its own weights and inputs) trained one step
    with the latency loss (+ the no-spike count term), through ``mode``'s kernels; the early
    stop, where on, cuts the window once every output of every sample has fired."""
    from antlr_exp.engine.losses import latency_loss, no_spike_count_term

    monkeypatch.setenv("ANTLR_EXP_KERNELS", mode)
    torch.manual_seed(3)
    net = SpikingNetwork([10, 16, 4], STEPS, NeuronParams(single_spike=single_spike), rule=rule, trials=trials).to(
        dtype=torch.float64, device=DEVICE
    )
    with torch.no_grad():
        for k in range(trials):  # excitable, differently per trial: every output fires, at different steps
            for layer in net.layers:
                layer.weight[k].mul_(6.0).add_(1.0 + 0.3 * k)
                layer.bias[k].uniform_(0.0, 0.6)
    x = random_spikes((trials, batch, STEPS, 10), 0.2, seed=4, dtype=torch.float64)
    labels = torch.arange(trials * batch, device=DEVICE) % 4
    out = net(x, early_stop=early_stop, chunk=5)
    per = latency_loss(out.output_spikes, out.output_times, labels, reduction="none")
    if rule == "antlr":
        per = per + no_spike_count_term(out.output_spikes, labels, reduction="none")
    per.view(trials, -1).mean(dim=1).sum().backward()
    return out.num_steps, [s.detach() for s in out.spikes], [p.grad.detach().clone() for p in net.parameters()]


@pytest.mark.parametrize("early_stop", [False, True])
@pytest.mark.parametrize("single_spike", [False, True])
@pytest.mark.parametrize("rule", ["timing", "antlr"])
def test_stacked_trials_and_the_training_early_stop_equal_the_pytorch_path(rule, single_spike, early_stop, monkeypatch):
    steps, spikes, grads = run_stacked("triton", monkeypatch, rule, single_spike, early_stop)
    steps_py, spikes_py, grads_py = run_stacked("python", monkeypatch, rule, single_spike, early_stop)
    assert steps == steps_py
    if early_stop:
        assert steps < STEPS, "every output must fire early for the early stop to be exercised"
    for a, b in zip(spikes, spikes_py):
        assert b.sum() > 0 and torch.equal(a, b)
    for a, b in zip(grads, grads_py):
        assert b.abs().max() > 0
        assert not torch.equal(b[0], b[1]), "the trials must differ for the stacking to be tested"
        torch.testing.assert_close(a, b, **_tolerances(torch.float64))
