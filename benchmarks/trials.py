"""Stacked trials (``trials=K``): one training step of K trials stacked in one network against
single trials (``--trials-rows``), and the step time as K grows with a straight-line fit
(``--trials-sweep``)."""

from __future__ import annotations

from .common import SHAPES, make_adam, make_batch, scale_weights, take_turns


def stacked_step_fn(method: str, shape: dict, trials: int, seed: int = 0):
    """One training step of ``trials`` stacked trials (trials=1: a plain network), each trial with
    its own input batch; the loss is the sum of the trials' batch means, as antlr-train takes it."""
    import torch

    from antlr_exp.losses import (
        count_loss,
        count_targets,
        latency_loss,
        no_spike_count_term,
        no_spike_weight_penalty,
        spike_train_loss,
    )
    from antlr_exp.network import SpikingNetwork

    batches = [make_batch(shape, seed + k) for k in range(trials)]
    x = batches[0][0] if trials == 1 else torch.stack([b[0] for b in batches])
    labels = torch.cat([b[1] for b in batches])
    n_out, steps = shape["sizes"][-1], shape["steps"]
    g = torch.Generator().manual_seed(seed + 1)
    # spike-train targets: one spike per output at a random step
    target_trains = torch.zeros(trials * shape["batch"], steps, n_out)
    target_trains.scatter_(1, torch.randint(0, steps, (trials * shape["batch"], 1, n_out), generator=g), 1.0)
    torch.manual_seed(0)
    net = SpikingNetwork(shape["sizes"], steps, rule=method, trials=trials)
    scale_weights([l.weight for l in net.layers])
    opt = make_adam(net.parameters())
    counts = count_targets(labels, n_out, 1.0, 0.0)

    def step():
        opt.zero_grad(set_to_none=True)
        out = net(x)
        if shape.get("loss") == "spike_train":
            per = spike_train_loss(out.output_spikes, out.output_times, target_trains, reduction="none")
        elif method in ("activation", "activation_rnn"):
            per = count_loss(out.output_spikes, counts, reduction="none")
        else:
            per = latency_loss(out.output_spikes, out.output_times, labels, reduction="none")
            if method == "antlr":
                per = per + no_spike_count_term(out.output_spikes, labels, 0.1, reduction="none")
        loss = per.view(trials, -1).mean(dim=1).sum()
        if method == "timing":
            loss = loss + no_spike_weight_penalty(net, out, 100.0)
        loss.backward()
        torch.nn.utils.clip_grad_value_(net.parameters(), 1.0)
        opt.step()

    return step


def time_trial_rows(shape_name: str, methods, iters: int, max_seconds: float, block: int = 1) -> dict:
    """Per rule: ms per step of one trial and of K stacked trials, taking turns in blocks of
    ``block`` steps (all but the first timed, as in :func:`time_rows`); per trial-iteration times
    and ``speedup_vs_single``."""
    import torch

    shape = SHAPES[shape_name]
    trials = shape.get("trials", 4)
    rows = {}
    for method in methods:
        fns = {"single": stacked_step_fn(method, shape, 1), "stacked": stacked_step_fn(method, shape, trials)}
        med, timed = take_turns(fns, iters, max_seconds, block)
        rows[method] = {
            "trials": trials,
            "ms_single_step": med["single"],
            "ms_stacked_step": med["stacked"],
            "ms_per_trial_iteration": med["stacked"] / trials,
            "speedup_vs_single": med["single"] * trials / med["stacked"],
            "iters": timed,
            "threads": torch.get_num_threads(),
            "block": block,
        }
    return rows


def time_trials_sweep(shape_name: str, methods, ks, iters: int, max_seconds: float, block: int = 4) -> dict:
    """Per rule: ms per training step of K stacked trials for each K in ``ks``, the K taking turns
    (``block`` steps a turn, all but the first timed), and the least-squares line
    ``step = fixed + K * per_trial`` through the medians. ``fixed`` is the per-step work that any K
    shares (interpreter, autograd, optimizer calls); ``per_trial`` what one more trial adds. The
    speedup over a single trial tends to ``ms(K=1) / per_trial`` as K grows."""
    import torch

    ks = sorted(set(ks))
    shape = SHAPES[shape_name]
    rows = {}
    for method in methods:
        med, timed = take_turns({k: stacked_step_fn(method, shape, k) for k in ks}, iters, max_seconds, block)
        n = len(ks)
        mean_k, mean_t = sum(ks) / n, sum(med.values()) / n
        var_k = sum((k - mean_k) ** 2 for k in ks)
        per_trial = sum((k - mean_k) * (med[k] - mean_t) for k in ks) / var_k if var_k else float("nan")
        fixed = mean_t - per_trial * mean_k
        single = med.get(1)
        rows[method] = {
            "steps": {
                str(k): {
                    "ms_step": med[k],
                    "ms_per_trial_iteration": med[k] / k,
                    "speedup_vs_single": single * k / med[k] if single else None,
                }
                for k in ks
            },
            "fit": {
                "fixed_ms": fixed,
                "per_trial_ms": per_trial,
                "limit_speedup": single / per_trial if single and per_trial > 0 else None,
            },
            "iters": timed,
            "threads": torch.get_num_threads(),
            "block": block,
        }
    return rows


def print_sweep(shape: str, rows: dict) -> None:
    s = SHAPES[shape]
    print(
        f"\n{shape}, stacked trials by K: {'-'.join(map(str, s['sizes']))}, T={s['steps']}, batch {s['batch']}, "
        f"{s.get('loss', 'count/latency')} loss"
    )
    print(f"{'method':<16}{'K':>6}{'step ms':>10}{'ms/trial-it':>13}{'speedup':>9}")
    for method, r in rows.items():
        for k, row in r["steps"].items():
            speed = f"{row['speedup_vs_single']:.1f}x" if row["speedup_vs_single"] else "-"
            print(f"{method:<16}{k:>6}{row['ms_step']:>10.2f}{row['ms_per_trial_iteration']:>13.3f}{speed:>9}")
        fit = r["fit"]
        limit = f"{fit['limit_speedup']:.1f}x" if fit["limit_speedup"] else "-"
        print(
            f"{'':<16}fit: step = {fit['fixed_ms']:.2f} ms + K x {fit['per_trial_ms']:.4f} ms; "
            f"speedup as K grows -> {limit}"
        )


def print_rows(shape: str, rows: dict) -> None:
    s = SHAPES[shape]
    print(
        f"\n{shape} trials: {'-'.join(map(str, s['sizes']))}, T={s['steps']}, batch {s['batch']}, "
        f"{s.get('loss', 'count/latency')} loss"
    )
    print(f"{'method':<16}{'K':>5}{'1 trial ms':>12}{'K trials ms':>13}{'ms/trial-it':>13}{'speedup':>9}")
    for method, r in rows.items():
        print(
            f"{method:<16}{r['trials']:>5}{r['ms_single_step']:>12.2f}{r['ms_stacked_step']:>13.2f}"
            f"{r['ms_per_trial_iteration']:>13.3f}{r['speedup_vs_single']:>8.1f}x"
        )
