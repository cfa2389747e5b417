"""The README's `ray job submit` commands against a real `ray start --head` on loopback (Ray 2.60 with
token auth, as a user's cluster runs): without the token the job client is refused; with
``RAY_AUTH_MODE=token`` and the token the job curates an absolute local path, and (with moto's S3
server) an s3:// pool into s3:// shards; a relative ``--out`` is refused with a message, since it would
land in Ray's temporary copy of the working directory."""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from s3_testlib import free_port

from humans.shared import storage
from humans.shared.shards import iter_tar_samples, list_shards, read_manifest

REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))
CONFIG = "tests/curation/cheap_pipelines.yaml"  # relative: read by the job's driver in the working-dir copy
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_head():
    """``ray start --head --block`` on 127.0.0.1 with its own ports, temp dir and token; stopped by pid."""
    token = secrets.token_hex(16)
    temp = tempfile.mkdtemp(prefix="rh", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_AUTH"))}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token, PATH=f"{Path(sys.executable).parent}:{env['PATH']}")
    dash = free_port()
    ports = {"--port": free_port(), "--dashboard-port": dash, "--dashboard-agent-listen-port": free_port(),
             "--dashboard-agent-grpc-port": free_port(), "--runtime-env-agent-port": free_port(),
             "--metrics-export-port": free_port(), "--ray-client-server-port": free_port()}
    cmd = [RAY, "start", "--head", "--block", "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1",
           "--include-dashboard=true", "--num-cpus=2", f"--temp-dir={temp}", "--disable-usage-stats",
           *[f"{k}={v}" for k, v in ports.items()]]
    log = open(os.path.join(temp, "head.log"), "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                req = urllib.request.Request(f"{address}/api/version", headers={"Authorization": f"Bearer {token}"})
                urllib.request.urlopen(req, timeout=5).read()
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("ray start --head did not come up:\n" + Path(temp, "head.log").read_text()[-3000:])
                time.sleep(1)
        yield {"address": address, "env": env, "token": token}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def small_pool(demo_pool_dir, tmp_path_factory):
    """36 images of the demo pool (people first): the jobs test placement and paths, not the stages."""
    labels = pd.read_parquet(demo_pool_dir / "labels.parquet").sort_values("category", key=lambda c: c != "person")
    root = tmp_path_factory.mktemp("jobpool") / "pool"
    root.mkdir()
    for f in labels["file"].head(36):
        shutil.copyfile(demo_pool_dir / f, root / Path(f).name)
    return root


def _submit(head, *args: str, env: dict | None = None, runtime_env: dict | None = None):
    cmd = [RAY, "job", "submit", "--address", head["address"], "--working-dir", "."]
    if runtime_env:
        cmd += ["--runtime-env-json", json.dumps(runtime_env)]
    cmd += ["--", "python", "-m", "humans.curation", "run", "--config", CONFIG, "--pipeline", "cheap", *args]
    return subprocess.run(cmd, cwd=REPO, env=env or head["env"], capture_output=True, text=True, timeout=400)


def _check_shards(out: Path) -> int:
    index = pd.read_parquet(out / "index.parquet")
    keys = [s["__key__"] for shard in list_shards(out) for s in iter_tar_samples(shard)]
    assert index["key"].is_unique and sorted(keys) == sorted(index["key"])
    assert read_manifest(out)["total_samples"] == len(index) > 10
    return len(index)


def test_ray_job_submit_with_token_local_paths(ray_head, small_pool, tmp_path):
    no_token = {k: v for k, v in ray_head["env"].items() if not k.startswith("RAY_AUTH")}
    denied = subprocess.run([RAY, "job", "list", "--address", ray_head["address"]], cwd=REPO, env=no_token,
                            capture_output=True, text=True, timeout=120)
    assert denied.returncode != 0 and "token authentication is enabled" in denied.stderr, denied.stderr[-2000:]

    out = tmp_path / "shards"
    done = _submit(ray_head, "--input", str(small_pool), "--out", str(out))
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert "succeeded" in done.stdout + done.stderr
    _check_shards(out)

    refused = _submit(ray_head, "--input", str(small_pool), "--out", "relative/out")
    text = refused.stdout + refused.stderr
    assert refused.returncode != 0 and "is a relative path" in text and "working directory" in text, text[-3000:]


def test_ray_job_submit_s3(ray_head, small_pool):
    pytest.importorskip("moto.server", reason="moto[server] (test extra) provides the S3 server")
    from s3_testlib import moto_s3

    with moto_s3() as (bucket, s3env):
        os.environ.update(s3env)  # for this process's reads below
        try:
            pool, out = f"{bucket}/pool", f"{bucket}/out"
            for p in sorted(small_pool.iterdir()):
                storage.write_bytes(storage.join(pool, p.name), p.read_bytes())
            # the endpoint and credentials travel with the job (the README's --runtime-env-json)
            done = _submit(ray_head, "--input", pool, "--out", out, runtime_env={"env_vars": s3env})
            assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
            storage.register_webdataset()
            import webdataset as wds

            manifest = storage.read_json(storage.join(out, "manifest.json"))
            urls = [storage.join(out, e["name"]) for e in manifest["shards"]]
            samples = list(wds.WebDataset(urls, shardshuffle=False, empty_check=False))
            index = storage.read_parquet(storage.join(out, "index.parquet")).to_pandas()
            assert sorted(s["__key__"] for s in samples) == sorted(index["key"]) and len(index) > 10
            sha = dict(zip(index["key"], index["image_sha256"]))
            for s in samples:
                meta = json.loads(s["json"])
                assert hashlib.sha256(s[meta["image_ext"]]).hexdigest() == sha[s["__key__"]]
        finally:
            for k in s3env:
                os.environ.pop(k, None)
