"""Finding the parts of a curated run directory: shards, index, manifest, stage decisions, run.json.

A report or a verification can be pointed at a full run directory (``OUT`` of ``python -m curation
run``) or at a folder that holds only shards and ``manifest.json``; whatever is absent is recorded
as ``None`` so callers can say so instead of failing.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from humans.shared.schema import INDEX_NAME, MANIFEST_NAME, RUN_NAME, STAGES_DIR
from humans.shared.shards import list_shards


@dataclass
class RunLayout:
    root: Path
    shards: list[Path]
    index: Path | None
    manifest: Path | None
    run_json: Path | None
    stage_dirs: list[Path] = field(default_factory=list)

    def manifest_doc(self) -> dict | None:
        if self.manifest is None:
            return None
        try:
            return json.loads(self.manifest.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{self.manifest}: cannot read the manifest: {exc}") from None

    def run_doc(self) -> dict | None:
        if self.run_json is None:
            return None
        try:
            doc = json.loads(self.run_json.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return doc if isinstance(doc, dict) else None


def stage_parquets(stage_dir: Path) -> list[Path]:
    """Decision files of one stage (any depth), sorted; temporary files are ignored."""
    return sorted(p for p in stage_dir.rglob("*.parquet") if p.is_file() and not p.name.startswith("."))


def resolve_run(path: str | Path) -> RunLayout:
    """Describe the run directory at ``path``; raises FileNotFoundError when it holds nothing curated."""
    root = Path(path)
    if root.is_file() and root.name == MANIFEST_NAME:
        root = root.parent
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such directory (expected a curated run or shard directory)")
    index = root / INDEX_NAME
    manifest = root / MANIFEST_NAME
    run_json = root / RUN_NAME
    stages = root / STAGES_DIR
    stage_dirs = sorted(p for p in stages.iterdir() if p.is_dir()) if stages.is_dir() else []
    layout = RunLayout(root=root, shards=list_shards(root),
                       index=index if index.is_file() else None,
                       manifest=manifest if manifest.is_file() else None,
                       run_json=run_json if run_json.is_file() else None,
                       stage_dirs=stage_dirs)
    if not (layout.shards or layout.index or layout.manifest or layout.stage_dirs):
        raise FileNotFoundError(f"{root}: no shards, {INDEX_NAME}, {MANIFEST_NAME} or {STAGES_DIR}/ found: "
                                "not a curated run or shard directory")
    return layout
