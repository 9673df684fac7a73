"""antlr-report loads no torch: reading a sweep's folders needs only the saved configs, their
resolvers and the summaries (the report runs where torch is slow to import, or absent)."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

import pytest
from helpers.runs import cli_env, compose_config, tiny_overrides
from test_report import make_sweep, save_hydra_config

from antlr_exp.train import run

pytestmark = pytest.mark.slow  # end to end (see pyproject's markers)

#: Runs the report as ``antlr-report`` does, then prints the torch modules it loaded.
WRAPPER = """
import json, sys
from {module} import main

code = main(sys.argv[1:])
print(json.dumps({{"code": code, "torch": sorted(m for m in sys.modules if m.split(".")[0] == "torch")}}))
"""


def _report(module: str, *args: str) -> tuple:
    result = subprocess.run(
        [sys.executable, "-c", WRAPPER.format(module=module), *args],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    *table, loaded = result.stdout.strip().splitlines()
    return "\n".join(table), json.loads(loaded)


def test_antlr_report_on_a_real_sweep_imports_no_torch(data_roots, tmp_path):
    sweep = tmp_path / "sweep"
    make_sweep(sweep, ["seed=0,1"])
    for seed in (0, 1):
        cfg = compose_config(*tiny_overrides("matching", data_roots), f"seed={seed}")
        run(cfg, sweep / str(seed))
        save_hydra_config(cfg, sweep / str(seed))
    # the saved configs use the resolvers the report must register (data.root is ${env_or:...})
    assert "${env_or:" in (sweep / "0" / ".hydra" / "config.yaml").read_text()
    losses = [json.loads((sweep / str(s) / "summary.json").read_text())["test_loss"] for s in (0, 1)]

    for module in ("antlr_exp.results.report", "antlr_exp.report"):  # the new home and the old name
        table, loaded = _report(module, str(sweep), "--format", "json", "--metrics", "test_loss")
        [row] = json.loads(table)
        assert row["n"] == 2 and row["test_loss_mean"] == statistics.mean(losses)
        assert loaded == {"code": 0, "torch": []}


def test_the_config_package_and_its_resolvers_import_no_torch():
    code = (
        "import sys, antlr_exp, antlr_exp.config, antlr_exp.config.resolvers, antlr_exp.results.layout; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))"
    )
    result = subprocess.run([sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
