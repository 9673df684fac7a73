"""Evaluation: a (stacked) network's metrics on each trial's dataset, the test summaries of a
run's trials, and the warning when a trial's output layer falls silent."""

from __future__ import annotations

import logging

import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from ..engine.network import SpikingNetwork
from .batches import stack_trials
from .metrics import SplitMeter
from .objective import Objective

#: the run's log lines carry the name they always had
log = logging.getLogger("antlr_exp.train")

#: output spikes per training sample below which a trial's output layer counts as fallen silent
SILENT_OUTPUTS = 0.5


@torch.no_grad()
def evaluate_trials(
    net: SpikingNetwork,
    datasets: list,
    objective: Objective,
    meter: SplitMeter,
    batch_size: int,
    device: torch.device,
    split: str,
) -> list:
    """Metrics of each trial of ``net`` on its dataset (whole window simulated, no early stop).
    ``batch_size`` samples go through one forward pass over all trials together, so each trial
    takes ``ceil(batch_size / trials)`` of its own (the metrics do not depend on the batching).
    The per-layer counts are measured here (not in the training steps)."""
    net.eval()
    meter.reset()
    per_trial = max(1, -(-batch_size // len(datasets)))
    loaders = [DataLoader(dataset, batch_size=per_trial, shuffle=False) for dataset in datasets]
    for batches in zip(*loaders):
        inputs, targets = stack_trials(list(batches))
        inputs, targets = inputs.to(device), targets.to(device)
        out = net(inputs)
        meter.update(out, targets, objective.trial_losses(out, targets), inputs=inputs)
    return meter.compute_trials(split)


def evaluate(
    net: SpikingNetwork,
    dataset,
    objective: Objective,
    meter: SplitMeter,
    batch_size: int,
    device: torch.device,
    split: str,
) -> dict:
    """Metrics of a plain ``net`` on ``dataset`` (whole window simulated, no early stop)."""
    return evaluate_trials(net, [dataset], objective, meter, batch_size, device, split)[0]


def run_facts(cfg: DictConfig) -> dict:
    """What a summary says about the run (the aggregator groups by the config, not by these)."""
    return {
        "task": cfg.task.name,
        "method": cfg.method.name,
        "loss_name": cfg.loss.name,
        "decision": cfg.loss.decision,
        "seed": cfg.seed,
        "single_spike": cfg.single_spike,
    }


def tested_summaries(states: list, trial_cfgs: list, tests: list, monitor: str, num_parameters: int) -> list:
    """Per trial (its TrainState, config and test metrics): its summary, the best checkpoint's
    validation row and its test metrics. ``num_parameters``: one trial's."""
    trials = len(states)
    summaries = []
    for k, state in enumerate(states):
        best_row = next(row for row in state.history if row["step"] == state.best_step)
        summary = run_facts(trial_cfgs[k])
        summary.update(
            steps=state.step,
            epochs=state.epoch,
            best_step=state.best_step,
            best_epoch=state.best_epoch,
            monitor=monitor,
            train_time_s=round(state.train_time_s, 3),
            num_parameters=num_parameters,
        )
        if trials > 1:
            summary.update(trials_in_process=trials, trial_index=k)
        summary.update({key: v for key, v in best_row.items() if key.startswith("val_")})
        summary.setdefault("test_accuracy", None)
        summary.update(tests[k])
        summaries.append(summary)
    return summaries


def mean_row(rows: list) -> dict:
    """The trials' metrics rows of one evaluation point as one row: the mean of every value but the
    epoch, step and learning rate (the same in every trial)."""
    return {
        key: value if key in ("epoch", "step", "lr") else sum(r[key] for r in rows) / len(rows)
        for key, value in rows[0].items()
    }


def warn_if_output_fell_silent(history: list, who: str) -> None:
    """One warning when a trial's output layer goes (nearly) silent on the training samples:
    fewer than SILENT_OUTPUTS output spikes per sample means that at least 1 - that fraction of
    the samples had no output spike at all (a silent output gets no gradient from the latency
    loss; only the no-spike terms reach it). ``history``: the trial's metrics rows; ``who``: the
    trial, as the warning names it."""
    key = "train_output_spikes_per_sample"
    now = history[-1].get(key)
    before = history[-2].get(key) if len(history) > 1 else None
    if now is None or now >= SILENT_OUTPUTS or (before is not None and before < SILENT_OUTPUTS):
        return
    log.warning(
        "%s: its output layer fired %.3g spikes per training sample in the steps up to %d, so at least "
        "%.0f %% of those samples had no output spike; training goes on, and the test uses the "
        "best validation checkpoint (with the timing part, e.g. ANTLR on a small N-MNIST set, "
        "neuron.vstar_min=0.1 or loss.lambda_ns=1.0 kept the outputs firing: docs/results/fig8_nmnist.md)",
        who,
        now,
        history[-1]["step"],
        100 * (1 - now),
    )


class TrialTests:
    """The :class:`~antlr_exp.training.trainer.Trainer`'s test of each trial's best checkpoint."""

    def test(self) -> dict:
        """Summary: the best checkpoint's validation row and its test metrics (of a plain run; a
        stacked run's per-trial summaries are :meth:`test_trials`)."""
        return self.test_trials()[0]

    def test_trials(self) -> list:
        """Per trial: its best checkpoint's validation row and its test metrics."""
        self.net.load_state_dict(self._stacked_best())
        tests = evaluate_trials(
            self.net,
            [data.test for data in self.datas],
            self.objective,
            self.eval_meter,
            self.settings.test_batch_size,
            self.device,
            "test",
        )
        per_trial_parameters = sum(p.numel() for p in self.net.parameters()) // self.trials
        return tested_summaries(self.states, self.trial_cfgs, tests, self.settings.monitor, per_trial_parameters)
