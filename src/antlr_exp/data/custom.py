"""Your own data: ``task=custom task.options.loader=mypkg.data:load``.

The loader is a function (``module:function`` or ``module.function``; the module is imported from
the Python path, then from the working directory) that returns a :class:`TaskData`, the record the
built-in tasks return. It is called with ``task.options.kwargs`` and, where its signature names
them (or takes ``**kwargs``), ``seed`` (the trial: draw a split or a problem from it),
``num_steps``, ``root`` (``data.root``) and ``download`` (``data.download``).

Its ``val`` may be None: then ``n // 6`` of the training samples, drawn by the seed, are held out
(as the built-in tasks do). ``data.limit_train`` and ``data.limit_test`` then keep seeded subsets.

What it returns is checked before training, each problem in one line: the type, ``target_kind``
against ``task.options.target_kind``, ``num_steps`` against ``task.num_steps``, every split
non-empty, and every item: inputs a float tensor ``[num_steps, *input_shape]``, a label an int64
scalar in ``0..num_outputs-1`` (a spike-train target a float ``[num_steps, num_outputs]``).
A ``TensorDataset`` (or a ``Subset`` of one) is checked as whole tensors; any other dataset item
by item, which reads it once.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from typing import Any, Callable, Optional

import torch
from torch.utils.data import Subset, TensorDataset

from antlr_exp.data.common import TaskData, check_limit, seeded_subset, split_train_val
from antlr_exp.errors import ConfigError, InputError

TARGET_KINDS = ("label", "spike_train")
#: What ``load_task`` passes on to the loader where its signature names it.
PASSED_ON = ("seed", "num_steps", "root", "download")
_KEY = "task.options.loader"


def _import(module: str):
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        top = module.split(".")[0]
        if error.name != top or os.getcwd() in sys.path:
            raise
    sys.path.append(os.getcwd())  # the working directory, after everything installed
    return importlib.import_module(module)


def resolve_loader(target: Any) -> Callable:
    """The function ``target`` (``module:function`` or ``module.function``) names; ConfigError in
    one line where it cannot be imported or is not callable."""
    accepted = (
        "accepted: module:function, e.g. mypkg.data:load, with the module on PYTHONPATH or in the working directory"
    )
    if not isinstance(target, str) or not target.strip():
        raise ConfigError(f"{_KEY}={target!r} is not accepted; {accepted}")
    module, _, name = target.partition(":") if ":" in target else target.rpartition(".")
    if not module or not name:
        raise ConfigError(f"{_KEY}={target}: names no function; {accepted}")
    try:
        found = _import(module)
    except Exception as error:  # the module's own import error too: say which, in one line
        detail = " ".join(f"{type(error).__name__}: {error}".split())
        raise ConfigError(f"{_KEY}={target}: the module {module} cannot be imported ({detail}); {accepted}") from None
    function = getattr(found, name, None)
    if function is None:
        raise ConfigError(f"{_KEY}={target}: the module {module} has no {name!r}; {accepted}")
    if not callable(function):
        raise ConfigError(f"{_KEY}={target}: {name} is a {type(function).__name__}, not a function; {accepted}")
    return function


def loader_arguments(function: Callable, target: str, kwargs: dict, passed: Optional[dict] = None) -> dict:
    """What ``function`` is called with: ``kwargs`` and what of ``passed`` its signature names; a
    keyword it does not take (a misspelt ``task.options.kwargs`` key) is one line, before the call."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # no signature to read (a builtin): called with kwargs alone
        return dict(kwargs)
    parameters = signature.parameters
    takes_any = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    given = {k: v for k, v in (passed or {}).items() if v is not None and (takes_any or k in parameters)}
    arguments = {**given, **kwargs}
    try:
        signature.bind(**arguments)
    except TypeError as error:
        raise ConfigError(
            f"task.options.kwargs={kwargs}: {error} (calling {target}); accepted: the keyword arguments it takes, "
            f"{', '.join(parameters) or 'none'}"
        ) from None
    return arguments


def _tensors(dataset):
    """``(inputs, targets)`` of a TensorDataset, or of a Subset of one; else None."""
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) == 2:
        return dataset.tensors
    if isinstance(dataset, Subset):
        inner = _tensors(dataset.dataset)
        if inner is not None:
            indices = torch.as_tensor(list(dataset.indices), dtype=torch.int64)
            return inner[0][indices], inner[1][indices]
    return None


def _item(dataset, position: int) -> int:
    """The index, in the dataset the loader returned, of item ``position`` of ``dataset`` (through
    the Subsets of a held-out validation split and of ``data.limit_*``)."""
    while isinstance(dataset, Subset):
        position, dataset = int(dataset.indices[position]), dataset.dataset
    return position


def _check_items(split: str, inputs: torch.Tensor, targets: torch.Tensor, data: TaskData, item) -> None:
    """Inputs ``[n, T, *input_shape]`` and targets ``[n]`` (labels) or ``[n, T, outputs]``; ``item``
    maps a position among them to the index the loader gave it (named in the error)."""
    where = f"{_KEY} returned a {split} split whose item {item(0)}"
    expected = (data.num_steps, *data.input_shape)
    if not torch.is_floating_point(inputs) or tuple(inputs.shape[1:]) != expected:
        raise InputError(
            f"{where} has inputs of dtype {inputs.dtype} and shape {list(inputs.shape[1:])}; accepted: a float "
            f"tensor of shape {list(expected)} (num_steps, *input_shape) of 0/1 spikes"
        )
    bad = ~torch.isfinite(inputs).flatten(1).all(dim=1)
    if bool(bad.any()):  # the training step does not look at the values again (engine.checks)
        index = int(torch.nonzero(bad)[0])
        raise InputError(
            f"{_KEY} returned a {split} split whose item {item(index)} has non-finite inputs (inf or NaN); "
            f"accepted: finite 0/1 spikes"
        )
    if data.target_kind == "label":
        if targets.dtype != torch.int64 or targets.dim() != 1:
            raise InputError(
                f"{where} has a label of dtype {targets.dtype} and shape {list(targets.shape[1:])}; accepted: an "
                f"int64 scalar tensor (e.g. torch.tensor(3), or labels.long() in a TensorDataset)"
            )
        outside = (targets < 0) | (targets >= data.num_outputs)
        if bool(outside.any()):
            index = int(torch.nonzero(outside)[0])
            raise InputError(
                f"{_KEY} returned a {split} split whose item {item(index)} has label {int(targets[index])}; "
                f"accepted: labels in 0..{data.num_outputs - 1} (num_outputs={data.num_outputs})"
            )
    elif not torch.is_floating_point(targets) or tuple(targets.shape[1:]) != (data.num_steps, data.num_outputs):
        raise InputError(
            f"{where} has a target of dtype {targets.dtype} and shape {list(targets.shape[1:])}; accepted: a float "
            f"spike train of shape {[data.num_steps, data.num_outputs]} (num_steps, num_outputs)"
        )


def check_split(split: str, dataset, data: TaskData, source: str | None = None) -> None:
    """Every item of ``dataset`` (one split of ``data``), see the module docstring. An error names
    the item by its index in the loader's ``source`` split (``train`` for a held-out validation
    split), whatever subset of it ``dataset`` is."""
    source = source or split
    if len(dataset) == 0:
        raise ConfigError(f"{_KEY} returned a {split} split of 0 samples; every split needs at least one")
    tensors = _tensors(dataset)
    if tensors is not None:
        _check_items(source, *tensors, data, lambda position: _item(dataset, position))
        return
    for index in range(len(dataset)):
        item = dataset[index]
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and all(torch.is_tensor(x) for x in item)):
            raise InputError(
                f"{_KEY} returned a {source} split whose item {_item(dataset, index)} is a {type(item).__name__}; "
                f"accepted: a pair (inputs, target) of tensors"
            )
        _check_items(source, item[0].unsqueeze(0), item[1].unsqueeze(0), data, lambda _, i=index: _item(dataset, i))


def check_task_data(data: Any, target_kind: str, num_steps: int | None) -> TaskData:
    """``data`` as the loader returned it, checked; its ``input_shape`` as a tuple."""
    if not isinstance(data, TaskData):
        raise ConfigError(
            f"{_KEY} returned a {type(data).__name__}; accepted: an antlr_exp.data.TaskData(train, val, test, "
            f"input_shape, num_steps, num_outputs, target_kind)"
        )
    if data.target_kind != target_kind:
        raise ConfigError(
            f"{_KEY} returned target_kind={data.target_kind!r} but task.options.target_kind={target_kind}; "
            f"accepted: the same kind ({', '.join(TARGET_KINDS)})"
        )
    shape = tuple(data.input_shape) if isinstance(data.input_shape, (tuple, list, torch.Size)) else None
    for name, value, ok in (
        ("input_shape", data.input_shape, shape and all(isinstance(n, int) and n >= 1 for n in shape)),
        ("num_steps", data.num_steps, isinstance(data.num_steps, int) and data.num_steps >= 1),
        ("num_outputs", data.num_outputs, isinstance(data.num_outputs, int) and data.num_outputs >= 1),
    ):
        if not ok or isinstance(value, bool):
            raise ConfigError(f"{_KEY} returned {name}={value!r}; accepted: positive integers")
    if num_steps is not None and data.num_steps != num_steps:
        raise ConfigError(
            f"{_KEY} returned num_steps={data.num_steps} but task.num_steps={num_steps}; accepted: the same T, "
            f"e.g. task.num_steps={data.num_steps}"
        )
    data.input_shape = shape
    return data


def load_custom(
    *,
    loader: str,
    kwargs: dict | None = None,
    target_kind: str = "label",
    root: str | os.PathLike | None = None,
    download: bool = False,
    limit_train: int | None = None,
    limit_test: int | None = None,
    seed: int = 0,
    num_steps: int | None = None,
) -> TaskData:
    """The TaskData of the loader ``loader`` names, checked, with its validation split held out
    where it gave none, and ``limit_train``/``limit_test`` applied (see the module docstring)."""
    if target_kind not in TARGET_KINDS:
        raise ConfigError(
            f"task.options.target_kind={target_kind!r} is not accepted; accepted values: {', '.join(TARGET_KINDS)}"
        )
    if kwargs is not None and not isinstance(kwargs, dict):
        raise ConfigError(f"task.options.kwargs={kwargs!r} is not accepted; accepted: a mapping of keyword arguments")
    limit_train, limit_test = check_limit("limit_train", limit_train), check_limit("limit_test", limit_test)
    function = resolve_loader(loader)
    passed = {"seed": seed, "num_steps": num_steps, "root": root, "download": download}
    data = check_task_data(
        function(**loader_arguments(function, loader, dict(kwargs or {}), passed)), target_kind, num_steps
    )
    held_out = data.val is None
    if data.val is None and data.train is not None and _sized(data.train):
        train_ids, val_ids = split_train_val(len(data.train), seed, "custom/split")
        data.train, data.val = Subset(data.train, train_ids.tolist()), Subset(data.train, val_ids.tolist())
    for split, limit in (("train", limit_train), ("val", limit_test), ("test", limit_test)):
        dataset = getattr(data, split)
        if not _sized(dataset):
            raise ConfigError(
                f"{_KEY} returned a {split} split of type {type(dataset).__name__}; accepted: a torch Dataset "
                f"(e.g. torch.utils.data.TensorDataset(inputs, labels); val may be None)"
            )
        if limit is not None and limit < len(dataset):  # only what the run uses is checked
            kept = seeded_subset(len(dataset), limit, seed, f"custom/{split}-subset")
            dataset = Subset(dataset, kept.tolist())
            setattr(data, split, dataset)
        check_split(split, dataset, data, "train" if split == "val" and held_out else split)
    return data


def _sized(dataset: Any) -> bool:
    return hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")
