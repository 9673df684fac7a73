"""What a training step descends: the loss a run reports (per sample, per trial), the timing
rule's no-spike penalty, and gradient clipping done per trial, as K separate runs would."""

from __future__ import annotations

from typing import Optional

import torch
from omegaconf import DictConfig

from ..engine.losses import (
    count_loss,
    count_targets,
    label_spike_trains,
    latency_loss,
    no_spike_count_term,
    no_spike_weight_penalty,
    spike_train_loss,
)
from ..engine.network import SpikingNetwork
from ..engine.spikes import NetworkOutput


class Objective:
    """The loss a run reports, and the extra terms it descends without reporting them."""

    def __init__(self, cfg: DictConfig, num_outputs: int):
        self.loss_cfg = cfg.loss
        self.num_outputs = num_outputs
        # only the timing method has the key: the penalty is its remedy for silent neurons
        self.no_spike_penalty = cfg.method.no_spike_penalty if "no_spike_penalty" in cfg.method else None
        # early_stop: silence up to each trial's batch's last first output spike (the authors' window)
        self.until_all_fired = cfg.method.get("penalty_window", "full") == "early_stop"

    def per_sample(self, out: NetworkOutput, targets: torch.Tensor) -> torch.Tensor:
        """The loss of every sample, [B]; ``targets`` are labels [B] or target spike trains [B, T, O]."""
        settings = self.loss_cfg
        if settings.name == "count":
            wanted = count_targets(targets, self.num_outputs, settings.n_true, settings.n_false)
            return count_loss(out.output_spikes, wanted, reduction="none")
        if settings.name == "spike_train":
            if targets.dim() == 1:  # labels: the wanted spike trains are made from them
                targets = label_spike_trains(
                    targets, self.num_outputs, out.output_spikes.shape[1], settings.label_steps, settings.other_steps
                )
            return spike_train_loss(
                out.output_spikes, out.output_times, targets, decay=settings.decay, reduction="none"
            )
        loss = latency_loss(out.output_spikes, out.output_times, targets, beta=settings.beta, reduction="none")
        if settings.lambda_ns > 0:
            loss = loss + no_spike_count_term(
                out.output_spikes, targets, lambda_ns=settings.lambda_ns, reduction="none"
            )
        return loss

    def trial_losses(self, out: NetworkOutput, targets: torch.Tensor) -> torch.Tensor:
        """Each trial's batch-mean loss, [K] (K = 1 for a plain network)."""
        return self.per_sample(out, targets).view(out.trials, -1).mean(dim=1)

    def loss(self, out: NetworkOutput, targets: torch.Tensor) -> torch.Tensor:
        """Scalar batch mean (of a plain network's batch)."""
        return self.per_sample(out, targets).mean()

    def penalty(self, net: SpikingNetwork, out: NetworkOutput) -> Optional[torch.Tensor]:
        """The timing rule's no-spike weight penalty (only its gradient matters), or None."""
        if self.no_spike_penalty:
            return no_spike_weight_penalty(net, out, p=self.no_spike_penalty, until_all_fired=self.until_all_fired)
        return None


def clip_grad_norm_per_trial(parameters: list, max_norm: float, trials: int) -> None:
    """Scale each trial's gradient (over all its parameters) to a Euclidean norm of at most
    ``max_norm``; with ``trials = K > 1`` every parameter is stacked [K, ...] and each trial is
    scaled on its own, as K separate runs would be."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    squares = sum(g.reshape(trials, -1).pow(2).sum(dim=1) for g in grads)  # [K]
    scale = (max_norm / (squares.sqrt() + 1e-6)).clamp(max=1.0)  # as torch.nn.utils.clip_grad_norm_
    for g in grads:
        g.mul_(scale.view(trials, *([1] * (g.dim() - 1))) if trials > 1 else scale)
