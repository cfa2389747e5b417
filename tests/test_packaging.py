"""The wheel installs everything under one import root, ``humans``: it ships pipelines.yaml and the four
console commands, and it works next to another top-level package named ``shared`` (like the unrelated
one on the package registry), which keeps working too. No source file imports the old top-level names."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_SKIP = shutil.ignore_patterns(".git", ".venv", "venv", "runs", "build", "dist", "*.egg-info", "__pycache__",
                               ".pytest_cache", "tests", "benchmarks", "docs")


def IGNORE(folder: str, names: list[str]) -> set[str]:
    """What the wheel build does not need, and any virtual environment (HUMANS_VENV may sit in the repo)."""
    return set(_SKIP(folder, names)) | {n for n in names if os.path.isfile(os.path.join(folder, n, "pyvenv.cfg"))}


def test_no_source_file_imports_the_old_top_level_names():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "dev" / "rename_imports.py"), "--check",
                           str(ROOT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src") / "humans"
    shutil.copytree(ROOT, src, ignore=IGNORE)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(src)], check=True, capture_output=True)
    (whl,) = out.glob("humans-*.whl")
    return whl


def test_wheel_has_one_import_root_the_yaml_and_the_commands(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    roots = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert roots == {"humans"}, roots
    assert "humans/curation/pipelines.yaml" in names
    for module in ("shared/cli.py", "curation/cli.py", "pretrain/cli.py", "heads/cli.py", "tools/main_job.py",
                   "shared/humans/keypoints.py"):
        assert f"humans/{module}" in names, module
    old_import = re.compile(r"^\s*(from|import) (shared|curation|pretrain|heads|tools)\b", re.M)
    with zipfile.ZipFile(wheel) as zf:
        stale = [n for n in names if n.endswith(".py") and old_import.search(zf.read(n).decode())]
    assert not stale, f"modules importing a top-level name that the wheel does not install: {stale}"
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry).decode()
    for cmd in ("humans = humans.tools.main_job:main", "humans-curate = humans.curation.cli:main",
                "humans-pretrain = humans.pretrain.cli:main", "humans-heads = humans.heads.cli:main"):
        assert cmd in text, text


def test_installed_next_to_another_shared_package_both_work(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    other = target / "shared"  # a top-level `shared` package, as the registry's unrelated one installs
    other.mkdir()
    (other / "__init__.py").write_text("WHO = 'the other shared package'\n")
    env = {**os.environ, "PYTHONPATH": str(target), "HUMANS_NO_PROGRESS": "1"}
    code = ("import shared, humans.shared.cli as ours\n"
            "assert shared.WHO == 'the other shared package'\n"
            "assert ours.__file__.startswith(%r), ours.__file__\n"
            "from humans.curation.config import DEFAULT_CONFIG, load_pipeline\n"
            "assert DEFAULT_CONFIG.is_file() and load_pipeline('humans').stages\n" % str(target))
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for cmd in ("humans-curate", "humans-pretrain", "humans-heads", "humans"):
        script = target / "bin" / cmd
        proc = subprocess.run([sys.executable, str(script), "--help"], cwd=tmp_path, env=env, capture_output=True,
                              text=True)
        assert proc.returncode == 0 and "usage:" in proc.stdout and "example" in proc.stdout, (cmd, proc.stderr)
