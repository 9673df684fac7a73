"""Load a trained network: :func:`load_run` (``antlr_exp.load_run``).

Accepted: a run folder (its ``checkpoints/best.pt``: the best-validation weights, the ones its
test measured), one trial's ``seed_<s>/`` folder of a stacked run (the same), the job folder of a
stacked run with ``trial=k`` (the folder of its k-th seed), or a checkpoint file: ``best.pt``, a
plain run's ``last.pt`` (the weights at its last evaluation point) or a stacked run's ``last.pt``
with ``trial=k`` (trial k's weights there, k = 0..K-1 counting from the run's first seed).
Anything else is a :class:`~antlr_exp.errors.ConfigError` of one line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from omegaconf import DictConfig, OmegaConf

from ..config import neuron_params, rule_kwargs, with_legacy_values
from ..engine.network import SpikingNetwork
from ..engine.neuron import NeuronParams
from ..errors import ConfigError
from ..results.layout import BEST_CHECKPOINT, CHECKPOINT_DIR
from . import checkpoint as ckpt
from .build import DTYPES, trial_config

ACCEPTED = "accepted: a run folder, a seed_<s>/ folder of a stacked run, or a checkpoint .pt file of antlr-train"


@dataclass(frozen=True)
class DataSettings:
    """How the run read its task's data; :meth:`load` reads it again (``load_task``'s arguments)."""

    task: str
    root: Optional[str]
    num_steps: int
    seed: int
    limit_train: Optional[int] = None
    limit_test: Optional[int] = None
    download: bool = False
    options: dict = field(default_factory=dict)  # the task's own options (``task.options``)
    batch_size: int = 16  # training batch
    test_batch_size: int = 256  # validation and test batch

    @classmethod
    def from_config(cls, cfg: DictConfig) -> "DataSettings":
        return cls(
            task=str(cfg.task.name),
            root=None if cfg.data.root is None else str(cfg.data.root),
            num_steps=int(cfg.task.num_steps),
            seed=int(cfg.seed),
            limit_train=cfg.data.limit_train,
            limit_test=cfg.data.limit_test,
            download=bool(cfg.data.download),
            options=OmegaConf.to_container(cfg.task.options, resolve=True),
            batch_size=int(cfg.trainer.batch_size),
            test_batch_size=int(cfg.trainer.test_batch_size),
        )

    def load(self, root: Union[str, Path, None] = None, download: Optional[bool] = None):
        """The task's :class:`~antlr_exp.data.TaskData` (``root``: another folder than the run's)."""
        from ..data import load_task

        return load_task(
            self.task,
            root=self.root if root is None else root,
            download=self.download if download is None else download,
            limit_train=self.limit_train,
            limit_test=self.limit_test,
            seed=self.seed,
            num_steps=self.num_steps,
            **self.options,
        )


@dataclass
class LoadedRun:
    """What :func:`load_run` returns. ``network`` is on the CPU in eval mode; ``trial`` is the
    index of the trial in its stacked run (None for a plain run)."""

    network: SpikingNetwork
    neuron: NeuronParams  # resolved: beta_V and beta_bias are numbers
    config: DictConfig  # the run's (one trial's) config
    data: DataSettings
    checkpoint: Path
    trial: Optional[int] = None


def load_run(path: Union[str, Path], trial: Optional[int] = None) -> LoadedRun:
    """The network of a run folder or checkpoint file (see the module's docstring)."""
    if trial is not None and (isinstance(trial, bool) or not isinstance(trial, int) or trial < 0):
        raise ConfigError(f"trial={trial!r}: accepted: None or a trial index 0, 1, ...")
    file, trial, index = _checkpoint_file(Path(path), trial)
    payload = ckpt.load(file)  # a truncated or foreign file: one line
    if not (isinstance(payload, dict) and isinstance(payload.get("config"), dict) and _weights_of(payload)):
        raise ConfigError(f"{file} is not a checkpoint of antlr-train (no config and weights in it); {ACCEPTED}")
    cfg = OmegaConf.create(with_legacy_values(payload["config"]))
    weights = _weights_of(payload)
    trials = int(cfg.get("trials", 1))
    if trials > 1:
        if trial is None or trial >= trials:
            given = "no trial" if trial is None else f"trial={trial}"
            raise ConfigError(
                f"{file} holds the {trials} stacked trials of a trials={trials} run and {given} was given; "
                f"accepted: trial=0..{trials - 1}"
            )
        weights = {key: value[trial] for key, value in weights.items()}
        cfg = trial_config(cfg, int(cfg.seed) + trial)
    elif trial not in (None, 0):
        raise ConfigError(f"trial={trial}: {file} holds one network; accepted: trial=None")
    network = network_from(cfg, weights, file)
    index = trial if index is None else index
    return LoadedRun(network, network.params, cfg, DataSettings.from_config(cfg), file, index)


def _weights_of(payload: dict) -> Optional[dict]:
    weights = payload.get("model")
    return weights if isinstance(weights, dict) and "layers.0.weight" in weights else None


def _checkpoint_file(path: Path, trial: Optional[int]) -> tuple:
    """``(checkpoint file, trial to take from it, trial index of a stacked run's folder)``."""
    if not path.exists():
        raise ConfigError(f"{path} does not exist; {ACCEPTED}")
    if path.is_file():
        return path, trial, None
    best = path / CHECKPOINT_DIR / BEST_CHECKPOINT
    trials = ckpt._trial_folders(path)
    if best.is_file():
        if trial not in (None, 0):
            raise ConfigError(f"trial={trial}: {path} holds one network; accepted: trial=None")
        return best, None, None
    if trials:
        if trial is None or trial >= len(trials):
            given = "no trial" if trial is None else f"trial={trial}"
            raise ConfigError(
                f"{path} is the folder of a stacked run of {len(trials)} trials and {given} was given; "
                f"accepted: trial=0..{len(trials) - 1}, or one trial's folder ({trials[0].name}/, ...)"
            )
        return trials[trial] / CHECKPOINT_DIR / BEST_CHECKPOINT, None, trial
    raise ConfigError(f"{path} is not a run folder (no {CHECKPOINT_DIR}/{BEST_CHECKPOINT} in it); {ACCEPTED}")


def network_from(cfg: DictConfig, weights: dict, source: Path) -> SpikingNetwork:
    """The network of ``cfg`` with ``weights`` (a plain network's state dict); its sizes come from
    the weights, so no data is read. Kernels: the environment's default."""
    layers = sum(1 for key in weights if key.startswith("layers.") and key.endswith(".weight"))
    try:
        sizes = [int(weights["layers.0.weight"].shape[-1])]
        sizes += [int(weights[f"layers.{index}.weight"].shape[-2]) for index in range(layers)]
        network = SpikingNetwork(sizes, int(cfg.task.num_steps), neuron_params(cfg), **rule_kwargs(cfg))
        network = network.to(DTYPES[cfg.get("dtype", "float32")])
        network.load_state_dict(weights)
    except (KeyError, AttributeError, RuntimeError, IndexError) as error:
        raise ConfigError(
            f"{source}: its weights do not make a network of antlr-train ({type(error).__name__}); {ACCEPTED}"
        ) from None
    return network.eval()
