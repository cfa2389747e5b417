"""Typed model of ``pipelines.yaml``: each pipeline's stages in order, their thresholds and resources.

Loaded through ``shared.config`` so a bad file fails before any work starts, with the key, the value
and what is allowed. ``load_pipeline`` also applies ``--set stage.key=value`` style overrides to the
raw YAML before validation, so overrides are checked exactly like the file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Field, model_validator

from humans.shared.cli import set_dotted
from humans.shared.config import ConfigError, StrictModel, load_yaml, validate

from .download import DownloadConfig
from .localread import ReadConfig

DEFAULT_CONFIG = Path(__file__).resolve().parent / "pipelines.yaml"  # ships in the package

# Canonical order and directory names of the stages (decision parquets live in OUT/stages/NN_name/).
STAGE_ORDER = ("resolution", "quality", "person", "framing", "phash", "embedding")
STAGE_DIRS = {"read": "00_read", **{n: f"{i + 1:02d}_{n}" for i, n in enumerate(STAGE_ORDER)}}


class Resources(StrictModel):
    """Ray resources of a stage: CPUs and GPUs per task/actor, images per model call, parallel workers."""

    num_cpus: float = Field(1.0, ge=0, description="CPUs reserved per Ray task/actor of this stage")
    num_gpus: float = Field(0.0, ge=0, description="GPUs reserved per Ray task/actor of this stage")
    batch_size: int = Field(16, ge=1, description="images per model call (person, embedding)")
    concurrency: int = Field(1, ge=1, description="Ray tasks/actors of this stage running at once")


class _Stage(StrictModel):
    enabled: bool = True
    resources: Resources = Field(default_factory=Resources)


class ResolutionStage(_Stage):
    """Stage 1: size and aspect ratio from the image header (no pixel decode)."""

    name: Literal["resolution"]
    min_short_side: int = Field(256, ge=1)
    min_pixels: int = Field(0, ge=0)
    max_pixels: int = Field(100_000_000, ge=1, description="decode refuses larger (bomb guard)")
    max_aspect: float = Field(3.0, ge=1.0, description="long side / short side")

    @model_validator(mode="after")
    def _consistent(self) -> "ResolutionStage":
        if self.min_pixels > self.max_pixels:
            raise ValueError(f"min_pixels={self.min_pixels} is above max_pixels={self.max_pixels}: "
                             f"no image could pass (allowed: min_pixels <= max_pixels)")
        if self.min_short_side ** 2 > self.max_pixels:
            raise ValueError(f"min_short_side={self.min_short_side} needs at least "
                             f"{self.min_short_side ** 2} pixels, above max_pixels={self.max_pixels}: "
                             f"no image could pass (allowed: min_short_side**2 <= max_pixels)")
        return self


class QualityStage(_Stage):
    """Stage 2: sharpness, exposure, information and compression artefacts on the decoded pixels."""

    name: Literal["quality"]
    analysis_long_side: int = Field(384, ge=64, description="images are resized to this before scoring")
    min_sharpness: float = Field(20.0, ge=0, description="variance of the Laplacian at analysis size")
    min_mean: float = Field(25.0, ge=0, le=255)
    max_mean: float = Field(230.0, ge=0, le=255)
    max_dark_frac: float = Field(0.6, ge=0, le=1, description="fraction of pixels <= 5")
    max_bright_frac: float = Field(0.6, ge=0, le=1, description="fraction of pixels >= 250")
    min_entropy: float = Field(3.0, ge=0, le=8, description="grey-level entropy in bits")
    min_jpeg_quality: int = Field(30, ge=0, le=100, description="estimated from the quantisation tables")
    max_blockiness: float = Field(2.0, ge=1, description="8x8 boundary / interior gradient ratio")

    @model_validator(mode="after")
    def _consistent(self) -> "QualityStage":
        if self.min_mean >= self.max_mean:
            raise ValueError(f"min_mean={self.min_mean} is not below max_mean={self.max_mean}: no image "
                             f"could pass (allowed: 0 <= min_mean < max_mean <= 255)")
        return self


class PersonStage(_Stage):
    """Stage 3: person detection; keeps images with at least ``min_persons`` confident people."""

    name: Literal["person"]
    detector: Literal["auto", "mediapipe", "opencv", "hog", "mtcnn", "yolo"] = "auto"
    weights: str | None = Field(None, description="ultralytics YOLO .pt (detector yolo / auto)")
    min_score: float = Field(0.5, ge=0, le=1)
    min_persons: int = Field(1, ge=1)
    analysis_long_side: int | None = Field(
        None, ge=64, description="long side of the copy the detector sees; null: the detector's own "
                                 "(384 for mediapipe, 640 for opencv, hog, mtcnn, yolo)")

    @model_validator(mode="after")
    def _weights_for_yolo(self) -> "PersonStage":
        if self.detector == "yolo" and not self.weights:
            raise ValueError("detector 'yolo' needs 'weights' (a path to an ultralytics .pt file)")
        return self


class FramingStage(_Stage):
    """Stage 4: size of the largest person, number of people, truncation at the border."""

    name: Literal["framing"]
    min_person_height_frac: float = Field(0.2, ge=0, le=1, description="largest box height / image height")
    min_person_area_frac: float = Field(0.02, ge=0, le=1, description="largest box area / image area")
    max_persons: int = Field(6, ge=1)
    border_margin_frac: float = Field(0.02, ge=0, le=0.5, description="a box this close to an edge touches it")
    max_touching_sides: int = Field(3, ge=0, le=4, description="more box sides on the border = truncated")
    max_cut_landmarks: int = Field(1, ge=0, description="more body landmarks outside the left, right or "
                                                        "top border = truncated (a bottom cut is a portrait)")


class PhashStage(_Stage):
    """Stage 5: perceptual-hash dedup with LSH banding, grouped across Ray tasks."""

    name: Literal["phash"]
    hash_size: int = Field(8, ge=4, le=32, description="hash has hash_size**2 bits")
    max_distance: int = Field(6, ge=0, description="Hamming distance for a near duplicate (< hash bits)")
    bands: int = Field(8, ge=1, description="LSH bands; > max_distance guarantees recall")
    partitions: int = Field(4, ge=1, description="shuffle partitions (Ray reduce tasks)")

    @model_validator(mode="after")
    def _bands_divide(self) -> "PhashStage":
        bits = self.hash_size ** 2
        if bits % self.bands:
            raise ValueError(f"bands={self.bands} must divide the {bits} hash bits")
        if self.max_distance >= bits // 2:
            raise ValueError(f"max_distance={self.max_distance} would call unrelated images duplicates "
                             f"(allowed: 0 <= max_distance < {bits // 2}, half the {bits} hash bits)")
        return self


class EmbeddingStage(_Stage):
    """Stage 6: image embeddings, near-duplicate clusters (cosine similarity after PCA whitening fitted
    on the pool) resolved to one representative.

    The embedder is our own self-supervised backbone by default (``backbone``: a ``humans-pretrain
    export`` checkpoint), or an open_clip image tower (``embedder: open_clip`` with ``checkpoint``).
    Random weights only with ``random_init: true``, named so in every output."""

    name: Literal["embedding"]
    embedder: Literal["backbone", "open_clip"] = Field(
        "backbone", description="backbone: our own pretrained ViT (`backbone`); open_clip: `model` + `checkpoint`")
    backbone: str | None = Field(None, description="`humans-pretrain export` checkpoint (.safetensors) of the "
                                                    "backbone embedder (--embedding-backbone)")
    random_init: bool = Field(False, description="RANDOM weights, no semantics (tests only): the backbone "
                                                 "`random_backbone` or open_clip `model` with a fixed seed")
    random_backbone: str = Field("study-s8", description="backbone config built when random_init is set")
    model: str = Field("ViT-B-32", description="open_clip architecture name (embedder: open_clip)")
    checkpoint: str | None = Field(None, description="open_clip state dict (--embedding-checkpoint)")
    image_size: int | None = Field(None, ge=32, description="input size (default: 96 for a backbone, the "
                                                           "open_clip model's own otherwise)")
    pool_grids: list[int] = Field([1, 2], min_length=1, description="backbone embedder: the last block's "
                                  "features average-pooled on these g x g grids, each L2-normalised, concatenated")
    zoom_views: list[float] = Field([1.0, 0.88], min_length=1, description="backbone embedder: each image is "
                                    "embedded as centre crops keeping these fractions of the frame; a pair is a "
                                    "duplicate when any views match (a re-framed copy meets the original's zoom)")
    whiten_dims: int = Field(48, ge=0, description="PCA-whitening dimensions fitted on the pool's vectors "
                                                  "(0: off; len(pool) // 4 when the pool has fewer than 4x)")
    whiten_shrink: float = Field(1.0, ge=0, description="whitening shrinkage: eigenvalues + shrink x their mean")
    threshold: float = Field(0.94, gt=0, le=1, description="cosine similarity for a near duplicate (0 < t <= 1)")
    ivf_threshold: int = Field(200_000, ge=1, description="pools with at least this many vectors use IVF")
    nlist: int | None = Field(None, ge=1, description="IVF (k-means) partitions; default 4*sqrt(n)")
    nprobe: int = Field(2, ge=1, description="IVF: each vector joins its nprobe nearest partitions")
    partitions: int = Field(4, ge=1, description="IVF: Ray reduce tasks the partitions are spread over")
    kmeans_sample: int = Field(100_000, ge=1, description="IVF: vectors the k-means is trained on")

    @model_validator(mode="after")
    def _check_pool_grids(self) -> "EmbeddingStage":
        if any(g < 1 or g > 8 for g in self.pool_grids):
            raise ValueError(f"embedding.pool_grids {self.pool_grids} must be grid sizes between 1 and 8")
        if any(not 0.5 <= z <= 1.0 for z in self.zoom_views):
            raise ValueError(f"embedding.zoom_views {self.zoom_views} must be fractions of the frame in [0.5, 1]")
        if self.random_init and (self.backbone or self.checkpoint):
            raise ValueError("embedding.random_init=true contradicts a checkpoint given in embedding.backbone or "
                             "embedding.checkpoint: choose one")
        if self.embedder == "backbone" and self.checkpoint:
            raise ValueError("embedding.checkpoint is an open_clip state dict: set embedding.embedder=open_clip "
                             "with it (--embedding-checkpoint does), or give our backbone as embedding.backbone")
        if self.embedder == "open_clip" and self.backbone:
            raise ValueError("embedding.backbone is our backbone's checkpoint: it needs embedding.embedder=backbone "
                             "(allowed: backbone, open_clip)")
        return self

    def weights_problem(self) -> str | None:
        """Why this stage cannot run as configured (no weights named and no explicit random_init), or None."""
        if not self.enabled or self.random_init:
            return None
        if self.embedder == "backbone" and not self.backbone:
            return ("embedding.backbone is not set: the embedding stage needs weights. Pass --embedding-backbone "
                    "CKPT (a `humans-pretrain export` checkpoint; `humans` pretrains one before curating), or "
                    "--embedding-checkpoint PATH for an open_clip model (embedding.embedder=open_clip), or "
                    "--embedding-random-init for RANDOM weights (no semantics, tests only), or --set "
                    "embedding.enabled=false")
        if self.embedder == "open_clip" and not self.checkpoint:
            return ("embedding.checkpoint is not set: embedding.embedder=open_clip needs an open_clip state dict "
                    "(--embedding-checkpoint PATH; no weights can be downloaded here), or --embedding-random-init "
                    "for RANDOM weights (no semantics, tests only)")
        return None


StageConfig = Annotated[Union[ResolutionStage, QualityStage, PersonStage, FramingStage, PhashStage,
                              EmbeddingStage], Field(discriminator="name")]


class PipelineConfig(StrictModel):
    """One pipeline: how the pool is split, how shards are written, and its stages in order."""

    description: str = ""
    items_per_task: int = Field(256, ge=1, description="pool items per Ray task (the resume unit)")
    shard_prefix: str = Field("humans", pattern=r"^[A-Za-z0-9_\-]+$")
    samples_per_shard: int = Field(1000, ge=1)
    max_long_side: int | None = Field(None, ge=32, description="re-encode images whose long side is larger")
    jpeg_quality: int = Field(95, ge=1, le=100, description="quality of re-encoded JPEGs")
    normalize_modes: bool = Field(True, description="store CMYK/16-bit/palette/alpha/EXIF-rotated as RGB")
    filter_resources: Resources = Field(default_factory=Resources,
                                        description="read+decode task (also runs stages 1-2 when fused)")
    download: DownloadConfig = Field(default_factory=DownloadConfig, description="URL pools only")
    read: ReadConfig = Field(default_factory=ReadConfig, description="folder pools: size cap, timeout, "
                                                                     "symlinks outside the root")
    stages: list[StageConfig]

    @model_validator(mode="after")
    def _check_stages(self) -> "PipelineConfig":
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stages {names} name a stage twice")
        order = [STAGE_ORDER.index(n) for n in names]
        if order != sorted(order):
            raise ValueError(f"stages {names} must follow the order {list(STAGE_ORDER)}")
        if "framing" in names and "person" not in names:
            raise ValueError("stage 'framing' needs stage 'person' before it")
        person, framing = self.stage("person"), self.stage("framing")
        if person and framing and person.min_persons > framing.max_persons:
            raise ValueError(f"person.min_persons={person.min_persons} is above framing.max_persons="
                             f"{framing.max_persons}: no image could pass (allowed: min_persons <= max_persons)")
        return self

    def stage(self, name: str):
        """The enabled stage called ``name``, or None."""
        for s in self.stages:
            if s.name == name and s.enabled:
                return s
        return None


class PipelinesFile(StrictModel):
    pipelines: dict[str, PipelineConfig]


def apply_overrides(raw: dict, pipeline: str, overrides: dict[str, Any] | None) -> dict:
    """Set ``{"person.min_score": 0.6, "samples_per_shard": 10}`` in pipeline ``pipeline`` of ``raw``.

    A dotted key whose first part names a stage addresses that stage; otherwise it addresses the
    pipeline itself. Unknown keys are left for validation to report. Values are taken as given
    (``--set`` strings are parsed once, by ``shared.cli.parse_set``).
    """
    if not overrides:
        return raw
    pipe = raw.get("pipelines", {}).get(pipeline)
    if not isinstance(pipe, dict):
        return raw
    stages = {s.get("name"): s for s in pipe.get("stages", []) if isinstance(s, dict)}
    for key, value in overrides.items():
        parts = key.split(".")
        if parts[0] in STAGE_ORDER:
            if parts[0] not in stages:
                raise ConfigError(f"override '{key}': pipeline '{pipeline}' has no stage '{parts[0]}' "
                                  f"(stages: {list(stages)})")
            target, parts = stages[parts[0]], parts[1:]
        else:
            target = pipe
        set_dotted(target, {".".join(parts): value}, f"override '{key}'")
    return raw


def _check_stage_names(raw: Any, path: Path) -> None:
    """A stage without a valid ``name`` gets a message naming the allowed stage names (pydantic would
    only say that it could not find the discriminator)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("pipelines"), dict):
        return
    allowed = ", ".join(STAGE_ORDER)
    for pname, pipe in raw["pipelines"].items():
        stages = pipe.get("stages") if isinstance(pipe, dict) else None
        if not isinstance(stages, list):
            continue
        for i, st in enumerate(stages):
            where = f"{path}: key 'pipelines.{pname}.stages.{i}'"
            if not isinstance(st, dict):
                raise ConfigError(f"{where} has value {st!r}: a stage must be a mapping with a 'name' "
                                  f"(allowed names: {allowed})")
            if "name" not in st:
                raise ConfigError(f"{where} has no 'name' (it has keys {sorted(map(str, st))}); every stage "
                                  f"needs one (allowed names: {allowed})")


def load_pipeline(pipeline: str = "humans", config_path: str | Path | None = None,
                  overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Load pipeline ``pipeline`` from ``config_path`` (default: the repository's pipelines.yaml)."""
    path = Path(config_path) if config_path else DEFAULT_CONFIG
    raw = load_yaml(path)
    if isinstance(raw, dict) and isinstance(raw.get("pipelines"), dict) and pipeline not in raw["pipelines"]:
        raise ConfigError(f"{path}: key 'pipelines' has no pipeline {pipeline!r} "
                          f"(allowed: {sorted(raw['pipelines'])})")
    _check_stage_names(raw, path)
    raw = apply_overrides(raw, pipeline, overrides)
    doc = validate(PipelinesFile, raw, source=str(path))
    return doc.pipelines[pipeline]

