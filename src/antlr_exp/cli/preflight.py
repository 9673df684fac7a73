"""What ``antlr-train`` checks before Hydra creates or touches any folder.

Hydra writes ``<run folder>/.hydra/`` before the task function starts, so checks made inside the
run would come too late: a refused command would already have rewritten the recorded config of
the run it names. ``check_command(argv)`` therefore composes the config of every job of the
command itself (one for a run, one per combination of a basic ``-m`` sweep), validates each,
checks each job's folder (:mod:`.run_folder`: ``resume=true`` needs the same run there; a new run
or an ``evaluate=`` must not land in a folder holding another run's checkpoints or results; no
part of the path may be a file) and only then makes the run folder, locks it, and hands Hydra the
command with that folder spelt out. Without ``hydra.run.dir=``/``hydra.sweep.dir=``, a new run
whose default folder (named after the second it started) already exists gets ``<name>_1``,
``<name>_2``, ... instead.

The same pass refuses, in one line, what would otherwise fail later or with a traceback: a run
whose network (``trials`` of them) cannot fit in memory, a later sweep value of the wrong type
(naming its job), ``hydra/launcher=slurm`` without SLURM's commands, an Optuna sweep of no trials,
and a misspelt kernels variable (:mod:`antlr_exp.engine.backends`). Other composition errors (a misspelt key) are left to Hydra
and :mod:`.train`: the command goes on unchanged and they are reported there.
"""

from __future__ import annotations

import copy
import logging
import re
import shlex
import shutil
import sys
from pathlib import Path
from typing import Optional

import yaml
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from ..errors import ConfigError
from ..training import checkpoint as ckpt
from . import configs
from .run_folder import (  # noqa: F401  (re-exported: the old antlr_exp.preflight names)
    LOCK_FILE,
    RUN_RESULTS,
    check_folder_path,
    check_job_folder,
    lock_run_folder,
    new_folder,
    release_run_folders,
    requeued,
    run_results,
)

log = logging.getLogger(__name__)

#: Hydra flags that print something instead of running a job: no checks for them.
_NOT_A_RUN = ("help", "hydra_help", "cfg", "info", "shell_completion", "experimental_rerun")
_BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
#: Characters an override value may hold without quotes.
_PLAIN = re.compile(r"^[\w./~:+@-]+$")


# ---------------------------------------------------------------------------------------------
# The command


def _parse(argv: list):
    args = configs.parse(argv)  # None: Hydra's own parser reports it again
    if args is None or any(getattr(args, flag, None) for flag in _NOT_A_RUN):
        return None
    return args


def _compose(overrides: list, config_name: str, args=None) -> DictConfig:
    """The job's config as Hydra will compose it: on the command's search path (``-cd``, ``-cp``,
    ``hydra.searchpath``: :mod:`.configs`)."""
    from hydra import compose

    with configs.initialized(args):
        return compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)


def _task_config(composed: DictConfig, job_num: int = 0) -> tuple:
    """(the job's config without ``hydra``, the ``hydra`` node with ``job.num`` set)."""
    from hydra.core.hydra_config import HydraConfig

    composed = copy.deepcopy(composed)
    with open_dict(composed):
        composed.hydra.job.num = job_num
    HydraConfig.instance().set_config(composed)  # so ${hydra:...} resolves as it will in the job
    hydra_node = composed.hydra
    cfg = copy.deepcopy(composed)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, hydra_node


def _sweep_jobs(overrides: list, hydra_node: DictConfig) -> Optional[list]:
    """Each job's overrides, as the basic sweeper expands them; None for another sweeper (Optuna
    draws its values as it goes: only the fixed part of the command is checked)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if OmegaConf.select(hydra_node, "sweeper._target_") != _BASIC_SWEEPER:
        return None
    params = OmegaConf.select(hydra_node, "sweeper.params") or {}
    arguments = [f"{k}={v}" for k, v in params.items()] + list(overrides)
    parsed = OverridesParser.create().parse_overrides(arguments)
    [jobs] = BasicSweeper.split_arguments(parsed, max_batch_size=None)
    return jobs


def _fixed_overrides(overrides: list) -> list:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    return [o for o in overrides if not parser.parse_override(o).is_sweep_override()]


def _value(path: Path) -> str:
    text = str(path)
    if _PLAIN.match(text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _given(overrides: list, key: str) -> Optional[str]:
    for override in overrides:
        name, _, value = override.partition("=")
        if name.lstrip("+~") == key:
            return value
    return None


def _with_folder(argv: list, overrides: list, key: str, folder: Path) -> list:
    """``argv`` with ``key=folder`` among its overrides (next to them: argparse wants them together)."""
    spelt = f"{key}={_value(folder)}"
    argv = list(argv)
    positions = [i for i, a in enumerate(argv) if a in overrides]
    for i in positions:
        if argv[i].partition("=")[0].lstrip("+~") == key:
            argv[i] = spelt
            return argv
    argv.insert(positions[-1] + 1 if positions else len(argv), spelt)
    return argv


def _varying(jobs: list) -> list:
    """Per job, the overrides that differ between the jobs (what names a job in a message)."""
    keys = [dict(o.partition("=")[::2] for o in job) for job in jobs]
    varying = {k for k in keys[0] if len({job.get(k) for job in keys}) > 1}
    return [[f"{k}={v}" for k, v in job.items() if k in varying] for job in keys]


def validate(cfg: DictConfig) -> None:
    """:func:`antlr_exp.config.validate` (imported here, with the engine's names it checks against,
    only for a command that is to run: ``--help`` and Hydra's other printing flags import no torch)."""
    from ..config import validate as check

    check(cfg)


def check_kernels() -> None:
    """The environment's default for the ``kernels`` key (:func:`antlr_exp.engine.backends.requested`,
    the one place that reads it): a typo is refused up front."""
    from ..engine.backends import requested

    try:
        requested()
    except ValueError as error:
        raise ConfigError(f"{error} (the environment variable that picks the engine's kernels)") from None


def check_fits_here(cfg: DictConfig) -> None:
    """The run's network (``trials`` of them, stacked) must fit in the memory of the device it
    will train on: arithmetic on the config only (``training.build.memory_estimate``), before any folder."""
    from ..config import task_shape
    from ..training.build import check_fits, resolve_device

    # evaluate= builds the checkpoint's network, which trained somewhere already; task=custom's
    # sizes come with its data (a stacked run is checked once its first trial's data is loaded)
    if not cfg.evaluate and task_shape(cfg) is not None:
        check_fits(cfg, None, int(cfg.trials), resolve_device(cfg.device))


def _compose_error(error: Exception) -> str:
    """The first line of what composing a job's config failed with, and the key it names."""
    cause = error.__cause__ or error
    lines = str(cause).strip().splitlines() or [type(cause).__name__]
    key = getattr(cause, "full_key", None)
    return f"{key}: {lines[0]}" if key else lines[0]


def _composition_error(error: Exception) -> str:
    """What composing the command's config failed with, in one line: Hydra's first paragraph
    (which names the config file), and the first line of its cause with the key it names."""
    if isinstance(error, yaml.YAMLError):  # names the file, line and column
        return " ".join(str(error).split())
    first = str(error).strip().split("\n\n")[0].splitlines()
    # OmegaConf's context lines (full_key: ..., object_type=...) are indented: the key is named above
    message = " ".join(" ".join(line.split()) for line in first if line[:1].strip())
    if error.__cause__ is not None:
        return f"{message}: {_compose_error(error)}" if message else _compose_error(error)
    return message or type(error).__name__


def check_launcher_and_sweeper(hydra_node: DictConfig) -> None:
    """What Hydra's plugins would otherwise refuse with a traceback, after the sweep folder exists."""
    launcher = str(OmegaConf.select(hydra_node, "launcher._target_") or "")
    if launcher.endswith("SlurmLauncher"):  # submitit submits with sbatch and needs srun in the job
        missing = [command for command in ("sbatch", "srun") if shutil.which(command) is None]
        if missing:
            raise ConfigError(
                f"hydra/launcher=slurm needs SLURM's commands, and {' and '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not on PATH here; accepted here: "
                f"hydra/launcher=local (this machine), or run the command where SLURM is installed"
            )
    sweeper = str(OmegaConf.select(hydra_node, "sweeper._target_") or "")
    if "optuna" in sweeper.lower():
        trials = OmegaConf.select(hydra_node, "sweeper.n_trials")
        if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
            raise ConfigError(f"hydra.sweeper.n_trials={trials} is not accepted; accepted: an integer >= 1")


def _sweep_preset_note(cfg: DictConfig, hydra_node: DictConfig, argv: list) -> Optional[str]:
    """A config that holds a sweep (a preset's ``hydra.sweeper.params``) run without ``-m`` runs one
    job of it: say so, and how to run the whole sweep."""
    params = OmegaConf.select(hydra_node, "sweeper.params") or {}
    if not params:
        return None
    choices = OmegaConf.select(hydra_node, "runtime.choices") or {}
    this = [f"{key}={choices[key] if key in choices else OmegaConf.select(cfg, key)}" for key in params]
    swept = " ".join(f"{key}={value}" for key, value in params.items())
    preset = f"experiment={choices['experiment']}" if choices.get("experiment") else "the config"
    return (
        f"antlr-train: note: {preset} is a sweep ({swept}); without -m this command runs one job of it "
        f"({' '.join(this)}); the whole sweep: antlr-train -m {shlex.join(argv)}"
    )


def check_command(argv: list) -> list:
    """Check every job of ``antlr-train ARGV`` and claim its folder; the command to hand Hydra
    (its run or sweep folder spelt out). Raises ConfigError (one line) on the first problem."""
    args = _parse(argv)
    if args is None:
        return argv
    check_kernels()
    overrides = list(args.overrides)
    config_name = args.config_name or "config"
    try:
        fixed = _fixed_overrides(overrides)
    except Exception:  # an override Hydra cannot read: Hydra reports it
        return argv
    try:
        base = _compose(fixed, config_name, args)
    except (
        HydraException,
        OmegaConfBaseException,
        yaml.YAMLError,
    ) as error:  # e.g. a user's preset that does not compose
        raise ConfigError(_composition_error(error)) from None
    except Exception:  # anything else: Hydra reports it
        return argv
    multirun = args.multirun or str(OmegaConf.select(base, "hydra.mode")).endswith("MULTIRUN")
    if not multirun and fixed != overrides:  # a sweep without -m: Hydra says what to do
        return argv
    if not multirun:
        cfg, hydra_node = _task_config(base)
        validate(cfg)
        check_fits_here(cfg)
        folder = Path(str(hydra_node.run.dir))
        check_job_folder(cfg, folder, "hydra.run.dir", in_sweep=False)
        given = _given(overrides, "hydra.run.dir")
        if given is None or "${" in given:
            folder = new_folder(folder) if given is None else folder
            argv = _with_folder(argv, overrides, "hydra.run.dir", folder)
        lock_run_folder(folder)
        note = _sweep_preset_note(cfg, hydra_node, [a for a in argv if a.partition("=")[0] != "hydra.run.dir"])
        if note:
            print(note, file=sys.stderr, flush=True)
        return argv

    _, hydra_node = _task_config(base)
    check_launcher_and_sweeper(hydra_node)
    here = not str(OmegaConf.select(hydra_node, "launcher._target_") or "").endswith("SlurmLauncher")
    sweep_dir = Path(str(hydra_node.sweep.dir))
    check_folder_path(sweep_dir, "hydra.sweep.dir")
    jobs = _sweep_jobs(overrides, hydra_node)
    resume = bool(OmegaConf.select(base, "resume"))
    if resume and not sweep_dir.is_dir():
        raise ConfigError(
            f"resume=true but the sweep folder {sweep_dir} does not exist; point hydra.sweep.dir "
            f"at the folder of the sweep to continue"
        )
    names = _varying(jobs) if jobs else []
    for number, job_overrides in enumerate(jobs if jobs is not None else [fixed]):
        name = " ".join(names[number]) if jobs is not None else ""
        label = "" if jobs is None else f"sweep job {number}{f' ({name})' if name else ''}: "
        try:
            composed = _compose(job_overrides, config_name, args)
        except Exception as error:  # a later value of the wrong type (the first values compose: cli)
            if jobs is None:
                return argv
            raise ConfigError(f"{label}{_compose_error(error)}") from None
        cfg, job_hydra = _task_config(composed, number)
        try:
            validate(cfg)
            if here:  # jobs on this machine (a SLURM job's node is another; a stacked run checks it there)
                check_fits_here(cfg)
            if jobs is not None:
                folder = sweep_dir / str(job_hydra.sweep.subdir)
                check_job_folder(cfg, folder, "hydra.sweep.dir", in_sweep=True)
        except ConfigError as error:
            raise ConfigError(f"{label}{error}") from None
    given = _given(overrides, "hydra.sweep.dir")
    if given is None or "${" in given:
        sweep_dir = new_folder(sweep_dir) if given is None else sweep_dir
        argv = _with_folder(argv, overrides, "hydra.sweep.dir", sweep_dir)
    return argv


# ---------------------------------------------------------------------------------------------
# In the job


def prepare_job(cfg: DictConfig, run_dir: Path) -> None:
    """In the job, before it trains: lock its folder, and settle ``resume``: in a sweep repeated with
    ``resume=true`` a job that never wrote a checkpoint starts from the beginning; a job SLURM
    started again continues from its ``last.pt``."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    lock_run_folder(run_dir)
    if cfg.evaluate:
        return
    last = ckpt.checkpoint_dir(run_dir) / ckpt.LAST
    in_sweep = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    if cfg.resume and in_sweep and not last.is_file():
        log.info("%s has no checkpoint yet: this job starts from the beginning", run_dir)
        cfg.resume = False
    elif not cfg.resume and requeued() and last.is_file():
        log.info("SLURM started this job again: resuming from %s", last)
        cfg.resume = True
