"""The config contract: one parser for `configs/NAME.py:VARIANT`, every training default defined
once (configs/train_defaults.py, which every stage config builds on), the fields the data decide
filled in before the task is built, and the config locked after that."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from gid_jax.config import load_config, parse_spec, parse_variant

ROOT = Path(__file__).resolve().parents[1]
STAGE_CONFIGS = ("toy", "vae", "ldm", "ldm_freq_attn", "distill", "renderer")
ALL_CONFIGS = STAGE_CONFIGS + ("train_defaults", "models", "eval", "prepare")


def test_one_spec_and_variant_parser():
    assert parse_spec("configs/ldm.py:tiny") == ("configs/ldm.py", "tiny")
    assert parse_spec("configs/ldm.py") == ("configs/ldm.py", None)
    assert parse_spec("configs/ldm.py:") == ("configs/ldm.py", None)
    assert parse_variant(None, "x.py") == "paper" and parse_variant(" TINY ", "x.py") == "tiny"
    assert parse_variant("", "x.py", default="tiny") == "tiny"
    with pytest.raises(ValueError, match=r"^x\.py: variant must be one of 'tiny', 'paper', got 'big'$"):
        parse_variant("big", "x.py")


@pytest.mark.parametrize("name", ALL_CONFIGS)
def test_every_config_file_reads_its_variant_the_same_way(name):
    with pytest.raises(ValueError, match=rf"^configs/{name}\.py: variant must be one of 'tiny', 'paper'"):
        load_config(f"configs/{name}.py:bogus")
    assert load_config(f"configs/{name}.py:Tiny").to_dict() == load_config(f"configs/{name}.py:tiny").to_dict()


def _keys(block, prefix=""):
    out = set()
    for k, v in block.items():
        out |= _keys(v, f"{prefix}{k}.") if hasattr(v, "items") else {prefix + k}
    return out


@pytest.mark.parametrize("variant", ("tiny", "paper"))
@pytest.mark.parametrize("name", STAGE_CONFIGS)
def test_stage_configs_have_every_training_field(name, variant):
    """Each stage config has every field of train_defaults' blocks (the code reads them with no
    fallback of its own)."""
    defaults, stage = load_config(f"configs/train_defaults.py:{variant}"), load_config(f"configs/{name}.py:{variant}")
    for block in ("train", "optimizer", "mesh", "checkpoint"):
        missing = _keys(defaults[block]) - _keys(stage[block])
        assert not missing, f"configs/{name}.py:{variant} lacks {block}.{sorted(missing)}"
    assert "seed" in stage and "task" in stage


def test_training_code_has_no_config_fallbacks():
    """No `cfg.get(key, default)` in gid_jax/train: a default lives in the configs only, so the
    code and the configs cannot disagree (as EMA 0.0 vs 0.9999 once did)."""
    pattern = re.compile(r"\b(config|cfg|tc|cc|opt_cfg|ckpt_cfg|init_cfg|data|d)(\.\w+)*\.get\(")
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in sorted((ROOT / "gid_jax" / "train").glob("*.py"))
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not hits, hits


def _fake_prepared(root: Path, num_freqs: int, height: int, width: int, num_frames: int, fps: float):
    from data_pipelines.dataset_format import dataset_paths
    from gid_jax.motion import FrequencyNormalizer

    paths = dataset_paths(root)
    Path(paths["normalization"]).parent.mkdir(parents=True)
    FrequencyNormalizer.from_scales(np.linspace(1.0, 0.1, num_freqs)).save(paths["normalization"])
    Path(paths["prepare_config"]).write_text(json.dumps(
        {"height": height, "width": width, "num_frames": num_frames, "fps": fps}))
    return root


def test_get_task_fills_in_what_the_data_decide_then_locks_the_config(tmp_path):
    from gid_jax.train import get_task

    data = _fake_prepared(tmp_path / "data", 3, 24, 40, 20, 12.5)
    config = load_config("configs/ldm.py:tiny", [f"--config.data.dir={data}"])
    assert config.model.num_freqs != 3
    task = get_task("ldm", config)
    m = config.model
    assert (m.num_freqs, tuple(m.image_size), m.period, m.fps) == (3, (24, 40), 20, 12.5)
    assert len(task.freq_scales) == 3
    with pytest.raises(AttributeError, match="locked"):
        config.model.periods = 10                    # a misspelt field is refused, not added
    with pytest.raises(AttributeError, match="locked"):
        config.train.num_stepz = 10
    config.train.num_steps = 5                       # existing fields stay writable


def test_a_task_built_from_a_stale_config_is_refused(tmp_path):
    from gid_jax.train.ldm_task import LDMTask

    data = _fake_prepared(tmp_path / "data", 3, 24, 40, 20, 12.5)
    config = load_config("configs/ldm.py:tiny", [f"--config.data.dir={data}"])
    with pytest.raises(ValueError, match="num_freqs=4 but the data have K=3"):
        LDMTask(config)


def test_toy_config_is_locked_by_get_task():
    from gid_jax.train import get_task

    config = load_config("configs/toy.py:tiny")
    get_task("toy", config)
    with pytest.raises(AttributeError, match="locked"):
        config.new_field = 1
