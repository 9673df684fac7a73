"""The entry points: ``run(cfg, run_dir)`` is everything ``antlr-train`` does after Hydra composed
the config: validate it (before any data is read), then either train (optionally resuming from
``run_dir/checkpoints/last.pt``) or, with ``evaluate=``, only evaluate a checkpoint. It writes
``metrics.csv`` (one row per evaluation point), ``checkpoints/`` and ``summary.json`` into
``run_dir`` and returns the summary; a stacked run (``trials=K``) also writes ``trials.json``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig, OmegaConf

from ..config import validate, with_legacy_values
from ..errors import USER_ERRORS, ConfigError  # noqa: F401  (USER_ERRORS: older imports name it here)
from ..results.layout import EVALUATED_CONFIG, TRIALS_FILE
from . import checkpoint as ckpt
from .build import build_network, load_data, load_trials, resolve_device
from .evaluation import evaluate, run_facts
from .metrics import SplitMeter
from .objective import Objective
from .provenance import at_start, provenance
from .state import check_finite_checkpoint, check_same_run
from .trainer import Trainer

#: the run's log lines carry the name they always had
log = logging.getLogger("antlr_exp.train")

from ..results.layout import SUMMARY_FILE  # noqa: E402,F401  (re-exported: older imports name it here)


def write_json(payload: dict, path: Path) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    os.replace(temporary, path)


def train(cfg: DictConfig, run_dir: Path) -> dict:
    started = at_start()  # the code and time at the start (the checkout may move on meanwhile)
    run_dir = Path(run_dir)
    resume_from = None
    if cfg.resume:
        last = ckpt.checkpoint_dir(run_dir) / ckpt.LAST
        if not last.is_file():
            raise ConfigError(
                f"resume=true but {last} does not exist; point hydra.run.dir at the folder of the run to continue"
            )
        resume_from = ckpt.load(last)
        check_same_run(resume_from["config"], cfg, run_dir)
        check_finite_checkpoint(resume_from, last)
    device = resolve_device(cfg.device)
    datas, net = load_trials(cfg, device)
    data = datas[0]
    trainer = Trainer(cfg, run_dir, datas, device, resume_from, net=net)
    kernels = trainer.net.backend(device).name
    log.info(
        "%s: network %s%s, %s kernels, %d training samples, run folder %s",
        cfg.method.name,
        "-".join(map(str, trainer.net.sizes)),
        f", {net.trials} trials (seeds {trainer.seeds[0]}..{trainer.seeds[-1]})" if net.trials > 1 else "",
        kernels,
        len(data.train),
        run_dir,
    )
    if resume_from is not None:
        log.info("resuming %s at step %d (epoch %d)", run_dir, trainer.state.step, trainer.state.epoch)
        trainer.repair_best()
    spent = trainer.budget_spent() if resume_from is not None else None
    if resume_from is not None and trainer._done():
        finished = finished_summaries(trainer)
        if finished is not None:  # e.g. a finished job of a sweep that runs again with resume=true
            log.info("%s finished training and testing at step %d; its summary stands", run_dir, trainer.state.step)
            return finished[0] if net.trials == 1 else trials_summary(finished, trainer.trial_dirs, run_dir)
    # A budget lowered below the step reached was already spent: the run ends where it stopped, with
    # no more steps and no evaluation beyond its last one, and tests its best checkpoint so far (a
    # run stopped before its first evaluation is evaluated once at the step reached, to have one).
    evaluated = all(state.best_step is not None for state in trainer.states)
    if spent is not None:
        log.warning(
            "%s was already spent: the run in %s reached step %d before; it trains no further and %s",
            spent,
            run_dir,
            trainer.state.step,
            f"tests its best checkpoint (step {trainer.state.best_step})"
            if evaluated
            else f"is evaluated and tested at step {trainer.state.step}",
        )
    if trainer.early_stop:
        log.info("training stops simulating once every output has fired (exact for the latency loss)")
    trainer.open_log()
    failed = True
    try:
        if spent is None or not evaluated:
            trainer.fit()
        summaries = trainer.test_trials()
        for trial_dir, summary, run_log in zip(trainer.trial_dirs, summaries, trainer.run_logs):
            summary.update(kernels=kernels, **provenance(trial_dir, started))
            write_json(summary, trial_dir / SUMMARY_FILE)
            run_log.summary(summary)
        failed = False
    finally:
        for run_log in trainer.run_logs:
            run_log.finish(failed=failed)
    if net.trials == 1:
        return summaries[0]
    return trials_summary(summaries, trainer.trial_dirs, run_dir)


def finished_summaries(trainer: "Trainer") -> Optional[list]:
    """Each trial's summary.json when every trial was tested at the checkpoint's step, else None."""
    summaries = []
    for trial_dir in trainer.trial_dirs:
        try:
            summary = json.loads((Path(trial_dir) / SUMMARY_FILE).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(summary, dict) or summary.get("steps") != trainer.state.step:
            return None
        summaries.append(summary)
    return summaries


def trials_summary(summaries: list, trial_dirs: list, run_dir: Path) -> dict:
    """A stacked run's index, ``trials.json``: each trial's folder and summary, and the mean over
    the trials of every numeric summary value (what a sweeper optimizes)."""
    combined: dict = {
        "trials": len(summaries),
        "seeds": [s["seed"] for s in summaries],
        "folders": [str(d) for d in trial_dirs],
        "summaries": summaries,
    }
    for key, value in summaries[0].items():
        values = [s.get(key) for s in summaries]
        if key not in combined and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            combined[key] = sum(values) / len(values)
    write_json(combined, Path(run_dir) / TRIALS_FILE)
    return combined


def evaluate_checkpoint(cfg: DictConfig, run_dir: Path) -> dict:
    """``evaluate=PATH``: the checkpoint's own task, network, method and loss; ``data``,
    ``device`` and ``trainer.test_batch_size`` from this command."""
    started = at_start()  # the code and time at the start (the checkout may move on meanwhile)
    path = ckpt.resolve_for_evaluation(cfg.evaluate)
    payload = ckpt.load_for_evaluation(path)
    saved = OmegaConf.create(with_legacy_values(payload["config"]))
    merged = OmegaConf.merge(
        saved,
        {
            "data": cfg.data,
            "device": cfg.device,
            "kernels": cfg.get("kernels"),
            "trainer": {"test_batch_size": cfg.trainer.test_batch_size},
            "resume": False,
            "evaluate": None,
        },
    )
    validate(merged)
    device = resolve_device(merged.device)
    data = load_data(merged)
    net = build_network(merged, data).to(device)
    key = "best_model" if "best_model" in payload else "model"
    net.load_state_dict(payload[key])
    objective = Objective(merged, data.num_outputs)
    meter = SplitMeter(merged.loss.decision, data.target_kind == "label")
    summary = run_facts(merged)
    summary["evaluated_checkpoint"] = str(path.resolve())
    summary["kernels"] = net.backend(device).name
    for split, dataset in (("val", data.val), ("test", data.test)):
        summary.update(evaluate(net, dataset, objective, meter, merged.trainer.test_batch_size, device, split))
    summary.setdefault("test_accuracy", None)
    summary.update(provenance(run_dir, started))
    # what antlr-report files this run under: the checkpoint's settings, not this command's defaults
    OmegaConf.save(merged, Path(run_dir) / EVALUATED_CONFIG)
    write_json(summary, Path(run_dir) / SUMMARY_FILE)
    return summary


def run(cfg: DictConfig, run_dir: Path) -> dict:
    """Validate ``cfg`` (before any data is read), then train or evaluate; returns the summary."""
    validate(cfg)
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    if cfg.evaluate:
        return evaluate_checkpoint(cfg, run_dir)
    return train(cfg, run_dir)
