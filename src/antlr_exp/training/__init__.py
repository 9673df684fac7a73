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
"""

from .run import SUMMARY_FILE, USER_ERRORS, evaluate_checkpoint, run, train
from .trainer import Trainer

__all__ = ["SUMMARY_FILE", "USER_ERRORS", "Trainer", "evaluate_checkpoint", "run", "train"]
