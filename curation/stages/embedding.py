"""Stage 6: embedding dedup: open_clip image embeddings, faiss near-duplicate search, clusters
resolved to one representative.

The model is an open_clip architecture loaded from a user checkpoint (``checkpoint``); without one
it is RANDOMLY INITIALISED (no pretrained weights can be downloaded here). A random ViT still maps
near-identical pixels to near-identical vectors, which is what near-duplicate detection needs, but it
carries no semantics: that is said in the logs, ``run.json`` and every sample's metadata.

Search has two paths, chosen by pool size:

- small pools (< ``ivf_threshold`` vectors): one exact ``IndexFlatIP`` range search over all
  vectors (cosine similarity >= ``threshold``);
- large pools: IVF-style partitioning: k-means centroids (``nlist``, trained on a sample) split the
  space; every vector joins its ``nprobe`` nearest partitions; each partition is an independent
  exact flat index searched in its own Ray task. No process holds every vector, and partitions can
  live on different nodes (sharded indices); ``nprobe > 1`` keeps pairs that straddle a boundary.
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


class Embedder:
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
        self.description = (f"open_clip {model} RANDOM INIT seed {seed} (no checkpoint given; no semantics)"
                            if self.random_init else f"open_clip {model} from {checkpoint}")
        self.net = net.eval().to(device)
        self.device = device
        cfg = getattr(net.visual, "preprocess_cfg", {}) or {}
        size = net.visual.image_size
        self.size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.mean = np.array(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073)), np.float32)
        self.std = np.array(cfg.get("std", (0.26862954, 0.26130258, 0.27577711)), np.float32)

    def preprocess(self, rgb: np.ndarray) -> np.ndarray:
        """Resize the short side to the model size, centre crop, normalise; CHW float32."""
        import cv2

        h, w = rgb.shape[:2]
        s = self.size / min(h, w)
        nh, nw = max(self.size, round(h * s)), max(self.size, round(w * s))
        im = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
        y0, x0 = (nh - self.size) // 2, (nw - self.size) // 2
        im = im[y0:y0 + self.size, x0:x0 + self.size].astype(np.float32) / 255.0
        return ((im - self.mean) / self.std).transpose(2, 0, 1)

    def embed(self, images: list[np.ndarray]) -> np.ndarray:
        import torch

        if not images:
            return np.zeros((0, self.net.visual.output_dim), np.float32)
        x = torch.from_numpy(np.stack([self.preprocess(im) for im in images])).to(self.device)
        with torch.inference_mode():
            y = self.net.encode_image(x).float()
        y = torch.nn.functional.normalize(y, dim=-1)
        return y.cpu().numpy().astype(np.float32)


def flat_edges(x: np.ndarray, threshold: float, chunk: int = 8192) -> list[tuple[int, int, float]]:
    """Exact search: every pair (i < j) with inner product >= threshold, via IndexFlatIP range search."""
    import faiss

    x = np.ascontiguousarray(x, dtype=np.float32)
    n = len(x)
    if n < 2:
        return []
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    out: list[tuple[int, int, float]] = []
    for q0 in range(0, n, chunk):
        lims, dist, ids = index.range_search(x[q0:q0 + chunk], float(threshold) - 1e-6)
        for qi in range(len(lims) - 1):
            i = q0 + qi
            for j, d in zip(ids[lims[qi]:lims[qi + 1]], dist[lims[qi]:lims[qi + 1]]):
                if j > i:
                    out.append((i, int(j), float(d)))
    return out


def default_nlist(n: int) -> int:
    return max(1, int(4 * np.sqrt(n)))


def train_centroids(sample: np.ndarray, nlist: int, seed: int = 0) -> np.ndarray:
    """k-means centroids (spherical, cosine) of a sample of the vectors."""
    import faiss

    sample = np.ascontiguousarray(sample, dtype=np.float32)
    nlist = max(1, min(nlist, len(sample)))
    km = faiss.Kmeans(sample.shape[1], nlist, niter=10, seed=seed, spherical=True, verbose=False,
                      min_points_per_centroid=1, max_points_per_centroid=256)
    km.train(sample)
    return km.centroids.astype(np.float32)


def assign_partitions(x: np.ndarray, centroids: np.ndarray, nprobe: int) -> np.ndarray:
    """[n, nprobe] ids of each vector's nearest centroids (by inner product)."""
    import faiss

    index = faiss.IndexFlatIP(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    _, ids = index.search(np.ascontiguousarray(x, dtype=np.float32), min(nprobe, len(centroids)))
    return ids


def partitioned_edges(x: np.ndarray, lists: np.ndarray, threshold: float) -> list[tuple[int, int, float]]:
    """IVF search of one process: exact range search inside every partition of ``lists`` ([n, nprobe]).

    The Ray pipeline runs the same per-partition search (``flat_edges``) spread over tasks.
    """
    members: dict[int, list[int]] = {}
    for i, row in enumerate(lists):
        for l in row:
            members.setdefault(int(l), []).append(i)
    edges: dict[tuple[int, int], float] = {}
    for l, idx in members.items():
        if len(idx) < 2:
            continue
        idx_arr = np.asarray(idx)
        for a, b, s in flat_edges(x[idx_arr], threshold):
            i, j = int(idx_arr[a]), int(idx_arr[b])
            edges[(min(i, j), max(i, j))] = s
    return [(i, j, s) for (i, j), s in sorted(edges.items())]


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
