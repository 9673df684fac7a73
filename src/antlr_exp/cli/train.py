"""``antlr-train``: the Hydra entry point and nothing more.

Configs live in the repository's ``conf/``; ``antlr-train --help`` lists the groups. A user error
(an unknown group option, a bad value, an impossible rule/loss pair, missing data) prints one line
to stderr and exits with status 2, before any training starts.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import sys
import threading
from pathlib import Path
from typing import Optional

import hydra
from hydra import compose
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import OverrideType, ValueType
from hydra.errors import CompactHydraException, ConfigCompositionException
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError
from tqdm import tqdm

from .. import __version__
from ..config import CONF_DIR
from ..errors import USER_ERRORS, ConfigError, RunStopped, StopSignal
from ..results.layout import SUMMARY_FILE
from ..training import checkpoint as ckpt
from ..training import stopping
from . import configs, console, preflight, run_folder
from .runtime import tune_malloc

PROG = "antlr-train"
#: Ctrl-C on a sweep whose jobs run in worker processes (joblib) waits up to this long for its jobs
#: to stop, each with its line, before the launcher kills its workers.
INTERRUPT_GRACE_S = 30.0


class JobFailed(CompactHydraException):
    """A job run by submitit (``hydra/launcher=slurm``) ended early: the one line it printed. The
    sweep command shows it as it is, after Hydra's line naming the job's overrides (a Hydra
    "compact" exception: no traceback)."""


def in_submitit_job() -> bool:
    """Whether this process is a job that submitit started (it sets both variables in the job)."""
    return bool(os.environ.get("SUBMITIT_EXECUTOR")) and bool(os.environ.get("SUBMITIT_FOLDER"))


def _exit(status: int, line: str) -> None:
    """Print ``line`` and exit with ``status``; in a submitit job raise ``JobFailed`` instead. submitit
    records an exception as the job's result, so the sweep command ends with the line; an exit
    would leave no result, and where SLURM keeps no accounting (no ``sacct``) the sweep command
    would wait for the job forever."""
    print(line, file=sys.stderr, flush=True)
    if in_submitit_job():
        raise JobFailed(line)
    sys.exit(status)


def _fail(error: Exception) -> None:
    message = " ".join(str(error).split())  # one line, whatever the message's layout
    _exit(2, f"{PROG}: error: {message}")


def group_options(group: str, args=None, overrides: Optional[list] = None) -> list:
    """Options of a config group on the command's search path (``conf/`` and the folders ``-cd``,
    ``-cp`` and ``hydra.searchpath`` add), subfolders included (``paper/mnist_antlr``)."""
    return configs.groups(args, overrides).get(group, [])


def _parsed(arguments: list) -> list:
    """``(argument, override)`` for each ``key=value`` argument; ``override`` is None where
    Hydra's parser refuses it (Hydra reports those itself)."""
    parser = OverridesParser.create()
    parsed = []
    for argument in arguments:
        if argument.startswith("-") or "=" not in argument:
            continue
        try:
            parsed.append((argument, parser.parse_override(argument)))
        except Exception:
            parsed.append((argument, None))
    return parsed


def check_parsable(arguments: list) -> None:
    """An override Hydra's grammar cannot read (a quote in a path, an unquoted ``~``): one line
    with the quoting that works, instead of Hydra's lexer report."""
    for argument, override in _parsed(arguments):
        if override is None:
            key, _, value = argument.partition("=")
            # Hydra's quoted string: a quote, and the backslashes before a quote or the end, escaped
            escaped = re.sub(r'(\\*)("|$)', lambda m: m.group(1) * 2 + ("\\" + m.group(2) if m.group(2) else ""), value)
            quoted = f'{key}="{escaped}"'
            raise ConfigError(
                f"{argument}: Hydra cannot read this value (characters such as ' \" ~ = , [ ] {{ }} ( ) and spaces "
                f"need quotes); quote the value for Hydra inside the shell's quotes: {shlex.quote(quoted)}"
                + (" (~ is not expanded there: write the full path)" if "~" in value else "")
            )


def check_group_choices(arguments: list, args=None) -> None:
    """Name an unknown option of one of our groups in one line, before Hydra prints its own
    multi-line report. Hydra's groups (``hydra/...``) and anything unparsable are left to Hydra."""
    parsed = _parsed(arguments)
    if any(override is None for _, override in parsed):
        return
    if not any("." not in o.key_or_group and not o.key_or_group.startswith("hydra") for _, o in parsed):
        return  # no group chosen: nothing to list
    try:
        groups = configs.groups(args, arguments)
    except Exception:  # a primary config that is not there, a searchpath Hydra refuses: Hydra reports it
        return
    for _, override in parsed:
        if override.type != OverrideType.CHANGE or override.key_or_group not in groups:
            continue
        if override.value_type == ValueType.ELEMENT:
            values = [override.value()]
        elif override.value_type in (ValueType.SIMPLE_CHOICE_SWEEP, ValueType.CHOICE_SWEEP):
            values = list(override.sweep_string_iterator())
        else:
            continue
        options = groups[override.key_or_group]
        for value in values:
            if value is not None and str(value) not in options:
                shown = [o for o in options if "/" not in o]  # paper/* are chosen automatically
                raise ConfigError(
                    f"{override.key_or_group}={value} is not accepted; accepted values: {', '.join(shown)}"
                )


def check_override_keys(arguments: list, args=None) -> None:
    """Compose our config with the command's overrides, as Hydra is about to, and name a key that
    does not exist (with the keys its node accepts) or a value of the wrong type in one line,
    instead of Hydra's multi-line report. A sweep is checked with its first value; Hydra's own keys
    (``hydra...``), unparsable arguments and any other failure are left to Hydra."""
    overrides, texts = [], {}
    for argument, override in _parsed(arguments):
        if override is None:
            return
        if override.key_or_group.startswith("hydra"):
            overrides += configs.searchpath_overrides([argument])  # the folders it adds are composed
            continue
        texts.setdefault(override.key_or_group, []).append(argument)
        if override.is_sweep_override():
            if override.value_type not in (ValueType.SIMPLE_CHOICE_SWEEP, ValueType.CHOICE_SWEEP):
                continue
            argument = f"{override.get_key_element()}={next(iter(override.sweep_string_iterator()))}"
        overrides.append(argument)
    if not texts:
        return
    try:
        with configs.initialized(args):
            compose(config_name=configs.config_name(args), overrides=overrides)
    except ConfigCompositionException as error:
        cause = error.__cause__
        full_key = getattr(cause, "full_key", None)
        unknown_key = isinstance(cause, (ConfigKeyError, ConfigAttributeError))
        if not (unknown_key or isinstance(cause, ValidationError)) or not full_key:
            return
        candidates = texts.get(full_key) or [t for k, ts in texts.items() if k.startswith(full_key + ".") for t in ts]
        # the override whose value the message quotes, where one key is given more than once
        text = next((t for t in candidates if f"'{t.partition('=')[2]}'" in str(cause)), None)
        text = text or (candidates[0] if candidates else full_key)
        if unknown_key:
            node = full_key.rpartition(".")[0] or "the config"
            parent = getattr(cause, "parent_node", None)
            accepted = [str(k) for k in parent.keys()] if hasattr(parent, "keys") else []
            shown = f"accepted keys: {', '.join(accepted)}" if accepted else f"a new key is added with +{full_key}=..."
            raise ConfigError(f"{text}: {node} has no key {getattr(cause, 'key', full_key)!r}; {shown}") from None
        raise ConfigError(f"{text}: {str(cause).splitlines()[0]}") from None
    except Exception:
        return


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _train(cfg: DictConfig):
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    sweep_dir = Path(hydra_cfg.sweep.dir) if hydra_cfg.mode == RunMode.MULTIRUN else None
    # tqdm's default lock holds a multiprocessing semaphore; a sweep's worker process that its
    # launcher kills after Ctrl-C would leave it behind ("leaked semaphore objects" at the end)
    tqdm.set_lock(threading.RLock())
    try:
        preflight.prepare_job(cfg, run_dir)
        from ..training.run import run  # the engine and torch: imported once a job is to train

        with stopping.catch_stop_signals():
            summary = run(cfg, run_dir)
    except USER_ERRORS as error:
        _fail(error)
    except RunStopped as error:
        _stopped(error, run_dir, sweep_dir)
    except KeyboardInterrupt:
        _exit(130, f"{PROG}: interrupted; {_resume_hint(run_dir, sweep_dir)}")
    finally:
        run_folder.release_run_folder(run_dir)  # the job has ended (a worker process goes on to others)
    console.report_result(summary, run_dir / SUMMARY_FILE)
    metric = cfg.optimized_metric
    return summary.get(metric) if metric else None


def _resume_hint(run_dir: Path, sweep_dir: Optional[Path] = None) -> str:
    """How to continue a stopped run, or that there is nothing to continue yet.

    A job of a sweep (``sweep_dir`` given) continues with the whole ``-m`` command: resume=true
    there finishes nothing twice, continues the started jobs and starts the others."""
    if (ckpt.checkpoint_dir(run_dir) / ckpt.LAST).is_file():
        if sweep_dir is not None:
            return (
                f"to continue the sweep, repeat the -m command with resume=true hydra.sweep.dir={sweep_dir} "
                f"(this job continues from its last checkpoint in {run_dir})"
            )
        return f"to continue from the last checkpoint, repeat the command with resume=true hydra.run.dir={run_dir}"
    return f"no checkpoint was written yet in {run_dir}, so there is nothing to resume: run the command again"


def _stopped(error: RunStopped, run_dir: Path, sweep_dir: Optional[Path] = None) -> None:
    """A run that stopped early: one line and a non-zero status (128 + the signal's number after a
    signal, once the handler that was there before, e.g. submitit's requeue, has had it)."""
    message = " ".join(str(error).split())
    if isinstance(error, StopSignal):
        print(f"{PROG}: {message}; {_resume_hint(run_dir, sweep_dir)}", file=sys.stderr, flush=True)
        # submitit's handler requeues the job and exits. Its SIGTERM handler does nothing, on
        # purpose: SLURM itself requeues a preempted job, so no result may be written here.
        stopping.pass_on(error.signum)
        sys.exit(128 + error.signum)
    _exit(1, f"{PROG}: error: {message}")


def _on_interrupt(signum, frame) -> None:
    """Ctrl-C in the command's own process. Where it launched a sweep into worker processes
    (joblib), whose launcher kills its workers as soon as it sees the interrupt, first give the jobs
    still training (they had Ctrl-C too) up to INTERRUPT_GRACE_S to stop with their lines. A second
    Ctrl-C stops at once."""
    if not _on_interrupt.waited and console.LAUNCHED.get("in_workers"):
        _on_interrupt.waited = True
        run_folder.wait_for_jobs(console.LAUNCHED["dir"], INTERRUPT_GRACE_S)
    raise KeyboardInterrupt


_on_interrupt.waited = False


def _interrupted() -> None:
    """Ctrl-C reached the command itself (a sweep's launcher, e.g. joblib's, after its jobs stopped):
    one line and status 130, instead of the launcher's traceback."""
    sweep = any(a in ("-m", "--multirun") or a.startswith("hparams_search=") for a in sys.argv[1:])
    print(
        f"{PROG}: interrupted"
        + ("; the sweep stopped, and each job's line above says where it stopped and how to continue" if sweep else ""),
        file=sys.stderr,
        flush=True,
    )
    sys.exit(130)


def main() -> None:
    if "--version" in sys.argv[1:]:  # antlr-exp's version, not Hydra's
        print(f"{PROG} (antlr-exp) {__version__}")
        return
    tune_malloc()  # keep large buffers in the heap between steps (see antlr_exp.cli.runtime)
    configs.register()  # the package's configs stay on the search path under -cp (see antlr_exp.cli.configs)
    sys.argv[1:] = configs.with_absolute_config_path(configs.with_completion_flags(sys.argv[1:]))
    args = configs.parse(sys.argv[1:])
    try:
        if args is None or not args.shell_completion:  # -sc takes install=, query=: no overrides
            arguments = sys.argv[1:] if args is None else args.overrides
            if args is not None:
                configs.check_flags(args)
            check_parsable(arguments)
            check_group_choices(arguments, args)
            check_override_keys(arguments, args)
            sys.argv[1:] = preflight.check_command(sys.argv[1:])
    except ConfigError as error:
        _fail(error)
    console.LAUNCHED.clear()
    _on_interrupt.waited = False
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.default_int_handler and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_interrupt)
    try:
        _train()
    except KeyboardInterrupt:  # Ctrl-C on a sweep: its jobs stopped, each with its line; the launcher passes it on
        _interrupted()
    finally:
        if signal.getsignal(signal.SIGINT) is _on_interrupt:
            signal.signal(signal.SIGINT, previous)


if __name__ == "__main__":
    main()
