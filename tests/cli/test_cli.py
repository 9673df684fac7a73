"""``antlr-train`` as users run it: subprocesses, real run folders, real kills."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import time

import pytest
import torch
from helpers.runs import ANTLR_TRAIN, REPO, cli_env, run_cli, tiny_overrides

from antlr_exp.training import checkpoint as ckpt

pytestmark = pytest.mark.slow  # end to end (see pyproject's markers)


def test_run_writes_the_run_folder(tmp_path):
    result = run_cli([*tiny_overrides("matching", {}), f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run = tmp_path / "run"
    summary = json.loads((run / "summary.json").read_text())
    for key in ("test_accuracy", "test_hidden_spikes_per_sample", "test_output_spikes_per_sample", "test_loss"):
        assert key in summary
    assert (run / ".hydra" / "config.yaml").is_file() and (run / "metrics.csv").is_file()
    assert (run / "checkpoints" / "last.pt").is_file()


def test_outputs_go_under_outputs_of_the_working_directory(tmp_path):
    result = run_cli(tiny_overrides("matching", {}), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [summary] = (tmp_path / "outputs" / "matching" / "antlr").glob("*/summary.json")
    assert json.loads(summary.read_text())["steps"] == 2


@pytest.mark.parametrize(
    "arguments, words",
    [
        (["method=foo"], ["method=foo", "activation, activation_rnn, antlr, timing"]),
        (["method=timing", "loss=count"], ["method=timing", "loss=count", "activation, activation_rnn, antlr"]),
        (["task=mnist", "data.root=/nonexistent/mnist"], ["MNIST not found", "/nonexistent/mnist"]),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(arguments, words, tmp_path):
    result = run_cli([*arguments, f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("antlr-train: error: ")
    for word in words:
        assert word in lines[0]
    assert not (tmp_path / "run" / "metrics.csv").exists()


@pytest.mark.parametrize(
    "arguments, words",
    [
        (["trainer.max_step=3"], ["trainer.max_step=3", "'max_step'", "max_epochs, max_steps, batch_size"]),
        (["method.lamda_act=2"], ["method.lamda_act=2", "'lamda_act'", "name, lambda_act, lambda_tim"]),
        (["-m", "seed=0,1", "task.hidden_sizez=[3]"], ["task.hidden_sizez=[3]", "num_steps, hidden_sizes, options"]),
        (["trainer.max_steps=ten"], ["trainer.max_steps=ten", "Integer"]),
    ],
)
def test_misspelt_key_or_mistyped_value_is_one_line_with_exit_code_2(arguments, words, tmp_path):
    result = run_cli(
        [*arguments, f"hydra.run.dir={tmp_path / 'run'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=tmp_path
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("antlr-train: error: "), result.stderr
    for word in words:
        assert word in lines[0]
    assert not (tmp_path / "run").exists() and not (tmp_path / "sweep").exists()


def _rows(path):
    with open(path) as stream:
        return [{k: v for k, v in row.items() if k != "time_s"} for row in csv.DictReader(stream)]


def test_killed_run_resumes_to_the_uninterrupted_result(data_roots, tmp_path):
    # 24 MNIST samples in batches of 4: 6 batches per epoch in a shuffled order, 10 epochs;
    # checkpoints every 5 steps, so a kill falls in the middle of an epoch and a resumed run
    # that lost its place in the epoch or the shuffling state trains on other batches
    overrides = [
        *tiny_overrides("mnist", data_roots),
        "data.limit_train=24",
        "trainer.batch_size=4",
        "trainer.max_steps=null",
        "trainer.max_epochs=10",
        "trainer.val_every_n_steps=5",
    ]
    full = tmp_path / "full"
    assert run_cli([*overrides, f"hydra.run.dir={full}"], cwd=tmp_path).returncode == 0

    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [str(ANTLR_TRAIN), *overrides, f"hydra.run.dir={killed}"],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    last = killed / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 120
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    done_before = ckpt.load(last)["state"]["step"]
    assert 0 < done_before < 60 and not (killed / "summary.json").exists()
    assert done_before % 6 != 0, "the kill should fall in the middle of an epoch"

    result = run_cli([*overrides, f"hydra.run.dir={killed}", "resume=true"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert _rows(killed / "metrics.csv") == _rows(full / "metrics.csv")
    a, b = (ckpt.load(d / "checkpoints" / "best.pt")["model"] for d in (full, killed))
    assert all(torch.equal(a[k], b[k]) for k in a)
    summaries = [json.loads((d / "summary.json").read_text()) for d in (full, killed)]
    for summary in summaries:  # what differs between two runs by its nature: times, folder, command
        for key in ("train_time_s", "started_at", "ended_at", "run_dir", "overrides"):
            summary.pop(key)
    assert summaries[0] == summaries[1]


def wandb_records(path):
    """The records of a wandb run file (a LevelDB-style log: 7-byte file header, 32 KiB blocks,
    7-byte record headers: checksum, length, kind 1 full / 2 first / 3 middle / 4 last)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    offset, block, pending = 7, 32768, b""
    while offset + 7 <= len(data):
        left = block - offset % block
        if left < 7:  # too little room for a header: the block is padded
            offset += left
            continue
        length, kind = int.from_bytes(data[offset + 4 : offset + 6], "little"), data[offset + 6]
        payload = data[offset + 7 : offset + 7 + length]
        offset += 7 + length
        if kind == 0:
            break
        pending += payload
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def test_wandb_offline_one_run_per_multirun_job(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(
        ["-m", "logger=wandb", "method=activation,antlr", *tiny_overrides("matching", {}), f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    run_ids = set()
    for job, method in (("0", "activation"), ("1", "antlr")):
        [record] = (sweep / job / "wandb").glob("offline-run-*/run-*.wandb")
        run_ids.add(record.stem)
        content = record.read_bytes()  # the run's records; keys and config values are stored as text
        assert f'"{method}"'.encode() in content  # the config
        # the run's group is the sweep folder; metrics and summary go under split/name
        records = list(wandb_records(record))
        assert [r.run.run_group for r in records if r.WhichOneof("record_type") == "run"] == [str(sweep)]
        logged = {
            i.key or "/".join(i.nested_key)
            for r in records
            if r.WhichOneof("record_type") == "history"
            for i in r.history.item
        }
        summarised = {
            i.key or "/".join(i.nested_key)
            for r in records
            if r.WhichOneof("record_type") == "summary"
            for i in r.summary.update
        }
        assert {"train/loss", "val/loss", "val/output_spikes_per_sample", "lr", "epoch"} <= logged
        assert {"test/loss", "test/output_spikes_per_sample"} <= summarised
        assert not any(k.startswith(("train_", "val_", "test_")) for k in logged | summarised)
        assert (b'"lambda_act"' in content) == (method == "antlr")
        log = (record.parent / "logs" / "debug.log").read_text()
        assert "got exitcode: 0" in log
    assert len(run_ids) == 2


def test_version_is_antlr_exps_from_its_metadata(tmp_path):
    """--version names antlr-exp's version as pyproject.toml gives it (not Hydra's), and the
    package's __version__ is that same one."""
    import tomllib

    import antlr_exp

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    result = run_cli(["--version"], tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == f"antlr-train (antlr-exp) {declared}"
    assert "Hydra" not in result.stdout and antlr_exp.__version__ == declared
    assert (REPO / "src" / "antlr_exp" / "py.typed").is_file()
