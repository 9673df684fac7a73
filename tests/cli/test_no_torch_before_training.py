"""antlr-train imports torch (seconds of a command's start) only once a job is to train: its
``--help`` and Hydra's other printing flags, and the one-line errors of a command line it cannot
read, come without it. Each command runs as antlr-train's ``main`` in a process of its own, which
then says whether torch was loaded."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers.runs import cli_env

pytestmark = pytest.mark.slow  # the command, in processes of its own

#: antlr-train's main with ARGV; then the exit status and whether any torch module was loaded
WRAPPER = """
import json, sys
from antlr_exp.cli.train import main

sys.argv = ["antlr-train", *sys.argv[1:]]
try:
    main()
    code = 0
except SystemExit as stop:
    code = stop.code
print(json.dumps({"code": code, "torch": any(m.split(".")[0] == "torch" for m in sys.modules)}))
"""


def antlr_train(tmp_path, *args: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", WRAPPER, *args], cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=120
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "args, code",
    [
        (["--help"], 0),
        (["--cfg", "job"], 0),
        (["method=timin"], 2),  # a group option that does not exist
        (["trainer.max_stepz=3"], 2),  # a key that does not exist
        (["-m", "seed=0,1", "trainer.max_steps=x"], 2),  # a value of the wrong type
    ],
)
def test_printing_flags_and_command_line_errors_load_no_torch(tmp_path, args, code):
    assert antlr_train(tmp_path, *args) == {"code": code, "torch": False}


def test_a_run_does_load_torch(tmp_path):
    """The check above can fail: a command that trains (here a one-step run) does import torch."""
    args = [
        "task.hidden_sizes=[4]",
        "trainer.max_steps=1",
        "trainer.progress_bar=false",
        f"hydra.run.dir={tmp_path / 'r'}",
    ]
    assert antlr_train(tmp_path, *args) == {"code": 0, "torch": True}
