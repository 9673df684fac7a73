"""The network-level fused backward (C++ path) against the per-layer autograd nodes.

``SpikingNetwork`` trains through :class:`~antlr_exp.engine.fused.FusedNetworkFunction` on the C++
kernels: it forms each layer's dL/dS and dL/dt_hat from the layer above inside the adjoint
kernel and sums the first layer's weight gradient from the input events there. The per-layer
path (``net.fused = False``: one :class:`~antlr_exp.engine.layer.SpikingLinearFunction` per layer, whose
rules the gradient tests check against autograd and the paper's equations) is the oracle here.
"""

import itertools

import pytest
import torch
from helpers.kernel_paths import require_cpp_kernels
from helpers.neuron_cases import NEURONS, OTHER_NEURONS

from antlr_exp.engine.network import SpikingNetwork
from antlr_exp.engine.neuron import NeuronParams

SIZES = [30, 40, 20, 5]
STEPS = 50


def _gradients(
    rule,
    single,
    trials,
    density,
    hidden_loss,
    fused,
    early_stop=False,
    scale=8.0,
    sizes=SIZES,
    dtype=torch.float64,
    neuron="paper",
):
    torch.manual_seed(1)
    net = SpikingNetwork(
        sizes, STEPS, NeuronParams(single_spike=single, **NEURONS[neuron]), rule=rule, trials=trials
    ).to(dtype)
    with torch.no_grad():
        for layer in net.layers:
            layer.weight.mul_(scale)  # every layer fires
        if early_stop:
            net.layers[-1].weight.abs_()  # every output fires, so the early stop comes in
    net.fused = fused
    g = torch.Generator().manual_seed(2)
    shape = (trials, 4, STEPS, sizes[0]) if trials > 1 else (4, STEPS, sizes[0])
    x = (torch.rand(shape, generator=g) < density).to(dtype)
    used = net.uses_fused_backward(x.reshape(-1, STEPS, sizes[0]))
    out = net(x, early_stop=early_stop, chunk=10)
    loss = 0.0
    for index, (s, t) in enumerate(zip(out.spikes, out.times)):
        if index == len(out.spikes) - 1 or hidden_loss:
            # random weights on every spike and spike time: dL/dS and dL/dt_hat everywhere
            loss = loss + (s * torch.randn(s.shape, generator=g, dtype=s.dtype)).sum()
            loss = loss + (t * torch.randn(t.shape, generator=g, dtype=t.dtype)).sum()
    loss.backward()
    spikes = [int(s.sum()) for s in out.spikes]
    return used, [p.grad.clone() for p in net.parameters()], spikes, out.num_steps


# the paper's neuron constants in every combination; the other constants (beta_V != beta_bias,
# alpha_I != alpha_V, theta != 1: tests/helpers/neuron_cases.py) in every rule and mode, stacked
CASES = list(itertools.product(["activation", "timing", "antlr"], [False, True], [1, 3], [0.03, 0.3], ["paper"]))
CASES += list(itertools.product(["activation", "timing", "antlr"], [False, True], [3], [0.3], OTHER_NEURONS))


@pytest.mark.parametrize("rule,single,trials,density,neuron", CASES)
@pytest.mark.parametrize("hidden_loss", [False, True])
def test_fused_backward_equals_the_per_layer_nodes(rule, single, trials, density, neuron, hidden_loss):
    require_cpp_kernels()
    used, fused, spikes, _ = _gradients(rule, single, trials, density, hidden_loss, fused=True, neuron=neuron)
    unused, layered, spikes_layered, _ = _gradients(
        rule, single, trials, density, hidden_loss, fused=False, neuron=neuron
    )
    assert used and not unused
    assert spikes == spikes_layered and all(n > 0 for n in spikes)  # every layer fired
    nonzero = 0
    for a, b in zip(fused, layered):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10 * float(b.abs().max()))
        nonzero += int(b.abs().max() > 0)
    assert nonzero == len(layered)  # every weight and bias got a gradient to compare


@pytest.mark.parametrize("rule,trials", [("activation", 1), ("antlr", 3)])
def test_fused_backward_in_float32(rule, trials):
    """float32: the kernel's products G_up W_up run in 8-wide vectors, several steps at once; the
    widths 52, 20 and 5 take whole blocks, a block flush with the row's end and the scalar path
    (fewer columns than one vector). The per-layer path in float32 is the oracle; the two sum in
    different orders, hence the tolerance."""
    require_cpp_kernels()
    sizes = [30, 52, 20, 6, 5]
    used, fused, spikes, _ = _gradients(rule, False, trials, 0.3, True, fused=True, sizes=sizes, dtype=torch.float32)
    _, layered, spikes_layered, _ = _gradients(
        rule, False, trials, 0.3, True, fused=False, sizes=sizes, dtype=torch.float32
    )
    assert used and spikes == spikes_layered and all(n > 0 for n in spikes)
    for a, b in zip(fused, layered):
        assert a.dtype == torch.float32 and float(b.abs().max()) > 0
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * float(b.abs().max()))


@pytest.mark.parametrize("rule", ["activation", "antlr"])
@pytest.mark.parametrize("single", [False, True])
def test_fused_backward_under_the_latency_loss(rule, single):
    """The latency loss puts dL/dt_hat on first output spikes only: after a sample's last first
    spike the layer above sends nothing down, and the fused kernel skips those rows (no
    surrogate); the no-spike count term adds dL/dS on silent label neurons."""
    require_cpp_kernels()
    from antlr_exp.engine.losses import latency_loss, no_spike_count_term

    grads, silent_rows = [], []
    for fused in (True, False):
        torch.manual_seed(1)
        net = SpikingNetwork(SIZES, STEPS, NeuronParams(single_spike=single), rule=rule).double()
        with torch.no_grad():
            for layer in net.layers:
                layer.weight.mul_(8.0)
            net.layers[-1].weight.abs_()  # outputs fire early, so later rows get nothing from above
        net.fused = fused
        g = torch.Generator().manual_seed(3)
        x = (torch.rand(8, STEPS, SIZES[0], generator=g) < 0.05).double()
        labels = torch.arange(8) % SIZES[-1]
        out = net(x)
        loss = latency_loss(out.output_spikes, out.output_times, labels)
        if rule == "antlr":
            loss = loss + no_spike_count_term(out.output_spikes, labels, 0.1)
        else:  # the activation rule needs dL/dS: a count loss on the first half of the window
            loss = loss + (out.output_spikes[:, : STEPS // 2].sum(dim=1) - 1.0).pow(2).mean()
        loss.backward()
        grads.append([p.grad.clone() for p in net.parameters()])
        fired = out.output_spikes.sum(dim=1) > 0
        silent_rows.append(int((~fired).any(dim=1).logical_not().sum()))
    assert silent_rows[0] > 0  # some samples had every output fire: rows with nothing from above
    for a, b in zip(*grads):
        assert float(b.abs().max()) > 0
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10 * float(b.abs().max()))


@pytest.mark.parametrize("rule", ["timing", "antlr"])
def test_fused_backward_after_the_training_early_stop(rule):
    """The chunked training forward (early stop) hands its recorded simulation to the fused node."""
    require_cpp_kernels()
    used, fused, _, steps = _gradients(rule, False, 2, 0.3, False, fused=True, early_stop=True)
    _, layered, _, steps_layered = _gradients(rule, False, 2, 0.3, False, fused=False, early_stop=True)
    assert used and steps == steps_layered and steps < STEPS  # the early stop came in
    for a, b in zip(fused, layered):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10 * float(b.abs().max()))


def test_the_fused_node_is_not_used_where_it_does_not_apply():
    net = SpikingNetwork([6, 5, 3], 10, rule="activation_rnn")
    x = torch.zeros(2, 10, 6)
    assert not net.uses_fused_backward(x)  # reset paths: per-layer rnn adjoint
    net.set_rule("antlr")
    with torch.no_grad():
        assert not net.uses_fused_backward(x)  # no autograd
    assert not net.uses_fused_backward(x.requires_grad_())  # the input wants a gradient


@pytest.mark.parametrize("shape", [(800, 784), (3, 64, 96), (100, 50, 50), (37, 45), (2, 33, 70), (5, 10)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_kernels_transpose_equals_torchs(shape, dtype):
    """The C++ transpose of the weights (forward) and of the weight gradient (backward): whole
    8 x 8 register blocks, tile edges, batched trials and strided input."""
    require_cpp_kernels()
    from antlr_exp.engine.backends import cpp

    x = torch.randn(*shape, dtype=dtype, generator=torch.Generator().manual_seed(0))
    for source in (x, x.transpose(-1, -2)):
        assert torch.equal(cpp.load().transpose_contiguous(source), source.transpose(-1, -2).contiguous())


def test_hidden_times_are_formed_when_read():
    """The fused forward does not store hidden layers' spike times: ``out.times`` forms ``t * S``
    on first read (any index form), equal to the per-layer path's tensors."""
    require_cpp_kernels()
    outputs = []
    for fused in (True, False):
        torch.manual_seed(1)
        net = SpikingNetwork(SIZES, STEPS).double()
        with torch.no_grad():
            for layer in net.layers:
                layer.weight.mul_(8.0)
        net.fused = fused
        x = (torch.rand(4, STEPS, SIZES[0], generator=torch.Generator().manual_seed(2)) < 0.05).double()
        outputs.append(net(x))
    fused, layered = outputs
    assert len(fused.times) == len(layered.times) == 3
    steps = torch.arange(STEPS, dtype=torch.float64).view(1, -1, 1)
    for index in (0, 1, 2, -1, -2, -3):
        assert torch.equal(fused.times[index], layered.times[index])
        assert torch.equal(fused.times[index], fused.spikes[index] * steps)
    assert all(torch.equal(a, b) for a, b in zip(fused.times[:2], layered.times[:2]))
    assert [t.shape for t in fused.times] == [t.shape for t in layered.times]
    assert fused.times[0] is fused.times[0]  # formed once
    with pytest.raises(IndexError):
        fused.times[3]


def test_the_kernels_flush_subnormal_numbers_to_zero(monkeypatch):
    """A potential far below threshold makes the exponential surrogate about 1e-38; times a small
    dL/dS that is a subnormal float, which x86 processes in microcode (2x slower steps late in
    training). The C++ adjoint flushes such values to zero; normal values are as the PyTorch
    path computes them."""
    require_cpp_kernels()
    from antlr_exp.engine.backends import select
    from antlr_exp.engine.neuron import NeuronParams
    from antlr_exp.engine.rules import RuleConfig

    params = NeuronParams().resolve(4)
    potential = torch.tensor([[-28.0, 0.5]] * 4)  # [T=4, one sample x 2 neurons]
    spikes = torch.zeros(4, 2)
    grad_s = torch.full((4, 2), 1e-3)
    rule = RuleConfig("activation")
    tiny = torch.finfo(torch.float32).tiny
    assert select("cpu", "cpp").name == "cpp"
    g_cpp, _, _ = select("cpu", "cpp").adjoint(
        grad_s.view(4, 1, 2), None, potential.view(4, 1, 2), spikes.view(4, 1, 2), None, params, rule, False
    )
    g_py, _, _ = select("cpu", "python").adjoint(
        grad_s.view(4, 1, 2), None, potential.view(4, 1, 2), spikes.view(4, 1, 2), None, params, rule, False
    )
    far, near = g_cpp[..., 0], g_cpp[..., 1]
    assert bool(((g_py[..., 0] != 0) & (g_py[..., 0].abs() < tiny)).all())  # the PyTorch path: subnormal
    assert bool((far == 0).all())  # the kernel: flushed
    torch.testing.assert_close(near, g_py[..., 1])


@pytest.mark.parametrize("pattern", ["sparse", "one_dense_part", "graded", "dense"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("n", [70, 10])
def test_the_kernels_input_scan_equals_nonzero(pattern, threads, n):
    """``csr_events`` scans the input once, each thread recording its rows' events while they are
    sparse; a thread whose rows are dense stops recording and, where the whole input is sparse
    after all, its rows are gathered again. The events equal torch.nonzero of the time-major
    input in every case; a dense input gives only its count. Rows of 70 inputs take the
    vectorized count, rows of 10 (Fig. 6's input) the short-row loop."""
    require_cpp_kernels()
    from antlr_exp.engine.backends import cpp

    g = torch.Generator().manual_seed(4)
    steps, batch = 40, 6
    x = (torch.rand(batch, steps, n, generator=g) < 0.03).float()
    if pattern == "one_dense_part":  # the first steps dense (one thread's rows), the whole under 0.1
        x[:, :6] = (torch.rand(batch, 6, n, generator=g) < 0.45).float()
    elif pattern == "graded":
        x = x * torch.rand(batch, steps, n, generator=g) * 3.0
    elif pattern == "dense":
        x = (torch.rand(batch, steps, n, generator=g) < 0.5).float()
    time_major = x.transpose(0, 1)  # strided, as the network passes it
    density = float((x != 0).float().mean())
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        found = cpp.load().csr_events(time_major, 0.1)
    finally:
        torch.set_num_threads(before)
    assert bool(found[-1])  # finite
    if pattern == "dense":
        assert density >= 0.1 and len(found) == 2 and int(found[0][0]) == int((x != 0).sum())
        return
    assert density < 0.1
    offsets, rows, cols, values, all_ones, _ = found
    t, b, i = time_major.nonzero(as_tuple=True)
    assert torch.equal(rows, t * batch + b) and torch.equal(cols, i)
    assert torch.equal(values, time_major[t, b, i])
    assert bool(all_ones) == (pattern != "graded")
    counts = torch.bincount(t * batch + b, minlength=steps * batch)
    assert torch.equal(offsets[1:] - offsets[:-1], counts) and int(offsets[0]) == 0
