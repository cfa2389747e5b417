"""Stage 6: embedding dedup: image embeddings, near-duplicate search, clusters resolved to one
representative.

Embedders (``build_embedder``):

- ``BackboneEmbedder`` (the default): our own self-supervised backbone, a ``humans-pretrain export``
  checkpoint (as DINOv2's curation retrieved with its own self-supervised model). The vector is the
  last block's patch features average-pooled on a 1x1 and a 2x2 grid (``pool_grids``), each part
  L2-normalised: the 2x2 cells keep the layout, so two photos of one person on one background in
  different places stay apart, while a re-framed or rotated copy stays close. Each image is embedded
  as several centre crops (``zoom_views``, e.g. the whole frame and its central 88 %): a pair is a
  duplicate when any of its views match, so a copy cut closer than its original meets it.
- ``OpenClipEmbedder``: an open_clip image tower from a user checkpoint, loaded strictly.
- Random weights only with ``random_init`` (tests), and then "RANDOM INIT" is in every description.

Before the search the vectors are PCA-whitened (``fit_whitening``: mean, top ``whiten_dims``
directions of the pool's own vectors, eigenvalues shrunk towards their mean) and re-normalised, as
instance retrieval does: directions every image shares ("a person in the middle") stop dominating
the cosine. The whitening is fitted on the vectors searched (flat) or the k-means sample (IVF).

Search has two paths, chosen by pool size:

- small pools (< ``ivf_threshold`` vectors): one exact search over all vectors (cosine similarity
  >= ``threshold``), tiled matrix products;
- large pools: IVF-style partitioning: k-means centroids (``nlist``, trained on a sample with faiss,
  two levels, in the sample's top principal directions) split the space; every vector joins its
  ``nprobe`` nearest partitions (found exactly, in the centroids' low-dimensional span); each
  partition is searched exactly and independently (in the pipeline, in Ray reduce tasks). No process
  needs every vector, and ``nprobe > 1`` keeps pairs that straddle a boundary.

Exact searches over more than one tile of vectors first compare cheap (k+1)-wide vectors whose inner
products bound the real ones from above (:func:`_bound_vectors`), then check the candidates in full:
the same pairs, several times fewer multiply-adds. ``benchmarks/dedup_bench.py`` times 1M vectors.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from humans.shared.config import ConfigError

REASONS = ("embedding_duplicate",)
CHECKPOINT_HELP = ("--embedding-checkpoint must be an open_clip image-text model's state dict saved with "
                   "torch.save(model.state_dict()) (.pt/.pth/.bin) or a .safetensors file, for the "
                   "architecture named by embedding.model; leave it out to use a randomly initialised model "
                   "(pixel-level near-duplicates only).")


class CheckpointError(ConfigError):
    """An embedding checkpoint that is missing, unreadable or does not fit the model; one paragraph."""


def _first_line(exc: BaseException) -> str:
    # torch's own message advises retrying with weights_only=False, i.e. running arbitrary pickled
    # code: never pass that on; keep only a neutral first line.
    line = (str(exc).strip().splitlines() or [""])[0]
    if "weights_only" in line or "pickle" in line.lower() or len(line) > 200:
        return type(exc).__name__
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


_SAFE_MODULES = ("torch", "collections", "_codecs", "numpy")
_SAFE_BUILTINS = {"set", "frozenset", "bytearray", "slice", "complex", "int", "float", "bool", "str", "bytes",
                  "list", "dict", "tuple"}
_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}


def _pickle_globals(data: bytes) -> list[str]:
    """``module.name`` of every global a pickle stream imports (GLOBAL / STACK_GLOBAL), read with
    ``pickletools`` without running anything. Best effort: ``torch.load(weights_only=True)`` stays
    the real guard; this only lets an obviously unsafe file fail before torch is even imported."""
    import pickletools

    found, strings, memo, n_memo, top = [], [], {}, 0, None  # top: the string just pushed, if any
    for op, arg, _ in pickletools.genops(data):
        pushed = None
        if op.name in _STRING_OPS:
            pushed = arg
        elif op.name in ("BINPUT", "LONG_BINPUT", "PUT"):
            if top is not None:
                memo[arg] = top
            pushed = top  # a memo write leaves the stack as it was
        elif op.name == "MEMOIZE":
            if top is not None:
                memo[n_memo] = top
            n_memo += 1
            pushed = top
        elif op.name in ("BINGET", "LONG_BINGET", "GET"):
            pushed = memo.get(arg)
        elif op.name == "GLOBAL":
            found.append(str(arg).replace(" ", "."))
        elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
            found.append(f"{strings[-2]}.{strings[-1]}")
        if pushed is not None and pushed is not top:
            strings.append(pushed)
        top = pushed
    return found


def _quick_refusal(p: Path) -> str | None:
    """Why ``p`` is certainly not a safe tensor checkpoint, found with the standard library only."""
    import pickle
    import zipfile

    with open(p, "rb") as fh:
        head = fh.read(4)
    try:
        if zipfile.is_zipfile(p):
            with zipfile.ZipFile(p) as zf:
                pkl = [n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
                if not pkl:
                    return "it is a zip archive without the data.pkl of a torch checkpoint"
                data = zf.read(pkl[0])
        elif head[:1] == b"\x80":
            data = p.read_bytes()
        else:
            return "it is neither a torch checkpoint (zip or pickle) nor a .safetensors file"
        names = _pickle_globals(data)
    except (zipfile.BadZipFile, pickle.UnpicklingError, ValueError, EOFError, OSError):
        return None  # leave the verdict to torch.load
    for name in names:
        module, _, attr = name.rpartition(".")
        safe = module.split(".")[0] in _SAFE_MODULES or (module == "builtins" and attr in _SAFE_BUILTINS)
        if not safe:
            return (f"it holds pickled Python objects other than tensors ({name}), which are never unpickled "
                    f"because they could run code")
    return None


def load_checkpoint_state(path: str | Path) -> dict:
    """The tensors of a checkpoint file, loaded safely (safetensors, or torch.load weights_only=True).

    Accepts a bare state dict or one wrapped as ``{"state_dict": ...}``; strips DDP's ``module.``.
    Raises ``CheckpointError`` (one paragraph, no traceback) for anything else."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"embedding checkpoint {str(path)!r} does not exist. {CHECKPOINT_HELP}")
    if not p.is_file():
        raise CheckpointError(f"embedding checkpoint {str(path)!r} is not a regular file. {CHECKPOINT_HELP}")
    why = _quick_refusal(p) if p.suffix != ".safetensors" else None
    if why:
        raise CheckpointError(f"embedding checkpoint {str(path)!r} was not loaded: {why}. {CHECKPOINT_HELP}")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(p))
        else:
            import torch

            import warnings

            with warnings.catch_warnings():  # torch warns about pickle protocols before refusing
                warnings.simplefilter("ignore")
                state = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to read the file is the same user error
        raise CheckpointError(f"embedding checkpoint {str(path)!r} was not loaded: it is not a plain tensor "
                              f"checkpoint (damaged, not a torch/safetensors file, or holding Python objects "
                              f"other than tensors, which are never unpickled because they could run code; "
                              f"{_first_line(exc)}). {CHECKPOINT_HELP}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    import torch

    if not isinstance(state, dict) or not state or \
            not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError(f"embedding checkpoint {str(path)!r} was not loaded: it is not a mapping of "
                              f"parameter names to tensors. {CHECKPOINT_HELP}")
    return {k.removeprefix("module."): v for k, v in state.items()}


def mismatch(want: dict[str, tuple], state: dict, path: str | Path, model: str) -> CheckpointError | None:
    """The one-paragraph error for a state dict whose keys or shapes differ from ``want`` (name -> shape),
    or None when they fit exactly."""
    missing = sorted(set(want) - set(state))
    extra = sorted(set(state) - set(want))
    shapes = sorted(k for k in set(want) & set(state) if tuple(want[k]) != tuple(state[k].shape))
    parts = []
    if missing:
        parts.append(f"{len(missing)} of the model's {len(want)} parameters are missing (e.g. {missing[:3]})")
    if extra:
        parts.append(f"{len(extra)} key(s) are not in the model (e.g. {extra[:3]})")
    if shapes:
        k = shapes[0]
        parts.append(f"{len(shapes)} parameter(s) have the wrong shape (e.g. {k}: {tuple(state[k].shape)} in the file, "
                     f"{tuple(want[k])} in the model)")
    if not parts:
        return None
    return CheckpointError(f"embedding checkpoint {str(path)!r} does not fit open_clip {model}: {'; '.join(parts)}. "
                           f"{CHECKPOINT_HELP}")


def load_strict(net, state: dict, path: str | Path, model: str, assign: bool = False) -> None:
    """``net.load_state_dict(state, strict=True)`` with a one-paragraph ``CheckpointError`` on mismatch
    (``assign=True`` for a model on the ``meta`` device: no copy, only the key and shape checks)."""
    try:
        net.load_state_dict(state, strict=True, assign=assign)
    except RuntimeError as exc:
        err = mismatch({k: tuple(v.shape) for k, v in net.state_dict().items()}, state, path, model)
        raise (err or CheckpointError(f"embedding checkpoint {str(path)!r} does not fit open_clip {model}: "
                                      f"{_first_line(exc)}. {CHECKPOINT_HELP}")) from None


def shipped_shapes(model: str, image_size: int | None) -> dict[str, tuple] | None:
    """Parameter shapes of ``model`` at ``image_size`` from the files shipped in ``openclip_shapes``,
    or None when none was shipped for that pair."""
    import json

    f = Path(__file__).parent / "openclip_shapes" / f"{model}@{image_size or 'default'}.json"
    if not f.is_file():
        return None
    return {k: tuple(v) for k, v in json.loads(f.read_text())["shapes"].items()}


def _model_names() -> list[str]:
    """open_clip's architecture names, read from its bundled model configs without importing it
    (importing open_clip pulls torchvision and costs seconds)."""
    import importlib.util

    spec = importlib.util.find_spec("open_clip")
    folder = Path(spec.origin).parent / "model_configs" if spec and spec.origin else None
    if folder is None or not folder.is_dir():
        import open_clip

        return open_clip.list_models()
    return sorted(p.stem for p in folder.glob("*.json"))


def check_model_name(model: str) -> None:
    names = _model_names()
    if model not in names:
        near = [n for n in names if n.lower().startswith(model.lower()[:4])][:8] or names[:8]
        raise ConfigError(f"embedding.model {model!r} is not an open_clip architecture (e.g. {', '.join(near)}; "
                          f"open_clip.list_models() has all {len(names)})")


def check_checkpoint(model: str, checkpoint: str, image_size: int | None = None) -> None:
    """Up-front check, before any Ray work: ``checkpoint`` exists, loads safely and fits ``model``
    strictly (every parameter present, none extra, every shape right). The shapes come from the files
    shipped in ``openclip_shapes`` where one exists for the model and size, else from the model built on
    the ``meta`` device (no memory allocated, no weights initialised)."""
    state = load_checkpoint_state(checkpoint)
    check_model_name(model)
    want = shipped_shapes(model, image_size)
    if want is not None:  # no open_clip import: the shapes ship with us
        err = mismatch(want, state, checkpoint, model)
        if err is not None:
            raise err
        return
    import open_clip
    import torch

    kwargs = {"force_image_size": image_size} if image_size else {}
    with torch.device("meta"):
        net = open_clip.create_model(model, pretrained=None, device="meta", **kwargs)
    load_strict(net, state, checkpoint, model, assign=True)


def open_clip_description(model: str, checkpoint: str | None, seed: int = 0) -> str:
    """How every output names an open_clip embedder ("RANDOM INIT" without a checkpoint)."""
    if checkpoint:
        return f"open_clip {model} from {checkpoint}"
    return f"open_clip {model} RANDOM INIT seed {seed} (no checkpoint given; no semantics)"


def backbone_description(checkpoint: str | None, random_config: str, seed: int = 0) -> str:
    """How every output names a backbone embedder ("RANDOM INIT" without a checkpoint)."""
    if checkpoint:
        return f"backbone {checkpoint}"
    return f"backbone {random_config} RANDOM INIT seed {seed} (no checkpoint; no semantics)"


def describe(st) -> str:
    """The description of the embedder an ``EmbeddingStage`` config names, without building it."""
    if st.embedder == "backbone":
        return backbone_description(st.backbone, st.random_backbone)
    return open_clip_description(st.model, st.checkpoint)


class OpenClipEmbedder:
    """An open_clip image tower; ``embed`` returns L2-normalised float32 vectors."""

    def __init__(self, model: str, checkpoint: str | None = None, image_size: int | None = None,
                 threads: int = 1, device: str = "cpu", seed: int = 0):
        import open_clip
        import torch

        torch.set_num_threads(max(1, threads))
        kwargs = {"force_image_size": image_size} if image_size else {}
        # A fixed seed: every actor, process and rerun builds the SAME random network, so vectors
        # from different tasks are comparable and reruns (resume) give the same decisions.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = open_clip.create_model(model, pretrained=None, **kwargs)
        if checkpoint:
            load_strict(net, load_checkpoint_state(checkpoint), checkpoint, model)
        self.random_init = checkpoint is None
        self.description = open_clip_description(model, checkpoint, seed)
        self.net = net.eval().to(device)
        self.device = device
        self.dim = int(net.visual.output_dim)
        self.views_per_image = 1
        cfg = getattr(net.visual, "preprocess_cfg", {}) or {}
        size = net.visual.image_size
        self.size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.mean = np.array(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073)), np.float32)
        self.std = np.array(cfg.get("std", (0.26862954, 0.26130258, 0.27577711)), np.float32)

    def preprocess(self, rgb: np.ndarray) -> np.ndarray:
        """Resize the short side to the model size, centre crop, normalise; CHW float32."""
        return _centre_square(rgb, self.size, self.mean, self.std)

    def embed(self, images: list[np.ndarray]) -> np.ndarray:
        import torch

        if not images:
            return np.zeros((0, self.dim), np.float32)
        x = torch.from_numpy(np.stack([self.preprocess(im) for im in images])).to(self.device)
        with torch.inference_mode():
            y = self.net.encode_image(x).float()
        y = torch.nn.functional.normalize(y, dim=-1)
        return y.cpu().numpy().astype(np.float32)


BACKBONE_IMAGE_SIZE = 96  # the backbone embedder's input size when embedding.image_size is null


def copy_short_side(st) -> int | None:
    """Short side of the embedding copy the person actor keeps for each framing survivor, so the embedding
    actors need not decode the stored image a second time (None: they decode it, as for open_clip, whose
    input size is the model's own).

    A backbone embedder sees ``size x size`` centre squares of zoom crops (``_centre_square``); a copy
    at twice that short side, area-resampled from the detector's copy, gives vectors within cosine 0.998
    of those of a fresh reduced decode (2000 px web photos, ``benchmarks/results/curation_speed.md``)."""
    if st is None or st.embedder != "backbone":
        return None
    return 2 * int(st.image_size or BACKBONE_IMAGE_SIZE)


def embedding_copy(small: np.ndarray, small_scale: float, short_side: int) -> np.ndarray | None:
    """The detector's copy ``small`` (``small_scale`` of the stored image) brought to ``short_side``, or
    None when it holds less detail than that (downscaled below it: the embedder must decode)."""
    import cv2

    h, w = small.shape[:2]
    short = min(h, w)
    if short < short_side and small_scale < 1.0:
        return None
    s = min(1.0, short_side / short)
    if s >= 1.0:
        return np.ascontiguousarray(small)
    return cv2.resize(small, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def _centre_square(rgb: np.ndarray, size: int, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Resize the short side to ``size``, centre crop, normalise; CHW float32."""
    import cv2

    h, w = rgb.shape[:2]
    s = size / min(h, w)
    nh, nw = max(size, round(h * s)), max(size, round(w * s))
    im = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    y0, x0 = (nh - size) // 2, (nw - size) // 2
    im = im[y0:y0 + size, x0:x0 + size].astype(np.float32) / 255.0
    return ((im - mean) / std).transpose(2, 0, 1)


def _zoom(rgb: np.ndarray, keep: float) -> np.ndarray:
    """The centre of ``rgb`` keeping ``keep`` of its width and height."""
    if keep >= 1.0:
        return rgb
    h, w = rgb.shape[:2]
    dy, dx = int(h * (1 - keep) / 2), int(w * (1 - keep) / 2)
    return np.ascontiguousarray(rgb[dy:h - dy, dx:w - dx])


class BackboneEmbedder:
    """Our own backbone (``humans.shared.backbone``): the last block's features pooled on ``grids``."""

    MEAN = np.array((0.485, 0.456, 0.406), np.float32)  # the normalisation pretraining uses
    STD = np.array((0.229, 0.224, 0.225), np.float32)

    def __init__(self, checkpoint: str | None, image_size: int | None = None, grids: tuple[int, ...] = (1, 2),
                 threads: int = 1, device: str = "cpu", random_config: str = "study-s8", seed: int = 0,
                 zoom_views: tuple[float, ...] = (1.0,)):
        import torch

        from humans.shared.backbone import build_backbone, load_backbone

        torch.set_num_threads(max(1, threads))
        if checkpoint:
            net = load_backbone(checkpoint, device=device)
            self.description = backbone_description(checkpoint, random_config, seed)
        else:
            with torch.random.fork_rng(devices=[]):  # the same random network in every actor and rerun
                torch.manual_seed(seed)
                net = build_backbone(random_config)
            self.description = backbone_description(None, random_config, seed)
        self.random_init = checkpoint is None
        self.net = net.eval().to(device)
        self.device = device
        self.size = int(image_size or BACKBONE_IMAGE_SIZE)
        self.grids = tuple(grids)
        self.layer = len(self.net.blocks) - 1
        self.dim = int(self.net.config.embed_dim) * sum(g * g for g in self.grids)
        self.zoom_views = tuple(zoom_views)
        self.views_per_image = len(self.zoom_views)

    def embed(self, images: list[np.ndarray]) -> np.ndarray:
        """``[len(images) * views_per_image, dim]`` unit vectors, image-major (image 0's views first)."""
        import torch
        import torch.nn.functional as F

        if not images:
            return np.zeros((0, self.dim), np.float32)
        x = np.stack([_centre_square(_zoom(im, z), self.size, self.MEAN, self.STD)
                      for im in images for z in self.zoom_views])
        with torch.inference_mode():
            f = self.net.forward_features(torch.from_numpy(x).to(self.device), [self.layer])[0].float()
            parts = [F.normalize(F.adaptive_avg_pool2d(f, g).flatten(1), dim=1) for g in self.grids]
            y = F.normalize(torch.cat(parts, 1), dim=1)
        return y.cpu().numpy().astype(np.float32)


def build_embedder(st, threads: int = 1, device: str = "cpu"):
    """The embedder an ``EmbeddingStage`` config names (see the module docstring)."""
    from humans.shared.config import ConfigError as _ConfigError

    why = st.weights_problem()
    if why:
        raise _ConfigError(why)
    if st.embedder == "backbone":
        return BackboneEmbedder(st.backbone, st.image_size, tuple(st.pool_grids), threads=threads, device=device,
                                random_config=st.random_backbone, zoom_views=tuple(st.zoom_views))
    return OpenClipEmbedder(st.model, st.checkpoint, st.image_size, threads=threads, device=device)


class Whitening:
    """PCA whitening fitted on a set of unit vectors: ``apply`` centres, projects on the top ``dims``
    directions scaled by ``1 / sqrt(eigenvalue + shrink * mean eigenvalue)`` and re-normalises."""

    def __init__(self, mean: np.ndarray, proj: np.ndarray):
        self.mean, self.proj = mean.astype(np.float32), proj.astype(np.float32)

    def apply(self, x: np.ndarray) -> np.ndarray:
        if not len(x):
            return np.zeros((0, self.proj.shape[1]), np.float32)
        y = (x - self.mean) @ self.proj
        return (y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def fit_whitening(x: np.ndarray, dims: int, shrink: float = 1.0) -> Whitening | None:
    """The whitening of ``x``'s top principal directions: ``dims`` of them, or ``len(x) // 4`` when
    there are fewer than ``4 * dims`` vectors (no more directions than the pool can estimate); None
    when ``dims`` is 0 or fewer than 2 directions can be estimated."""
    dims = min(dims, len(x) // 4, x.shape[1] - 1) if x.ndim == 2 else 0
    if dims < 2:
        return None
    x = x.astype(np.float64)
    mean = x.mean(axis=0)
    cov = np.cov(x - mean, rowvar=False, bias=True)
    vals, vecs = np.linalg.eigh(cov)
    order = np.argsort(vals)[::-1][:dims]
    vals, vecs = np.maximum(vals[order], 0.0), vecs[:, order]
    scale = 1.0 / np.sqrt(vals + shrink * vals.mean() + 1e-12)
    return Whitening(mean, vecs * scale[None, :])


_TILE = 4096  # rows x columns of one similarity tile (64 MiB of float32)
_SUBSPACE_DIMS = 64  # k-means runs in this many principal directions of the sample
_BOUND_DIMS = 128  # principal directions of the cheap upper-bound products (see _bound_vectors)


def _pairs(x: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, sim) arrays of every pair i < j of ``x`` with inner product >= ``threshold``: exact, one
    BLAS matrix product per tile of at most ``_TILE`` x ``_TILE`` (upper triangle only)."""
    out_i, out_j, out_s = [], [], []
    for q0 in range(0, len(x), _TILE):
        for d0 in range(q0, len(x), _TILE):
            g = x[q0:q0 + _TILE] @ x[d0:d0 + _TILE].T
            ii, jj = np.nonzero(g >= threshold)
            if d0 == q0:  # a diagonal tile: each pair once, never a vector with itself
                keep = jj > ii
                ii, jj = ii[keep], jj[keep]
            if len(ii):
                out_i.append(ii + q0)
                out_j.append(jj + d0)
                out_s.append(g[ii, jj])
    if not out_i:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return (np.concatenate(out_i).astype(np.int64), np.concatenate(out_j).astype(np.int64),
            np.concatenate(out_s).astype(np.float32))


def _threads() -> int:
    """Threads for the search: ``OMP_NUM_THREADS`` when set (Ray sets it per worker), else all cores."""
    import os

    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "") or (os.cpu_count() or 1)))
    except ValueError:
        return os.cpu_count() or 1


def _one_blas_thread() -> None:
    """Pin this thread's BLAS to one thread (OpenBLAS >= 0.3.27 ``openblas_set_num_threads_local``, the
    library numpy ships): the search runs many small products side by side in a thread pool, where a
    multi-threaded BLAS per product costs more in wake-ups than it computes. No-op where unavailable."""
    import ctypes
    import glob
    import os

    libs = glob.glob(os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs", "*openblas*"))
    for path in libs:
        try:
            fn = getattr(ctypes.CDLL(path), "openblas_set_num_threads_local", None)
        except OSError:
            continue
        if fn is not None:
            fn(ctypes.c_int(1))
            return


def _map(fn, items: list, threads: int | None = None) -> list:
    """``[fn(item) ...]`` on a thread pool (numpy releases the GIL in its products and comparisons)."""
    threads = min(threads or _threads(), len(items))
    if threads <= 1:
        return [fn(it) for it in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads, initializer=_one_blas_thread) as ex:
        return list(ex.map(fn, items))


def _bound_vectors(x: np.ndarray) -> np.ndarray | None:
    """[n, k+1] vectors whose inner products bound those of ``x`` from above, or None when ``x`` is too
    narrow for that to pay.

    With ``z = B x`` the projection on the top ``k`` principal directions (orthonormal rows ``B``) and
    ``rho = |x - B^T z|`` the norm of the rest, ``x_i . x_j = z_i . z_j + r_i . r_j <= z_i . z_j +
    rho_i rho_j`` (Cauchy-Schwarz): a pair below the threshold on ``[z, rho]`` is below it on ``x``, so
    the cheap (k+1)-wide products lose no pair, and only the pairs that pass are checked in full."""
    n, d = x.shape
    k = min(_BOUND_DIMS, d)
    if d < 3 * (k + 1) or n < 2:
        return None
    rng = np.random.default_rng(0)
    sample = x[rng.choice(n, size=min(n, 20_000), replace=False)] if n > 20_000 else x
    basis = _top_directions(sample, k)
    z = x @ basis.T
    rest = np.maximum((x.astype(np.float64) ** 2).sum(axis=1) - (z.astype(np.float64) ** 2).sum(axis=1), 0.0)
    return np.ascontiguousarray(np.hstack([z, np.sqrt(rest).astype(np.float32)[:, None]]))


def _group_edges(x: np.ndarray, groups: list[np.ndarray], threshold: float):
    """(i, j, sim) arrays (i < j, ids of ``x``) of the pairs inside each group with inner product >=
    ``threshold``: candidates from the bound vectors (:func:`_bound_vectors`) when they pay, then the
    exact products of the candidates; a pair in several groups appears once per group."""
    thr = float(threshold) - 1e-6
    bound = _bound_vectors(x) if sum(len(g) for g in groups) > _TILE else None

    def one(batch: list[np.ndarray]):
        out = []
        for idx in batch:
            if bound is None:
                a, b, s = _pairs(x[idx], thr)
            else:
                a, b, _ = _pairs(bound[idx], thr - 1e-4)  # float32 rounding slack: never loses a pair
                if not len(a):
                    continue
                s = np.einsum("ij,ij->i", x[idx[a]], x[idx[b]])
                ok = s >= thr
                a, b, s = a[ok], b[ok], s[ok]
            if len(a):
                i, j = idx[a], idx[b]
                out.append((np.minimum(i, j), np.maximum(i, j), s.astype(np.float32)))
        return out

    n_batches = min(len(groups), 8 * _threads())
    found = [r for rs in _map(one, [groups[k::n_batches] for k in range(n_batches)]) for r in rs]
    gi, gj, gs = [f[0] for f in found], [f[1] for f in found], [f[2] for f in found]
    if not gi:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return np.concatenate(gi), np.concatenate(gj), np.concatenate(gs)


def _as_edges(i: np.ndarray, j: np.ndarray, s: np.ndarray) -> list[tuple[int, int, float]]:
    return list(zip(i.tolist(), j.tolist(), s.tolist()))


def flat_edges(x: np.ndarray, threshold: float, chunk: int = 8192) -> list[tuple[int, int, float]]:
    """Exact search: every pair (i < j) with inner product >= threshold, sorted by (i, j).

    Tiled matrix products (``chunk`` is kept for callers; tiles are ``_TILE`` wide): the work is the
    BLAS product, the pairs are picked with numpy, no Python loop per vector."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if len(x) < 2:
        return []
    i, j, s = _group_edges(x, [np.arange(len(x))], threshold)
    order = np.lexsort((j, i))
    return _as_edges(i[order], j[order], s[order])


def default_nlist(n: int) -> int:
    """IVF partitions for ``n`` vectors: 4*sqrt(n), which balances the assignment (n x nlist products in
    the centroids' subspace) against the partition searches (n^2 nprobe^2 / nlist full-width products)."""
    return max(1, int(4 * np.sqrt(n)))


def _kmeans(z: np.ndarray, k: int, seed: int) -> np.ndarray:
    import faiss

    km = faiss.Kmeans(z.shape[1], k, niter=10, seed=seed, verbose=False, min_points_per_centroid=1,
                      max_points_per_centroid=32)
    km.train(z)
    return km.centroids.astype(np.float32)


def _two_level_kmeans(z: np.ndarray, nlist: int, seed: int) -> np.ndarray:
    """About ``nlist`` centroids of ``z``: ``sqrt(nlist)`` coarse k-means cells, then each cell split by its
    own k-means into a share of ``nlist`` proportional to its size: the work of ``2 sqrt(nlist)`` centroids
    per point instead of ``nlist``. Exactly ``nlist`` rows (capped at ``len(z)``)."""
    import faiss

    nlist = max(1, min(nlist, len(z)))
    k1 = int(np.sqrt(nlist))
    if k1 < 8:
        return _kmeans(z, nlist, seed)
    coarse = _kmeans(z, k1, seed)
    index = faiss.IndexFlatL2(z.shape[1])
    index.add(coarse)
    _, lab = index.search(z, 1)
    lab = lab[:, 0]
    sizes = np.bincount(lab, minlength=k1)
    share = np.floor(nlist * sizes / len(z)).astype(int)
    rest = nlist - share.sum()  # largest remainders get the rest
    share[np.argsort(-(nlist * sizes / len(z) - share), kind="stable")[:rest]] += 1
    share = np.minimum(share, sizes)
    out = []
    for cell in range(k1):
        if share[cell] == 0:
            continue
        members = z[lab == cell]
        out.append(members[:1] if share[cell] == 1 and len(members) == 1 else
                   _kmeans(np.ascontiguousarray(members), int(share[cell]), seed + cell))
    return np.concatenate(out).astype(np.float32)


def train_centroids(sample: np.ndarray, nlist: int, seed: int = 0) -> np.ndarray:
    """k-means centroids of a sample of the vectors, trained in the sample's top principal directions.

    The centroids are returned in the full space but lie in a subspace of at most
    ``_SUBSPACE_DIMS + 1`` dimensions, which :func:`assign_partitions` exploits: the nearest centroid of
    a vector is found from its projection onto that subspace, exactly, at a fraction of the cost."""
    import faiss

    sample = np.ascontiguousarray(sample, dtype=np.float32)
    nlist = max(1, min(nlist, len(sample)))
    d = sample.shape[1]
    mean = sample.mean(axis=0)
    k = min(d, _SUBSPACE_DIMS, len(sample))
    if k < d:
        basis = _top_directions((sample[:: max(1, len(sample) // 20_000)] - mean), k)
        z = np.ascontiguousarray((sample - mean) @ basis.T)
    else:
        basis, z = None, sample
    c = _two_level_kmeans(np.ascontiguousarray(z, dtype=np.float32), nlist, seed)
    return (c @ basis + mean).astype(np.float32) if basis is not None else c


def _top_directions(x: np.ndarray, k: int | None = None) -> np.ndarray:
    """Rows: the top ``k`` right singular vectors of ``x`` (all with a non-negligible singular value when
    ``k`` is None), from the eigenvectors of the d x d Gram matrix (cheap for n >> d)."""
    g = x.T.astype(np.float64) @ x.astype(np.float64)
    w, v = np.linalg.eigh(g)
    w, v = w[::-1], v[:, ::-1]
    if k is None:
        k = int((w > max(w[0], 0.0) * 1e-10).sum())
    return np.ascontiguousarray(v[:, :k].T, dtype=np.float32)


def _subspace(centroids: np.ndarray) -> np.ndarray | None:
    """An orthonormal basis [r, d] of the span of ``centroids`` when r <= d / 2, else None."""
    if len(centroids) == 0:
        return None
    basis = _top_directions(centroids)
    return basis if 0 < len(basis) <= centroids.shape[1] // 2 else None


def assign_partitions(x: np.ndarray, centroids: np.ndarray, nprobe: int, chunk: int = 16384) -> np.ndarray:
    """[n, nprobe] ids of each vector's nearest centroids (Euclidean; for unit vectors and centroids of
    equal norm the same as by inner product), nearest first.

    ``|x - c|^2 = |x|^2 - 2 x.c + |c|^2`` and ``x.c = (P x).c`` for ``P`` the projection onto the span of
    the centroids, so when :func:`train_centroids` made them (a low-dimensional span) each vector is
    projected once and compared in that span: the same answer as in the full space, several times
    cheaper."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    c = np.ascontiguousarray(centroids, dtype=np.float32)
    k = min(nprobe, len(c))
    basis = _subspace(c)
    if basis is not None:
        c_sub = c @ basis.T
    half_norm = 0.5 * (c.astype(np.float64) ** 2).sum(axis=1).astype(np.float32)
    out = np.empty((len(x), k), np.int64)

    def one(q0: int) -> None:
        q = x[q0:q0 + chunk]
        score = (q @ basis.T) @ c_sub.T if basis is not None else q @ c.T
        score -= half_norm  # larger is nearer
        rows = np.arange(len(q))
        for p in range(k):  # k argmax passes: far cheaper than a partial sort for the small k used
            best = score.argmax(axis=1)
            out[q0 + rows, p] = best
            score[rows, best] = -np.inf

    _map(one, list(range(0, len(x), chunk)))
    return out


def partition_groups(lists: np.ndarray) -> list[np.ndarray]:
    """The members (row ids) of every partition named in ``lists`` ([n, k]; -1 = none), groups of two or
    more only, from one stable sort instead of a Python loop per vector."""
    lists = np.asarray(lists).reshape(len(lists), -1)
    rows = np.repeat(np.arange(len(lists), dtype=np.int64), lists.shape[1])
    flat = lists.reshape(-1).astype(np.int64)
    ok = flat >= 0
    rows, flat = rows[ok], flat[ok]
    order = np.argsort(flat, kind="stable")
    rows, flat = rows[order], flat[order]
    cuts = np.flatnonzero(np.diff(flat)) + 1
    return [g for g in np.split(rows, cuts) if len(g) > 1]


def partitioned_edges(x: np.ndarray, lists: np.ndarray, threshold: float) -> list[tuple[int, int, float]]:
    """IVF search of one process: exact search inside every partition of ``lists`` ([n, nprobe]), the
    pairs found in several partitions counted once, sorted by (i, j).

    The Ray pipeline runs the same per-partition search (``flat_edges``) spread over tasks.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    i, j, s = _group_edges(x, partition_groups(lists), threshold)
    if not len(i):
        return []
    _, first = np.unique(i * len(x) + j, return_index=True)  # sorted by (i, j), duplicates dropped
    return _as_edges(i[first], j[first], s[first])


def dedup_edges(x: np.ndarray, threshold: float, ivf_threshold: int, nlist: int | None = None,
                nprobe: int = 2, kmeans_sample: int = 100_000, seed: int = 0) -> tuple[list, dict]:
    """In-process near-duplicate edges of ``x`` taking the same path the pipeline takes (flat or IVF)."""
    n = len(x)
    if n < ivf_threshold:
        return flat_edges(x, threshold), {"index": "flat", "n": n}
    nl = nlist or default_nlist(n)
    rng = np.random.default_rng(seed)
    sample = x[rng.choice(n, size=min(n, kmeans_sample), replace=False)]
    centroids = train_centroids(sample, nl, seed)
    lists = assign_partitions(x, centroids, nprobe)
    return partitioned_edges(x, lists, threshold), {"index": "ivf", "n": n, "nlist": len(centroids),
                                                    "nprobe": nprobe}
