"""scripts/install.sh's pre-flight: a disk too small for the environment gets a clear error before pip runs."""
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_install_refuses_a_disk_too_small_before_creating_anything(tmp_path):
    venv = tmp_path / "venv"
    env = dict(os.environ, HUMANS_VENV=str(venv), HUMANS_INSTALL_NEED_MB=str(10**9))
    out = subprocess.run(["bash", str(ROOT / "scripts" / "install.sh")], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 28, out.stderr
    assert "not enough disk" in out.stderr and "MB needed" in out.stderr
    assert "HUMANS_VENV" in out.stderr           # says how to get round it
    assert not venv.exists()                     # nothing half-built left behind
