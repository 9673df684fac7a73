"""Every config key of the loss, method, neuron, optimizer and task groups reaches its use.

A key whose default equals the default of the function it feeds can be dropped on its way there
and nothing notices: training silently runs the function's default, and a sweep over the key
trains one setting N times. So, for every key of every option of those groups (walked from the
schemas in antlr_exp.config): set it to a value other than its default, run the smallest thing
that uses it (an Objective call, one or two training steps, a network or data build), and
compare with a direct call of the underlying function at that value. The same thing run at the
default must differ from that, so the probe can see the key at all.

``PLUMBING`` names, for each key, the value and the probe; ``test_every_schema_key_is_covered``
fails when a key of the schemas is neither in it nor in ``NOT_PROBED`` (string choices whose
use other tests cover), so a key added later must be covered here or fail loudly.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
import pytest
import torch
from helpers.nmnist_files import write_recording
from helpers.runs import compose_config
from helpers.shd_files import random_samples, write_fake_shd, write_file
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from antlr_exp.config import CONF_DIR, Config
from antlr_exp.data import TASKS
from antlr_exp.engine.losses import (
    count_loss,
    count_targets,
    label_spike_trains,
    latency_loss,
    no_spike_count_term,
    no_spike_weight_penalty,
    spike_train_loss,
)
from antlr_exp.engine.network import SpikingNetwork
from antlr_exp.engine.neuron import NeuronParams
from antlr_exp.engine.spikes import NetworkOutput
from antlr_exp.training.build import build_network, load_data
from antlr_exp.training.early_stop import train_early_stop
from antlr_exp.training.objective import Objective
from antlr_exp.training.trainer import Trainer

#: Groups with one option per schema ``schema_<group>_<option>``; the others have one schema each.
OPTION_GROUPS = ("loss", "method", "task")
SINGLE_GROUPS = {"neuron": ("paper", "neuron"), "optimizer": ("adam", "optimizer")}  # option, Config field
NUMERIC = (int, float)


def _is_numeric(annotation) -> bool:
    """int, float, lists of them, Optional of those; Any (neuron.beta_V: "auto" or a number)."""
    if annotation is Any or annotation in NUMERIC:
        return True
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return bool(args) and all(_is_numeric(a) for a in args)


def _fields(schema, prefix: str = "") -> dict:
    """Dotted key -> annotation of every leaf field of a schema dataclass (nested options too)."""
    hints = typing.get_type_hints(schema)
    keys = {}
    for f in dataclasses.fields(schema):
        if dataclasses.is_dataclass(hints[f.name]):
            keys.update(_fields(hints[f.name], f"{prefix}{f.name}."))
        elif f.name != "name":  # name selects the option: every probe runs it
            keys[f"{prefix}{f.name}"] = hints[f.name]
    return keys


def schema_keys() -> dict:
    """``"group/option:key"`` -> annotation, for every key of every option of the five groups."""
    store = ConfigStore.instance()
    keys = {}
    for group in OPTION_GROUPS:
        options = sorted(
            name[len(f"schema_{group}_") : -len(".yaml")]
            for name in store.list("/")
            if name.startswith(f"schema_{group}_")
        )
        assert options, group
        for option in options:
            schema = OmegaConf.get_type(store.load(f"schema_{group}_{option}.yaml").node)
            keys.update({f"{group}/{option}:{k}": a for k, a in _fields(schema).items()})
    hints = typing.get_type_hints(Config)
    for group, (option, field_name) in SINGLE_GROUPS.items():
        keys.update({f"{group}/{option}:{k}": a for k, a in _fields(hints[field_name]).items()})
    return keys


# ---------------------------------------------------------------------------------------------
# Probes: ``probe(cfg, ctx)`` runs the code under test; ``direct(value, ctx)`` calls the underlying
# function at the value (the other settings at the defaults of conf/, read from ``ctx.defaults``).


def _outputs(batch=6, steps=12, outputs=10):
    """Fixed output spikes [B, T, O] (some label neurons silent) with times, and labels."""
    g = torch.Generator().manual_seed(5)
    spikes = (torch.rand(batch, steps, outputs, generator=g, dtype=torch.float64) < 0.15).double()
    labels = torch.arange(batch) % outputs
    spikes[0, :, labels[0]] = 0.0  # a silent label neuron: the no-spike count term acts
    times = (spikes * torch.arange(steps, dtype=torch.float64).view(1, -1, 1)).requires_grad_()
    return SimpleNamespace(output_spikes=spikes, output_times=times), labels


def loss_probe(cfg, ctx):
    out, labels = _outputs()
    return Objective(cfg, 10).per_sample(out, labels)


def loss_direct(key):
    def direct(value, ctx):
        s = {**ctx.defaults["loss"], key: value}
        out, labels = _outputs()
        spikes, times = out.output_spikes, out.output_times
        if s["name"] == "count":
            return count_loss(
                spikes, count_targets(labels, 10, n_true=s["n_true"], n_false=s["n_false"]), reduction="none"
            )
        if s["name"] == "spike_train":
            target = label_spike_trains(
                labels, 10, spikes.shape[1], s["label_steps"], s["other_steps"], dtype=spikes.dtype
            )
            return spike_train_loss(spikes, times, target, decay=s["decay"], reduction="none")
        return latency_loss(spikes, times, labels, beta=s["beta"], reduction="none") + no_spike_count_term(
            spikes, labels, lambda_ns=s["lambda_ns"], reduction="none"
        )

    return direct


SIZES, STEPS = [10, 16, 3], 30


def _fixed_weights(net):
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for layer in net.layers:
            layer.weight.copy_(torch.rand(layer.weight.shape, generator=g, dtype=torch.float64) * 2.5 - 0.3)
            layer.bias.copy_(torch.rand(layer.bias.shape, generator=g, dtype=torch.float64) * 0.3)
    return net


def _step_result(net):
    """Spikes and parameter gradients of one forward/backward under a fixed spike-train target."""
    g = torch.Generator().manual_seed(8)
    x = (torch.rand(4, STEPS, SIZES[0], generator=g, dtype=torch.float64) < 0.2).double()
    target = (torch.rand(4, STEPS, SIZES[-1], generator=g, dtype=torch.float64) < 0.05).double()
    out = net(x)
    spike_train_loss(out.output_spikes, out.output_times, target).backward()
    return {"spikes": [s.detach() for s in out.spikes], "grads": [p.grad for p in net.parameters()]}


FAKE_DATA = SimpleNamespace(input_shape=(SIZES[0],), num_outputs=SIZES[-1], num_steps=STEPS)


def network_probe(cfg, ctx):
    """The network antlr-train builds from cfg (neuron constants, rule and lambdas), one step."""
    return _step_result(_fixed_weights(build_network(cfg, FAKE_DATA)))


def network_direct(group, key):
    def direct(value, ctx):
        method = {**ctx.defaults["method"], **({key: value} if group == "method" else {})}
        neuron = {**ctx.defaults["neuron"], **({key: value} if group == "neuron" else {})}
        rule = {k: method[k] for k in ("lambda_act", "lambda_tim") if k in method}
        net = SpikingNetwork(SIZES, STEPS, NeuronParams(**neuron), rule=method["name"], **rule).double()
        return _step_result(_fixed_weights(net))

    return direct


def _silent_layer_output():
    net = _fixed_weights(SpikingNetwork(SIZES, STEPS, rule="timing").double())
    with torch.no_grad():
        net.layers[1].weight.mul_(0.01)  # outputs silent: the penalty acts on them
    g = torch.Generator().manual_seed(9)
    x = (torch.rand(4, STEPS, SIZES[0], generator=g, dtype=torch.float64) < 0.2).double()
    return net, net(x)


def penalty_probe(cfg, ctx):
    net, out = _silent_layer_output()
    return Objective(cfg, SIZES[-1]).penalty(net, out)


def penalty_direct(value, ctx):
    net, out = _silent_layer_output()
    return no_spike_weight_penalty(net, out, p=value)


def _late_hidden_spike_output():
    """One sample: both outputs fire at step 1, hidden neuron 0 first at step 5 (after the stop)."""
    net = SpikingNetwork([3, 2, 2], 10).double()
    hidden = torch.zeros(1, 10, 2, dtype=torch.float64)
    hidden[0, 5, 0] = hidden[0, 0, 1] = 1
    output = torch.zeros(1, 10, 2, dtype=torch.float64)
    output[0, 1] = 1
    return net, NetworkOutput([hidden, output], [hidden, output], 10)


def penalty_window_probe(cfg, ctx):
    """Whether training stops early, and the penalty's gradient in the late neuron's weights."""
    net, out = _late_hidden_spike_output()
    Objective(cfg, 2).penalty(net, out).backward()
    return train_early_stop(cfg), net.layers[0].weight.grad[0]


def penalty_window_direct(value, ctx):
    net, out = _late_hidden_spike_output()
    p = ctx.defaults["method"]["no_spike_penalty"]
    no_spike_weight_penalty(net, out, p=p, until_all_fired=value == "early_stop").backward()
    return value == "early_stop", net.layers[0].weight.grad[0]


def optimizer_probe(cfg, ctx):
    """Three training steps of antlr-train's Trainer on the matching task: the weights after them."""
    torch.manual_seed(0)
    data = load_data(cfg)
    trainer = Trainer(cfg, ctx.tmp_path, data, torch.device("cpu"))
    ctx.initial = copy.deepcopy(trainer.net.state_dict())
    inputs, targets = data.train[0]
    for _ in range(3):
        trainer._train_step(inputs.unsqueeze(0).double(), targets.unsqueeze(0).double())
    return [p.detach().clone() for p in trainer.net.parameters()]


def optimizer_direct(key):
    def direct(value, ctx):
        s = {**ctx.defaults["optimizer"], key: value}
        cfg = ctx.compose()
        torch.manual_seed(0)
        data = load_data(cfg)
        net = SpikingNetwork(
            [data.input_shape[0], *cfg.task.hidden_sizes, data.num_outputs],
            data.num_steps,
            NeuronParams(),
            rule="antlr",
        ).double()
        net.load_state_dict(ctx.initial)
        adam = torch.optim.Adam(
            net.parameters(),
            lr=s["lr"],
            betas=tuple(s["betas"]),
            weight_decay=s["weight_decay"],
            eps=s["eps"],
            amsgrad=s["amsgrad"],
            fused=True,
        )
        inputs, targets = data.train[0]
        for _ in range(3):
            out = net(inputs.unsqueeze(0).double())
            adam.zero_grad()
            spike_train_loss(
                out.output_spikes, out.output_times, targets.unsqueeze(0).double(), decay=ctx.defaults["loss"]["decay"]
            ).backward()
            if s["grad_clip_value"] is not None:
                torch.nn.utils.clip_grad_value_(net.parameters(), s["grad_clip_value"])
            if s["grad_clip_norm"] is not None:
                torch.nn.utils.clip_grad_norm_(net.parameters(), s["grad_clip_norm"])
            adam.step()
        return [p.detach().clone() for p in net.parameters()]

    return direct


def _task_view(data, hidden_sizes, cache_dir):
    sizes = [math.prod(data.input_shape), *hidden_sizes, data.num_outputs]
    inputs, target = data.train[0]
    view = {"inputs": inputs, "target": target, "num_steps": data.num_steps, "sizes": sizes}
    if cache_dir is not None:  # which frame-cache files a load wrote there
        view["cache"] = sorted(p.name for p in Path(cache_dir).glob("*.npz"))
    return view


def task_probe(cfg, ctx):
    """The data antlr-train loads from cfg and the layer sizes of the network it builds on them."""
    data = load_data(cfg)
    net = build_network(cfg, data)
    assert net.num_steps == data.num_steps
    view = _task_view(data, cfg.task.hidden_sizes, ctx.probe_cache)
    view["sizes"] = [net.layers[0].weight.shape[1], *(layer.weight.shape[0] for layer in net.layers)]
    return view


def task_direct(key):
    def direct(value, ctx):
        s = copy.deepcopy(ctx.defaults["task"])
        if key.startswith("options."):
            s["options"][key.split(".", 1)[1]] = value
        else:
            s[key] = value
        common = (
            {}
            if s["name"] == "matching"
            else {k: ctx.defaults["data"][k] for k in ("root", "limit_train", "limit_test")}
        )
        data = TASKS[s["name"]](num_steps=s["num_steps"], seed=0, **common, **s["options"])
        return _task_view(data, s["hidden_sizes"], ctx.probe_cache)

    return direct


@dataclass
class Plumb:
    value: Any  # the override's value (a str is formatted with {tmp} = the test's tmp_path)
    probe: Callable
    direct: Callable
    base: tuple = ()  # overrides the key needs to matter (with them, its default too)


# the settings of each option the probes run on (tiny, so that every probe takes a fraction of a second)
def base_overrides(group: str, option: str, roots: dict) -> list:
    tiny = ["task.num_steps=30", "task.hidden_sizes=[16]", "dtype=float64"]
    if group == "loss":
        extra = ["loss.label_steps=[3]"] if option == "spike_train" else []
        return ["task=mnist", "method=antlr", f"loss={option}", *extra]
    if group == "method":
        loss = {"timing": "latency", "antlr": "spike_train"}.get(option, "count")
        extra = ["loss.label_steps=[3]"] if loss == "spike_train" else []
        return ["task=mnist", f"method={option}", f"loss={loss}", *extra, *tiny]
    if group == "task":
        if option == "matching":
            return ["task=matching", "method=antlr", *tiny]
        data = [f"data.root={roots.get(option, 'unused')}", "data.limit_train=4", "data.limit_test=2"]
        if option == "nmnist":
            return [
                "task=nmnist",
                "method=antlr",
                *data,
                "task.num_steps=130",
                "task.hidden_sizes=[16]",
                f"task.options.cache_dir={roots['cache']}",
            ]
        if option in ("shd", "ssc"):
            return [f"task={option}", "method=antlr", *data, *tiny, f"task.options.cache_dir={roots['cache']}"]
        if option == "custom":
            return ["task=custom", "method=antlr", f"task.options.loader={CUSTOM}:load", *data[1:], *tiny]
        return [f"task={option}", "method=antlr", *data, *tiny]
    return ["task=matching", "method=antlr", *tiny]


#: task=custom's loader for the probes: 12 samples of 6 inputs, one spike each, placed by ``offset``
#: (``other``: 8 inputs and 4 classes, so the network's sizes tell which function was called).
CUSTOM = "plumbing_loader"
CUSTOM_LOADER = """
import torch
from torch.utils.data import TensorDataset
from antlr_exp.data import TaskData


def load(num_steps=20, offset=0, inputs=6, classes=3):
    x = torch.zeros(12, num_steps, inputs)
    labels = torch.arange(12) % classes
    for i in range(12):
        x[i, (i + offset) % num_steps, (i + offset) % inputs] = 1
    return TaskData(TensorDataset(x, labels), None, TensorDataset(x[:4], labels[:4]), (inputs,), num_steps, classes, "label")


def other(num_steps=20, offset=0):
    return load(num_steps, offset, inputs=8, classes=4)
"""


PLUMBING = {
    "loss/count:n_true": Plumb(3.0, loss_probe, loss_direct("n_true")),
    "loss/count:n_false": Plumb(0.5, loss_probe, loss_direct("n_false")),
    "loss/spike_train:decay": Plumb(0.7, loss_probe, loss_direct("decay")),
    "loss/spike_train:label_steps": Plumb([5, 9], loss_probe, loss_direct("label_steps")),
    "loss/spike_train:other_steps": Plumb([2], loss_probe, loss_direct("other_steps")),
    "loss/latency:beta": Plumb(0.5, loss_probe, loss_direct("beta")),
    "loss/latency:lambda_ns": Plumb(0.3, loss_probe, loss_direct("lambda_ns")),
    "method/antlr:lambda_act": Plumb(0.3, network_probe, network_direct("method", "lambda_act")),
    "method/antlr:lambda_tim": Plumb(2.5, network_probe, network_direct("method", "lambda_tim")),
    "method/timing:no_spike_penalty": Plumb(7.0, penalty_probe, penalty_direct),
    # silence counted up to the batch's last first output spike; the training early stop comes with it
    "method/timing:penalty_window": Plumb("early_stop", penalty_window_probe, penalty_window_direct),
    **{
        f"neuron/paper:{key}": Plumb(value, network_probe, network_direct("neuron", key))
        for key, value in (
            ("alpha_I", 0.9),
            ("alpha_V", 0.95),
            ("beta_V", 0.05),
            ("beta_bias", 0.2),
            ("theta", 0.8),
            ("surrogate", "fast_sigmoid"),
            ("surrogate_a", 0.5),
            ("surrogate_b", 1.5),
            ("vstar_min", 0.5),
        )
    },
    # with both scales "auto", beta_V = auto / beta_I cancels beta_I: it shows with a number for beta_V
    "neuron/paper:beta_I": Plumb(1.5, network_probe, network_direct("neuron", "beta_I"), ("neuron.beta_V=0.05",)),
    **{
        f"optimizer/adam:{key}": Plumb(value, optimizer_probe, optimizer_direct(key))
        for key, value in (
            ("lr", 0.01),
            ("betas", [0.5, 0.9]),
            ("weight_decay", 0.1),
            ("grad_clip_value", 1e-3),
            ("eps", 0.05),
            ("grad_clip_norm", 1e-3),
        )
    },
    # AMSGrad differs from Adam only where a second moment falls between steps: a short memory shows it
    "optimizer/adam:amsgrad": Plumb(True, optimizer_probe, optimizer_direct("amsgrad"), ("optimizer.betas=[0.9,0.5]",)),
    "task/matching:num_steps": Plumb(40, task_probe, task_direct("num_steps")),
    "task/matching:hidden_sizes": Plumb([7, 5], task_probe, task_direct("hidden_sizes")),
    "task/matching:options.num_inputs": Plumb(4, task_probe, task_direct("options.num_inputs")),
    "task/matching:options.num_outputs": Plumb(2, task_probe, task_direct("options.num_outputs")),
    "task/matching:options.input_spikes": Plumb(5, task_probe, task_direct("options.input_spikes")),
    "task/matching:options.target_spikes": Plumb(2, task_probe, task_direct("options.target_spikes")),
    "task/mnist:num_steps": Plumb(40, task_probe, task_direct("num_steps")),
    "task/mnist:hidden_sizes": Plumb([7, 5], task_probe, task_direct("hidden_sizes")),
    "task/mnist:options.t_max": Plumb(12, task_probe, task_direct("options.t_max")),
    "task/nmnist:num_steps": Plumb(140, task_probe, task_direct("num_steps")),
    "task/nmnist:hidden_sizes": Plumb([7, 5], task_probe, task_direct("hidden_sizes")),
    "task/nmnist:options.bin_us": Plumb(2000, task_probe, task_direct("options.bin_us")),
    "task/nmnist:options.first_saccade_only": Plumb(True, task_probe, task_direct("options.first_saccade_only")),
    "task/nmnist:options.cache_dir": Plumb("{tmp}/probe_cache", task_probe, task_direct("options.cache_dir")),
    **{
        f"task/{task}:{key}": Plumb(value, task_probe, task_direct(key))
        for task in ("shd", "ssc")
        for key, value in (
            ("num_steps", 40),
            ("hidden_sizes", [7, 5]),
            ("options.bin_us", 3000),
            ("options.cache_dir", "{tmp}/probe_cache"),
        )
    },
    "task/custom:num_steps": Plumb(24, task_probe, task_direct("num_steps")),
    "task/custom:hidden_sizes": Plumb([7, 5], task_probe, task_direct("hidden_sizes")),
    "task/custom:options.loader": Plumb(f"{CUSTOM}:other", task_probe, task_direct("options.loader")),
    "task/custom:options.kwargs": Plumb({"offset": 1}, task_probe, task_direct("options.kwargs")),
}

#: Keys not probed here, each with where its use is tested. Only string choices: every numeric key
#: must be in PLUMBING (test_every_numeric_key_is_probed).
NOT_PROBED = {
    "loss/count:decision": "which decision the accuracy uses: tests/training/test_train.py (test_accuracy per loss)",
    "loss/spike_train:decision": "as loss/count:decision",
    "loss/latency:decision": "as loss/count:decision",
    "task/custom:options.target_kind": "label or spike_train, checked against the data: tests/data/test_custom_data.py",
}


def test_every_schema_key_is_covered():
    keys = schema_keys()
    assert set(PLUMBING).isdisjoint(NOT_PROBED)
    uncovered = sorted(set(keys) - set(PLUMBING) - set(NOT_PROBED))
    assert not uncovered, f"config keys with no plumbing probe: add them to PLUMBING: {uncovered}"
    stale = sorted((set(PLUMBING) | set(NOT_PROBED)) - set(keys))
    assert not stale, f"PLUMBING/NOT_PROBED name keys the schemas do not have: {stale}"


def test_every_numeric_key_is_probed():
    numeric = {key for key, annotation in schema_keys().items() if _is_numeric(annotation)}
    assert numeric <= set(PLUMBING), sorted(numeric - set(PLUMBING))
    assert {"neuron/paper:beta_V", "optimizer/adam:betas", "loss/spike_train:label_steps"} <= numeric


def test_every_group_option_has_a_schema():
    """An option file added to conf/<group>/ without a schema would escape the walk above."""
    store = ConfigStore.instance()
    for group in OPTION_GROUPS:
        for path in (CONF_DIR / group).glob("*.yaml"):
            assert f"schema_{group}_{path.stem}.yaml" in store.list("/"), path


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):
        return (
            isinstance(b, torch.Tensor)
            and a.shape == b.shape
            and torch.allclose(a.detach().double(), b.detach().double(), rtol=1e-10, atol=1e-12)
        )
    return a == b


@pytest.fixture(scope="module")
def roots(data_roots, tmp_path_factory):
    """The fake MNIST; N-MNIST recordings with events before and after the first saccade (100 ms)."""
    nmnist = tmp_path_factory.mktemp("plumbing") / "nmnist"
    events = [(3, 4, 0, 500), (5, 6, 1, 42_000), (7, 8, 0, 101_000), (9, 9, 1, 128_500)]
    for split, count in (("Train", 2), ("Test", 1)):
        for digit in range(10):
            for n in range(count):
                write_recording(
                    nmnist / split / str(digit) / f"{digit * 10 + n:05d}.bin",
                    [(x, (y + digit) % 34, p, t + 1000 * n) for x, y, p, t in events],
                )
    audio = tmp_path_factory.mktemp("plumbing_audio")
    rng = np.random.default_rng(2)
    write_fake_shd(audio / "shd", train=24, test=6)
    for split, count in (("train", 12), ("valid", 6), ("test", 6)):
        write_file(audio / "ssc" / "SSC" / f"ssc_{split}.h5", random_samples(count, rng, 35), num_classes=35)
    custom = tmp_path_factory.mktemp("plumbing_custom")
    (custom / f"{CUSTOM}.py").write_text(CUSTOM_LOADER)
    sys.path.insert(0, str(custom))
    yield {
        "mnist": data_roots["mnist"],
        "nmnist": nmnist,
        "shd": audio / "shd",
        "ssc": audio / "ssc",
        "cache": data_roots["cache"],
    }
    sys.path.remove(str(custom))
    sys.modules.pop(CUSTOM, None)


@pytest.mark.parametrize("key", sorted(PLUMBING))
def test_a_key_set_away_from_its_default_reaches_its_use(key, roots, tmp_path, one_thread):
    group, rest = key.split("/", 1)
    option, name = rest.split(":", 1)
    plumb = PLUMBING[key]
    value = plumb.value.format(tmp=tmp_path) if isinstance(plumb.value, str) else plumb.value
    base = [*base_overrides(group, option, roots), *plumb.base]
    default_cfg = composed(tuple(base))
    ctx = SimpleNamespace(
        tmp_path=tmp_path,
        compose=lambda: copy.deepcopy(default_cfg),
        initial=None,
        probe_cache=tmp_path / "probe_cache" if key.startswith(("task/nmnist", "task/shd", "task/ssc")) else None,
    )
    ctx.defaults = OmegaConf.to_container(default_cfg, resolve=True)
    assert OmegaConf.select(default_cfg, f"{group}.{name}") != value, "the probe value must not be the default"
    at_default = plumb.probe(ctx.compose(), ctx)
    # the key set on the composed config, through its typed schema, as the override key=value sets
    # it (composing once more per key would take most of this test's time)
    cfg = ctx.compose()
    OmegaConf.update(cfg, f"{group}.{name}", value, merge=False)
    assert OmegaConf.select(cfg, f"{group}.{name}") == value
    got = plumb.probe(cfg, ctx)
    wanted = plumb.direct(value, ctx)
    assert _same(got, wanted), f"{group}.{name}={value} does not reach its use"
    assert not _same(at_default, wanted), f"the probe of {group}.{name} cannot tell {value} from the default"


_composed: dict = {}


def composed(overrides: tuple):
    """compose_config(*overrides), composed once per test session (do not modify: deepcopy it)."""
    if overrides not in _composed:
        _composed[overrides] = compose_config(*overrides)
    return _composed[overrides]
