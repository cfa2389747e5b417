"""Linear probes solved to convergence: ridge regression in closed form, softmax regression by L-BFGS.

A probe is one linear map from a token's frozen features (several depths concatenated) to the
labels of the pixels that token covers: ``C x r x r`` outputs per token, rearranged by pixel shuffle
into a ``C``-channel map ``r`` times finer than the token grid (``r`` = token size / label stride;
still one linear layer: no hidden layer, no convolution across tokens, no skip from the image).

- Regression targets (pose heatmaps, pointmap, normals, albedo): ridge regression on standardised
  features, solved exactly for a sweep of regularisation strengths through one eigendecomposition
  of the Gram matrix; the strength with the lowest loss on a held-out part of the training images
  is kept and the map is refitted on all training images. Pixels without a label (off the person)
  get weight 0, so each of the ``r x r`` sub-pixel positions has its own weighted Gram matrix.
- Segmentation: multinomial logistic regression (softmax over the 29 classes at each sub-pixel),
  L2-regularised, its per-position bias fixed at the position's (smoothed) log class frequencies, i.e.
  the mean prediction; minimised by L-BFGS on the weights (objective and gradient in closed form,
  float32), preconditioned by the inverse square root of the features' second moment (shifted by the
  L2 strength), until the objective falls by less than a relative 1e-3 over 25 iterations. The same
  held-out sweep of the L2 strength, on a random subset of the fitting tokens, from the largest
  strength down: the first fit starts at zero weights, each next one from the previous solution, and
  the sweep stops once the held-out loss rises. The refit on every training token starts from the
  chosen strength's sweep solution.

Every fit returns its report: the chosen strength, the train and held-out losses of each strength
tried, and (softmax) the iterations used and whether the tolerance was met.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

RIDGE_GRID = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)   # x mean eigenvalue of the standardised Gram matrix
SOFTMAX_GRID = (1.0, 0.1, 1e-2, 1e-3, 1e-4)                      # L2 on the weights, per token (largest first)


@dataclass
class LinearMap:
    """``y_p = (((x_p - mean) / std) - pos_mean_p) @ weight + pos_bias_p`` for the token at grid
    position ``p``, then pixel shuffle by ``r``. The per-position terms are the intercept of a linear
    model whose inputs include the one-hot token position: a ViT with RoPE has no absolute position
    in its tokens, so without them no probe could place the average person where it usually is
    (with them, features of no use leave the probe at the per-position mean map)."""

    mean: torch.Tensor      # [D]
    std: torch.Tensor       # [D]
    weight: torch.Tensor    # [D, C * r * r]
    pos_mean: torch.Tensor  # [P, D] per-position mean of the standardised features
    pos_bias: torch.Tensor  # [P, C * r * r]
    r: int
    report: dict = field(default_factory=dict)

    @property
    def out_channels(self) -> int:
        return self.pos_bias.shape[1] // (self.r * self.r)

    def __call__(self, feats: torch.Tensor, out_hw: tuple[int, int] | None = None) -> torch.Tensor:
        """Features [B, D, h, w] -> outputs [B, C, h*r, w*r] (bilinearly resized to ``out_hw`` if given)."""
        b, d, h, w = feats.shape
        if h * w != self.pos_mean.shape[0]:
            raise ValueError(f"probe fitted on a {self.pos_mean.shape[0]}-token grid, given {h}x{w}")
        x = (feats.float().permute(0, 2, 3, 1).reshape(b, h * w, d) - self.mean) / self.std - self.pos_mean
        y = (x @ self.weight + self.pos_bias).reshape(b, h, w, -1).permute(0, 3, 1, 2)
        y = F.pixel_shuffle(y.contiguous(), self.r) if self.r > 1 else y
        if out_hw is not None and tuple(y.shape[-2:]) != tuple(out_hw):
            y = F.interpolate(y, size=out_hw, mode="bilinear", align_corners=False)
        return y


def shuffle_factor(token_hw: tuple[int, int], label_hw: tuple[int, int]) -> int:
    """Sub-pixels per token side: label rows per token row, at least 1."""
    return max(1, round(label_hw[0] / token_hw[0]))


def to_token_rows(feats: torch.Tensor) -> torch.Tensor:
    """[N, D, h, w] -> [N*h*w, D] float32."""
    return feats.float().permute(0, 2, 3, 1).reshape(-1, feats.shape[1])


def targets_to_token_rows(y: torch.Tensor, token_hw: tuple[int, int], r: int, mode: str) -> torch.Tensor:
    """Label maps [N, C, H, W] -> [N*h*w, C*r*r] in pixel-shuffle order (resampled to the token grid
    times ``r`` first when their size differs: ``mode`` "nearest" for classes/masks, else "area")."""
    hw = (token_hw[0] * r, token_hw[1] * r)
    if tuple(y.shape[-2:]) != hw:
        y = F.interpolate(y.float(), size=hw, mode=mode) if mode == "nearest" else \
            F.interpolate(y.float(), size=hw, mode="bilinear", align_corners=False, antialias=True)
    y = F.pixel_unshuffle(y.float(), r) if r > 1 else y.float()
    return y.permute(0, 2, 3, 1).reshape(-1, y.shape[1])


def split_images(n: int, heldout_frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Image indices of the fitting part and the held-out part of the training images."""
    order = np.random.default_rng(seed).permutation(n)
    k = max(1, int(round(n * heldout_frac))) if n > 1 else 0
    return np.sort(order[k:]), np.sort(order[:k])


def _rows(idx: np.ndarray, tokens: int) -> torch.Tensor:
    return torch.from_numpy((idx[:, None] * tokens + np.arange(tokens)[None]).reshape(-1))


def _standardise(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = x.mean(0)
    std = x.std(0).clamp_min(1e-6)
    return mean, std


def position_means(x: torch.Tensor, tokens: int, w: torch.Tensor | None = None) -> torch.Tensor:
    """Per-position (weighted) means [P, D] of rows ``x`` [N*P, D] in image-major order; positions
    that no row labels fall back to the overall mean."""
    xr = x.view(-1, tokens, x.shape[1])
    if w is None:
        return xr.mean(0)
    wr = w.view(-1, tokens, 1)
    tot = wr.sum(0)
    overall = (x * w[:, None]).sum(0) / w.sum().clamp_min(1.0)
    return torch.where(tot > 0, (xr * wr).sum(0) / tot.clamp_min(1e-12), overall)


def _centre(x: torch.Tensor, pm: torch.Tensor) -> torch.Tensor:
    return (x.view(-1, pm.shape[0], x.shape[1]) - pm).view(-1, x.shape[1])


def _moments(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None, xm=None, ym=None) -> dict:
    """Weighted sufficient statistics of rows (x, y) centred on ``xm``/``ym`` (default: their own
    weighted means): Gram [D, D], cross [D, C], sum of squares per column [C], weight total."""
    if w is None:
        wsum = float(x.shape[0])
        xm = x.mean(0) if xm is None else xm
        ym = y.mean(0) if ym is None else ym
        xc, yc = x - xm, y - ym
        xw, yw = xc, yc
    else:
        wsum = float(w.sum())
        if xm is None:
            xm = (x * w[:, None]).sum(0) / max(wsum, 1.0)
            ym = (y * w[:, None]).sum(0) / max(wsum, 1.0)
        xc, yc = x - xm, y - ym
        xw, yw = xc * w[:, None], yc * w[:, None]
    return {"gram": (xw.T @ xc).double(), "cross": (xw.T @ yc).double(), "yy": (yw * yc).sum(0).double(),
            "wsum": max(wsum, 1.0), "xm": xm, "ym": ym}


def _ridge_path(fit: dict, lams: list[float]) -> list[torch.Tensor]:
    """Ridge weights [D, C] for every strength (relative to the mean eigenvalue of the per-row Gram
    matrix), from one eigendecomposition."""
    evals, evecs = torch.linalg.eigh(fit["gram"] / fit["wsum"])
    evals = evals.clamp_min(0)
    proj = evecs.T @ (fit["cross"] / fit["wsum"])
    scale = float(evals.mean().clamp_min(1e-12))
    return [evecs @ (proj / (evals + lam * scale)[:, None]) for lam in lams]


def _mse(m: dict, wmat: torch.Tensor) -> float:
    """Mean squared error per labelled value of ``(x - xm) @ W`` against ``y - ym``, from moments."""
    sse = m["yy"] - 2 * (m["cross"] * wmat).sum(0) + ((m["gram"] @ wmat) * wmat).sum(0)
    return float(sse.sum() / (m["wsum"] * wmat.shape[1]))


def fit_ridge(x: torch.Tensor, y: torch.Tensor, r: int, tokens_per_image: int, valid: torch.Tensor | None = None,
              heldout_frac: float = 0.2, seed: int = 0, grid: tuple[float, ...] = RIDGE_GRID) -> LinearMap:
    """Ridge probe. ``x`` [T, D] token features, ``y`` [T, C*r*r] targets in pixel-shuffle order,
    ``valid`` [T, r*r] (or None: every pixel labelled) weights of each sub-pixel; rows image-major,
    ``tokens_per_image`` per image. Features and targets are centred per token position (the
    intercept of each position; see ``LinearMap``).

    Losses of every strength come from second moments (no prediction is materialised): the held-out
    rows are centred on the fitting rows' position means, so the held-out loss is that of the fitted map."""
    P = tokens_per_image
    n_img = x.shape[0] // P
    c = y.shape[1] // (r * r)
    mean, std = _standardise(x)
    xs = (x - mean) / std
    fit_idx, ho_idx = split_images(n_img, heldout_frac, seed)
    fit_rows, ho_rows = _rows(fit_idx, P), _rows(ho_idx, P)
    # columns of sub-pixel k: channel-major pixel-shuffle order -> column ch * r*r + k
    groups = [torch.arange(c) * r * r + k for k in range(r * r)] if valid is not None else [torch.arange(y.shape[1])]
    sweep = {lam: {"train": 0.0, "heldout": 0.0} for lam in grid}
    weight = torch.zeros(x.shape[1], y.shape[1])
    pos_bias = torch.zeros(P, y.shape[1])
    zero_x, fits = torch.zeros(x.shape[1]), []
    pos_mean = position_means(xs, P)
    for k, cols in enumerate(groups):
        wk = None if valid is None else valid[:, k].float()
        yk = y[:, cols]
        frac = len(cols) / y.shape[1]
        xf, yf, wf = xs[fit_rows], yk[fit_rows], None if wk is None else wk[fit_rows]
        pmx, pmy = position_means(xf, P, wf), position_means(yf, P, wf)
        zero_y = torch.zeros(len(cols))
        m_fit = _moments(_centre(xf, pmx), _centre(yf, pmy), wf, zero_x, zero_y)
        path = _ridge_path(m_fit, list(grid))
        m_ho = None
        if len(ho_rows):
            m_ho = _moments(_centre(xs[ho_rows], pmx), _centre(yk[ho_rows], pmy),
                            None if wk is None else wk[ho_rows], zero_x, zero_y)
        for lam, wm in zip(grid, path):
            sweep[lam]["train"] += frac * _mse(m_fit, wm)
            if m_ho is not None:
                sweep[lam]["heldout"] += frac * _mse(m_ho, wm)
        fits.append((cols, wk, yk))
    best = min(grid, key=lambda lam: (sweep[lam]["heldout"] if len(ho_rows) else sweep[lam]["train"], -lam))
    full_train = 0.0
    for cols, wk, yk in fits:       # refit on every training image with the chosen strength
        pmx, pmy = position_means(xs, P, wk), position_means(yk, P, wk)
        m_all = _moments(_centre(xs, pmx), _centre(yk, pmy), wk, zero_x, torch.zeros(len(cols)))
        (wm,) = _ridge_path(m_all, [best])
        weight[:, cols] = wm.float()
        # the map is applied to features centred on the unweighted position means
        pos_bias[:, cols] = pmy - ((pmx - pos_mean).double() @ wm).float()
        full_train += len(cols) / y.shape[1] * _mse(m_all, wm)
    report = {"solver": "ridge (closed form)", "lambda": best, "refit_train_loss": full_train,
              "sweep": [{"lambda": lam, "train_loss": v["train"], "heldout_loss": v["heldout"]}
                        for lam, v in sweep.items()],
              "heldout_loss": sweep[best]["heldout"], "train_loss": sweep[best]["train"],
              "fit_images": len(fit_idx), "heldout_images": len(ho_idx)}
    return LinearMap(mean, std, weight, pos_mean, pos_bias, r, report)


class _SoftmaxRows:
    """Rows of one softmax fit (standardised, position-centred features, token positions, labels) and
    the objective's value and gradient, computed in closed form (no autograd graph):
    ``mean cross-entropy + 0.5 * l2 * |W|^2``; the per-position bias is not penalised.

    Weight and bias columns are sub-pixel-major here (column ``k * C + ch``: the softmax runs over
    contiguous memory); ``_to_channel_major`` gives the ``LinearMap`` order."""

    def __init__(self, xs: torch.Tensor, pos: torch.Tensor, labels: torch.Tensor, c: int, rr: int, n_pos: int):
        self.xs, self.pos, self.c, self.rr, self.n_pos = xs, pos, c, rr, n_pos
        self.labels = labels.long().view(-1, rr, 1)
        # rows that are whole images in image-major order take the bias by broadcasting (no gather)
        self.whole = len(pos) % n_pos == 0 and bool((pos.view(-1, n_pos) == torch.arange(n_pos)).all())
        self._eig: tuple[torch.Tensor, torch.Tensor] | None = None   # second_moment_eig, computed on first use

    def __len__(self) -> int:
        return self.xs.shape[0]

    def second_moment_eig(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Eigenvalues and eigenvectors (float64) of the features' second moment, computed once per set of
        rows (every strength of the sweep preconditions with it)."""
        if self._eig is None:
            self._eig = torch.linalg.eigh((self.xs.T @ self.xs).double() / max(1, len(self)))
        return self._eig

    def logits(self, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """[T, r*r, C] logits."""
        z = self.xs @ weight
        if self.whole:
            z = (z.view(-1, self.n_pos, z.shape[1]) + bias).view(-1, z.shape[1])
        else:
            z += bias[self.pos]
        return z.view(-1, self.rr, self.c)

    @torch.no_grad()
    def ce(self, weight: torch.Tensor, bias: torch.Tensor) -> float:
        """Mean cross-entropy per labelled sub-pixel."""
        logp = torch.log_softmax(self.logits(weight, bias), -1)
        return float(-logp.gather(-1, self.labels).mean())

    @torch.no_grad()
    def value_and_grad(self, weight: torch.Tensor, bias: torch.Tensor, l2: float
                       ) -> tuple[float, torch.Tensor, torch.Tensor]:
        logp = torch.log_softmax(self.logits(weight, bias), -1)
        n = logp.shape[0] * self.rr
        loss = float(-logp.gather(-1, self.labels).sum()) / n + 0.5 * l2 * float((weight * weight).sum())
        g = logp.exp_()                                       # softmax - one-hot, per sub-pixel
        g.scatter_add_(-1, self.labels, torch.full(self.labels.shape, -1.0))
        g = g.view(g.shape[0], -1).div_(n)
        gw = torch.addmm(weight, self.xs.T, g, beta=l2) if l2 else self.xs.T @ g
        if self.whole:
            gb = g.view(-1, self.n_pos, g.shape[1]).sum(0)
        else:
            gb = torch.zeros(self.n_pos, g.shape[1]).index_add_(0, self.pos, g)
        return loss, gw, gb

    def log_prior_bias(self, smooth: float = 0.01) -> torch.Tensor:
        """[P, C*r*r] log class frequencies per position and sub-pixel (``smooth`` added to each count):
        the softmax probe's fixed bias (its prediction at zero weights, the mean prediction)."""
        counts = torch.zeros(self.n_pos, self.rr, self.c)
        onehot = torch.zeros(len(self), self.rr, self.c).scatter_(-1, self.labels, 1.0)
        counts.index_add_(0, self.pos, onehot)
        counts += smooth
        return torch.log(counts / counts.sum(-1, keepdim=True)).view(self.n_pos, -1)


def _to_channel_major(t: torch.Tensor, c: int, rr: int) -> torch.Tensor:
    """Columns ``k * C + ch`` -> ``ch * rr + k`` (the pixel-shuffle order of ``LinearMap``)."""
    return t.view(t.shape[0], rr, c).transpose(1, 2).reshape(t.shape[0], c * rr).contiguous()


PRECOND_SHIFT = 10.0   # preconditioner (cov + PRECOND_SHIFT * l2)^-1/2: softmax curvature is about 0.1 x cov


def _preconditioner(rows: _SoftmaxRows, l2: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(P, P^-1)``, ``P = (cov + PRECOND_SHIFT * l2 * I)^-1/2`` with ``cov`` the rows' second moment: the
    solver minimises over ``V`` with ``W = P V``. The objective is the same function of ``W`` (same optimum);
    only its conditioning changes. Concatenated blocks give a ``cov`` with eigenvalues from about 1e-5 to 1e2,
    on which plain L-BFGS stalls."""
    e, u = rows.second_moment_eig()
    s = (e.clamp_min(0) + max(PRECOND_SHIFT * l2, 1e-6)).rsqrt()
    return ((u * s) @ u.T).float(), ((u / s) @ u.T).float()


def _lbfgs(rows: _SoftmaxRows, l2: float, weight0: torch.Tensor, bias: torch.Tensor, max_iter: int, tol: float,
           chunk: int = 25) -> tuple[torch.Tensor, int, bool]:
    """Weights minimising ``rows``' objective at the fixed ``bias``: preconditioned L-BFGS (``_preconditioner``)
    from ``weight0`` in chunks of ``chunk`` iterations until the objective's relative decrease over a chunk is
    below ``tol`` (converged) or ``max_iter`` iterations are spent (not converged)."""
    p, p_inv = _preconditioner(rows, l2)
    v = (p_inv @ weight0).requires_grad_(True)
    opt = torch.optim.LBFGS([v], lr=1.0, max_iter=chunk, tolerance_grad=1e-7,
                            tolerance_change=1e-10, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        loss, gw, _ = rows.value_and_grad(p @ v.detach(), bias, l2)
        v.grad = p @ gw            # d/dV of f(P V) = P^T grad_W, P symmetric
        return torch.tensor(loss)

    iters, converged = 0, False
    prev = rows.value_and_grad(p @ v.detach(), bias, l2)[0]
    while iters < max_iter:
        opt.step(closure)
        iters = int(opt.state[opt._params[0]].get("n_iter", 0))
        cur = rows.value_and_grad(p @ v.detach(), bias, l2)[0]
        if prev - cur <= tol * max(abs(prev), 1e-12):
            converged = True
            break
        prev = cur
    return p @ v.detach(), iters, converged


def fit_softmax(x: torch.Tensor, labels: torch.Tensor, num_classes: int, r: int, tokens_per_image: int,
                heldout_frac: float = 0.2, seed: int = 0, grid: tuple[float, ...] = SOFTMAX_GRID,
                max_iter: int = 200, tol: float = 1e-3, sweep_rows: int = 8192) -> LinearMap:
    """Softmax probe. ``labels`` [T, r*r] class index of each sub-pixel of each token (rows
    image-major); features centred per position. The per-position bias is fixed at each position's log
    class frequencies on the training tokens (``log_prior_bias``, smoothed): the mean prediction, which
    the weights (features) move away from. The mean-prediction baseline is this model at zero weights.
    A learnt, unpenalised bias drove the classes a position never showed in training towards -inf, so
    the held-out loss rose as the fit converged (0.93 -> 1.6 on random-init features, benchmarks/results/probe_solver.md).

    The strength is chosen on the held-out images with fits on at most ``sweep_rows`` random fitting
    tokens: largest strength first, the first from zero weights, each next one warm-started from the
    previous solution; the sweep stops once the held-out loss has risen (the path past a minimum only
    overfits further). The chosen strength is then refitted on every training token, warm-started from
    its sweep solution."""
    c, rr, P = num_classes, r * r, tokens_per_image
    n_img = x.shape[0] // P
    mean, std = _standardise(x)
    xs = (x - mean) / std
    pos_mean = position_means(xs, P)
    xs = _centre(xs, pos_mean)
    pos = torch.arange(x.shape[0]) % P
    fit_idx, ho_idx = split_images(n_img, heldout_frac, seed)
    fit_rows, ho_rows = _rows(fit_idx, P), _rows(ho_idx, P)
    if len(fit_rows) > sweep_rows:
        pick = torch.from_numpy(np.random.default_rng(seed).choice(len(fit_rows), sweep_rows, replace=False))
        fit_rows = fit_rows[pick.sort().values]
    sub = _SoftmaxRows(xs[fit_rows], pos[fit_rows], labels[fit_rows], c, rr, P)
    held = _SoftmaxRows(xs[ho_rows], pos[ho_rows], labels[ho_rows], c, rr, P) if len(ho_rows) else None
    sub_bias = sub.log_prior_bias()
    sweep, sols = [], {}
    wm = torch.zeros(x.shape[1], c * rr)
    for l2 in grid:   # largest first: each fit starts from the previous, better-conditioned one
        wm, iters, conv = _lbfgs(sub, l2, wm, sub_bias, max_iter, tol)
        sols[l2] = wm
        sweep.append({"lambda": l2, "train_loss": sub.ce(wm, sub_bias),
                      "heldout_loss": held.ce(wm, sub_bias) if held is not None else float("nan"),
                      "iterations": iters, "converged": conv})
        if held is not None and len(sweep) > 1 and sweep[-1]["heldout_loss"] > sweep[-2]["heldout_loss"]:
            break
    key = "heldout_loss" if held is not None else "train_loss"
    best = min(sweep, key=lambda s: (s[key], -s["lambda"]))
    full = _SoftmaxRows(xs, pos, labels, c, rr, P)
    b = full.log_prior_bias()
    del sub, held
    wm, iters, conv = _lbfgs(full, best["lambda"], sols[best["lambda"]], b, max_iter, tol)
    report = {"solver": "softmax regression (L-BFGS)", "bias": "per-position log class frequencies (fixed)",
              "lambda": best["lambda"], "sweep": sweep,
              "sweep_rows": len(fit_rows), "heldout_loss": best["heldout_loss"], "train_loss": best["train_loss"],
              "refit_train_loss": full.ce(wm, b), "refit_iterations": iters,
              "refit_converged": conv, "fit_images": len(fit_idx), "heldout_images": len(ho_idx)}
    return LinearMap(mean, std, _to_channel_major(wm, c, rr), pos_mean, _to_channel_major(b, c, rr), r, report)
