"""The file names of a run folder (one job of ``antlr-train``), in one place for the code that
writes them (training, checkpoints, loggers) and the code that reads them (report, plots).

Imports nothing heavy.
"""

#: The run's results: the metrics of its last (or best) evaluation and what it ran.
SUMMARY_FILE = "summary.json"
#: A stacked job's index of its trials (``trials=K``), in place of ``summary.json``.
TRIALS_FILE = "trials.json"
#: One row per evaluation point (the csv logger).
METRICS_FILE = "metrics.csv"
#: Written by ``evaluate=`` beside its summary: the evaluated checkpoint's config.
EVALUATED_CONFIG = "evaluated_config.yaml"
#: Hydra's copy of the composed config, relative to the run folder.
HYDRA_CONFIG = ".hydra/config.yaml"
#: A sweep's record of what it ran, in the sweep folder.
MULTIRUN_FILE = "multirun.yaml"
#: The checkpoints' folder, and its two files.
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
#: Every step's flattened gradient (``trainer.record_gradients=true``).
GRADIENTS_FILE = "gradients.pt"
#: What a run folder holds once the run has produced results.
RUN_RESULTS = (SUMMARY_FILE, METRICS_FILE, TRIALS_FILE)
