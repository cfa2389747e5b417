"""Independent readers for the report tests: counts taken straight from the tar files (``tarfile``)
and the decision parquets (pandas), sharing no code with curation.report."""
from __future__ import annotations

import json
import tarfile
from collections import Counter
from pathlib import Path

import pandas as pd

IMAGE_EXTS = {"jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif"}


def shard_counts(run: Path) -> dict[str, dict]:
    """Per shard file: samples (distinct keys), image bytes, mean width/height from the json members."""
    out = {}
    for tar in sorted(run.glob("*.tar")):
        keys, img_bytes, ws, hs = set(), 0, [], []
        with tarfile.open(tar) as tf:
            for m in tf.getmembers():
                key, _, ext = m.name.partition(".")
                keys.add(key)
                if ext.lower() in IMAGE_EXTS:
                    img_bytes += m.size
                elif ext == "json":
                    meta = json.loads(tf.extractfile(m).read())
                    ws.append(meta["width"])
                    hs.append(meta["height"])
        out[tar.name] = {"samples": len(keys), "image_bytes": img_bytes, "tar_bytes": tar.stat().st_size,
                         "mean_width": sum(ws) / len(ws) if ws else None,
                         "mean_height": sum(hs) / len(hs) if hs else None}
    return out


def stage_frames(run: Path) -> dict[str, pd.DataFrame]:
    frames = {}
    for d in sorted((run / "stages").iterdir()):
        files = sorted(d.glob("*.parquet"))
        frames[d.name] = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True) if files \
            else pd.DataFrame({"kept": pd.Series([], dtype=bool), "reason": pd.Series([], dtype=str)})
    return frames


def funnel_counts(run: Path) -> dict[str, dict]:
    out = {}
    for name, df in stage_frames(run).items():
        kept = df["kept"].fillna(False).astype(bool)
        reasons = Counter(r if isinstance(r, str) and r else "(no reason given)" for r in df.loc[~kept, "reason"])
        out[name] = {"in": len(df), "kept": int(kept.sum()), "reasons": dict(reasons)}
    return out


def duplicate_clusters(df: pd.DataFrame) -> int:
    """Clusters with more than one member, from whichever representative column the stage has."""
    rep_col = next((c for c in ("dup_of", "cluster_rep") if c in df.columns), None)
    if rep_col is None:
        return 0
    rep = df[rep_col].where(df[rep_col].notna() & (df[rep_col] != ""), df["key"])
    sizes = rep.value_counts()
    return int((sizes > 1).sum())
