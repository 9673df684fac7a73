"""``--compare-paths`` (and ``--device cuda``): our engine on each kernel path (Triton with the
fused network backward, Triton with one backward node per layer, the PyTorch per-step loop)
beside snntorch and SpikingJelly, on the paper's shapes and ``obench``, the open-neuromorphic SNN
library benchmark."""

from __future__ import annotations

import os
import time

from .common import SHAPES, make_adam, make_batch, scale_weights, sync

#: the open-neuromorphic SNN library benchmark: one Linear + LIF layer of 4096 neurons, batch 16,
#: T=500, forward and backward (no optimizer); random input spikes at ``input_rate`` per step
OBENCH = {"sizes": [4096, 4096], "frame": None, "steps": 500, "batch": 16, "input_rate": 0.05}
#: the rows of --compare-paths: our engine on each kernel path, then the baselines
PATH_ROWS = ("triton", "triton_per_layer", "pytorch", "snntorch", "spikingjelly")


def path_shape(shape_name: str) -> dict:
    return OBENCH if shape_name == "obench" else SHAPES[shape_name]


def path_batch(shape_name: str, device: str):
    """Input spikes [B, T, N] and labels on ``device``."""
    import torch

    shape = path_shape(shape_name)
    if shape_name == "obench":
        g = torch.Generator().manual_seed(0)
        x = (torch.rand(shape["batch"], shape["steps"], shape["sizes"][0], generator=g) < shape["input_rate"]).float()
        labels = torch.zeros(shape["batch"], dtype=torch.long)
    else:
        x, labels = make_batch(shape)
    return x.to(device), labels.to(device)


def _engine_path_step(shape_name: str, kernels: str, device: str, fused: bool = True):
    """One step of our engine with ANTLR_EXP_KERNELS=``kernels``: on the paper shapes the antlr training
    step of the CPU rows (latency + no-spike count loss, clipping, Adam), through the fused network
    backward where the kernels have one (``fused=False``: one node per layer); on ``obench`` forward and
    backward of ``sum(S)`` through activation_rnn (BPTT with reset paths, as the other libraries do)."""
    import torch

    from antlr_exp.losses import latency_loss, no_spike_count_term
    from antlr_exp.network import SpikingNetwork

    shape = path_shape(shape_name)
    x, labels = path_batch(shape_name, device)
    torch.manual_seed(0)
    obench = shape_name == "obench"
    net = SpikingNetwork(shape["sizes"], shape["steps"], rule="activation_rnn" if obench else "antlr").to(device)
    scale_weights([l.weight for l in net.layers])
    net.fused = fused
    opt = None if obench else make_adam(net.parameters())

    def step():
        os.environ["ANTLR_EXP_KERNELS"] = kernels
        if obench:
            net.zero_grad(set_to_none=True)
            net(x).output_spikes.sum().backward()
            return
        opt.zero_grad(set_to_none=True)
        out = net(x)
        loss = latency_loss(out.output_spikes, out.output_times, labels) + no_spike_count_term(
            out.output_spikes, labels, 0.1
        )
        loss.backward()
        torch.nn.utils.clip_grad_value_(net.parameters(), 1.0)
        opt.step()

    return step


def _snntorch_path_step(shape_name: str, device: str):
    """snntorch on ``device``: the Synaptic rows of the CPU table on the paper shapes; on ``obench`` its
    ``Leaky`` neuron (as in the open-neuromorphic benchmark), forward and backward of ``sum(S)``."""
    import snntorch as snn
    import torch
    from torch import nn

    from antlr_exp.losses import count_loss, count_targets

    shape = path_shape(shape_name)
    x, labels = path_batch(shape_name, device)
    flat = x.reshape(x.shape[0], x.shape[1], -1)
    torch.manual_seed(0)
    sizes = shape["sizes"]
    obench = shape_name == "obench"
    linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])).to(device)
    if obench:
        neurons = nn.ModuleList(snn.Leaky(beta=0.99, reset_mechanism="zero") for _ in linears)
    else:
        neurons = nn.ModuleList(snn.Synaptic(alpha=0.99, beta=0.99, reset_mechanism="zero") for _ in linears)
    neurons = neurons.to(device)  # their state buffers follow the module
    scale_weights([l.weight for l in linears])
    params = list(linears.parameters())
    opt = None if obench else make_adam(params)
    targets = count_targets(labels, sizes[-1], 1.0, 0.0).to(device)

    def step():
        if opt is not None:
            opt.zero_grad(set_to_none=True)
        else:
            linears.zero_grad(set_to_none=True)
        states = [n.init_leaky() if obench else n.init_synaptic() for n in neurons]
        out_spikes = []
        for t in range(flat.shape[1]):
            s = flat[:, t]
            for index, (linear, neuron) in enumerate(zip(linears, neurons)):
                if obench:
                    s, states[index] = neuron(linear(s), states[index])
                else:
                    syn, mem = states[index]
                    s, syn, mem = neuron(linear(s), syn, mem)
                    states[index] = (syn, mem)
            out_spikes.append(s)
        spikes = torch.stack(out_spikes, dim=1)
        (spikes.sum() if obench else count_loss(spikes, targets)).backward()
        if opt is not None:
            torch.nn.utils.clip_grad_value_(params, 1.0)
            opt.step()

    return step


def _spikingjelly_path_step(shape_name: str, device: str):
    """SpikingJelly's multi-step LIF node (CuPy backend), on ``obench`` only: forward and backward of sum(S)."""
    if shape_name != "obench":
        return "SpikingJelly row on the obench shape only"
    import torch
    from spikingjelly.activation_based import layer, neuron

    if not device.startswith("cuda"):
        return "SpikingJelly's CuPy backend needs CUDA"
    import cupy  # noqa: F401  (the backend the published numbers use)

    shape = OBENCH
    x, _ = path_batch(shape_name, device)
    torch.manual_seed(0)
    linear = layer.Linear(shape["sizes"][0], shape["sizes"][1], step_mode="m").to(device)
    node = neuron.LIFNode(tau=100.0, step_mode="m", backend="cupy").to(device)
    time_major = x.transpose(0, 1).contiguous()  # SpikingJelly's multi-step layout [T, B, N]

    def step():
        linear.zero_grad(set_to_none=True)
        node.reset()
        node(linear(time_major)).sum().backward()

    return step


def build_path_step(shape_name: str, row: str, device: str):
    """A zero-argument step of one --compare-paths row, or a string saying why it is skipped."""
    if row in ("triton", "triton_per_layer"):
        from antlr_exp import kernels

        if row == "triton_per_layer" and shape_name == "obench":
            return "one layer under activation_rnn, which has no fused backward: the triton row is per layer"
        os.environ["ANTLR_EXP_KERNELS"] = "triton"
        try:
            import torch

            kernels.triton_kernels(torch.device(device))
        except RuntimeError as exc:
            return str(exc)
        return _engine_path_step(shape_name, "triton", device, fused=row == "triton")
    if row == "pytorch":
        return _engine_path_step(shape_name, "python", device)
    try:
        return (
            _snntorch_path_step(shape_name, device)
            if row == "snntorch"
            else _spikingjelly_path_step(shape_name, device)
        )
    except ImportError as exc:
        return f"{row}: {exc.name} is not installed"


def time_path_rows(shape_name: str, rows, iters: int, max_seconds: float, device: str) -> dict:
    """Median ms per step of every row on ``device``, round-robin, synchronizing around each step;
    with the peak device memory of each row where the device is CUDA."""
    import torch

    steps = {r: build_path_step(shape_name, r, device) for r in rows}
    results = {r: {"skipped": fn} for r, fn in steps.items() if isinstance(fn, str)}
    live = {r: fn for r, fn in steps.items() if not isinstance(fn, str)}
    cuda = device.startswith("cuda")
    peaks = {}
    for r, fn in live.items():  # warm-up (Triton compiles here), and the memory peak of one step
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        fn()
        sync(device)
        if cuda:
            peaks[r] = torch.cuda.max_memory_allocated() / 2**20
    times = {r: [] for r in live}
    spent = {r: 0.0 for r in live}
    for _ in range(iters):
        for r, fn in live.items():
            if spent[r] > max_seconds and len(times[r]) >= 2:
                continue
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            elapsed = time.perf_counter() - t0
            times[r].append(elapsed)
            spent[r] += elapsed
    for r, ts in times.items():
        ts.sort()
        results[r] = {"ms_per_iter": 1000.0 * ts[len(ts) // 2], "ms_min": 1000.0 * ts[0], "iters": len(ts)}
        if r in peaks:
            results[r]["peak_device_mb"] = peaks[r]
    return {r: results[r] for r in rows}


def print_table(shape_name: str, rows: dict, device: str) -> None:
    s = path_shape(shape_name)
    what = "forward + backward" if shape_name == "obench" else "training step"
    print(f"\n{shape_name} on {device}: {'-'.join(map(str, s['sizes']))}, T={s['steps']}, batch {s['batch']}, {what}")
    ref = rows.get("triton", {}).get("ms_per_iter")
    print(f"{'row':<16}{'ms/iter':>10}{'/ triton':>10}{'peak MB':>10}")
    for row, r in rows.items():
        if "ms_per_iter" not in r:
            print(f"{row:<16}  {r.get('skipped')}")
            continue
        ratio = f"{r['ms_per_iter'] / ref:.1f}x" if ref else "-"
        peak = f"{r['peak_device_mb']:.0f}" if "peak_device_mb" in r else "-"
        print(f"{row:<16}{r['ms_per_iter']:>10.2f}{ratio:>10}{peak:>10}")
