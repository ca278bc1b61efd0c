"""The K ablation (the paper's Table 2: one model trained per K) and training-step entries,
without training: K's one home is the prepare recipe and every LDM stage takes it from the
data; a sweep over checkpoints of different K labels and plots each with its own trained K,
apart from truncated samples; ``RUN@STEP`` / ``RUN@all`` entries of ``config.checkpoints``."""

from __future__ import annotations

import json
import types
from pathlib import Path

import ml_collections
import numpy as np
import pytest

from gid_jax.config import load_config

PREPARE_FIELDS = ("fps", "width", "height", "num_frames", "stride", "close_loops")


@pytest.mark.parametrize("variant", ["paper", "tiny"])
def test_prepare_k_option_sets_k_and_nothing_else(variant):
    base = load_config(f"configs/prepare.py:{variant}")
    for k in (4, 8, 16, 24) if variant == "paper" else (4, 15):
        c = load_config(f"configs/prepare.py:{variant},k={k}")
        assert c.num_freqs == k and c.variant == variant
        assert {f: c[f] for f in PREPARE_FIELDS} == {f: base[f] for f in PREPARE_FIELDS}
    assert load_config(f"configs/prepare.py:{variant.upper()}, K=5").num_freqs == 5


@pytest.mark.parametrize("spec, message", [
    ("configs/prepare.py:paper,k=eight", "k must be a whole number"),
    ("configs/prepare.py:paper,k=0", "k must be at least 1"),
    ("configs/prepare.py:paper,q=8", "unknown variant option 'q=8'"),
    ("configs/prepare.py:tiny,k=17", "k=17, but T=30 frames have 16 Fourier bins"),
    ("configs/ldm.py:paper,k=8", "k=K is an option of configs/prepare.py only"),
    ("configs/vae.py:paper,k=8", "k=K is an option of configs/prepare.py only"),
])
def test_bad_k_options_are_one_clear_line(spec, message):
    with pytest.raises(ValueError, match=message):
        load_config(spec)


def _prepared_with_k(root: Path, k: int) -> Path:
    """The two files of a `gid prepare` output the LDM stages read K and the sizes from."""
    from data_pipelines.dataset_format import dataset_paths
    from gid_jax.motion import FrequencyNormalizer

    paths = dataset_paths(root)
    Path(paths["normalization"]).parent.mkdir(parents=True)
    FrequencyNormalizer.from_scales(np.linspace(1.0, 0.1, k)).save(paths["normalization"])
    Path(paths["prepare_config"]).write_text(json.dumps(
        {"height": 160, "width": 256, "num_frames": 150, "fps": 30.0}))
    return root


@pytest.mark.parametrize("k", [4, 24])
def test_every_ldm_stage_config_takes_k_from_the_data(tmp_path, k):
    """Unchanged stage configs on K-bin data: the model of stage 1, stage 2 and distillation
    is built for K bins (what `gid train` runs: `get_task` resolves, then checks)."""
    from gid_jax.train import get_task
    from gid_jax.train.ldm_task import resolve_config

    data = _prepared_with_k(tmp_path / f"data_k{k}", k)
    for spec in ("configs/ldm.py:paper", "configs/ldm_freq_attn.py:paper", "configs/distill.py:paper"):
        config = load_config(spec, [f"--config.data.dir={data}"])
        assert config.model.num_freqs == 16 != k       # a placeholder until the data are read
        resolve_config(config)
        assert config.model.num_freqs == k, spec
    task = get_task("ldm", load_config("configs/ldm_freq_attn.py:paper", [f"--config.data.dir={data}"]))
    assert len(task.freq_scales) == k and task.stage == 2


def _fake_pipelines(monkeypatch, truths):
    """Stand-in checkpoints ``runs/kK``: a pipeline trained with K bins (samples: the truth's
    first K bins, plus noise that grows with K so the rows differ)."""
    import gid_jax.pipeline
    from gid_jax.eval import pipeline_eval
    from gid_jax.pipeline import SamplerSettings

    class FakePipeline:
        settings = SamplerSettings(period=8)

        def __init__(self, k):
            self.ldm = types.SimpleNamespace(num_freqs=k)

        def predict_spectral_volume(self, image, seed=0, **kw):
            i = int(round(float(image[0, 0, 0]) * 3))
            k = self.ldm.num_freqs
            noise = np.random.default_rng(seed).normal(0, 0.01 * k, (k,) + truths[i].shape[1:])
            return (truths[i][:k] + noise).astype(np.float32)

    examples = [(np.full((6, 8, 3), i / 3, np.float32), t) for i, t in enumerate(truths)]
    monkeypatch.setattr(pipeline_eval, "test_examples", lambda *a: examples)
    monkeypatch.setattr(pipeline_eval, "test_pairs", lambda *a: [])
    monkeypatch.setattr(gid_jax.pipeline.Pipeline, "load",
                        staticmethod(lambda path: FakePipeline(int(Path(path).name[1:]))))


def test_sweep_over_trained_k_labels_and_plots_each_checkpoint_with_its_own_k(tmp_path, monkeypatch):
    from gid_jax.eval.pipeline_eval import make_cell_evaluator
    from gid_jax.eval.report import write_report
    from gid_jax.eval.sweep import plot_results, run_sweep

    rng = np.random.default_rng(2)
    _fake_pipelines(monkeypatch, [rng.normal(size=(16, 6, 8, 4)).astype(np.float32) for _ in range(3)])
    config = ml_collections.ConfigDict(dict(
        data_dir="x", split="test", num_videos=3, seed=0, diversity_seeds=1, out_dir=str(tmp_path),
        checkpoints=("runs/k4", "runs/k8", "runs/k16"), baselines=("still",), plots=False,
        report_clips=0, grid=dict(num_steps=(3,), guidance_weight=("pipeline",), solver=("ddim",),
                                  num_freqs=(2, "trained"))))
    res = run_sweep(config, make_cell_evaluator(config), process_index=0, process_count=1,
                    progress=False)["results"]
    model = {(Path(r["checkpoint"]).name, r["num_freqs"]): r for r in res["table"]["rows"]
             if r["method"] == "model"}
    for k in (4, 8, 16):
        trained, cut = model[(f"k{k}", "trained")], model[(f"k{k}", 2)]
        assert (trained["info"]["k_mode"], trained["info"]["model_num_freqs"], trained["trained_num_freqs"]) == (
            "trained", k, k)
        assert f"K={k} (the K it was trained with)" in trained["label"]
        assert cut["info"]["k_mode"] == "truncated" and "trained_num_freqs" not in cut
        assert f"K={k} sample truncated to 2 bins" in cut["label"]
    assert res["derived_axes"] == {"trained_num_freqs": [4, 8, 16]}
    few = [r for r in res["rows"] if r["metric"] in ("sv_err", "sv_relerr")]   # plots take time
    res["plots"] = plot_results(few, res["axes"], tmp_path / "plots", res["derived_axes"])
    plot = json.loads((tmp_path / "plots" / "sv_err_vs_trained_num_freqs.json").read_text())
    assert [line["label"] for line in plot["lines"]] == ["model"]     # truncated rows left out
    assert plot["lines"][0]["points"] == [[k, model[(f"k{k}", "trained")]["metrics"]["sv_err"]]
                                          for k in (4, 8, 16)]
    assert [b["label"] for b in plot["baselines"]] == ["still"]
    page = write_report(config, res).read_text()
    assert "<td>8 (trained)</td>" in page and "<td>2 (truncated)</td>" in page
    assert "sv_relerr_vs_trained_num_freqs.png" in page
    with open(tmp_path / "results.csv") as f:
        assert "trained_num_freqs" in f.readline().strip().split(",")
    bad = config.copy_and_resolve_references()
    bad.grid.num_freqs, bad.out_dir = ("all",), str(tmp_path / "bad")
    with pytest.raises(ValueError, match="config.grid.num_freqs: 'all', expected an integer K or 'trained'"):
        run_sweep(bad, make_cell_evaluator(bad), process_index=0, process_count=1, progress=False)


def test_checkpoint_entries_at_steps(tmp_path):
    from gid_jax.eval.checkpoint_steps import expand_checkpoints, split_entry
    from gid_jax.eval.sweep import grid_cells

    run = tmp_path / "ldm"
    for name in ("100", "20", "300.orbax-checkpoint-tmp-7"):   # the last: a save in progress
        (run / "checkpoints" / name).mkdir(parents=True)
    pipe = tmp_path / "pipe"
    pipe.mkdir()
    (pipe / "pipeline.json").write_text(json.dumps({"ldm": "../ldm", "renderer": "../r"}))
    assert split_entry("runs/p@20") == ("runs/p", 20) and split_entry("a@b/p") == ("a@b/p", None)
    assert split_entry(f"{pipe}@all") == (str(pipe), "all")
    assert expand_checkpoints([f"{pipe}@all", f"{pipe}@20", "other"]) == [
        f"{pipe}@20", f"{pipe}@100", "other"]
    config = ml_collections.ConfigDict(dict(
        checkpoints=(f"{pipe}@all",), split="test", baselines=("still", "true_motion", "fixed_map"),
        grid=dict(num_steps=(2,))))
    cells = grid_cells(config)
    assert [c["checkpoint"] for c in cells if "method" not in c] == [f"{pipe}@20", f"{pipe}@100"]
    assert [(c["method"], c["checkpoint"]) for c in cells if "method" in c] == [
        ("still", ""), ("true_motion", str(pipe)), ("fixed_map", str(pipe))]   # once per run
    (tmp_path / "empty" / "checkpoints").mkdir(parents=True)
    (pipe / "pipeline.json").write_text(json.dumps({"ldm": "../empty", "renderer": "../r"}))
    with pytest.raises(ValueError, match="no saved checkpoint in"):
        expand_checkpoints([f"{pipe}@all"])
