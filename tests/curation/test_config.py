"""pipelines.yaml is validated at load: bad keys/values fail naming the key, the value and what is allowed."""
from __future__ import annotations

import copy

import pytest
import yaml

from humans.curation.config import DEFAULT_CONFIG, STAGE_ORDER, load_pipeline
from humans.shared.cli import parse_set
from humans.shared.config import ConfigError


def _write(tmp_path, doc) -> str:
    path = tmp_path / "pipelines.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def _base() -> dict:
    return copy.deepcopy(yaml.safe_load(DEFAULT_CONFIG.read_text()))


def test_shipped_pipelines_load_with_all_six_stages_in_order():
    for name in ("humans", "humans-test"):
        cfg = load_pipeline(name)
        assert [s.name for s in cfg.stages] == list(STAGE_ORDER)
        for s in cfg.stages:
            assert s.resources.num_cpus >= 0 and s.resources.batch_size >= 1 and s.resources.concurrency >= 1
    emb = load_pipeline("humans").stage("embedding")
    assert emb.embedder == "backbone" and emb.backbone is None and not emb.random_init
    assert "--embedding-backbone" in emb.weights_problem()  # no weights named: refused, never random
    assert load_pipeline("humans-test").stage("embedding").random_init  # tests say so explicitly


def test_embedding_weights_are_required_and_contradictions_named(tmp_path):
    from humans.curation.preflight import check_files

    with pytest.raises(ConfigError, match="embedding.backbone is not set"):
        check_files(load_pipeline("humans"))
    with pytest.raises(ConfigError, match="open_clip needs an open_clip state dict"):
        check_files(load_pipeline("humans", overrides={"embedding.embedder": "open_clip"}))
    with pytest.raises(ConfigError, match="random_init=true contradicts"):
        load_pipeline("humans", overrides={"embedding.random_init": True, "embedding.backbone": "x.safetensors"})
    with pytest.raises(ConfigError, match="embedding.embedder=open_clip"):
        load_pipeline("humans", overrides={"embedding.checkpoint": "x.pt"})
    bad = tmp_path / "bb.safetensors"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="embedding.backbone .* was not loaded"):
        check_files(load_pipeline("humans", overrides={"embedding.backbone": str(bad)}))
    from safetensors import safe_open
    from safetensors.torch import save_file

    from humans.shared.backbone import build_backbone, save_backbone

    good = save_backbone(build_backbone("study-s8"), tmp_path / "good.safetensors")
    assert check_files(load_pipeline("humans", overrides={"embedding.backbone": str(good)})) == \
        [f"embedding.backbone {good} (strict load)"]
    with safe_open(str(good), framework="pt") as f:  # a block's weights missing: refused by the header check
        meta, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys() if not k.startswith("blocks.5.")}
    save_file(state, str(tmp_path / "short.safetensors"), metadata=meta)
    with pytest.raises(ConfigError, match="missing keys \\['blocks.5"):
        check_files(load_pipeline("humans", overrides={"embedding.backbone": str(tmp_path / "short.safetensors")}))
    assert check_files(load_pipeline("humans", overrides={"embedding.enabled": False})) == []


def test_unknown_stage_name_lists_the_allowed_names(tmp_path):
    doc = _base()
    doc["pipelines"]["humans"]["stages"][1]["name"] = "qualty"
    with pytest.raises(ConfigError) as err:
        load_pipeline("humans", _write(tmp_path, doc))
    text = str(err.value)
    assert "pipelines.humans.stages.1" in text and "qualty" in text
    for allowed in ("'resolution'", "'quality'", "'person'", "'framing'", "'phash'", "'embedding'"):
        assert allowed in text


def test_bad_value_names_key_value_and_allowed(tmp_path):
    doc = _base()
    doc["pipelines"]["humans"]["stages"][2]["detector"] = "rcnn"
    with pytest.raises(ConfigError) as err:
        load_pipeline("humans", _write(tmp_path, doc))
    text = str(err.value)
    assert "pipelines.humans.stages.2.person.detector" in text and "'rcnn'" in text
    assert "'mediapipe'" in text and "'yolo'" in text

    doc = _base()
    doc["pipelines"]["humans"]["stages"][1]["min_entropy"] = 11
    with pytest.raises(ConfigError, match=r"quality\.min_entropy.*11.*less than or equal to 8"):
        load_pipeline("humans", _write(tmp_path, doc))


def test_unknown_key_and_wrong_types_are_errors(tmp_path):
    doc = _base()
    doc["pipelines"]["humans"]["stages"][0]["min_side"] = 100
    doc["pipelines"]["humans"]["stages"][0]["resources"]["concurrency"] = "many"
    with pytest.raises(ConfigError) as err:
        load_pipeline("humans", _write(tmp_path, doc))
    text = str(err.value)
    assert "resolution.min_side" in text and "unknown key" in text
    assert "resources.concurrency" in text and "'many'" in text


def test_cross_field_rules(tmp_path):
    doc = _base()
    st = doc["pipelines"]["humans"]["stages"]
    st[0], st[1] = st[1], st[0]
    with pytest.raises(ConfigError, match="must follow the order"):
        load_pipeline("humans", _write(tmp_path, doc))
    doc = _base()
    doc["pipelines"]["humans"]["stages"][4]["bands"] = 5
    with pytest.raises(ConfigError, match="bands=5 must divide the 64 hash bits"):
        load_pipeline("humans", _write(tmp_path, doc))
    doc = _base()
    doc["pipelines"]["humans"]["stages"][2]["detector"] = "yolo"
    with pytest.raises(ConfigError, match="needs 'weights'"):
        load_pipeline("humans", _write(tmp_path, doc))


def test_unknown_pipeline_and_overrides():
    with pytest.raises(ConfigError, match=r"no pipeline 'people'.*allowed: \['humans', 'humans-test'\]"):
        load_pipeline("people")
    cfg = load_pipeline("humans", overrides=parse_set(["person.min_score=0.7", "samples_per_shard=12",
                                                       "embedding.resources.concurrency=3"]))
    assert cfg.stage("person").min_score == 0.7 and cfg.samples_per_shard == 12
    assert cfg.stage("embedding").resources.concurrency == 3
    with pytest.raises(ConfigError, match=r"quality\.min_sharpness.*'sharp'"):
        load_pipeline("humans", overrides={"quality.min_sharpness": "sharp"})
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_set(["person.min_score"])


def test_thresholds_that_no_image_could_pass_are_refused():
    """These used to be accepted: min_mean above max_mean gave 0 samples with rc 0, a negative
    embedding threshold dropped 19 of 20 images."""
    cases = {
        (("quality.min_mean", 200), ("quality.max_mean", 100)): ["min_mean=200", "max_mean=100",
                                                                 "min_mean < max_mean"],
        (("embedding.threshold", -0.5),): ["embedding.threshold", "-0.5", "greater than 0"],
        (("embedding.threshold", 0),): ["embedding.threshold", "greater than 0"],
        (("resolution.min_pixels", 5000), ("resolution.max_pixels", 4000)): ["min_pixels=5000",
                                                                            "min_pixels <= max_pixels"],
        (("resolution.min_short_side", 3000), ("resolution.max_pixels", 1_000_000)): ["min_short_side=3000"],
        (("person.min_persons", 8), ("framing.max_persons", 2)): ["min_persons=8", "max_persons=2"],
        (("phash.max_distance", 40),): ["max_distance=40", "0 <= max_distance < 32"],
        (("read.max_bytes", -1),): ["read.max_bytes", "greater than or equal to 1"],
        (("read.timeout_s", 0),): ["read.timeout_s", "greater than 0"],
    }
    for pairs, expected in cases.items():
        with pytest.raises(ConfigError) as err:
            load_pipeline("humans", overrides=dict(pairs))
        for text in expected:
            assert text in str(err.value), (pairs, str(err.value))


def test_unknown_keys_list_the_valid_ones(tmp_path):
    doc = _base()
    doc["pipelines"]["humans"]["stages"][1]["min_brightness"] = 10
    doc["pipelines"]["humans"]["filter_resources"]["gpus"] = 1
    doc["pipelines"]["humans"]["sample_per_shard"] = 5
    with pytest.raises(ConfigError) as err:
        load_pipeline("humans", _write(tmp_path, doc))
    lines = str(err.value).splitlines()
    quality = next(line for line in lines if "quality.min_brightness" in line)
    assert "unknown key" in quality and "min_mean" in quality and "max_blockiness" in quality
    res = next(line for line in lines if "filter_resources.gpus" in line)
    assert "allowed: batch_size, concurrency, num_cpus, num_gpus" in res
    top = next(line for line in lines if "sample_per_shard" in line)
    assert "samples_per_shard" in top and "stages" in top and "read" in top


def test_a_stage_without_name_names_the_allowed_stages(tmp_path):
    doc = _base()
    del doc["pipelines"]["humans"]["stages"][3]["name"]
    with pytest.raises(ConfigError) as err:
        load_pipeline("humans", _write(tmp_path, doc))
    text = str(err.value)
    assert "pipelines.humans.stages.3" in text and "has no 'name'" in text
    assert "resolution, quality, person, framing, phash, embedding" in text
    assert "discriminator" not in text
