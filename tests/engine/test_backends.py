"""The one kernel-selection point: the ``kernels`` config key (default ``$ANTLR_EXP_KERNELS``,
then auto) picks the backend, the run's summary and first log line name it, a fallback to
another backend is logged, and no module outside engine/backends reads the variable."""

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.kernel_paths import require_cpp_kernels
from helpers.runs import ANTLR_TRAIN, cli_env, compose_config, tiny_overrides

from antlr_exp.config import validate
from antlr_exp.engine import backends
from antlr_exp.engine.backends import cpp
from antlr_exp.engine.backends.cpp import CppBackend
from antlr_exp.engine.backends.python import PythonBackend
from antlr_exp.errors import ConfigError
from antlr_exp.training.run import run

SRC = Path(__file__).resolve().parents[2] / "src"
FAILED_BUILD = {"tried": True, "module": None, "error": "RuntimeError: simulated build failure"}

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]  # conftest: the runs are tiny


@pytest.fixture
def backend_calls(monkeypatch):
    """The names of the backends whose ``run_layer`` ran (counted on the classes themselves)."""
    calls = []
    for cls in (CppBackend, PythonBackend):
        original = cls.run_layer

        def spy(self, *args, _original=original, **kwargs):
            calls.append(self.name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "run_layer", spy)
    return calls


@pytest.fixture
def fresh_selection(monkeypatch):
    """An empty cache of selected backends, so that a changed build state is seen."""
    monkeypatch.setattr(backends, "_selected", {})


def run_tiny(tmp_path, data_roots, caplog, *overrides):
    cfg = compose_config(*tiny_overrides("matching", data_roots), *overrides)
    with caplog.at_level(logging.INFO, logger="antlr_exp"):
        summary = run(cfg, tmp_path)
    first = next(r.getMessage() for r in caplog.records if r.name.startswith("antlr_exp.train"))
    return summary, first


@pytest.mark.parametrize("kernels", ["python", "cpp"])
def test_the_config_key_selects_the_backend_and_the_run_records_it(
    kernels, tmp_path, data_roots, caplog, backend_calls, monkeypatch
):
    if kernels == "cpp":
        require_cpp_kernels()
    other = {"python": "cpp", "cpp": "python"}[kernels]
    monkeypatch.setenv("ANTLR_EXP_KERNELS", other)  # the key wins over the variable
    summary, first = run_tiny(tmp_path, data_roots, caplog, f"kernels={kernels}")
    assert set(backend_calls) == {kernels}, "every layer ran on the chosen backend"
    assert summary["kernels"] == kernels
    assert json.loads((tmp_path / "summary.json").read_text())["kernels"] == kernels
    assert f"{kernels} kernels" in first, first


@pytest.mark.parametrize("variable", ["python", "cpp"])
def test_the_variable_is_the_default(variable, tmp_path, data_roots, caplog, backend_calls, monkeypatch):
    if variable == "cpp":
        require_cpp_kernels()
    monkeypatch.setenv("ANTLR_EXP_KERNELS", variable)
    summary, first = run_tiny(tmp_path, data_roots, caplog)  # kernels: null, the default
    assert set(backend_calls) == {variable}
    assert summary["kernels"] == variable and f"{variable} kernels" in first


def test_auto_without_a_cpp_build_falls_back_to_python_and_says_so(
    tmp_path, data_roots, caplog, backend_calls, monkeypatch, fresh_selection
):
    for key, value in FAILED_BUILD.items():
        monkeypatch.setitem(cpp._build_state, key, value)
    monkeypatch.delenv("ANTLR_EXP_KERNELS", raising=False)
    summary, _ = run_tiny(tmp_path, data_roots, caplog)
    assert set(backend_calls) == {"python"} and summary["kernels"] == "python"
    warnings = [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "antlr_exp.engine.backends"
    ]
    assert warnings == [
        "kernels=auto: the C++ kernels are unavailable (RuntimeError: simulated build failure); "
        "using the python backend (plain PyTorch, slower)"
    ]


def test_every_fallback_is_logged_once_and_a_demanded_backend_fails_loudly(caplog, monkeypatch, fresh_selection):
    with caplog.at_level(logging.WARNING, logger="antlr_exp.engine.backends"):
        # the C++ kernels run on CPU tensors only (select looks at the device's type, not at a GPU)
        assert backends.select("cuda", "cpp").name == "python"
        assert backends.select("cuda:1", "cpp").name == "python"  # the same choice, not logged again
    assert [r.getMessage() for r in caplog.records] == [
        "kernels=cpp: the C++ kernels run on CPU tensors only, and these are on cuda; using the python backend "
        "(plain PyTorch, slower)"
    ]
    for key, value in FAILED_BUILD.items():
        monkeypatch.setitem(cpp._build_state, key, value)
    with pytest.raises(RuntimeError, match=r"kernels=cpp but the C\+\+ kernels did not build: RuntimeError: simulated"):
        backends.select("cpu", "cpp")
    assert backends.select("cpu", "python").name == "python"


def test_backends_declare_what_they_can_do():
    assert backends.select("cpu", "python").capabilities.runs_on("cuda")
    assert not backends.select("cpu", "python").capabilities.has_fused
    with pytest.raises(NotImplementedError, match="the python backend has no fused backward"):
        backends.select("cpu", "python").fused_adjoint(None, None, False, False)
    require_cpp_kernels()
    chosen = backends.select("cpu", "cpp")
    assert chosen.capabilities.has_fused and chosen.capabilities.has_events
    assert not chosen.capabilities.runs_on("cuda")
    assert backends.select("cpu") is backends.select("cpu"), "made once and cached"


def test_a_bad_setting_is_one_line_naming_it(monkeypatch, data_roots):
    with pytest.raises(ConfigError, match=r"^kernels='gpu': accepted are auto, cpp, triton, python$"):
        validate(compose_config(*tiny_overrides("matching", data_roots), "kernels=gpu"))
    monkeypatch.setenv("ANTLR_EXP_KERNELS", "fast")
    with pytest.raises(ConfigError, match=r"^ANTLR_EXP_KERNELS='fast': accepted are auto, cpp, triton, python$"):
        validate(compose_config(*tiny_overrides("matching", data_roots)))


def test_the_triton_backend_by_the_config_key(tmp_path):
    """kernels=triton in a run of its own (Triton's interpreter runs its kernels on CPU tensors)."""
    pytest.importorskip("triton", reason="triton is not installed")
    env = dict(cli_env(), TRITON_INTERPRET="1")
    args = [*tiny_overrides("matching", {}), "kernels=triton", f"hydra.run.dir={tmp_path}"]
    proc = subprocess.run([str(ANTLR_TRAIN), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "summary.json").read_text())["kernels"] == "triton"
    log = (tmp_path / "antlr-train.log").read_text().splitlines()
    assert "triton kernels" in log[0], log[:2]


def test_the_public_check_builds_and_reports(capsys, monkeypatch):
    """What .ci/run calls: one line, and with strict an exit status of 1 where the build failed."""
    require_cpp_kernels()
    assert backends.check(strict=True) == 0
    assert capsys.readouterr().out == "C++ kernels: built\n"
    for key, value in FAILED_BUILD.items():
        monkeypatch.setitem(cpp._build_state, key, value)
    assert backends.check(strict=False) == 0 and backends.check(strict=True) == 1
    assert capsys.readouterr().out.splitlines()[0] == (
        "C++ kernels: unavailable (RuntimeError: simulated build failure), PyTorch path"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "antlr_exp.engine.backends", "--check", "--strict"],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert (proc.returncode, proc.stdout) == (0, "C++ kernels: built\n"), proc.stderr


def test_no_module_outside_the_backends_reads_the_variable():
    allowed = SRC / "antlr_exp" / "engine" / "backends"
    readers = [
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if "ANTLR_EXP_KERNELS" in path.read_text() and allowed not in path.parents
    ]
    assert readers == []
    assert "ANTLR_EXP_KERNELS" in (allowed / "__init__.py").read_text()  # the one reader is where it should be


def test_the_rules_load_without_torch():
    """engine.rules (RuleConfig, the rule/loss pairings) imports no torch, nor does the engine
    package until a name that needs it is read."""
    code = (
        "import sys; from antlr_exp.engine.rules import RuleConfig, check_rule_loss; "
        "check_rule_loss('antlr', 'latency'); print('torch' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "False", proc.stderr


@pytest.mark.parametrize(
    "old, new, names",
    [
        ("network", "engine.network", ["SpikingNetwork"]),
        (
            "network",
            "engine.spikes",
            ["NetworkOutput", "decide", "decision_steps", "first_spike_times", "spike_counts"],
        ),
        ("network", "engine.fused", ["FusedNetworkFunction", "HiddenTimes"]),
        ("layer", "engine.layer", ["SpikingLinear", "SpikingLinearFunction"]),
        ("layer", "engine.rules", ["RuleConfig", "RULES"]),
        ("layer", "engine.lif", ["LIFState", "dv_from_rule", "timing_kernel_sum", "initial_state"]),
        ("layer", "engine.synapses", ["SynapticInput", "synaptic_input", "weight_gradient"]),
        ("losses", "engine.losses", ["count_loss", "latency_loss", "spike_train_loss", "no_spike_weight_penalty"]),
        ("losses", "engine.rules", ["check_rule_loss", "LOSSES"]),
        ("neuron", "engine.neuron", ["NeuronParams", "eps_kernel", "eps_time_derivative"]),
        ("surrogate", "engine.surrogate", ["SURROGATES"]),
        ("reference", "engine.reference.per_step", ["reference_forward", "reference_surrogate"]),
        ("kernels", "engine.backends.base", ["SURROGATE_CODES"]),
    ],
)
def test_the_old_module_paths_are_kept_for_one_release(old, new, names):
    from importlib import import_module

    old_module, new_module = import_module(f"antlr_exp.{old}"), import_module(f"antlr_exp.{new}")
    assert "Kept for one release" in old_module.__doc__
    for name in names:
        assert getattr(old_module, name) is getattr(new_module, name), name


def test_the_old_kernel_functions_answer_as_before(monkeypatch):
    from antlr_exp import kernels

    monkeypatch.setenv("ANTLR_EXP_KERNELS", "python")
    assert kernels.kernel_mode() == "python" and kernels.cpp_kernels() is None
    require_cpp_kernels()
    monkeypatch.setenv("ANTLR_EXP_KERNELS", "auto")
    assert kernels.cpp_kernels() is cpp.load() and kernels.triton_kernels("cpu") is None
