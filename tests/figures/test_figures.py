"""The figure drivers (antlr_exp.figures: fig6, fig7, fig8, lambda_sweep, same_loss) end to end at
the tiny scale: each runs its sweep through ``antlr-train -m``, then the PNG and the markdown table
must appear with the expected series. ``antlr-figure`` names every figure, and the old
``scripts/<figure>.py`` commands still run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.runs import DATA_ROOT as DATA  # ($ANTLR_EXP_DATA, as antlr-train finds it)
from helpers.runs import REPO, cli_env

from antlr_exp.cli import figure as cli
from antlr_exp.figures import common, same_loss

pytestmark = pytest.mark.slow  # end to end (see pyproject's markers)

#: the old driver scripts, each now a shim over the package, and the figure each runs
SHIMS = {
    "fig5_landscape": "fig5",
    "fig6_matching": "fig6",
    "fig7_mnist": "fig7",
    "fig8_nmnist": "fig8",
    "same_loss": "same_loss",
    "lambda_sweep": "lambda_sweep",
}


def run_driver(name: str, tmp_path: Path, *overrides: str) -> Path:
    out = tmp_path / "figures"
    assert (
        cli.main(
            [
                name,
                "--scale",
                "tiny",
                "--out",
                str(out),
                "--sweep-root",
                str(tmp_path / "sweeps"),
                "--data",
                str(DATA),
                *overrides,
            ]
        )
        == 0
    )
    return out


def check_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def needs(task: str):
    return pytest.mark.skipif(not (DATA / task).is_dir(), reason=f"no {task} data at {DATA / task}")


def test_read_table_roundtrip(tmp_path):
    common.write_table(tmp_path / "t.md", ["a", "b"], [[1, "x ± 2"], [3, "-"]], "preface\n")
    assert common.read_table(tmp_path / "t.md") == [{"a": "1", "b": "x ± 2"}, {"a": "3", "b": "-"}]


def test_fig6_matching_and_resumed_after_a_stop_between_its_sweeps(tmp_path):
    out = run_driver("fig6_matching", tmp_path)
    check_png(out / "fig6_matching.png")
    rows = common.read_table(out / "fig6_matching.md")
    assert sorted((r["target spikes"], r["method"]) for r in rows) == sorted(
        (s, m) for s in ("1", "3") for m in ("activation", "timing", "antlr")
    )
    assert all(r["n"] == "1" and r["iterations"] == "4" for r in rows)
    assert all(float(r["loss of best checkpoint"]) > 0 for r in rows)
    # resume=true on a driver whose later sweep never started (a session stopped between them):
    # the finished sweep keeps its results, the missing one runs, the table has both
    sweeps = tmp_path / "sweeps"
    first, second = sorted(p for p in sweeps.iterdir() if p.is_dir())
    kept = {f: f.read_bytes() for f in first.rglob("summary.json")}
    assert kept
    shutil.rmtree(second)  # as if the session had stopped before the second sweep
    (tmp_path / "figures" / "fig6_matching.md").unlink()
    out = run_driver("fig6_matching", tmp_path, "resume=true")
    assert {f: f.read_bytes() for f in first.rglob("summary.json")} == kept  # not trained or tested again
    assert len(list(second.rglob("summary.json"))) == 3  # activation, timing, antlr
    rows = common.read_table(out / "fig6_matching.md")
    assert sorted((r["target spikes"], r["method"]) for r in rows) == sorted(
        (s, m) for s in ("1", "3") for m in ("activation", "timing", "antlr")
    )


@pytest.mark.parametrize(
    "name,task,settings",
    [
        ("fig7_mnist", "mnist", ("(a) latency MNIST", "(b) single spike")),
        ("fig8_nmnist", "nmnist", ("(a) N-MNIST", "(b) single spike")),
    ],
)
def test_accuracy_figures(tmp_path, name, task, settings):
    if not (DATA / task).is_dir():
        pytest.skip(f"no {task} data at {DATA / task}")
    out = run_driver(name, tmp_path)
    check_png(out / f"{name}.png")
    rows = common.read_table(out / f"{name}.md")
    assert sorted((r["setting"], r["method"]) for r in rows) == sorted(
        (s, m) for s in settings for m in ("activation", "timing", "antlr")
    )
    for r in rows:
        assert 0 <= float(r["test accuracy (%)"]) <= 100
        assert float(r["hidden spikes to decision"]) >= 0


@needs("mnist")
def test_lambda_sweep(tmp_path):
    out = run_driver("lambda_sweep", tmp_path)
    check_png(out / "lambda_sweep.png")
    rows = common.read_table(out / "lambda_sweep.md")
    # lambda_act swept at lambda_tim = 1, then lambda_tim at lambda_act = 1 (the shared point once)
    assert [(r["method"], float(r["method.lambda_act"]), float(r["method.lambda_tim"])) for r in rows] == [
        ("antlr", 0.1, 1.0),
        ("antlr", 1.0, 1.0),
        ("antlr", 1.0, 10.0),
    ]


@needs("mnist")
def test_same_loss(tmp_path):
    out = run_driver("same_loss", tmp_path)
    check_png(out / "same_loss.png")
    rows = common.read_table(out / "same_loss.md")
    rules = {
        "same_loss_mnist_spike_train1": ("activation", "timing", "antlr"),
        "same_loss_mnist_spike_train3": ("activation", "timing", "antlr"),
        "same_loss_mnist": ("activation", "antlr"),
    }
    assert [(r["setting"], r["method"]) for r in rows] == [
        (title, m) for preset, title in same_loss.PRESETS for m in rules[preset]
    ]
    # each setting ran its rules on the loss it names
    losses = {}
    for preset, _ in same_loss.PRESETS:
        for run in common.load_runs(tmp_path / "sweeps" / preset):
            config = run["config"]
            losses.setdefault(preset, set()).add(
                (config["method.name"], config["loss.name"], tuple(config.get("loss.label_steps") or ()))
            )
    assert losses == {
        "same_loss_mnist_spike_train1": {(m, "spike_train", (80,)) for m in rules["same_loss_mnist_spike_train1"]},
        "same_loss_mnist_spike_train3": {
            (m, "spike_train", (40, 60, 80)) for m in rules["same_loss_mnist_spike_train3"]
        },
        "same_loss_mnist": {(m, "count", ()) for m in rules["same_loss_mnist"]},
    }


def test_same_loss_chooses_the_target_step_on_validation_averaged_over_the_rules(tmp_path):
    """Hand-made choice sweep: step 40 is antlr's best and 80 the timing rule's, but 60 has the
    best mean over the three rules; the test accuracies (never to be looked at) favour 20."""
    import json

    from omegaconf import OmegaConf

    val = {20: (0.50, 0.10, 0.50), 40: (0.60, 0.10, 0.95), 60: (0.80, 0.40, 0.85), 80: (0.20, 0.50, 0.30)}
    job = 0
    for step, accuracies in val.items():
        for method, accuracy in zip(("activation", "timing", "antlr"), accuracies):
            folder = tmp_path / "sweeps" / "choose_step" / str(job)
            (folder / ".hydra").mkdir(parents=True)
            OmegaConf.save(
                {"method": {"name": method}, "loss": {"name": "spike_train", "label_steps": [step]}},
                folder / ".hydra" / "config.yaml",
            )
            (folder / "summary.json").write_text(
                json.dumps({"val_accuracy": accuracy, "test_accuracy": 1.0 if step == 20 else 0.0})
            )
            (folder / "metrics.csv").write_text("step\n1\n")
            job += 1
    args = same_loss.parse_args(["--no-run", "--out", str(tmp_path / "out"), "--sweep-root", str(tmp_path / "sweeps")])
    args.choose_scale = "tiny"
    assert same_loss.choose_step(args) == 60
    rows = common.read_table(tmp_path / "out" / "same_loss_target_step.md")
    assert [r[""] for r in rows] == ["", "", "chosen", ""]
    assert rows[2]["mean (%)"] == f"{100 * sum(val[60]) / 3:.2f}"
    # a missing rule at one step is an error, not a silent choice
    import shutil

    shutil.rmtree(tmp_path / "sweeps" / "choose_step" / "11")
    with pytest.raises(SystemExit, match="lacks runs"):
        same_loss.choose_step(args)


def test_the_tables_preface_names_the_scale_and_the_command_lines_overrides(tmp_path):
    args = common.parse_args(
        "t",
        "x",
        [
            "--out",
            str(tmp_path),
            "trials=4",
            "resume=true",
            "hydra/launcher=local",
            "data.root=/somewhere",
            "device=cpu",
        ],
    )
    assert common.overrides_text(args, ["trainer.max_epochs=1"]) == "trainer.max_epochs=1 trials=4"
    bare = common.parse_args("t", "x", ["--out", str(tmp_path)])
    assert common.overrides_text(bare, []) == "none"


def test_antlr_figure_lists_every_figure(capsys):
    assert cli.main(["--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == ["fig5", "fig6", "fig7", "fig8", "same_loss", "lambda_sweep"]
    for short, long_name in ((s, n) for n, s in SHIMS.items()):
        assert any(
            line.split()[0] == short and (long_name == short or f"(also: {long_name})" in line) for line in listed
        )
        # each figure runs a driver with its scales in config (tiny, quick and full at least)
        module = cli.driver(long_name)
        assert module.__name__ == f"antlr_exp.figures.{long_name}" and callable(module.main)
        assert {"tiny", "quick", "full"} <= set(common.load_scales(short)["scales"])


def test_antlr_figure_refuses_an_unknown_name_in_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["fig9", "--scale", "tiny"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "antlr-figure: error: figure 'fig9' is not one of fig5, fig6, fig7, fig8, same_loss, lambda_sweep "
        "(or fig5_landscape, fig6_matching, fig7_mnist, fig8_nmnist)"
    )


@pytest.mark.parametrize("script", sorted(SHIMS))
def test_old_driver_scripts_still_run(script):
    """``python scripts/<figure>.py --help``: the documented commands reach their figure's options."""
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / f"{script}.py"), "--help"],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith(f"usage: {script}.py") and "--scale" in result.stdout
    first_line = cli.driver(SHIMS[script]).__doc__.split("\n\n")[0].split("\n")[0]
    assert first_line[:40] in " ".join(result.stdout.split())


def test_a_scale_is_the_config_file_s(tmp_path, monkeypatch):
    """The overrides a scale runs with are those of ``scales/<figure>.yaml``, read when the figure runs."""
    ran = []
    monkeypatch.setattr(common.subprocess, "run", lambda cmd, **kw: ran.append(cmd))
    monkeypatch.setattr(common, "load_scales", lambda figure: {"scales": {"tiny": {"overrides": ["trials=7"]}}})
    monkeypatch.setattr(common, "aggregate", lambda *a, **k: [])
    monkeypatch.setattr(common.plot, "accuracy_vs_spikes_panels", lambda *a, **k: None)
    monkeypatch.setattr(common.plot, "save", lambda *a, **k: None)
    run_driver("fig7", tmp_path)
    assert len(ran) == 2 and all("trials=7" in cmd for cmd in ran)
    with pytest.raises(SystemExit):  # the file's scales are the only ones accepted
        cli.main(["fig7", "--scale", "quick"])
