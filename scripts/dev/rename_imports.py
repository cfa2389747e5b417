"""Rewrite imports of the project's top-level folders to the ``humans`` import root (idempotent).

The folders ``shared/``, ``curation/``, ``pretrain/``, ``heads/`` and ``tools/`` stay where they are;
``setup.py`` installs them as ``humans.shared``, ``humans.curation``, ... so that installing the project
next to the unrelated registry package named ``shared`` (or ``heads``, ``tools``...) cannot break either.
In a source checkout ``humans/__init__.py`` maps the same names onto the folders.

This script is the whole mechanical part of that change: rerun it after merging a branch that still
imports ``shared.x`` / ``curation.x`` ...; a second run changes nothing. ``--check`` only reports
(exit 1 when a file would change), which is what tests/test_packaging.py runs.

    python scripts/dev/rename_imports.py [--check] [ROOT]

Rewritten: ``from ROOT[.x] import ...`` (any indentation), ``import ROOT.x as y``, ``"-m", "ROOT[.x]"``
subprocess arguments, and quoted module names in ``set_forkserver_preload([...])`` /
``import_module(...)`` / ``patch(...)`` calls. Not rewritten: logger names, docstrings, prose.
A bare ``import ROOT`` / ``import ROOT.x`` (which binds the top-level name) is reported as an error.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

ROOTS = ("shared", "curation", "pretrain", "heads", "tools")
_R = "|".join(ROOTS)
SKIP_DIRS = {".git", ".venv", "venv", "build", "dist", "node_modules", "__pycache__", ".pytest_cache"}

FROM_IMPORT = re.compile(rf"^(\s*)from ({_R})((?:\.\w+)*)(\s+import\b)", re.M)
IMPORT_AS = re.compile(rf"^(\s*)import ({_R})((?:\.\w+)*)(\s+as\s+\w+)", re.M)
BARE_IMPORT = re.compile(rf"^\s*import ({_R})((?:\.\w+)*)\s*(#.*)?$", re.M)
DASH_M = re.compile(rf"""(["'])-m\1(\s*,\s*)(["'])({_R})((?:\.\w+)*)\3""")
MODULE_CALL = re.compile(r"(set_forkserver_preload|import_module|patch|patch\.object)\((.*?)\)", re.S)
QUOTED = re.compile(rf"""(["'])({_R})((?:\.\w+)*)\1""")


def rewrite(text: str) -> str:
    text = FROM_IMPORT.sub(r"\1from humans.\2\3\4", text)
    text = IMPORT_AS.sub(r"\1import humans.\2\3\4", text)
    text = DASH_M.sub(r"\1-m\1\2\3humans.\4\5\3", text)
    return MODULE_CALL.sub(lambda m: m.group(1) + "(" + QUOTED.sub(r"\1humans.\2\3\1", m.group(2)) + ")", text)


def files(root: Path):
    """The project's .py files: no VCS, build or virtual-environment folders (any folder holding a
    pyvenv.cfg, whatever its name, e.g. HUMANS_VENV)."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS
                             and not (Path(dirpath) == root and d == "humans")  # the import root itself
                             and not os.path.isfile(os.path.join(dirpath, d, "pyvenv.cfg")))
        for name in sorted(filenames):
            if name.endswith(".py"):
                yield Path(dirpath) / name


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", nargs="?", default=str(Path(__file__).resolve().parents[2]), help="repository root")
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file would change")
    args = ap.parse_args(argv)
    root = Path(args.root)
    changed, bare = [], []
    for path in files(root):
        text = path.read_text()
        bare += [f"{path.relative_to(root)}: {m.group(0).strip()}" for m in BARE_IMPORT.finditer(text)]
        new = rewrite(text)
        if new != text:
            changed.append(str(path.relative_to(root)))
            if not args.check:
                path.write_text(new)
    for line in bare:
        print(f"error: bare import binds the top-level name, rewrite it by hand: {line}", file=sys.stderr)
    print(("would change" if args.check else "changed") + f" {len(changed)} file(s)" +
          "".join(f"\n  {c}" for c in changed))
    return 1 if bare or (args.check and changed) else 0


if __name__ == "__main__":
    sys.exit(main())
