"""Where ``antlr-train`` finds its configs: the package's ``conf/`` and the folders a command adds
with Hydra's own flags and key, searched in the order Hydra searches them.

- ``-cd/--config-dir DIR`` adds DIR after ours (Hydra's rule: where both hold a config of the same
  name, ours is used), so DIR adds presets: ``experiment/``, ``task/``, ``method/``, ...;
- ``-cp/--config-path DIR`` makes DIR the primary config's folder (``-cn/--config-name NAME``,
  default ``config``). A relative DIR is taken from the working directory (Hydra would take it from
  the installed module's folder, which no user means), and ours stays on the search path right
  after it, so DIR's configs build on ours (e.g. ``defaults: [config, _self_]``);
- ``hydra.searchpath=[...]`` (on the command line, or in the primary config) appends its folders
  (``file://DIR`` or ``pkg://module``).

The checks :mod:`.train` and :mod:`.preflight` make before Hydra writes anything compose through
``initialized(args)``, with the search path Hydra will use for the same command.
"""

from __future__ import annotations

import contextlib
import os
import shlex
from pathlib import Path
from typing import Iterator, Optional

from hydra.core.config_search_path import ConfigSearchPath, SearchPathQuery
from hydra.plugins.search_path_plugin import SearchPathPlugin

from ..config import CONF_DIR
from ..errors import ConfigError

#: The provider name the package's configs have on the search path where they are not "main".
PROVIDER = "antlr-exp"
_PATH_FLAGS = ("-cp", "--config-path")


def _same_folder(entry: str, folder: Path) -> bool:
    path = entry[len("file://") :] if entry.startswith("file://") else entry
    return "://" not in path and os.path.realpath(path) == os.path.realpath(folder)


class PackageConfigs(SearchPathPlugin):
    """Keeps the package's ``conf/`` on the search path, right after the primary config's folder,
    where ``-cp`` made another folder the primary one."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        if not any(_same_folder(element.path, CONF_DIR) for element in search_path.get_path()):
            search_path.append(PROVIDER, f"file://{CONF_DIR}", anchor=SearchPathQuery(provider="main"))


def register() -> None:
    """Register ``PackageConfigs`` with Hydra in this process (``antlr-train`` only, so that other
    Hydra apps in the same environment never see our groups)."""
    from hydra.core.plugins import Plugins

    Plugins.instance().register(PackageConfigs)


def with_absolute_config_path(argv: list) -> list:
    """``argv`` with the folder of ``-cp``/``--config-path`` made absolute from the working
    directory (a ``pkg://`` one is left alone)."""

    def absolute(value: str) -> str:
        return value if "://" in value or os.path.isabs(value) else os.path.abspath(value)

    argv = list(argv)
    for i, argument in enumerate(argv):
        flag, equals, value = argument.partition("=")
        if argument in _PATH_FLAGS and i + 1 < len(argv):
            argv[i + 1] = absolute(argv[i + 1])
        elif equals and flag in _PATH_FLAGS:
            argv[i] = f"{flag}={absolute(value)}"
    return argv


#: the flags that choose where the configs come from, each taking a value
_CONFIG_FLAGS = ("-cp", "--config-path", "-cn", "--config-name", "-cd", "--config-dir")


def with_completion_flags(argv: list, line: Optional[str] = None) -> list:
    """For a shell-completion query (``-sc query=SHELL``), ``argv`` plus the config flags of the
    line being completed (the shell passes it in ``COMP_LINE``), so that the completion offers
    the presets of a ``-cd`` folder or of a ``-cp``/``-cn`` primary config too."""
    args = parse(argv)
    completing = args is not None and args.shell_completion and any(o.startswith("query=") for o in args.overrides)
    line = os.environ.get("COMP_LINE", "") if line is None else line
    if not completing or not line:
        return argv
    try:
        words = shlex.split(line)
    except ValueError:  # an unclosed quote while typing: complete without them
        return argv
    flags = []
    for i, word in enumerate(words[1:], start=1):
        name, equals, _ = word.partition("=")
        if word in _CONFIG_FLAGS and i + 1 < len(words):
            flags += [word, words[i + 1]]
        elif equals and name in _CONFIG_FLAGS:
            flags.append(word)
    return [*argv, *flags]


def parse(argv: list):
    """Hydra's reading of the command line (its flags, ``.overrides``), or None where Hydra's
    parser refuses it (Hydra reports that itself) or for ``--version``."""
    from hydra._internal.utils import get_args_parser

    if "--version" in argv:
        return None
    try:
        return get_args_parser().parse_args(argv)
    except SystemExit:
        return None


def check_flags(args) -> None:
    """The folders ``-cd`` and ``-cp`` name must exist, and ``--resolve`` needs ``--cfg`` or
    ``--help``: one line each instead of Hydra's report or traceback."""
    if args.resolve and not (args.cfg or args.help):
        raise ConfigError("--resolve only goes with --cfg or --help, e.g. antlr-train --cfg job --resolve")
    for flag, value in (("-cd/--config-dir", args.config_dir), ("-cp/--config-path", args.config_path)):
        if value and "://" not in value and not os.path.isdir(value):
            raise ConfigError(
                f"{flag} {value}: the folder {os.path.abspath(value)} does not exist; accepted: a folder of "
                f"configs laid out like the package's conf/ (e.g. experiment/<name>.yaml)"
            )


def search_path(args=None) -> ConfigSearchPath:
    """The search path ``hydra.main`` builds for a command with these flags (before the
    ``hydra.searchpath`` key, which composing adds)."""
    from hydra._internal.utils import create_config_search_path

    register()
    primary = getattr(args, "config_path", None) or str(CONF_DIR)
    path = create_config_search_path(primary)
    config_dir = getattr(args, "config_dir", None)
    if config_dir:
        path.prepend("command-line", f"file://{os.path.abspath(config_dir)}", anchor=SearchPathQuery(provider="schema"))
    return path


def config_name(args=None) -> str:
    return getattr(args, "config_name", None) or "config"


@contextlib.contextmanager
def initialized(args=None) -> Iterator[None]:
    """Hydra initialized with the command's search path (as ``initialize_config_dir`` does with one
    folder); Hydra's global state is restored on exit."""
    from hydra._internal.hydra import Hydra
    from hydra.initialize import get_gh_backup, restore_gh_from_backup

    backup = get_gh_backup()
    try:
        Hydra.create_main_hydra2(task_name="antlr-train", config_search_path=search_path(args))
        yield
    finally:
        restore_gh_from_backup(backup)


def searchpath_overrides(overrides: list) -> list:
    """The ``hydra.searchpath=...`` overrides among ``overrides`` (they add folders)."""
    return [o for o in overrides if o.partition("=")[0].lstrip("+~") == "hydra.searchpath"]


def groups(args=None, overrides: Optional[list] = None) -> dict:
    """``{group: [options]}`` for every config group of the command's search path but Hydra's own
    (``hydra/...``), options of subfolders included (``loss`` holds ``paper/mnist_antlr``)."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.object_type import ObjectType

    found: dict = {}
    with initialized(args):
        loader = GlobalHydra.instance().config_loader()
        name, extra = config_name(args), searchpath_overrides(overrides or [])

        def options(group: str, kind) -> list:
            return loader.get_group_options(group, kind, config_name=name, overrides=extra)

        def walk(group: str, prefix: str) -> list:
            listed = [f"{prefix}{option}" for option in options(group, ObjectType.CONFIG)]
            for child in options(group, ObjectType.GROUP):
                listed += walk(f"{group}/{child}", f"{prefix}{child}/")
            return listed

        for group in options("", ObjectType.GROUP):
            if group != "hydra":
                found[group] = sorted(walk(group, ""))
    return found
