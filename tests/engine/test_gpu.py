"""On a GPU: the Triton kernels against the PyTorch CUDA path, and training steps that never make
the host wait for the device. Marked ``gpu`` and skipped without CUDA; ``scripts/gpu_check.sh``
runs them (with the training runs and the timings) where a GPU is at hand.

The oracle is the plain PyTorch path on the same device (``kernels=python``, one autograd node
per layer), whose rules the CPU tests check against autograd and the paper's equations. In
float64 the Triton path must give the same spikes and the same gradients to 1e-9; in float32 the
PyTorch CUDA kernels may contract multiply-adds where the Triton build does not, so a potential
within a rounding of the threshold may spike on one path only: at most 0.1 % of the spikes may
differ, and the gradients agree to 1e-3 where no spike does (to 10 % in norm where some do).
"""

import pytest
import torch
from helpers.runs import compose_config, tiny_overrides

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

SIZES = [34, 48, 24, 10]
STEPS = 60
RULES = [("activation", 1.0, 1.0), ("timing", 1.0, 1.0), ("antlr", 1.0, 1.0), ("antlr", 0.3, 2.5)]


def _run(kernels, fused, rule, lambdas, dtype, single=False, trials=1, early_stop=False):
    """Spikes and parameter gradients of a 4-layer network on the GPU, with dL/dS and dL/dt_hat on
    every layer (random weights on every spike and spike time)."""
    from antlr_exp.engine.network import SpikingNetwork
    from antlr_exp.engine.neuron import NeuronParams

    torch.manual_seed(1)
    net = SpikingNetwork(
        SIZES, STEPS, NeuronParams(single_spike=single), rule, *lambdas, trials=trials, kernels=kernels
    ).to(device="cuda", dtype=dtype)
    with torch.no_grad():
        for layer in net.layers:
            layer.weight.mul_(8.0)  # every layer fires
            if early_stop and layer is not net.layers[0]:
                layer.weight.abs_()  # every output fires early
    net.fused = fused
    g = torch.Generator().manual_seed(2)
    shape = (trials, 8, STEPS, SIZES[0]) if trials > 1 else (8, STEPS, SIZES[0])
    x = (torch.rand(shape, generator=g) < 0.2).to(dtype).cuda()
    used = net.uses_fused_backward(x.reshape(-1, STEPS, SIZES[0]))
    out = net(x, early_stop=early_stop, chunk=10)
    loss = 0.0
    for s, t in zip(out.spikes, out.times):
        loss = loss + (s * torch.randn(s.shape, generator=g, dtype=dtype).cuda()).sum()
        loss = loss + (t * torch.randn(t.shape, generator=g, dtype=dtype).cuda()).sum()
    loss.backward()
    spikes = [s.detach() for s in out.spikes]
    return used, spikes, [p.grad.detach().clone() for p in net.parameters()], out.num_steps


def _compare(ours, theirs, dtype):
    used, spikes, grads, steps = ours
    _, spikes_py, grads_py, steps_py = theirs
    assert steps == steps_py
    assert all(float(s.sum()) > 0 for s in spikes_py), "every layer must fire for the test to mean something"
    differ = sum(int((a != b).sum()) for a, b in zip(spikes, spikes_py))
    total = sum(s.numel() for s in spikes_py)
    if dtype == torch.float64:
        assert differ == 0
        for a, b in zip(grads, grads_py):
            assert float(b.abs().max()) > 0
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9 * float(b.abs().max()))
        return
    assert differ <= 1e-3 * total, f"{differ} of {total} spikes differ"
    for a, b in zip(grads, grads_py):
        assert float(b.abs().max()) > 0
        if differ == 0:
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3 * float(b.abs().max()))
        else:
            assert float((a - b).norm()) <= 0.1 * float(b.norm())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "per_layer"])
@pytest.mark.parametrize("single", [False, True], ids=["", "single_spike"])
@pytest.mark.parametrize("rule,lambda_act,lambda_tim", RULES)
def test_triton_equals_the_pytorch_cuda_path(rule, lambda_act, lambda_tim, single, fused, dtype):
    ours = _run("triton", fused, rule, (lambda_act, lambda_tim), dtype, single)
    theirs = _run("python", False, rule, (lambda_act, lambda_tim), dtype, single)
    assert ours[0] == fused  # the fused node where asked for
    _compare(ours, theirs, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("single", [False, True], ids=["", "single_spike"])
def test_triton_activation_rnn_equals_the_pytorch_cuda_path(single, dtype):
    """activation_rnn (BPTT with the reset paths): one node per layer on every path."""
    _compare(
        _run("triton", True, "activation_rnn", (1.0, 1.0), dtype, single),
        _run("python", False, "activation_rnn", (1.0, 1.0), dtype, single),
        dtype,
    )


@pytest.mark.parametrize("early_stop", [False, True], ids=["", "early_stop"])
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "per_layer"])
def test_triton_stacked_trials_equal_the_pytorch_cuda_path(fused, early_stop):
    """Three stacked trials, each its own weights, with and without the training early stop."""
    ours = _run("triton", fused, "antlr", (1.0, 1.0), torch.float64, trials=3, early_stop=early_stop)
    theirs = _run("python", False, "antlr", (1.0, 1.0), torch.float64, trials=3, early_stop=early_stop)
    if early_stop:
        assert ours[3] < STEPS
    _compare(ours, theirs, torch.float64)


def _trainer(tmp_path, kernels, *overrides, task="mnist", data_roots=None):
    from antlr_exp.training.build import load_data
    from antlr_exp.training.trainer import Trainer

    cfg = compose_config(*tiny_overrides(task, data_roots or {}), f"kernels={kernels}", "device=cuda", *overrides)
    torch.manual_seed(0)
    data = load_data(cfg)
    trainer = Trainer(cfg, tmp_path, data, torch.device("cuda"))
    assert trainer.net.backend().name == kernels
    items = [data.train[i % len(data.train)] for i in range(40)]
    batches = [tuple(torch.stack(x) for x in zip(*items[i : i + 8])) for i in range(0, 40, 8)]
    return trainer, batches


@pytest.mark.parametrize("kernels", ["triton", "python"])
@pytest.mark.parametrize("method", ["antlr", "timing", "activation_rnn"])
def test_a_training_step_on_the_gpu_never_waits_for_it(method, kernels, data_roots, tmp_path):
    """torch.cuda.set_sync_debug_mode('error') turns every wait for the device into an error:
    steps after the first two (which make the kernels' constants) must run without one."""
    trainer, batches = _trainer(
        tmp_path, kernels, f"method={method}", "trainer.train_early_stop=false", data_roots=data_roots
    )
    for batch in batches[:2]:
        trainer._train_step(*batch)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for batch in batches[2:]:
            trainer._train_step(*batch)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    trainer._check_recorded_steps()  # every step finite, read here (one wait)


def test_the_training_early_stop_on_the_gpu(data_roots, tmp_path):
    """The early stop's decision travels to the host behind the forward (DeviceFlag): the steps
    run, and a checkpoint's payload holds a plain bool."""
    trainer, batches = _trainer(tmp_path, "triton", "method=antlr", data_roots=data_roots)
    assert trainer.early_stop
    for batch in batches:
        trainer._train_step(*batch)
    assert isinstance(trainer._payload()["early_stop"]["stop_possible"], bool)
