"""Views: global views are geometric resamplings only (no colour change), local views change colour."""
from __future__ import annotations

import numpy as np
import skimage.data
import torch
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import InterpolationMode

from humans.pretrain.config import ViewsConfig
from humans.pretrain.views import make_views, sample_crop

CFG = ViewsConfig(global_size=64, local_size=32, n_local=6)


def test_constant_colour_image_stays_exactly_that_colour_in_global_views_only():
    img = torch.empty(3, 120, 90, dtype=torch.uint8)
    img[0], img[1], img[2] = 200, 60, 30
    changed = 0
    for seed in range(4):
        gv, lv = make_views(img, CFG, CFG.n_local, seed)
        assert gv.shape == (2, 3, 64, 64) and lv.shape == (6, 3, 32, 32)
        for v in gv:                                         # every pixel of every global view
            assert v[0].eq(200).all() and v[1].eq(60).all() and v[2].eq(30).all()
        for v in lv:
            changed += int(not (v[0].eq(200).all() and v[1].eq(60).all() and v[2].eq(30).all()))
    assert changed >= 12, f"only {changed}/24 local views changed colour"  # jitter p=0.8 + grayscale + solarize


def test_global_view_is_a_resized_crop_of_the_photo_and_local_views_shift_colour_statistics():
    photo = torch.from_numpy(skimage.data.astronaut()).permute(2, 0, 1).contiguous()[:, ::4, ::4].contiguous()
    seed = 7
    gv, lv = make_views(photo, CFG, CFG.n_local, seed)
    # replay the same random draws: the first global view is exactly resized_crop(+flip) of the source
    g = torch.Generator().manual_seed(seed)
    crop = sample_crop(g, photo.shape[1], photo.shape[2], CFG.global_scale, CFG.ratio, CFG.hflip_p)
    ref = TF.resized_crop(photo, crop.top, crop.left, crop.height, crop.width, [64, 64],
                          interpolation=InterpolationMode.BILINEAR, antialias=True)
    ref = TF.horizontal_flip(ref) if crop.flip else ref
    assert torch.equal(gv[0], ref)
    # colour statistics: a global view's channel means match its source region; local views' do not
    region = photo[:, crop.top:crop.top + crop.height, crop.left:crop.left + crop.width].float()
    assert np.allclose(gv[0].float().mean((1, 2)), region.mean((1, 2)), atol=2.0)
    # a local view vs the same crop without colour augmentation: different pixels for most seeds
    diffs = []
    for s in range(6):
        _, lv = make_views(photo, CFG.model_copy(update={"n_local": 1}), 1, s)
        g = torch.Generator().manual_seed(s)
        for _ in range(2):
            sample_crop(g, photo.shape[1], photo.shape[2], CFG.global_scale, CFG.ratio, CFG.hflip_p)
        c = sample_crop(g, photo.shape[1], photo.shape[2], CFG.local_scale, CFG.ratio, CFG.hflip_p)
        plain = TF.resized_crop(photo, c.top, c.left, c.height, c.width, [32, 32],
                                interpolation=InterpolationMode.BILINEAR, antialias=True)
        plain = TF.horizontal_flip(plain) if c.flip else plain
        diffs.append((lv[0].float() - plain.float()).abs().mean().item())
    assert sum(d > 3.0 for d in diffs) >= 4, diffs


def test_views_are_a_pure_function_of_the_seed():
    img = torch.from_numpy(skimage.data.coffee()).permute(2, 0, 1).contiguous()[:, ::4, ::4].contiguous()
    a = make_views(img, CFG, 3, 123)
    b = make_views(img, CFG, 3, 123)
    c = make_views(img, CFG, 3, 124)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_copy_detection_edits_letterbox_and_rotate_and_are_off_by_default():
    import pytest

    from humans.shared.config import ConfigError, validate
    from humans.pretrain.views import copy_edit

    photo = torch.from_numpy(skimage.data.astronaut()).permute(2, 0, 1).contiguous()[:, ::4, ::4].contiguous()
    # off by default: turning the edit sizes up changes nothing, and no random draw is spent on them
    plain = make_views(photo, CFG, 2, 5)
    tuned = make_views(photo, CFG.model_copy(update={"rotate_deg": 20.0, "letterbox_frac": (0.2, 0.3)}), 2, 5)
    assert torch.equal(plain[0], tuned[0]) and torch.equal(plain[1], tuned[1])
    view = TF.resize(photo, [64, 64], antialias=True)
    # a letterbox: two bars of one grey on opposite sides, the image squeezed between them
    box = CFG.model_copy(update={"letterbox_p": 1.0, "letterbox_frac": (0.2, 0.2)})
    out = copy_edit(view, torch.Generator().manual_seed(0), box)
    rows_flat = (out.float().std(dim=(0, 2)) == 0)          # rows of one value across width and channels
    cols_flat = (out.float().std(dim=(0, 1)) == 0)
    bars = rows_flat if rows_flat[:13].all() else cols_flat
    assert bars[:13].all() and bars[-13:].all() and not bars[16:48].any()
    # a rotation: same size, no bars, close to the unrotated view at 1 degree, farther at 12
    def rotated(deg: float, seed: int) -> torch.Tensor:   # same seed, same draw u: angle = deg * (2u - 1)
        cfg = CFG.model_copy(update={"rotate_p": 1.0, "rotate_deg": deg})
        return copy_edit(view, torch.Generator().manual_seed(seed), cfg)

    err = lambda a: (a.float() - view.float()).abs().mean().item()  # noqa: E731
    for seed in range(4):
        small, big = rotated(1.0, seed), rotated(12.0, seed)
        assert small.shape == big.shape == view.shape
        assert err(small) < err(big), (seed, err(small), err(big))
    with pytest.raises(ConfigError, match="letterbox_frac"):
        validate(ViewsConfig, {"letterbox_frac": [0.2, 0.6]})
    with pytest.raises(ConfigError, match="rotate_deg"):
        validate(ViewsConfig, {"rotate_deg": 90})
