"""Hardening of the curation job: shards are byte-reproducible, temp files of interrupted writes are
removed on the next run, inputs are checked before any work (a bad embedding checkpoint fails in
seconds with one paragraph, no traceback and no advice to unpickle), a missing --input leaves no
output folder, and a run that keeps 0 samples exits nonzero."""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tarfile
import time

import pytest
import yaml

from humans.curation.cli import EXIT_NO_SAMPLES, main
from humans.curation.report.build import _remove_partial_report
from humans.shared.shards import ShardWriter, file_sha256, remove_partial_files


def _write_shard(out, samples) -> str:
    with ShardWriter(out, "t", 0) as w:
        for key, img in samples:
            w.add(key, {"jpg": img, "json": {"key": key, "n": len(img)}})
        info = w.close()
    return info.sha256


def test_shards_are_byte_reproducible(tmp_path):
    samples = [(f"k{i:03d}", os.urandom(1000 + i)) for i in range(5)]
    a = _write_shard(tmp_path / "a", samples)
    time.sleep(1.1)  # member mtimes used to be the wall clock
    os.umask(0o077)
    b = _write_shard(tmp_path / "b", samples)
    assert a == b == file_sha256(tmp_path / "b" / "t-000000.tar")
    with tarfile.open(tmp_path / "a" / "t-000000.tar") as tf:
        members = tf.getmembers()
    assert [m.name for m in members] == [f"k{i:03d}.{e}" for i in range(5) for e in ("jpg", "json")]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {(0, 0, 0, "", "", 0o444)}


def test_partial_files_of_interrupted_writes_are_removed(tmp_path):
    run = tmp_path / "run"
    for rel in ("humans-000001.tar.tmp", "index.parquet.tmp", "manifest.json.tmp4242",
                "stages/02_quality/files-000001-abc.parquet.tmp77", "work/done/files-000001-abc.json.tmp9"):
        (run / rel).parent.mkdir(parents=True, exist_ok=True)
        (run / rel).write_bytes(b"half")
    keep = ["humans-000000.tar", "work/done/files-000000-abc.json", "notes.tmpl", "x.tmp.json"]
    for rel in keep:
        (run / rel).write_bytes(b"whole")
    removed = remove_partial_files(run)
    assert len(removed) == 5 and "stages/02_quality/files-000001-abc.parquet.tmp77" in removed
    assert sorted(p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()) == sorted(keep)
    report = tmp_path / "report"
    (report / "assets").mkdir(parents=True)
    for name in ("index.html.tmp12", "stats.json.tmp3", "assets/hist_a.png.tmp5", "mine.txt.tmp"):
        (report / name).write_bytes(b"half")
    assert sorted(_remove_partial_report(report)) == ["assets/hist_a.png.tmp5", "index.html.tmp12",
                                                      "stats.json.tmp3"]
    assert (report / "mine.txt.tmp").is_file()  # not ours: a report folder may hold the user's files


def _tiny_pool(tmp_path):
    from humans.shared.imageio import encode_jpeg
    import numpy as np

    pool = tmp_path / "pool"
    pool.mkdir()
    (pool / "small.jpg").write_bytes(encode_jpeg(np.full((40, 60, 3), 120, np.uint8)))
    return pool


def test_missing_input_leaves_no_output_folder(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["run", "--input", str(tmp_path / "nope"), "--output", str(out), "--embedding-random-init"])
    assert code == 2 and "not found" in capsys.readouterr().err
    assert not out.exists()


def test_other_named_files_and_models_are_checked_up_front(tmp_path, capsys):
    pool = _tiny_pool(tmp_path)
    (tmp_path / "yolo.onnx").write_bytes(b"x")
    (tmp_path / "bb.safetensors").write_bytes(b"x" * 64)
    rnd = ("--embedding-random-init",)
    cases = {("--detector-weights", str(tmp_path / "nope.pt"), *rnd): "person.weights",
             ("--detector-weights", str(tmp_path), *rnd): "not a regular file",
             ("--detector-weights", str(tmp_path / "yolo.onnx"), *rnd): "allowed: .pt",
             ("--set", "embedding.embedder=open_clip", "--set", "embedding.model=ViT-B-3", *rnd):
                 "'ViT-B-3' is not an open_clip architecture (e.g. ViT-B-16",
             (): "embedding.backbone is not set: the embedding stage needs weights",  # never random by default
             ("--embedding-backbone", str(tmp_path / "nope.safetensors")): "does not exist or is not a file",
             ("--embedding-backbone", str(tmp_path / "bb.safetensors")): "was not loaded"}
    for args, expected in cases.items():
        out = tmp_path / "out"
        code = main(["run", "--input", str(pool), "--output", str(out), *args])
        err = capsys.readouterr().err
        assert code == 2 and expected in err and not out.exists(), (args, err)


def _bad_checkpoints(tmp_path) -> dict:
    import torch

    marker = tmp_path / "PWNED"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    paths = {"missing": tmp_path / "missing.pt", "folder": tmp_path / "ckdir", "garbage": tmp_path / "garbage.pt",
             "pickle": tmp_path / "evil.pt", "torch_pickle": tmp_path / "evil_zip.pt", "wrong_keys": tmp_path / "keys.pt"}
    paths["folder"].mkdir()
    paths["garbage"].write_bytes(b"this is not a checkpoint")
    paths["pickle"].write_bytes(pickle.dumps({"visual.proj": Evil()}))
    torch.save({"visual.proj": Evil()}, paths["torch_pickle"])
    torch.save({"visual.proj": torch.zeros(2, 2), "extra": torch.zeros(1)}, paths["wrong_keys"])
    return {k: str(v) for k, v in paths.items()}, marker


def test_bad_embedding_checkpoint_fails_up_front_in_seconds(tmp_path, capsys):
    pool = _tiny_pool(tmp_path)
    paths, marker = _bad_checkpoints(tmp_path)
    main(["run", "--input", str(pool), "--output", str(tmp_path / "warm"), "--embedding-checkpoint",
          paths["wrong_keys"]])  # imports torch/open_clip once, as a fresh process would have to
    capsys.readouterr()
    expect = {"missing": "does not exist", "folder": "not a regular file", "garbage": "neither a torch checkpoint",
              "pickle": "(io.open), which are never unpickled", "torch_pickle": "open), which are never unpickled",
              "wrong_keys": "parameters are missing (e.g. ['ln_final.bias'"}
    for name, path in paths.items():
        out = tmp_path / f"out_{name}"
        t0 = time.perf_counter()
        code = main(["run", "--input", str(pool), "--output", str(out), "--embedding-checkpoint", path])
        seconds = time.perf_counter() - t0
        err = capsys.readouterr().err.strip()
        assert code == 2 and seconds < 5, (name, code, seconds)
        assert err.startswith("error: embedding checkpoint") and expect[name] in err, (name, err)
        assert "\n" not in err and "weights_only=False" not in err and "Traceback" not in err, err
        assert not out.exists(), name  # found before the output folder is made, before any Ray work
        if name == "wrong_keys":
            assert "1 key(s) are not in the model (e.g. ['extra'])" in err
            assert "visual.proj: (2, 2) in the file, (768, 512) in the model" in err
    assert not marker.exists()  # the pickle's payload never ran


def test_bad_checkpoint_from_the_shell_is_one_paragraph(tmp_path):
    pool = _tiny_pool(tmp_path)
    paths, marker = _bad_checkpoints(tmp_path)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "humans.curation", "run", "--input", str(pool), "--output",
                           str(tmp_path / "o"), "--embedding-checkpoint", paths["pickle"]],
                          capture_output=True, text=True, timeout=120)
    seconds = time.perf_counter() - t0
    print(f"bad checkpoint from the shell: rc {proc.returncode} after {seconds:.1f} s (interpreter start "
          f"and imports included)")
    assert seconds < 60  # typically a few seconds: the file is refused before torch is imported
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(lines) == 1 and "never unpickled" in lines[0]
    assert "Traceback" not in proc.stderr and "weights_only" not in proc.stderr and "ActorDiedError" not in proc.stderr
    assert not (tmp_path / "o").exists() and not marker.exists()


def test_shipped_openclip_shapes_match_open_clip():
    """The shapes the up-front check uses without importing open_clip are open_clip's own."""
    import open_clip
    import torch

    from humans.curation.stages.embedding import shipped_shapes

    for size in (None, 128):
        with torch.device("meta"):
            net = open_clip.create_model("ViT-B-32", pretrained=None, device="meta",
                                         **({"force_image_size": size} if size else {}))
        assert shipped_shapes("ViT-B-32", size) == {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert shipped_shapes("ViT-B-32", 96) is None  # no file: the check builds the model instead


def test_wrong_architecture_checkpoint_refused_without_open_clip(tmp_path):
    """A well-formed checkpoint of the wrong shapes is refused from the shipped shapes: open_clip (seconds
    of torchvision start-up) is never imported, which keeps the refusal from the shell under 5 s."""
    paths, _ = _bad_checkpoints(tmp_path)
    code = ("import sys; from humans.curation.stages.embedding import check_checkpoint, CheckpointError\n"
            "try:\n    check_checkpoint('ViT-B-32', sys.argv[1])\nexcept CheckpointError as e:\n"
            "    print(e)\nprint('open_clip' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code, paths["wrong_keys"]], capture_output=True, text=True,
                          timeout=120)
    out = proc.stdout.strip().splitlines()
    assert proc.returncode == 0 and out[-1] == "False", proc.stdout + proc.stderr
    assert "visual.proj: (2, 2) in the file, (768, 512) in the model" in out[0]


def test_a_run_that_keeps_nothing_exits_nonzero(tmp_path, ray_local, capsys):
    """Used to exit 0 with 0 samples and no warning."""
    pool = _tiny_pool(tmp_path)
    cfg = tmp_path / "p.yaml"
    cfg.write_text(yaml.safe_dump({"pipelines": {"only-res": {"items_per_task": 4, "stages": [
        {"name": "resolution", "min_short_side": 64, "min_pixels": 0}]}}}))
    code = main(["run", "--input", str(pool), "--output", str(tmp_path / "o"), "--config", str(cfg),
                 "--pipeline", "only-res"])
    captured = capsys.readouterr()
    assert code == EXIT_NO_SAMPLES == 3
    assert "error: the run kept 0 samples" in captured.err and "1 pool items" in captured.err
    assert "too_small" in captured.out or "resolution" in captured.out


def test_resume_accepts_another_resource_layout_and_refuses_another_config(tmp_path):
    """The resume check (work/plan.json): a run may continue with other CPUs, actors or batch sizes (where
    and how fast it runs), never with other thresholds or another pool (what it decides)."""
    from humans.curation.config import load_pipeline
    from humans.curation.pipeline import PipelineStateError, _check_state, _fingerprint
    from humans.curation.sources import PoolTask

    tasks = [PoolTask("files-000000-a", "files", "/pool", (("a.jpg", "a"),))]
    out = str(tmp_path / "run")
    base = load_pipeline("humans-test")
    _check_state(out, _fingerprint("/pool", "humans-test", base, tasks))          # writes plan.json
    relaid = load_pipeline("humans-test", overrides={"person.resources.concurrency": 4,
                                                     "filter_resources.num_cpus": 1.0,
                                                     "embedding.resources.batch_size": 64})
    _check_state(out, _fingerprint("/pool", "humans-test", relaid, tasks))        # accepted
    stricter = load_pipeline("humans-test", overrides={"quality.min_sharpness": 30.0})
    with pytest.raises(PipelineStateError, match="different config"):
        _check_state(out, _fingerprint("/pool", "humans-test", stricter, tasks))
    with pytest.raises(PipelineStateError, match="different pool"):
        _check_state(out, _fingerprint("/other", "humans-test", base, tasks))


def test_auto_detector_is_resolved_once_and_old_plans_naming_auto_resume(tmp_path):
    """``person.detector: auto`` is resolved on the driver (every node then runs the same detector, and the
    plan records which); a plan written when ``auto`` was resolved per node still resumes, under the
    detector this machine resolves it to, and a plan naming another detector does not."""
    from humans.curation.config import load_pipeline
    from humans.curation.detectors import resolve_kind
    from humans.curation.pipeline import PipelineStateError, _check_state, _fingerprint
    from humans.curation.sources import PoolTask

    tasks = [PoolTask("files-000000-a", "files", "/pool", (("a.jpg", "a"),))]
    auto = load_pipeline("humans-test")
    assert auto.stage("person").detector == "auto"
    kind = resolve_kind(auto.stage("person"))
    resolved = load_pipeline("humans-test", overrides={"person.detector": kind})
    old_run = str(tmp_path / "old")
    _check_state(old_run, _fingerprint("/pool", "humans-test", auto, tasks))      # an older run's plan: "auto"
    _check_state(old_run, _fingerprint("/pool", "humans-test", resolved, tasks))  # resumes
    other = "hog" if kind != "hog" else "opencv"
    with pytest.raises(PipelineStateError, match="different config"):
        _check_state(old_run, _fingerprint("/pool", "humans-test",
                                           load_pipeline("humans-test", overrides={"person.detector": other}), tasks))
