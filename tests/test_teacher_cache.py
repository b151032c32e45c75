"""Teacher-output cache and view replay: exact replay, validation, resume, B == C training."""

from __future__ import annotations

import functools
import json
import os

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from PIL import Image

from clip.model import VisionTransformer
from dassl.config import get_cfg_default
from dassl.data.data_manager import build_data_loader
from dassl.data.datasets.base_dataset import Datum
from dassl.data.transforms import build_transform
from dassl.data.transforms.view_replay import ViewPipeline, view_seed
from trainers.distillation import Distiller, KDLoss
from trainers.projector import build_projector
from trainers.promptkd_student import StudentCLIP
from trainers.teacher_cache import (
    CacheSpec,
    ReplayDatasetWrapper,
    TeacherCache,
    TeacherCacheIncomplete,
    TeacherCacheMismatch,
    build_shards,
    estimate_bytes,
    items_sha256,
    missing_shards,
    prepare_cache_dir,
)

SIZE = 16
MEAN, STD = (0.48, 0.46, 0.41), (0.27, 0.26, 0.28)
PROMPTS = {"trainer": "IVLP", "vision_depth": 2, "vision_ctx": 2}


def _cfg():
    cfg = get_cfg_default()
    cfg.INPUT.SIZE = (SIZE, SIZE)
    cfg.INPUT.TRANSFORMS = ["random_resized_crop", "random_flip", "normalize"]
    cfg.INPUT.RRCROP_SCALE = (0.5, 1.0)
    cfg.INPUT.PIXEL_MEAN, cfg.INPUT.PIXEL_STD = list(MEAN), list(STD)
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.SEED = 3
    return cfg


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.RandomState(0)
    out = []
    for i in range(10):
        h, w = rng.randint(20, 40, size=2)
        path = os.path.join(root, f"img{i}.png")
        Image.fromarray(rng.randint(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
        out.append(Datum(impath=str(path), label=i % 3))
    return out


def _teacher() -> VisionTransformer:
    torch.manual_seed(1)
    return VisionTransformer(SIZE, 4, 128, 2, 2, 32, PROMPTS).eval()


def _spec(items, **over) -> CacheSpec:
    pipe = ViewPipeline.from_cfg(_cfg())
    args = dict(
        dataset="Fake",
        num_items=len(items),
        items_sha256=items_sha256([d.impath for d in items]),
        teacher_sha256="t" * 64,
        class_vectors_sha256="v" * 64,
        transform=pipe.fingerprint(),
        views=3,
        seed=3,
        dim=32,
        shard_items=4,
    )
    args.update(over)
    return CacheSpec(**args)


def _distiller() -> Distiller:
    torch.manual_seed(2)
    vectors = torch.nn.functional.normalize(torch.randn(5, 32), dim=-1)
    return Distiller(_teacher(), vectors, 20.0, KDLoss(1.0, "official"))


def _build(directory, items, spec, distiller, batch_size=8):
    prepare_cache_dir(str(directory), spec, distiller.logit_scale)
    pipe = ViewPipeline.from_cfg(_cfg())
    return build_shards(str(directory), spec, items, pipe, distiller.teacher_features, batch_size)


def test_replayed_view_equals_torchvision_pipeline(items):
    """A stored view renders exactly what the configured training transform draws."""
    cfg = _cfg()
    pipe = ViewPipeline.from_cfg(cfg)
    tfm = build_transform(cfg, is_train=True)
    img = Image.open(items[0].impath).convert("RGB")
    flips = set()
    for k in range(8):
        params = pipe.sample(img.size[0], img.size[1], 3, 0, k)
        flips.add(int(params[4]))
        torch.manual_seed(view_seed(3, 0, k))
        assert torch.equal(tfm(img), pipe.apply(img, params))
    assert flips == {0, 1}
    before = torch.get_rng_state()
    pipe.sample(30, 20, 3, 0, 0)
    assert torch.equal(before, torch.get_rng_state()), "sampling must not touch the global RNG"


def test_non_replayable_transform_is_refused():
    cfg = _cfg()
    cfg.INPUT.TRANSFORMS = ["random_resized_crop", "colorjitter", "normalize"]
    with pytest.raises(ValueError, match="colorjitter"):
        ViewPipeline.from_cfg(cfg)


def test_cache_stores_teacher_features_of_each_view(items, tmp_path):
    spec = _spec(items)
    distiller = _distiller()
    built = _build(tmp_path, items, spec, distiller, batch_size=5)
    assert built == [0, 1, 2]
    cache = TeacherCache.open(str(tmp_path), spec)
    assert cache.logit_scale == 20.0
    pipe = ViewPipeline.from_cfg(_cfg())
    for i in (0, 5, 9):
        img = Image.open(items[i].impath).convert("RGB")
        params = cache.views(i)
        assert np.array_equal(params, pipe.sample_views(img.size[0], img.size[1], 3, i, 3))
        imgs = torch.stack([pipe.apply(img, p) for p in params])
        ref = distiller.teacher_features(imgs)
        got = cache.features(torch.tensor([i, i, i]), torch.tensor([0, 1, 2]))
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
    size = sum(os.path.getsize(tmp_path / f) for f in os.listdir(tmp_path) if f.endswith(".npy"))
    header = 128 * 2 * spec.num_shards  # one .npy header per file
    assert size - header == estimate_bytes(10, 3, 32, "float32")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("dataset", "Other"),
        ("items_sha256", "x" * 64),
        ("teacher_sha256", "u" * 64),
        ("class_vectors_sha256", "w" * 64),
        ("transform", "{}"),
        ("views", 2),
    ],
)
def test_cache_of_another_setting_is_refused(items, tmp_path, field, value):
    spec = _spec(items, shard_items=10, views=1)
    _build(tmp_path, items, spec, _distiller())
    other = _spec(items, **{"shard_items": 10, "views": 1, field: value})
    with pytest.raises(TeacherCacheMismatch, match=field):
        TeacherCache.open(str(tmp_path), other)
    with pytest.raises(TeacherCacheMismatch, match="TEACHER_CACHE"):
        prepare_cache_dir(str(tmp_path), other, 20.0)


def test_interrupted_build_resumes_at_first_missing_shard(items, tmp_path):
    spec = _spec(items)
    distiller = _distiller()
    calls = []

    def dying(images):
        calls.append(len(images))
        if len(calls) == 3:
            raise KeyboardInterrupt  # "killed" in shard 1 (each shard is 4 items x 3 views)
        return distiller.teacher_features(images)

    prepare_cache_dir(str(tmp_path), spec, 20.0)
    pipe = ViewPipeline.from_cfg(_cfg())
    with pytest.raises(KeyboardInterrupt):
        build_shards(str(tmp_path), spec, items, pipe, dying, batch_size=6)
    assert missing_shards(str(tmp_path), spec) == [1, 2]
    with pytest.raises(TeacherCacheIncomplete, match="2 of 3 shards"):
        TeacherCache.open(str(tmp_path), spec)
    assert _build(tmp_path, items, spec, distiller, batch_size=6) == [1, 2]
    resumed = TeacherCache.open(str(tmp_path), spec)
    fresh_dir = tmp_path / "fresh"
    _build(fresh_dir, items, spec, distiller, batch_size=6)
    fresh = TeacherCache.open(str(fresh_dir), spec)
    idx = torch.arange(10).repeat_interleave(3)
    view = torch.arange(3).repeat(10)
    assert torch.equal(resumed.features(idx, view), fresh.features(idx, view))


def test_ranks_build_disjoint_shards(items, tmp_path):
    spec = _spec(items)
    distiller = _distiller()
    assert _build_rank(tmp_path, items, spec, distiller, rank=1) == [1]
    assert _build_rank(tmp_path, items, spec, distiller, rank=0) == [0, 2]
    assert missing_shards(str(tmp_path), spec) == []
    meta = json.loads((tmp_path / "teacher_cache.json").read_text())
    assert meta["spec"]["num_items"] == 10


def _build_rank(directory, items, spec, distiller, rank):
    prepare_cache_dir(str(directory), spec, distiller.logit_scale)
    pipe = ViewPipeline.from_cfg(_cfg())
    return build_shards(
        str(directory), spec, items, pipe, distiller.teacher_features, 6, rank=rank, world_size=2
    )


def _train(items, cache, distiller, use_cache: bool, steps: int = 4) -> dict[str, torch.Tensor]:
    """A PromptKD student step loop over replayed views, teacher online or from the cache."""
    cfg = _cfg()
    torch.manual_seed(7)
    visual = VisionTransformer(SIZE, 8, 64, 1, 1, 16, PROMPTS)
    student = StudentCLIP(
        visual, build_projector("mlp", 16, 32, 2), torch.nn.Parameter(torch.ones([]))
    )
    for name, p in student.named_parameters():
        p.requires_grad_("VPT" in name or name.startswith("VPT_image_trans."))
    params = [p for p in student.parameters() if p.requires_grad]
    optim = torch.optim.SGD(params, lr=0.5, momentum=0.9)
    kd = KDLoss(1.0, "official")
    wrapper = functools.partial(
        ReplayDatasetWrapper, pipeline=ViewPipeline.from_cfg(cfg), cache=cache
    )
    gen = torch.Generator().manual_seed(cfg.SEED)
    loader = build_data_loader(
        cfg, "RandomSampler", items, batch_size=4, tfm=None, dataset_wrapper=wrapper, generator=gen
    )
    vectors = distiller.class_vectors
    torch.manual_seed(11)  # the view draws
    step = 0
    while step < steps:
        for batch in loader:
            if use_cache:
                feats = cache.features(batch["index"], batch["view"])
                t_logits = cache.logit_scale * feats @ vectors.t()
            else:
                t_logits = distiller.teacher_logits(batch["img"])
            s_logits = student.logit_scale.exp() * student(batch["img"]) @ vectors.t()
            loss = 1000.0 * kd(s_logits, t_logits.detach())
            optim.zero_grad()
            loss.backward()
            optim.step()
            step += 1
    return {k: v.detach().clone() for k, v in student.state_dict().items()}


def test_cached_training_equals_online_training_on_the_same_views(items, tmp_path):
    spec = _spec(items)
    distiller = _distiller()
    _build(tmp_path, items, spec, distiller, batch_size=4)  # = the training batch size
    cache = TeacherCache.open(str(tmp_path), spec)
    online = _train(items, cache, distiller, use_cache=False)
    cached = _train(items, cache, distiller, use_cache=True)
    assert online.keys() == cached.keys()
    init = _train(items, cache, distiller, use_cache=True, steps=0)
    assert not torch.equal(online["image_encoder.VPT"], init["image_encoder.VPT"])
    for key in online:
        assert torch.equal(online[key], cached[key]), key


def test_float16_cache_halves_the_features(items, tmp_path):
    spec = _spec(items, dtype="float16", shard_items=10, views=1)
    distiller = _distiller()
    _build(tmp_path, items, spec, distiller)
    cache = TeacherCache.open(str(tmp_path), spec)
    feats = cache.features(torch.arange(10), torch.zeros(10, dtype=torch.long))
    assert feats.dtype == torch.float32
    assert estimate_bytes(10, 1, 32, "float16") == 10 * (32 * 2 + 20)
    with pytest.raises(ValueError, match="TEACHER_CACHE_DTYPE"):
        _spec(items, dtype="int8")


def test_pipeline_matches_torchvision_rrc_defaults():
    """The stored aspect-ratio range is torchvision's RandomResizedCrop default."""
    pipe = ViewPipeline((8, 8), (0.08, 1.0))
    assert pipe.ratio == tuple(T.RandomResizedCrop(8).ratio)
