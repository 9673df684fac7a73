"""``--spike-train-loss``: the spike-train loss by long convolution (the oracle
:func:`antlr_exp.reference_losses.conv_spike_train_loss`) against its O(T) recursion, alone and in
a whole antlr training step."""

from __future__ import annotations

import time

from .common import make_adam, make_batch, scale_weights

#: the spike-train loss comparison: a 40-100-5 network, T=100, batch 64, antlr
LOSS_SHAPE = {"sizes": [40, 100, 5], "frame": None, "steps": 100, "batch": 64, "spikes_per_sample": 40, "t_max": 100}


def spike_train_loss_rows(iters: int, max_seconds: float) -> dict:
    """Old (convolution) against new (O(T) recursion) spike-train loss: the loss's forward and
    backward alone, and a whole antlr training step, timed round-robin; ms (median) and ratios."""
    import torch

    from antlr_exp.losses import spike_train_loss
    from antlr_exp.network import SpikingNetwork
    from antlr_exp.reference_losses import conv_spike_train_loss

    shape = LOSS_SHAPE
    losses = {"conv": conv_spike_train_loss, "recursion": spike_train_loss}
    x, _ = make_batch(shape)
    g = torch.Generator().manual_seed(1)
    target = (torch.rand(shape["batch"], shape["steps"], shape["sizes"][-1], generator=g) < 0.03).float()
    torch.manual_seed(0)
    net = SpikingNetwork(shape["sizes"], shape["steps"], rule="antlr")
    scale_weights([l.weight for l in net.layers])
    with torch.no_grad():
        out = net(x)
    spikes = out.output_spikes.detach().clone().requires_grad_()
    times = out.output_times.detach().clone().requires_grad_()
    opt = make_adam(net.parameters())

    def loss_only(fn):
        def step():
            fn(spikes, times, target).backward()

        return step

    def train_step(fn):
        def step():
            opt.zero_grad(set_to_none=True)
            o = net(x)
            fn(o.output_spikes, o.output_times, target).backward()
            torch.nn.utils.clip_grad_value_(net.parameters(), 1.0)
            opt.step()

        return step

    rows = {}
    for part, make in (("loss", loss_only), ("train_step", train_step)):
        fns = {name: make(fn) for name, fn in losses.items()}
        times_ms = {name: [] for name in fns}
        for fn in fns.values():
            fn()  # warm-up
        started = time.perf_counter()
        for i in range(iters):
            for name, fn in fns.items():
                t0 = time.perf_counter()
                fn()
                times_ms[name].append(1000.0 * (time.perf_counter() - t0))
            if time.perf_counter() - started > max_seconds and i >= 1:
                break
        med = {name: sorted(ts)[len(ts) // 2] for name, ts in times_ms.items()}
        rows[part] = {
            "conv_ms": med["conv"],
            "recursion_ms": med["recursion"],
            "speedup": med["conv"] / med["recursion"],
            "iters": len(times_ms["conv"]),
        }
    rows["output_spikes_per_sample"] = float(out.output_spikes.sum()) / shape["batch"]
    rows["threads"] = torch.get_num_threads()
    return rows


def print_table(rows: dict) -> None:
    s = LOSS_SHAPE
    print(
        f"\nspike-train loss: {'-'.join(map(str, s['sizes']))}, T={s['steps']}, batch {s['batch']}, antlr "
        f"({rows['output_spikes_per_sample']:.1f} output spikes/sample)"
    )
    print(f"{'part':<16}{'conv ms':>10}{'O(T) ms':>10}{'speedup':>10}")
    for part in ("loss", "train_step"):
        r = rows[part]
        print(f"{part:<16}{r['conv_ms']:>10.2f}{r['recursion_ms']:>10.2f}{r['speedup']:>9.1f}x")
