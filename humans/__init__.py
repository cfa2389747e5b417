"""The project's one import root: ``humans.shared``, ``humans.curation``, ``humans.pretrain``,
``humans.heads`` and ``humans.tools`` are the repository's top-level folders of those names.

In a wheel, ``setup.py`` installs the folders under this package. In a source checkout (editable
install, or ``PYTHONPATH=<repo>``) they stay where they are, so this package also searches the
repository root. ``python -m curation|pretrain|heads`` keep working from the repository root.
"""
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent
if (_REPO / "pyproject.toml").is_file() and (_REPO / "shared" / "__init__.py").is_file():  # a source checkout
    __path__.append(str(_REPO))  # noqa: F821 - the package's own search path
