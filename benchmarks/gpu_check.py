"""The device check, in one command for whoever has a GPU for a few minutes:
``scripts/gpu_check.sh OUTDIR`` (``python -m benchmarks.gpu_check OUTDIR`` from the repository
root). About 8 minutes on one GPU:

1. the tests marked ``gpu`` (tests/engine/test_gpu.py): the Triton kernels against the PyTorch CUDA path,
   every rule, float32 and float64, the fused and the per-layer backward, stacked trials and the
   training early stop; training steps that never make the host wait for the device;
2. a short ``antlr-train device=cuda`` on each task: matching, MNIST and N-MNIST (their data from
   ``$ANTLR_EXP_DATA``);
3. the bench rows (``python -m benchmarks.bench --device cuda``): the MNIST and N-MNIST training
   steps and the open-neuromorphic shape (Linear + LIF, 4096 neurons, batch 16, T=500, forward +
   backward), for Triton with the fused backward, Triton per layer, the PyTorch CUDA path, and
   snntorch and SpikingJelly where installed.

Everything goes to OUTDIR: ``gpu_check.json``, ``gpu_check.md`` (the tables), the tests' JUnit
XML, the training runs' folders and each part's output. The exit status is 1 where a test or a
run failed, else 0.

Without CUDA it runs its dry-run parts and says what it skipped: the gpu tests are collected
(and skip), the training command runs 2 steps of the matching task on CPU, and the bench rows
run once on a tiny shape on CPU (the Triton rows in Triton's interpreter).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: a training run per task on the GPU: steps, and the data limits that keep it short
TRAIN_RUNS = {
    "matching": ["trainer.max_steps=300", "trainer.val_every_n_steps=300"],
    "mnist": [
        "data.limit_train=4000",
        "data.limit_test=1000",
        "trainer.max_steps=500",
        "trainer.val_every_n_steps=250",
    ],
    "nmnist": [
        "data.limit_train=1000",
        "data.limit_test=100",
        "trainer.max_steps=200",
        "trainer.val_every_n_steps=100",
    ],
}
#: seconds each part may take on the GPU (together under 8 minutes)
TIMEOUTS = {"tests": 120, "train": 75, "bench": 135}
#: seconds each part of the dry run may take (a busy CPU; the C++ kernels may be built first)
DRY_RUN_TIMEOUT = 600
BENCH_ROWS = ("triton", "triton_per_layer", "pytorch", "snntorch", "spikingjelly")


def _timeout(part: str, cuda: bool) -> float:
    return TIMEOUTS[part] if cuda else DRY_RUN_TIMEOUT


def _run(command: list, log: Path, timeout: float, env=None) -> dict:
    """Run ``command`` from the repository root, its output into ``log``: status, seconds, exit code."""
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout
        )
        output, code = proc.stdout, proc.returncode
    except subprocess.TimeoutExpired as exc:
        output = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        code = None
    log.write_text(output)
    seconds = round(time.perf_counter() - started, 1)
    if code is None:
        return {"status": "failed", "detail": f"timed out after {timeout} s (see {log.name})", "seconds": seconds}
    status = "passed" if code == 0 else "failed"
    return {"status": status, "exit_code": code, "seconds": seconds, "log": log.name}


def run_tests(out: Path, cuda: bool) -> dict:
    """The tests marked gpu; without CUDA they are collected and skip."""
    xml = out / "gpu_tests.xml"
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "tests/engine/test_gpu.py", "-q", "-p", "no:cacheprovider"]
    result = _run(command + [f"--junitxml={xml}"], out / "gpu_tests.log", _timeout("tests", cuda))
    if xml.is_file():
        suite = ET.parse(xml).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
        result.update(counts)
        if counts["failures"] or counts["errors"]:
            result["status"] = "failed"
    if not cuda and result["status"] == "passed":
        result.update(status="skipped", detail="no CUDA device: the tests were collected and skipped")
    return result


def _data_folder(task: str) -> Path:
    return Path(os.environ.get("ANTLR_EXP_DATA") or REPO / "data") / task


def _summary_facts(folder: Path) -> dict:
    summary_file = folder / "summary.json"
    if not summary_file.is_file():
        return {}
    summary = json.loads(summary_file.read_text())
    facts = {key: summary.get(key) for key in ("steps", "train_time_s", "test_accuracy", "test_loss", "kernels")}
    if facts.get("steps") and facts.get("train_time_s"):
        facts["steps_per_s"] = round(facts["steps"] / facts["train_time_s"], 1)
    return facts


def run_training(out: Path, cuda: bool) -> dict:
    """A short antlr-train per task on the GPU; without one, 2 steps of the matching task on CPU."""
    antlr_train = Path(sys.executable).parent / "antlr-train"
    results = {}
    for task, overrides in TRAIN_RUNS.items():
        if not cuda and task != "matching":
            results[task] = {"status": "skipped", "detail": "needs CUDA (the dry run trains the matching task only)"}
            continue
        if task != "matching" and not _data_folder(task).is_dir():
            results[task] = {"status": "skipped", "detail": f"no data in {_data_folder(task)} (set ANTLR_EXP_DATA)"}
            continue
        folder = out / "train" / task
        steps = overrides if cuda else ["trainer.max_steps=2", "trainer.val_every_n_steps=2"]
        command = [str(antlr_train), f"task={task}", f"device={'cuda' if cuda else 'cpu'}", *steps]
        command += ["trainer.progress_bar=false", f"hydra.run.dir={folder}"]
        result = _run(command, out / f"train_{task}.log", _timeout("train", cuda))
        result.update(_summary_facts(folder), command=" ".join(command[1:]))
        if not cuda:
            result["detail"] = "dry run on CPU: 2 steps"
        results[task] = result
    return results


def run_bench(out: Path, cuda: bool) -> dict:
    """The bench rows on the GPU; without one, once on the tiny shape on CPU (Triton interpreted)."""
    json_file = out / "bench.json"
    command = [sys.executable, "-m", "benchmarks.bench", "--json", str(json_file)]
    env = dict(os.environ)
    if cuda:
        command += ["--device", "cuda", "--shapes", "mnist", "nmnist", "obench", "--iters", "10", "--max-seconds", "15"]
    else:
        command += ["--compare-paths", "--shapes", "tiny", "--iters", "1"]
        env["TRITON_INTERPRET"] = "1"
    result = _run(command, out / "bench.log", _timeout("bench", cuda), env=env)
    if json_file.is_file():
        payload = json.loads(json_file.read_text())
        result.update(device=payload.get("device"), shapes=payload.get("shapes"), rows=payload.get("results"))
    if not cuda:
        result["detail"] = "dry run on CPU: the tiny shape, once (not a timing)"
    return result


def _environment(cuda: bool) -> dict:
    import torch

    facts = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name() if cuda else "none (CPU only: dry run)",
    }
    try:
        import triton

        facts["triton"] = triton.__version__
    except ImportError:
        facts["triton"] = None
    return facts


def markdown(report: dict) -> str:
    """The report's tables."""
    env, tests = report["environment"], report["tests"]
    lines = [f"# GPU check, {env['date']}", "", f"Device: {env['device']}; torch {env['torch']} (CUDA {env['cuda']}), "]
    lines[-1] += f"triton {env['triton']}."
    lines += ["", "## Tests marked gpu", ""]
    counts = ", ".join(f"{tests.get(k, 0)} {k}" for k in ("tests", "failures", "errors", "skipped"))
    lines.append(f"{tests['status']}: {counts} ({tests.get('seconds', '-')} s){_detail(tests)}")
    lines += ["", "## Training runs", "", "| task | status | steps | steps/s | test accuracy | kernels | wall s |"]
    lines.append("|---|---|---|---|---|---|---|")
    for task, r in report["training"].items():
        cells = [r.get(k, "-") for k in ("steps", "steps_per_s", "test_accuracy", "kernels", "seconds")]
        lines.append(f"| {task} | {r['status']}{_detail(r)} | " + " | ".join(str(c) for c in cells) + " |")
    bench = report["bench"]
    lines += ["", "## Bench: ms per step (median), fused Triton = 1", "", f"{bench['status']}{_detail(bench)}", ""]
    lines += ["| shape | " + " | ".join(BENCH_ROWS) + " |", "|---" * (len(BENCH_ROWS) + 1) + "|"]
    for shape, rows in (bench.get("rows") or {}).items():
        reference = (rows.get("triton") or {}).get("ms_per_iter")
        cells = []
        for row in BENCH_ROWS:
            r = rows.get(row, {})
            if "ms_per_iter" in r:
                ratio = f" ({r['ms_per_iter'] / reference:.1f}x)" if reference else ""
                cells.append(f"{r['ms_per_iter']:.2f}{ratio}")
            else:
                cells.append(f"skipped: {r.get('skipped', 'not run')}")
        lines.append(f"| {shape} | " + " | ".join(cells) + " |")
    skipped = report["skipped"]
    lines += ["", "## Skipped", ""] + ([f"- {line}" for line in skipped] or ["- nothing"])
    return "\n".join(lines) + "\n"


def _detail(result: dict) -> str:
    return f" ({result['detail']})" if result.get("detail") else ""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/gpu_check.sh", description=__doc__)
    parser.add_argument("outdir", help="folder for the report, the logs and the runs (made if missing)")
    args = parser.parse_args(argv)
    import torch

    out = Path(args.outdir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    cuda = torch.cuda.is_available()
    if not cuda:
        print("gpu_check: no CUDA device here: a dry run (tests collected, 2 CPU steps, the tiny bench shape)")
    report = {"environment": _environment(cuda)}
    for name, part in (("tests", run_tests), ("training", run_training), ("bench", run_bench)):
        print(f"gpu_check: {name} ...", flush=True)
        report[name] = part(out, cuda)
    parts = [("tests", report["tests"]), ("bench", report["bench"])]
    parts += [(f"training {task}", r) for task, r in report["training"].items()]
    report["skipped"] = [f"{name}: {r.get('detail', '')}" for name, r in parts if r["status"] == "skipped"]
    if not cuda:
        report["skipped"].append("every timing: the bench ran once on the tiny CPU shape, which times nothing")
    failed = [name for name, r in parts if r["status"] == "failed"]
    report["failed"] = failed
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
    (out / "gpu_check.md").write_text(markdown(report))
    print(markdown(report))
    for line in report["skipped"]:
        print(f"gpu_check: skipped {line}")
    if failed:
        print(f"gpu_check: FAILED: {', '.join(failed)} (logs in {out})", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
