"""Training: fit, validate, checkpoint, test.

- :mod:`.run`: the entry points (``run``, ``train``, ``evaluate_checkpoint``) and the summaries
  they write.
- :mod:`.trainer`: :class:`Trainer`, the algorithm (fit, one step, one evaluation point, the test);
  its other parts are :mod:`.state` (TrainState, the ``last.pt`` payload, restore, best models)
  and :mod:`.guards` (non-finite values, stop signals).
- :mod:`.build`: device, data, network, each trial's initial weights, the memory check.
- :mod:`.batches`, :mod:`.objective`, :mod:`.evaluation`, :mod:`.early_stop`: what a step is made of.

Trials: ``trials=K`` trains the trials ``seed, ..., seed+K-1`` as one stacked network
(:class:`~antlr_exp.engine.network.SpikingNetwork` with ``trials=K``). Each trial has what its own
run would have: its data (split, subsets, matching problem), initial weights, shuffling, Adam state
and clipping (both elementwise, so one Adam over stacked parameters is K Adams), its best
checkpoint. Each trial writes a run folder of its own, ``<run_dir>/seed_<seed>/`` (metrics.csv,
summary.json, checkpoints/best.pt, .hydra/config.yaml with its seed and ``trials: 1``), laid out
like a separate run's; ``<run_dir>/checkpoints/last.pt`` holds the stacked state to resume from
and ``<run_dir>/trials.json`` lists the trials' summaries.

Also here: :mod:`.checkpoint` (the files), :mod:`.metrics` (what an evaluation point measures),
:mod:`.loggers` (metrics.csv, TensorBoard, wandb), :mod:`.stopping` (stop signals) and
:mod:`.provenance` (what a summary records about the code and machine).

The names below load on first use, so that ``antlr_exp.training.checkpoint`` can be imported
without the engine.
"""

from importlib import import_module

__all__ = ["SUMMARY_FILE", "USER_ERRORS", "Trainer", "evaluate_checkpoint", "run", "train"]
_HOME = {"Trainer": ".trainer"}


def __getattr__(name: str):
    if name in __all__:
        return getattr(import_module(_HOME.get(name, ".run"), __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
