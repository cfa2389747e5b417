"""verify passes a real pipeline run (``curated_run_dir``) and names each kind of damage done to a
copy of it: truncation, a flipped byte, a missing sample, a key in two shards (each with its shard,
key and a clear message)."""
from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest

from humans.curation.report.cli import main as report_main
from humans.curation.report.verify import verify_run


@pytest.fixture
def run_copy(curated_run_dir, tmp_path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(curated_run_dir, dst, ignore=shutil.ignore_patterns("work"))
    return dst


def _shards(run: Path) -> list[Path]:
    shards = sorted(run.glob("*-[0-9][0-9][0-9][0-9][0-9][0-9].tar"))
    assert len(shards) >= 2, "the test run must have at least two shards"
    return shards


def _members(tar: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(tar) as tf:
        return [(m, tf.extractfile(m).read()) for m in tf.getmembers()]


def _write_tar(tar: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
    with tarfile.open(tar, "w", format=tarfile.USTAR_FORMAT) as tf:
        for m, data in members:
            info = tarfile.TarInfo(m.name)
            info.size, info.mtime, info.mode = len(data), m.mtime, m.mode
            tf.addfile(info, io.BytesIO(data))


def _update_manifest(run: Path, tar: Path) -> None:
    """Make manifest.json agree with the rewritten file, so only the deeper checks can catch it."""
    doc = json.loads((run / "manifest.json").read_text())
    keys = sorted({m.name.partition(".")[0] for m, _ in _members(tar)})
    for e in doc["shards"]:
        if e["name"] == tar.name:
            e["bytes"] = tar.stat().st_size
            e["sha256"] = hashlib.sha256(tar.read_bytes()).hexdigest()
            e["samples"] = len(keys)
            e["keys_sha256"] = hashlib.sha256("\n".join(keys).encode()).hexdigest()
    doc["total_samples"] = sum(e["samples"] for e in doc["shards"])
    (run / "manifest.json").write_text(json.dumps(doc))


def _by_check(problems) -> dict[str, list]:
    out: dict[str, list] = {}
    for p in problems:
        out.setdefault(p.check, []).append(p)
    return out


def test_good_run_passes(curated_run_dir, capsys):
    manifest = json.loads((curated_run_dir / "manifest.json").read_text())
    problems, summary = verify_run(curated_run_dir, workers=2)
    assert problems == []
    n = manifest["total_samples"]
    assert summary["samples"] == n and summary["images_decoded"] == n and summary["shards"] == len(manifest["shards"])
    assert report_main(["verify", str(curated_run_dir), "--workers", "1"]) == 0
    assert capsys.readouterr().out.startswith(f"OK: {len(manifest['shards'])} shards, {n} samples")


def test_truncated_shard(run_copy, capsys):
    tar = _shards(run_copy)[1]
    data = tar.read_bytes()
    tar.write_bytes(data[: len(data) // 3])
    problems, _ = verify_run(run_copy)
    checks = _by_check(problems)
    assert {p.shard for p in problems} == {tar.name}
    assert "truncated" in checks["tar"][0].message
    assert "manifest.json says" in checks["size"][0].message
    assert "sha256" in checks
    # the samples lost with the tail are named one by one
    assert len(checks["missing_sample"]) >= 2
    assert all("listed in index.parquet" in p.message for p in checks["missing_sample"])
    assert report_main(["verify", str(run_copy), "--workers", "1"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAILED:") and f"{tar.name}: [tar]" in out


def test_flipped_byte(run_copy, capsys):
    tar = _shards(run_copy)[0]
    with tarfile.open(tar) as tf:
        m = next(m for m in tf.getmembers() if not m.name.endswith(".json"))
    key = m.name.partition(".")[0]
    raw = bytearray(tar.read_bytes())
    raw[m.offset_data + m.size // 2] ^= 0xFF
    tar.write_bytes(bytes(raw))
    problems, _ = verify_run(run_copy)
    checks = _by_check(problems)
    assert "changed after it was written" in checks["sha256"][0].message
    img = [p for p in checks["image_sha256"] if p.key == key]
    assert len(img) == 2  # disagrees with both its json and index.parquet
    assert any(f"{key}.json says" in p.message for p in img) and any("index.parquet says" in p.message for p in img)
    assert {p.shard for p in problems} == {tar.name}
    assert report_main(["verify", str(run_copy), "--workers", "1"]) == 1
    assert f"{tar.name} key={key}: [image_sha256]" in capsys.readouterr().out


def test_missing_sample(run_copy, capsys):
    tar = _shards(run_copy)[-1]
    members = _members(tar)
    n = len({m.name.partition(".")[0] for m, _ in members})
    gone = members[2][0].name.partition(".")[0]
    _write_tar(tar, [(m, d) for m, d in members if not m.name.startswith(gone + ".")])
    problems, _ = verify_run(run_copy)
    checks = _by_check(problems)
    assert [(p.shard, p.key) for p in checks["missing_sample"]] == [(tar.name, gone)]
    assert f"shard holds {n - 1} samples but manifest.json says {n}" == checks["sample_count"][0].message
    assert "keys" in checks and "sha256" in checks
    assert report_main(["verify", str(run_copy), "--workers", "1"]) == 1
    assert f"{tar.name} key={gone}: [missing_sample] listed in index.parquet" in capsys.readouterr().out


def test_duplicate_key_across_shards(run_copy, capsys):
    first, tar = _shards(run_copy)[0], _shards(run_copy)[-1]
    src = _members(first)
    key = src[0][0].name.partition(".")[0]
    dup = [(m, d) for m, d in src if m.name.startswith(key + ".")]
    _write_tar(tar, _members(tar) + dup)
    _update_manifest(run_copy, tar)  # the manifest agrees: only the cross-shard check can see it
    problems, _ = verify_run(run_copy, workers=2)
    checks = _by_check(problems)
    dups = checks["duplicate_key"]
    assert [(p.shard, p.key) for p in dups] == [(tar.name, key)]
    assert f"also appears in shard {first.name}" in dups[0].message
    assert set(checks) == {"duplicate_key", "not_in_index"}  # sizes, checksums and counts all agree
    assert report_main(["verify", str(run_copy), "--workers", "1"]) == 1
    assert f"{tar.name} key={key}: [duplicate_key]" in capsys.readouterr().out


def test_bad_json_and_missing_manifest(run_copy, capsys):
    tar = _shards(run_copy)[1]
    members = _members(tar)
    m, _ = next((m, d) for m, d in members if m.name.endswith(".json"))
    members = [(mm, b"{not json" if mm.name == m.name else d) for mm, d in members]
    _write_tar(tar, members)
    _update_manifest(run_copy, tar)
    problems, _ = verify_run(run_copy)
    assert [(p.check, p.key) for p in problems] == [("json", m.name.partition(".")[0])]
    assert "does not parse as sample metadata" in problems[0].message
    (run_copy / "manifest.json").unlink()
    problems, _ = verify_run(run_copy)
    assert problems[0].check == "manifest" and "no manifest.json" in problems[0].message
    assert report_main(["verify", str(run_copy.parent / "absent")]) == 2


def test_image_that_does_not_decode(run_copy):
    tar = _shards(run_copy)[0]
    members = _members(tar)
    m, data = next((m, d) for m, d in members if not m.name.endswith(".json"))
    key = m.name.partition(".")[0]
    _write_tar(tar, [(mm, d[: len(d) // 2] if mm.name == m.name else d) for mm, d in members])
    _update_manifest(run_copy, tar)
    problems, _ = verify_run(run_copy)
    checks = _by_check(problems)
    assert set(checks) == {"decode", "image_sha256"}
    assert [(p.key, p.shard) for p in checks["decode"]] == [(key, tar.name)]
    assert "image does not decode (truncated)" in checks["decode"][0].message


def test_report_and_verify_do_not_import_torch():
    """Reports and verification read manifests and parquet only: importing them must not pull in torch
    (webdataset, which imports torch, is imported lazily by shared.shards where shards are written/read)."""
    import subprocess
    import sys

    code = ("import sys, curation.report.verify, curation.report.build, shared.shards; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
