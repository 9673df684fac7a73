"""A training step never makes the host wait for the device (Trainer._train_step).

On a GPU, reading a tensor's value on the host (``.item()``, ``.cpu()``, ``.tolist()``,
``bool(t)`` as in a Python ``if``, ``int(t)``, ``float(t)``, ``nonzero``) waits until the device
has computed it, and so does a tensor made from host data (``torch.tensor``): the queue of
kernels the host is ahead by drains at every such read. Without a GPU the same code runs on CPU
tensors, so these tests count those calls while steps of the CUDA code path run (the Triton
kernels, in Triton's interpreter): every call made on behalf of the training code (a stack that
holds a frame of the antlr_exp package) counts, except the interpreter's own (a frame of the
triton package: on a GPU the kernels run there and read nothing).

The budget is 0 reads per step after the first two (the first makes the kernels' constant
tensors, once per run). The training early stop (``trainer.train_early_stop``, on by default
for the latency loss) decides on the host how many steps to simulate, from the spikes: while a
stop is possible it reads once per chunk of 10 steps; while not, once per step, a read of the
last step's decision that waits for that step's forward only (DeviceFlag.get), not for the
kernels queued after it.
"""

import os
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from helpers.runs import compose_config, tiny_overrides

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
triton = pytest.importorskip("triton", reason="triton is not installed (torch's Linux wheels bring it)")

import antlr_exp  # noqa: E402
from antlr_exp.training.build import load_data, resolve_device  # noqa: E402
from antlr_exp.training.trainer import Trainer  # noqa: E402

tk = pytest.importorskip("antlr_exp.engine.backends.triton", reason="triton does not import")
if not tk.INTERPRETED:
    pytest.skip("triton was imported without TRITON_INTERPRET=1", allow_module_level=True)

pytestmark = pytest.mark.slow  # training steps with the kernels in Triton's interpreter (seconds each)
PACKAGE = str(Path(antlr_exp.__file__).parent)
TRITON = str(Path(triton.__file__).parent)
#: Tensor methods that read values on the host (or wait for them)
READS = ("item", "cpu", "tolist", "numpy", "nonzero", "__bool__", "__int__", "__float__", "__index__")


def _on_behalf_of_the_package() -> str:
    """Where in the package the current call comes from ('' when not from it, or from Triton's
    interpreter running a kernel)."""
    frame = sys._getframe(2)
    found = ""
    while frame is not None:
        path = frame.f_code.co_filename
        if path.startswith(TRITON):
            return ""
        if not found and path.startswith(PACKAGE):
            found = f"{Path(path).name}:{frame.f_lineno} {frame.f_code.co_name}"
        frame = frame.f_back
    return found


@contextmanager
def host_reads():
    """Count the reads made on behalf of the package: yields the list of their places."""
    calls = []
    originals = {name: getattr(torch.Tensor, name) for name in READS}
    made = {"tensor": torch.tensor, "nonzero": torch.nonzero}

    def counted(name, original):
        def wrapper(*args, **kwargs):
            where = _on_behalf_of_the_package()
            if where:
                calls.append(f"{name} at {where}")
            return original(*args, **kwargs)

        return wrapper

    try:
        for name, original in originals.items():
            setattr(torch.Tensor, name, counted(f"Tensor.{name}", original))
        for name, original in made.items():
            setattr(torch, name, counted(f"torch.{name}", original))
        yield calls
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)
        for name, original in made.items():
            setattr(torch, name, original)


def _trainer(tmp_path, monkeypatch, *overrides, task="matching", data_roots=None):
    monkeypatch.setenv("ANTLR_EXP_KERNELS", "triton")
    cfg = compose_config(*tiny_overrides(task, data_roots or {}), "kernels=triton", *overrides)
    torch.manual_seed(0)
    data = load_data(cfg)
    trainer = Trainer(cfg, tmp_path, data, resolve_device("cpu"))
    assert trainer.net.backend().name == "triton"
    return trainer, data


def _reads_per_step(trainer, batches, warm=2):
    """The host reads of each step after ``warm`` steps (whose first makes the constants)."""
    for inputs, targets in batches[:warm]:
        trainer._train_step(inputs, targets)
    per_step = []
    for inputs, targets in batches[warm:]:
        with host_reads() as calls:
            trainer._train_step(inputs, targets)
        per_step.append(calls)
    return per_step


def _batches(data, count, size):
    items = [data.train[i % len(data.train)] for i in range(count * size)]
    return [tuple(torch.stack(x) for x in zip(*items[i * size : (i + 1) * size])) for i in range(count)]


@pytest.mark.parametrize("method", ["antlr", "timing", "activation_rnn"])
def test_a_labelled_training_step_reads_nothing_on_the_host(method, data_roots, tmp_path, monkeypatch):
    """MNIST (labels): the latency loss with the no-spike count term (antlr; the fused backward),
    the timing rule with its no-spike penalty, activation_rnn with the count loss (per-layer)."""
    trainer, data = _trainer(
        tmp_path, monkeypatch, f"method={method}", "trainer.train_early_stop=false", task="mnist", data_roots=data_roots
    )
    per_step = _reads_per_step(trainer, _batches(data, 4, 8))
    assert per_step == [[], []]


def test_a_stacked_spike_train_step_reads_nothing_on_the_host(tmp_path, monkeypatch):
    """The matching task (spike-train loss), three stacked trials, gradient clipping by norm."""
    trainer, data = _trainer(tmp_path, monkeypatch, "trials=3", "optimizer.grad_clip_norm=1.0")
    batch = next(iter(trainer.batches.rest_of_epoch(trainer.states, trainer.shuffles)))
    per_step = _reads_per_step(trainer, [batch] * 4)
    assert per_step == [[], []]


def test_the_count_sees_a_read(data_roots, tmp_path, monkeypatch):
    """The counter itself: a step that checks its loss on the host (as the trainer once did) is
    counted, and so is a tensor made from host data."""
    trainer, data = _trainer(
        tmp_path, monkeypatch, "trainer.train_early_stop=false", task="mnist", data_roots=data_roots
    )
    original = trainer.objective.trial_losses

    def checked(out, targets):
        losses = original(out, targets)
        if not bool(torch.isfinite(losses).all()):
            raise AssertionError
        losses + torch.tensor(0.0)
        return losses

    monkeypatch.setattr(trainer.objective, "trial_losses", checked)
    per_step = _reads_per_step(trainer, _batches(data, 3, 8))
    assert len(per_step[0]) == 2 and "Tensor.__bool__" in per_step[0][0] and "torch.tensor" in per_step[0][1]


@pytest.mark.parametrize("possible", [False, True])
def test_the_training_early_stop_reads_its_decisions_only(possible, data_roots, tmp_path, monkeypatch):
    """trainer.train_early_stop=true (the default for the latency loss): a step that cannot stop
    reads the last step's decision once; a step that may stop, once per chunk it simulates."""
    trainer, data = _trainer(tmp_path, monkeypatch, "method=antlr", task="mnist", data_roots=data_roots)
    assert trainer.early_stop
    batches = _batches(data, 3, 8)
    for inputs, targets in batches[:2]:
        trainer._train_step(inputs, targets)
    trainer.stop_possible = possible
    with host_reads() as calls:
        trainer._train_step(*batches[2])
    simulated = trainer.simulated_steps[-1]
    if possible:
        assert len(calls) == -(-simulated // 10) and all("_chunks_until_all_fired" in c for c in calls), calls
    else:
        assert simulated == trainer.net.num_steps and calls == [], calls  # the decision is read by the next step
        with host_reads() as calls:
            trainer._stop_possible()
        assert len(calls) == 1 and "early_stop.py" in calls[0] and "get" in calls[0], calls
