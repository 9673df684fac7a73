"""What ``antlr-train`` tells the person watching it.

- During training: a progress bar on a terminal; with ``trainer.progress_bar=false``, or where
  stdout or stderr is not a terminal (a SLURM log, a pipe), one INFO line per evaluation point.
- At the end of a run: a short block with the test accuracy and loss, the spikes per sample, the
  best step and where ``summary.json`` is (``evaluate=`` says which checkpoint it evaluated).
- Each job of a sweep (``-m``) instead ends with one line; the sweep as a whole ends with the
  ``antlr-report`` table of its folder (``SweepReport``, a Hydra callback in ``conf/config.yaml``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from hydra.experimental.callback import Callback

from ..training.progress import _number, bar_enabled, evaluation_line, log_evaluation  # noqa: F401  (the old names)

log = logging.getLogger("antlr_exp")


def result_block(summary: dict, summary_file: Path) -> str:
    """The few lines a finished run (or ``evaluate=``) ends with."""
    head = (
        f"{summary.get('task')} / {summary.get('method')} / loss {summary.get('loss_name')}, seed {summary.get('seed')}"
    )
    if summary.get("evaluated_checkpoint"):
        lines = [f"evaluated {summary['evaluated_checkpoint']} ({head})"]
    else:
        lines = [f"finished {head}"]
    accuracy = summary.get("test_accuracy")  # None on the matching task (no labels)
    lines.append(
        ("" if accuracy is None else f"  test accuracy {_number(accuracy)},")
        + f"  test loss {_number(summary.get('test_loss'))}"
    )
    lines.append(
        f"  spikes per test sample: hidden {_number(summary.get('test_hidden_spikes_per_sample'))}, "
        f"output {_number(summary.get('test_output_spikes_per_sample'))}"
    )
    lines += layer_lines(summary)
    if summary.get("best_step") is not None:
        epoch = summary.get("best_epoch")
        lines.append(
            f"  best step {summary['best_step']} (epoch {'-' if epoch is None else f'{epoch:g}'}) by "
            f"{summary.get('monitor')} {_number(summary.get(summary.get('monitor')))}, "
            f"of {summary.get('steps')} steps"
        )
    lines.append(f"  summary: {Path(summary_file).resolve()}")
    return "\n".join(lines)


def layer_lines(summary: dict, split: str = "test") -> list:
    """Spikes per sample and the silent fraction of each layer, and the synaptic operations (none
    for a summary written before they were measured)."""
    if summary.get(f"{split}_synops_per_sample") is None:
        return []
    layers = ["input"]
    while f"{split}_hidden{len(layers)}_spikes_per_sample" in summary:
        layers.append(f"hidden{len(layers)}")
    parts = [f"input {_number(summary.get(f'{split}_input_spikes_per_sample'))}"]
    for layer in [*layers[1:], "output"]:
        silent = summary.get(f"{split}_{layer}_silent_fraction")
        parts.append(
            f"{layer} {_number(summary.get(f'{split}_{layer}_spikes_per_sample'))}"
            + ("" if silent is None else f" ({100 * silent:.0f} % never fire)")
        )
    return [
        f"  per layer, spikes per {split} sample: " + ", ".join(parts),
        f"  synaptic operations per {split} sample: {_number(summary[f'{split}_synops_per_sample'])}"
        f" ({_number(summary.get(f'{split}_synops_to_decision_per_sample'))} up to the decision)",
    ]


def result_line(summary: dict, summary_file: Path, job: str) -> str:
    """One line per sweep job."""
    parts = [f"test_accuracy {_number(summary['test_accuracy'])}"] if summary.get("test_accuracy") is not None else []
    parts += [
        f"test_loss {_number(summary.get('test_loss'))}",
        f"spikes per sample {_number(summary.get('test_hidden_spikes_per_sample'))} hidden, "
        f"{_number(summary.get('test_output_spikes_per_sample'))} output",
    ]
    if summary.get("test_synops_per_sample") is not None:
        parts.append(f"synops per sample {_number(summary['test_synops_per_sample'])}")
    if summary.get("best_step") is not None:
        parts.append(f"best step {summary['best_step']}")
    return f"job {job}: " + ", ".join(parts) + f" -> {Path(summary_file).resolve()}"


def _sweep_job() -> Optional[str]:
    """``'3 (method=timing seed=1)'`` inside a sweep job, None in a single run or outside Hydra."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hydra = HydraConfig.get()
    if hydra.mode != RunMode.MULTIRUN:
        return None
    return f"{hydra.job.num} ({hydra.job.override_dirname or 'defaults'})"


def report_result(summary: dict, summary_file: Path) -> None:
    """End a run: the block, or one line in a sweep job; a stacked run (``trials=K``): one line per
    trial and the mean over the trials."""
    if "summaries" in summary:
        for folder, trial in zip(summary["folders"], summary["summaries"]):
            log.info(result_line(trial, Path(folder) / Path(summary_file).name, f"seed {trial.get('seed')}"))
        mean = {
            key: summary.get(key)
            for key in (
                "test_accuracy",
                "test_loss",
                "test_hidden_spikes_per_sample",
                "test_output_spikes_per_sample",
                "test_synops_per_sample",
            )
        }
        log.info(
            result_line(
                mean, Path(summary_file).parent / "trials.json", f"mean over {summary['trials']} trials"
            ).replace(" -> ", ", index: ")
        )
        return
    job = _sweep_job()
    log.info(result_line(summary, summary_file, job) if job is not None else result_block(summary, summary_file))


#: The sweep this process launches: its folder, and whether its jobs run in other processes (the
#: joblib launcher's workers); read by antlr-train's Ctrl-C handler.
LAUNCHED: dict = {}


class SweepReport(Callback):
    """Hydra callback: note the sweep this process launches (:data:`LAUNCHED`), and at its end
    print the antlr-report table of its folder."""

    def on_multirun_start(self, config, **kwargs) -> None:
        LAUNCHED["dir"] = Path(config.hydra.sweep.dir)
        LAUNCHED["in_workers"] = "joblib" in str(config.hydra.launcher.get("_target_", ""))

    def on_multirun_end(self, config, **kwargs) -> None:
        from ..results.report import sweep_report

        print(sweep_report(Path(config.hydra.sweep.dir)), flush=True)
