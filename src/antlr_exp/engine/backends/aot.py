"""Ahead-of-time compilation of the Triton kernels for GPUs that this machine need not have.

:func:`launches` finds every specialization the code can launch from the launch sites themselves:
it calls each wrapper of :mod:`.triton` and :mod:`.triton_fused` on small CPU tensors, over every
combination of the arguments that decide a kernel's dtype and ``tl.constexpr`` flags, with
``triton._launch`` replaced by a recorder (no kernel runs). :func:`coverage_problems` then checks
that every kernel was launched and that each of its constexpr flags took every value it can
take, so that a new flag whose values the calls below do not reach fails the check instead of
going uncompiled. Since no kernel specializes on its arguments' values (``do_not_specialize``), a
kernel's dtype and flags are all that decides what Triton compiles at run time.

:func:`compile_launch` compiles one specialization with ``triton.compile`` for a target such as
``GPUTarget("cuda", 90, 32)`` (Triton's own pipeline, TTIR to PTX to a cubin, with the ``ptxas``
of Triton's wheel, the options and arguments of a real launch) and reads registers, spills and
stack from ``ptxas -v`` on the PTX (run as Triton runs it) and the shared memory from the
compiled kernel. Neither needs a GPU; neither says how fast a kernel runs.

    python -m antlr_exp.engine.backends.aot --check            # every specialization, sm_80 and sm_90
    python -m antlr_exp.engine.backends.aot --check --subset    # one of each flag value per kernel
    python -m antlr_exp.engine.backends.aot --table             # the markdown table of docs/performance.md

It needs the compiling Triton: run it without ``TRITON_INTERPRET`` set.
"""

from __future__ import annotations

import argparse
import datetime
import inspect
import itertools
import json
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .base import SURROGATE_CODES, FusedLayerInputs, RuleConstants

#: the GPUs compiled for: compute capabilities 8.0 (A100) and 9.0 (H100, H200)
CAPABILITIES = (80, 90)


@dataclass(frozen=True)
class Launch:
    """One specialization: the kernel, the dtype of its tensors, its constexpr flags (BLOCK aside)."""

    kernel: str
    dtype: str
    flags: tuple  # sorted (name, value) pairs

    def describe(self) -> str:
        return f"{self.kernel}[{self.dtype}; {', '.join(f'{k}={int(v)}' for k, v in self.flags)}]"


@dataclass
class Compiled:
    """What one compile of a :class:`Launch` for one GPU gave."""

    launch: Launch
    capability: int
    registers: int
    spill_stores: int
    spill_loads: int
    stack_bytes: int
    shared_bytes: int  # Triton's dynamic shared memory plus any static shared memory ptxas reports
    seconds: float
    fused_multiply_adds: int  # fma instructions in the PTX


def _modules():
    from . import triton as tk
    from . import triton_fused

    return tk, triton_fused


def kernels() -> dict:
    """Every Triton kernel of the backend by name (the ``*_kernel`` functions of its modules)."""
    found = {}
    for module in _modules():
        for name, value in vars(module).items():
            if name.endswith("_kernel") and hasattr(value, "fn"):
                found[name] = value
    return found


def constexpr_flags(kernel) -> list:
    """A kernel's ``tl.constexpr`` parameters but BLOCK (read from its signature, so that this
    works in Triton's interpreter too)."""
    parameters = inspect.signature(kernel.fn).parameters.items()
    return [name for name, p in parameters if "constexpr" in str(p.annotation) and name != "BLOCK"]


def _flag_values(name: str) -> set:
    """The values a constexpr flag can take: the surrogate codes for ``KIND``, else on and off."""
    return set(SURROGATE_CODES.values()) if name == "KIND" else {False, True}


def _tensor(dtype, *shape):
    return torch.ones(*shape, dtype=dtype)


def _calls(tk, triton_fused):
    """Every call of the wrappers that decides something about a kernel's specialization: each
    dtype, and each combination of the arguments the wrappers derive the flags from."""
    empty = {dtype: torch.empty(0, dtype=dtype) for dtype in (torch.float32, torch.float64)}
    T, B, N = 3, 2, 4
    for dtype in (torch.float32, torch.float64):
        x, none = _tensor(dtype, T, B * N), empty[dtype]
        state = [_tensor(dtype, B * N) for _ in range(4)]
        for single, keep in itertools.product((False, True), repeat=2):
            allowed = state[3] if single else none
            yield tk.lif_forward, (x, state[0], state[1], state[2], state[0], allowed, 0.9, 0.9, 1.0, 1.0, 1.0, keep, B)
        for gs, gt, act, tim, kind, single, want_h in itertools.product(
            (x, none), (x, none), (0.0, 1.0), (0.0, 1.0), SURROGATE_CODES.values(), (False, True), (False, True)
        ):
            yield tk.srm_adjoint, (x, x, gs, gt, 0.9, 0.9, 1.0, act, tim, 0.1, kind, 1.0, 1.0, single, 1.0, want_h)
        for gs, single in itertools.product((x, none), (False, True)):
            yield tk.rnn_adjoint, (x, x, x, x, gs, 0.9, 0.9, 1.0, single, 1.0)
        for case in itertools.product(
            (x, none), (x, none), ((), ("g",), ("h",), ("g", "h")), (1, 2), (0.0, 1.0), (0.0, 1.0)
        ):
            gs, gt, above, trials, act, tim = case
            for kind, single, want_h in itertools.product(SURROGATE_CODES.values(), (False, True), (False, True)):
                up = _tensor(dtype, T, B * trials * 3)
                inputs = FusedLayerInputs(
                    *(_tensor(dtype, T, B * trials * N),) * 2,
                    *(g if g.numel() == 0 else _tensor(dtype, T, B * trials * N) for g in (gs, gt)),
                    up if "g" in above else none,
                    up if "h" in above else none,
                    _tensor(dtype, *((trials,) if trials > 1 else ()), 3, N) if above else none,
                    *(torch.empty(0, dtype=torch.int64),) * 2,
                    none,
                    trials,
                    B,
                    5,
                )
                rule = RuleConstants(0.9, 0.9, 1.0, act, tim, 0.1, kind, 1.0, 1.0, single, 1.0)
                yield triton_fused.fused_adjoint, (inputs, rule, want_h)


def launches() -> dict:
    """Every specialization the wrappers launch: ``{Launch: (kernel, args, flags)}``, in the order
    first met (the arguments of one such launch, on CPU tensors)."""
    tk, triton_fused = _modules()
    recorded = {}

    def record(kernel, columns, *args, **flags):
        dtype = next(a.dtype for a in args if isinstance(a, torch.Tensor) and a.is_floating_point())
        key = Launch(kernel.fn.__name__, str(dtype).replace("torch.", ""), tuple(sorted(flags.items())))
        recorded.setdefault(key, (kernel, args, flags))

    original = tk._launch
    tk._launch = record
    try:
        for wrapper, args in _calls(tk, triton_fused):
            wrapper(*args)
    finally:
        tk._launch = original
    return recorded


def coverage_problems(recorded: dict) -> list:
    """What the recorded launches leave out: a kernel never launched, a constexpr flag never
    passed, or a value of a flag never taken (one line each; none when complete)."""
    problems = []
    for name, kernel in kernels().items():
        mine = [launch for launch in recorded if launch.kernel == name]
        if not mine:
            problems.append(f"{name}: never launched by the calls of aot._calls")
            continue
        for flag in constexpr_flags(kernel):
            seen = {dict(launch.flags).get(flag, "missing") for launch in mine}
            if "missing" in seen:
                problems.append(f"{name}: the constexpr {flag} is not passed at every launch")
            missing = _flag_values(flag) - seen
            if missing:
                problems.append(
                    f"{name}: the constexpr {flag} never takes {sorted(missing)} in aot._calls (add the "
                    "wrapper arguments that give it, and the values to aot._flag_values if it is no flag)"
                )
        if {launch.dtype for launch in mine} != {"float32", "float64"}:
            problems.append(f"{name}: not launched in both float32 and float64")
    return problems


def representative(recorded) -> list:
    """A few launches per kernel and dtype that between them give every flag every value, the
    one with the most flags on first (the fast subset of the tests)."""
    chosen = []
    groups = {}
    for launch in recorded:
        groups.setdefault((launch.kernel, launch.dtype), []).append(launch)
    for group in groups.values():
        needed = {(k, v) for launch in group for k, v in launch.flags}
        ranked = sorted(group, key=lambda launch: -sum(bool(v) for _, v in launch.flags))
        while needed:
            best = max(ranked, key=lambda launch: len(needed & set(launch.flags)))
            chosen.append(best)
            needed -= set(best.flags)
        if not group[0].flags:
            chosen.append(group[0])
    return chosen


def _signature(kernel, args, flags, capability: int):
    """Triton's own binding of a launch's arguments for ``capability``: ``(ASTSource, options)``."""
    from triton import knobs
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend
    from triton.runtime.jit import create_function_from_signature

    from .triton import BLOCK, COMPILE_OPTIONS

    target = GPUTarget("cuda", capability, 32)
    backend = make_backend(target)
    kwargs = dict(flags, BLOCK=BLOCK, **COMPILE_OPTIONS)
    kwargs["debug"] = knobs.runtime.debug
    kwargs["instrumentation_mode"] = knobs.compilation.instrumentation_mode
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    bound, specialization, options = binder(*args, **kwargs)
    options, signature, constexprs, attrs = kernel._pack_args(backend, kwargs, bound, specialization, options)
    return ASTSource(kernel, signature, constexprs, attrs), options, target


def _ptxas_info(ptx: str, capability: int, fp_fusion: bool) -> dict:
    """``ptxas -v`` on ``ptx`` with the flags Triton compiles with: registers, spills, stack, static smem."""
    from triton.backends.nvidia.compiler import get_ptxas, sm_arch_from_capability

    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "kernel.ptx"
        source.write_text(ptx)
        command = [get_ptxas(capability).path, "-lineinfo", *([] if fp_fusion else ["--fmad=false"]), "-v"]
        command += ["--regAllocOptLevel=2", f"--gpu-name={sm_arch_from_capability(capability)}", str(source)]
        proc = subprocess.run(command + ["-o", str(source.with_suffix(".o"))], capture_output=True, text=True)
    text = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"ptxas failed ({proc.returncode}): {text.strip()[-2000:]}")
    spills = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", text)
    registers = re.search(r"Used (\d+) registers", text)
    smem = re.search(r"(\d+) bytes smem", text)
    if not (spills and registers):
        raise RuntimeError(f"ptxas -v printed no register or spill line: {text.strip()[-2000:]}")
    return {
        "registers": int(registers.group(1)),
        "stack_bytes": int(spills.group(1)),
        "spill_stores": int(spills.group(2)),
        "spill_loads": int(spills.group(3)),
        "static_smem": int(smem.group(1)) if smem else 0,
    }


def compile_launch(launch: Launch, entry: tuple, capability: int) -> Compiled:
    """Compile one recorded launch for a GPU of ``capability`` (e.g. 90) and read its resources."""
    import triton

    kernel, args, flags = entry
    started = time.perf_counter()
    source, options, target = _signature(kernel, args, flags, capability)
    compiled = triton.compile(source, target=target, options=options.__dict__)
    seconds = time.perf_counter() - started
    if "cubin" not in compiled.asm:
        raise RuntimeError(f"{launch.describe()}: no cubin for sm_{capability}")
    ptx = compiled.asm["ptx"]
    info = _ptxas_info(ptx, capability, options.enable_fp_fusion)
    fma = sum(1 for line in ptx.splitlines() if line.strip().startswith("fma."))
    return Compiled(
        launch,
        capability,
        info["registers"],
        info["spill_stores"],
        info["spill_loads"],
        info["stack_bytes"],
        int(compiled.metadata.shared) + info["static_smem"],
        seconds,
        fma,
    )


def uses_libdevice_exp(launch: Launch) -> bool:
    """Whether the kernel's arithmetic calls exp (libdevice's, written with fused multiply-adds):
    the exponential and sigmoid surrogates, where the activation part is on."""
    flags = dict(launch.flags)
    return bool(flags.get("HAS_S")) and flags.get("KIND") in (
        SURROGATE_CODES["exponential"],
        SURROGATE_CODES["sigmoid"],
    )


def problems_of(results: list) -> list:
    """One line per compiled kernel that spills registers, or that has fused multiply-adds in
    arithmetic of its own (the build switches contraction off, as the C++ build does)."""
    problems = []
    for r in results:
        where = f"{r.launch.describe()} sm_{r.capability}"
        if r.spill_stores or r.spill_loads:
            problems.append(f"{where}: spills ({r.spill_stores} bytes stored, {r.spill_loads} loaded)")
        if r.fused_multiply_adds and not uses_libdevice_exp(r.launch):
            problems.append(f"{where}: {r.fused_multiply_adds} fused multiply-adds in the PTX")
    return problems


_TO_COMPILE: list = []  # (launch, entry, capability) for the workers of compile_all(jobs > 1), by fork


def _compile_one(index: int):
    """Compile :data:`_TO_COMPILE` ``[index]``: its Compiled, or the problem line of a failure."""
    launch, entry, capability = _TO_COMPILE[index]
    try:
        return compile_launch(launch, entry, capability)
    except Exception as exc:  # a kernel that does not compile is what this reports
        return f"{launch.describe()} sm_{capability}: {type(exc).__name__}: {str(exc)[:2000]}"


def compile_all(subset: bool = False, capabilities=CAPABILITIES, log=None, jobs: int = 1) -> tuple:
    """Record the launches, check their coverage, compile them (``subset``: only
    :func:`representative` ones) for every capability, in ``jobs`` processes. Returns
    ``(results, problems)``; a compile that fails is a problem too."""
    recorded = launches()
    problems = coverage_problems(recorded)
    chosen = representative(recorded) if subset else list(recorded)
    todo = [(launch, recorded[launch], c) for c in capabilities for launch in chosen]
    _TO_COMPILE[:] = todo
    try:
        if jobs > 1:  # forked workers see _TO_COMPILE (the kernels and their arguments are not pickled)
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
                outcomes = list(pool.map(_compile_one, range(len(todo))))
        else:
            outcomes = [_compile_one(i) for i in range(len(todo))]
    finally:
        _TO_COMPILE.clear()
    results = []
    for (launch, _, capability), outcome in zip(todo, outcomes):
        (problems if isinstance(outcome, str) else results).append(outcome)
        if log:
            log(f"sm_{capability} {launch.describe()}")
    return results, problems + problems_of(results)


def table(results: list) -> str:
    """Markdown: per kernel, dtype and GPU, the specializations compiled and their resources."""
    rows = {}
    for r in results:
        rows.setdefault((r.launch.kernel, r.launch.dtype, r.capability), []).append(r)
    lines = [
        "| kernel | dtype | GPU | variants | registers per thread | spill stores / loads (bytes) | stack (bytes) "
        "| shared memory (bytes) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (kernel, dtype, capability), group in sorted(rows.items()):
        regs = sorted(r.registers for r in group)
        span = f"{regs[0]}" if regs[0] == regs[-1] else f"{regs[0]}-{regs[-1]}"
        spills = f"{max(r.spill_stores for r in group)} / {max(r.spill_loads for r in group)}"
        lines.append(
            f"| `{kernel.lstrip('_')}` | {dtype} | sm_{capability} | {len(group)} | {span} | {spills} "
            f"| {max(r.stack_bytes for r in group)} | {max(r.shared_bytes for r in group)} |"
        )
    return "\n".join(lines)


def _versions() -> str:
    import triton
    from triton.backends.nvidia.compiler import get_ptxas_version

    ptxas = get_ptxas_version(90).strip().splitlines()[-1]
    return f"triton {triton.__version__}, {ptxas}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m antlr_exp.engine.backends.aot", description=__doc__)
    parser.add_argument("--check", action="store_true", help="compile; exit 1 on a failure, a spill or a gap")
    parser.add_argument("--table", action="store_true", help="print the markdown table of resources")
    parser.add_argument("--subset", action="store_true", help="only a few launches per kernel (every flag value)")
    parser.add_argument("--arch", type=int, nargs="+", default=list(CAPABILITIES), help="compute capabilities")
    parser.add_argument("--json", help="write every compiled specialization's resources here")
    parser.add_argument("--verbose", action="store_true", help="one line per compile")
    parser.add_argument("--jobs", type=int, default=1, help="compile in this many processes (default 1)")
    args = parser.parse_args(argv)
    from .triton import BLOCK, COMPILE_OPTIONS, INTERPRETED

    if INTERPRETED:
        print("aot: TRITON_INTERPRET is set, so Triton does not compile; run without it", file=sys.stderr)
        return 2
    started = time.perf_counter()
    log = (lambda line: print(line, file=sys.stderr)) if args.verbose else None
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs}: accepted: a positive number of processes")
    results, problems = compile_all(args.subset, tuple(args.arch), log, args.jobs)
    elapsed = time.perf_counter() - started
    if args.table:
        print(table(results))
        print(
            f"\nFrom `ptxas -v` on the PTX of each specialization, compiled ahead of time on "
            f"{datetime.date.today().isoformat()} ({_versions()}; BLOCK={BLOCK}, "
            f"num_warps={COMPILE_OPTIONS['num_warps']}); not from a run on a GPU."
        )
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=1, default=str))
    print(
        f"aot: {len(results)} compiles for {', '.join(f'sm_{c}' for c in args.arch)} in {elapsed:.0f} s",
        file=sys.stderr,
    )
    for line in problems:
        print(f"aot: {line}", file=sys.stderr)
    return 1 if problems and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
