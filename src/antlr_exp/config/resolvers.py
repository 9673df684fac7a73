"""Where the configs live and what reading a saved config needs: the folder of ``conf/``, the
OmegaConf resolvers the configs use (``${if:...}``, ``${env_or:...}``), the values that fill keys
older runs lack, and ``flatten``.

Imports no torch: ``antlr-report`` reads saved configs through this module alone.
"""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf


def find_conf_dir() -> Path:
    """The folder holding the Hydra configs: the copy of ``conf/`` shipped inside an installed
    package (``antlr_exp/conf``), else the source tree's top-level ``conf/`` (editable installs
    and ``PYTHONPATH=src``)."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "conf", package.parents[1] / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(
        f"antlr-exp's configs are missing: neither {package / 'conf'} nor "
        f"{package.parents[1] / 'conf'} holds config.yaml; reinstall the package"
    )


#: The folder holding the Hydra configs (see ``find_conf_dir``).
CONF_DIR = find_conf_dir()

#: Keys added after runs were first saved, with the value that reproduces a run saved without them
#: (what its code did): a resumed or evaluated old run reads these where its config lacks them.
LEGACY_VALUES = {"optimizer.eps": 1e-8, "optimizer.amsgrad": False, "optimizer.grad_clip_norm": None}


def with_legacy_values(saved: dict) -> dict:
    """A saved run's config (plain dict) with ``LEGACY_VALUES`` filled in where it lacks them."""
    filled = OmegaConf.create(saved)
    for key, value in LEGACY_VALUES.items():
        if OmegaConf.select(filled, key, default="(absent)") == "(absent)":
            OmegaConf.update(filled, key, value, force_add=True)
    return OmegaConf.to_container(filled)


def flatten(container: dict, prefix: str = "") -> dict:
    """``{"a": {"b": 1}, "c": [2]}`` -> ``{"a.b": 1, "c": (2,)}`` (lists become tuples)."""
    flat = {}
    for key, value in container.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = tuple(value) if isinstance(value, list) else value
    return flat


def register_resolvers() -> None:
    """Register the resolvers the configs use (idempotent)."""
    if not OmegaConf.has_resolver("if"):
        # ${if:COND,A,B}: A when COND is true, else B (e.g. N-MNIST count targets under single_spike)
        OmegaConf.register_new_resolver("if", lambda condition, then, otherwise: then if condition else otherwise)
    if not OmegaConf.has_resolver("env_or"):
        # ${env_or:NAME,DEFAULT}: the environment variable NAME, or DEFAULT where it is unset or empty
        # (oc.env gives "" for a variable set to nothing, which would put data.root at /<task>)
        OmegaConf.register_new_resolver("env_or", lambda name, default: os.environ.get(name) or default)


register_resolvers()
