"""The commands: ``antlr-train`` (:mod:`.train`, with the checks before any folder is written in
:mod:`.preflight`, the run folder's lock in :mod:`.run_folder` and the console's result lines in
:mod:`.console`), ``antlr-report`` (:mod:`.report`), ``antlr-plot`` (:mod:`.plot`) and
``antlr-figure`` (:mod:`.figure`).

``antlr_exp.cli.main`` is ``antlr-train`` (the entry point of earlier versions); the names of
:mod:`.train` load on first use, so that ``antlr-report`` imports neither Hydra's app nor torch.
"""

from importlib import import_module


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    return getattr(import_module(".train", __name__), name)
