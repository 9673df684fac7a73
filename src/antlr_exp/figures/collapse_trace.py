"""Per-step trace of one training run: what the loss, the gradients, Adam and the output layer do
at every optimizer step.

Written to study the output collapse of ANTLR with the latency loss on N-MNIST (Fig. 8a): a
trial's output layer falls nearly silent within a few dozen steps and recovers slowly. The run
is the same one ``antlr-train`` makes (same config, data, initial weights, batches and steps);
on top of it every step appends one row to ``steps.csv`` in the output folder:

- ``loss``, ``batch_accuracy``: the batch's loss and earliest-spike accuracy;
- ``output_spikes``, ``hidden_spikes``: spikes per sample in the simulated steps;
- ``label_silent``: fraction of the batch whose label neuron did not fire;
  ``all_silent``: fraction with no output spike at all;
- ``label_vmax``: median over the batch of the label neuron's highest potential (threshold 1);
- ``vstar_median``, ``vstar_below_0.05``: the rise V* of the outputs' potential at their first
  spikes (the timing part of the rule divides by max(V*, neuron.vstar_min)): its median, and the
  fraction of first spikes where it is below 0.05;
- ``output_weight_grad_mean``, ``output_bias_grad_mean``: the output layer's mean gradient
  (positive: the step lowers its weights and bias, so its potentials);
- per weight layer l: ``grad_norm_l`` (before clipping), ``clipped_l`` (fraction of elements
  clipped), ``update_ratio_l`` (||W after - W before|| / ||W before||), ``adam_rms_l`` (the
  root mean square of Adam's bias-corrected second moment, sqrt(mean v_hat): the gradient scale
  Adam divides by) and ``adam_step_rms_l`` (the root mean square of the step Adam took, in units
  of the learning rate).

Usage (any antlr-train overrides; one trial):

    python -m antlr_exp.figures.collapse_trace --out trace_seed3 experiment=fig8a_nmnist method=antlr seed=3 trials=1
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from antlr_exp.config import CONF_DIR, validate
from antlr_exp.engine.lif import simulate_lif
from antlr_exp.training.build import load_trials, resolve_device
from antlr_exp.training.trainer import Trainer


def output_potentials(net, out) -> torch.Tensor:
    """The output layer's potentials [T_sim, B, N_out] for the hidden spikes of ``out``."""
    layer = net.layers[-1]
    hidden = out.spikes[-2].detach()  # [B, T_sim, N_hidden]
    drive = (hidden @ layer.weight.detach().t()).transpose(0, 1).contiguous()
    potential = simulate_lif(drive, layer.bias.detach(), net.params)[0]
    return potential


def first_spike_slopes(potential: torch.Tensor, spikes: torch.Tensor) -> torch.Tensor:
    """V*[t] = V[t] - V[t-1] at each output neuron's first spike (no reset before it), one value per
    (sample, neuron) that fired. ``potential`` [T, B, N], ``spikes`` [B, T, N]."""
    fired = spikes.sum(dim=1) > 0  # [B, N]
    first = spikes.argmax(dim=1)  # [B, N]
    v = potential.permute(1, 0, 2)  # [B, T, N]
    at = v.gather(1, first.unsqueeze(1)).squeeze(1)
    before = v.gather(1, (first - 1).clamp(min=0).unsqueeze(1)).squeeze(1) * (first > 0)
    return (at - before)[fired]


class StepTrace:
    """Wraps a Trainer's step; one row per optimizer step."""

    def __init__(self, trainer: Trainer, path: Path):
        self.trainer = trainer
        self.file = path.open("w", newline="")
        self.writer = None
        self.weights = [layer.weight for layer in trainer.net.layers]
        self.step = trainer._train_step
        trainer._train_step = self.traced_step
        net = trainer.net
        self.forward = net.forward
        self.last_out = None

        def forward(*args, **kwargs):
            self.last_out = self.forward(*args, **kwargs)
            return self.last_out

        net.forward = forward
        self.optimizer_step = trainer.optimizer.step
        trainer.optimizer.step = self.traced_optimizer_step
        self.row = {}

    def traced_optimizer_step(self, *args, **kwargs):
        row, clip = self.row, self.trainer.grad_clip_value
        before = [w.detach().clone() for w in self.weights]
        for l, w in enumerate(self.weights):
            g = w.grad.detach()
            row[f"clipped_{l}"] = float((g.abs() >= clip).float().mean()) if clip is not None else 0.0
        result = self.optimizer_step(*args, **kwargs)
        lr = self.trainer.optimizer.param_groups[0]["lr"]
        beta2 = self.trainer.optimizer.param_groups[0]["betas"][1]
        for l, (w, old) in enumerate(zip(self.weights, before)):
            state = self.trainer.optimizer.state[w]
            steps = float(state["step"])
            v_hat = state["exp_avg_sq"] / (1 - beta2**steps)
            row[f"update_ratio_{l}"] = float((w.detach() - old).norm() / old.norm())
            row[f"adam_rms_{l}"] = float(v_hat.mean().sqrt())
            row[f"adam_step_rms_{l}"] = float((w.detach() - old).pow(2).mean().sqrt() / lr)
        return result

    def traced_step(self, inputs, targets):
        trainer = self.trainer
        self.row = row = {
            "step": trainer.state.step + 1,
            "epoch": trainer.state.epoch,
            "lr": trainer.optimizer.param_groups[0]["lr"],
        }
        # gradient norms before clipping: hook the clip by reading the grads after backward
        clip = torch.nn.utils.clip_grad_value_

        def clip_and_record(parameters, value):
            for l, w in enumerate(self.weights):
                row[f"grad_norm_{l}"] = float(w.grad.detach().norm())
            # the descent direction of the output layer: a positive mean gradient lowers its
            # weights and bias, so gradient descent pushes the output potentials down
            output = trainer.net.layers[-1]
            row["output_weight_grad_mean"] = float(output.weight.grad.detach().mean())
            row["output_bias_grad_mean"] = float(output.bias.grad.detach().mean())
            return clip(parameters, value)

        torch.nn.utils.clip_grad_value_ = clip_and_record
        try:
            self.step(inputs, targets)
        finally:
            torch.nn.utils.clip_grad_value_ = clip
        out = self.last_out
        labels = targets.to(out.output_spikes.device)
        counts, first = out.output_summary()
        batch = counts.shape[0]
        label_counts = counts[torch.arange(batch), labels]
        with torch.no_grad():
            loss = trainer.objective.loss(out, labels)
            potential = output_potentials(trainer.net, out)  # [T_sim, B, N_out]
            vmax = potential.amax(dim=0)  # [B, N_out]
            vstar = first_spike_slopes(potential, out.output_spikes.detach())
        decision = first.argmin(dim=1)
        row.update(
            {
                "loss": float(loss),
                "batch_accuracy": float(
                    ((decision == labels) & (first.min(dim=1).values < out.num_steps)).float().mean()
                ),
                "simulated_steps": out.num_steps,
                "output_spikes": float(counts.sum()) / batch,
                "hidden_spikes": float(sum(s.detach().sum() for s in out.hidden_spikes)) / batch,
                "label_silent": float((label_counts == 0).float().mean()),
                "all_silent": float((counts.sum(dim=1) == 0).float().mean()),
                "label_vmax": float(vmax[torch.arange(batch), labels].median()),
                # V* at the outputs' first spikes: the timing part divides by max(V*, vstar_min)
                "vstar_median": float(vstar.median()) if vstar.numel() else float("nan"),
                "vstar_below_0.05": float((vstar < 0.05).float().mean()) if vstar.numel() else float("nan"),
            }
        )
        if self.writer is None:
            self.writer = csv.DictWriter(self.file, fieldnames=list(row))
            self.writer.writeheader()
        self.writer.writerow(row)
        self.file.flush()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="folder for steps.csv and the run's files")
    parser.add_argument("overrides", nargs="*", help="antlr-train overrides (one trial)")
    args = parser.parse_args(argv)
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR), job_name="collapse_trace"):
        cfg = compose(config_name="config", overrides=list(args.overrides))
    if int(cfg.trials) != 1:
        parser.error(f"trials={cfg.trials}: the trace follows one trial; add trials=1")
    validate(cfg)
    args.out.mkdir(parents=True, exist_ok=False)
    device = resolve_device(cfg.device)
    datas, net = load_trials(cfg, device)
    trainer = Trainer(cfg, args.out, datas, device, net=net)
    trace = StepTrace(trainer, args.out / "steps.csv")
    trainer.open_log()
    try:
        trainer.fit()
    finally:
        trace.file.close()
        for run_log in trainer.run_logs:
            run_log.finish(failed=False)
    print(f"steps.csv: {args.out / 'steps.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
