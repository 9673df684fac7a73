"""The fused network backward in Triton (antlr_exp.engine.backends.triton_fused) against the
per-layer autograd nodes of the plain PyTorch path, in float64.

``SpikingNetwork`` on the Triton backend trains through FusedNetworkFunction: each layer's dL/dS
and dL/dt_hat are formed from the layer above inside the kernel. The oracle is the per-layer
path (``net.fused = False``, kernels=python: one SpikingLinearFunction per layer, whose rules the
gradient tests check against autograd and the paper's equations). Without a GPU the kernel runs
in Triton's interpreter (TRITON_INTERPRET=1, set before triton is imported; see test_triton.py).
"""

import itertools
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
pytest.importorskip("triton", reason="triton is not installed (torch's Linux wheels bring it)")

from helpers.neuron_cases import NEURONS  # noqa: E402

from antlr_exp.engine import synapses  # noqa: E402
from antlr_exp.engine.network import SpikingNetwork  # noqa: E402
from antlr_exp.engine.neuron import NeuronParams  # noqa: E402

tk = pytest.importorskip("antlr_exp.engine.backends.triton", reason="triton does not import")
if not tk.INTERPRETED and not torch.cuda.is_available():
    pytest.skip("triton was imported without TRITON_INTERPRET=1 and there is no GPU", allow_module_level=True)
DEVICE = "cpu" if tk.INTERPRETED else "cuda"
pytestmark = pytest.mark.slow  # the kernels run in Triton's interpreter (see pyproject's markers)

SIZES = [20, 24, 12, 5]
STEPS = 30


def _gradients(kernels, fused, rule, single, trials, sparse, hidden_loss, dtype=torch.float64, early_stop=False):
    """Gradients of every parameter of a 4-layer network under random weights on every spike and
    spike time of the output layer (and, with ``hidden_loss``, of the hidden layers too)."""
    torch.manual_seed(1)
    params = NeuronParams(single_spike=single, **NEURONS["paper"])
    net = SpikingNetwork(SIZES, STEPS, params, rule=rule, trials=trials, kernels=kernels).to(dtype=dtype, device=DEVICE)
    with torch.no_grad():
        for layer in net.layers:
            layer.weight.mul_(8.0)  # every layer fires
        if early_stop:
            for layer in net.layers[1:]:
                layer.weight.abs_()  # every output fires early, so the early stop comes in
    net.fused = fused
    g = torch.Generator().manual_seed(2)
    shape = (trials, 4, STEPS, SIZES[0]) if trials > 1 else (4, STEPS, SIZES[0])
    x = (torch.rand(shape, generator=g) < (0.05 if sparse else 0.3)).to(dtype).to(DEVICE)
    used = net.uses_fused_backward(x.reshape(-1, STEPS, SIZES[0]))
    out = net(x, early_stop=early_stop, chunk=10)
    loss = 0.0
    for index, (s, t) in enumerate(zip(out.spikes, out.times)):
        if index == len(out.spikes) - 1 or hidden_loss:
            loss = loss + (s * torch.randn(s.shape, generator=g, dtype=s.dtype).to(DEVICE)).sum()
            loss = loss + (t * torch.randn(t.shape, generator=g, dtype=t.dtype).to(DEVICE)).sum()
    loss.backward()
    return used, [p.grad.clone() for p in net.parameters()], [int(s.sum()) for s in out.spikes], out.num_steps


def _compare(ours, theirs, rtol=1e-10):
    used, grads, spikes, steps = ours
    unused, oracle, spikes_oracle, steps_oracle = theirs
    assert used and not unused
    assert spikes == spikes_oracle and all(n > 0 for n in spikes) and steps == steps_oracle
    for a, b in zip(grads, oracle):
        assert float(b.abs().max()) > 0  # every weight and bias got a gradient to compare
        torch.testing.assert_close(a, b, rtol=rtol, atol=rtol * float(b.abs().max()))


# every rule and single-spike mode with the loss on every layer, one trial on dense input and
# three stacked trials on input events; each rule with the loss on the output layer only (the
# interpreter is slow: a case takes seconds)
RULES = ["activation", "timing", "antlr"]
CASES = [(*case, True) for case in itertools.product(RULES, [False, True], [(1, "dense"), (3, "events")])]
CASES += [(rule, False, (3, "dense"), False) for rule in RULES]


@pytest.mark.parametrize("rule,single,layout,hidden_loss", CASES)
def test_fused_triton_backward_equals_the_per_layer_nodes(rule, single, layout, hidden_loss, monkeypatch):
    """Every rule, single-spike on and off, one and three stacked trials, dL/dS and dL/dt_hat on
    the output layer only or on every layer. ``events``: a sparse input, which the Triton backend
    takes as dense rows; here it is handed over as input events instead (the PyTorch scan), so
    that the fused node's weight gradient from events (G times the events, since this backend
    has no event-driven kernel) is checked too."""
    trials, inputs = layout
    if inputs == "events":
        monkeypatch.setattr(tk.TritonBackend, "flatten_input", lambda self, s: synapses.flatten_input(s))
    ours = _gradients("triton", True, rule, single, trials, inputs == "events", hidden_loss)
    theirs = _gradients("python", False, rule, single, trials, inputs == "events", hidden_loss)
    _compare(ours, theirs)


@pytest.mark.parametrize("rule", ["timing", "antlr"])
def test_fused_triton_backward_after_the_training_early_stop(rule):
    """The chunked training forward (early stop) hands its recorded simulation to the fused node."""
    ours = _gradients("triton", True, rule, False, 2, False, False, early_stop=True)
    theirs = _gradients("python", False, rule, False, 2, False, False, early_stop=True)
    assert ours[3] < STEPS  # the early stop came in
    _compare(ours, theirs)


@pytest.mark.parametrize("rule,trials", [("activation", 1), ("antlr", 3)])
def test_fused_triton_backward_in_float32(rule, trials):
    """float32: the fused kernel sums G_up W_up in another order than the per-layer product."""
    ours = _gradients("triton", True, rule, False, trials, False, True, dtype=torch.float32)
    theirs = _gradients("python", False, rule, False, trials, False, True, dtype=torch.float32)
    _compare(ours, theirs, rtol=1e-4)
