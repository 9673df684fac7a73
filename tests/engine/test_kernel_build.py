"""The C++ module's build folder: one per checkout of the source, so that two checkouts (or a
git worktree beside the main one) sharing the cache never rebuild each other's module."""

from __future__ import annotations

import shutil

from antlr_exp.engine.backends import cpp as kernels


def test_each_checkout_and_source_gets_its_own_build_folder(tmp_path):
    flags = ["-O3"]
    a, b = tmp_path / "a" / "lif_kernels.cpp", tmp_path / "b" / "lif_kernels.cpp"
    for path in (a, b):
        path.parent.mkdir()
        shutil.copy(kernels.sources()[0], path)
    name_a = kernels._module_name([a], flags, "AVX2")
    assert kernels._module_name([a], flags, "AVX2") == name_a, "the same checkout finds its build again"
    assert kernels._module_name([b], flags, "AVX2") != name_a, "identical bytes in another checkout: another folder"
    assert kernels._module_name([a], ["-O2"], "AVX2") != name_a
    assert kernels._module_name([a], flags, "DEFAULT") != name_a
    a.write_text(a.read_text() + "\n// changed\n")
    assert kernels._module_name([a], flags, "AVX2") != name_a
    assert name_a.isidentifier(), "the name is also the Python module's"
