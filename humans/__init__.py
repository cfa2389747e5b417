"""Import root of the installed project: ``humans.tools`` (the main job) and the console commands.

In a wheel, the folders listed in ``setup.py`` are installed under this package. In a source checkout
(editable install, or ``PYTHONPATH=<repo>``) they stay top-level folders of the repository, so this
package also searches the repository root: ``humans.tools`` is then ``<repo>/tools``.
"""
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent
if (_REPO / "pyproject.toml").is_file() and (_REPO / "tools" / "main_job.py").is_file():  # a source checkout
    __path__.append(str(_REPO))  # noqa: F821 - the package's own search path
