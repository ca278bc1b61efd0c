"""Learning metrics (gid_jax.eval.learning) against known answers; numpy only, no training."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gid_jax.eval import learning as L


def _random_sv(rng, k=6, h=12, w=16, moving=None):
    """A spectral volume whose motion lives on `moving` (default: the left half)."""
    if moving is None:
        moving = np.zeros((h, w), bool)
        moving[:, : w // 2] = True
    sv = rng.normal(size=(k, h, w, 4)).astype(np.float32) * moving[None, :, :, None]
    return sv, moving


def _rotate_phase(sv, phi):
    """Multiplies every complex coefficient (x and y) by e^{i phi}: same amplitudes, new phase."""
    c = (sv[..., :2] + 1j * sv[..., 2:]) * np.exp(1j * phi)
    return np.concatenate([c.real, c.imag], axis=-1).astype(np.float32)


def test_amplitude_map_excludes_dc_and_uses_complex_norm():
    sv = np.zeros((3, 2, 2, 4), np.float32)
    sv[0] = 5.0                          # DC: ignored
    sv[1, 0, 0] = [3.0, 0.0, 4.0, 0.0]   # |.| = 5
    sv[2, 0, 0] = [1.0, 1.0, 1.0, 1.0]   # |.| = 2
    a = L.amplitude_map(sv)
    assert a[0, 0] == pytest.approx(7.0) and a[1, 1] == 0.0
    np.testing.assert_allclose(L.frequency_amplitudes(sv), [5.0 / 4, 2.0 / 4])


def test_roc_auc_known_answers():
    rng = np.random.default_rng(0)
    truth, mask = _random_sv(rng)
    amp = L.amplitude_map(truth)
    assert L.localisation_auc(truth, mask) == 1.0
    assert L.localisation_auc(-amp, mask) == 0.0                       # inverted map
    assert L.localisation_auc(np.ones_like(amp), mask) == 0.5          # all ties
    assert L.localisation_auc(np.zeros_like(truth), mask) == 0.5
    big = rng.random(20000) < 0.3
    assert abs(L.roc_auc(rng.random(20000), big) - 0.5) < 0.02
    # ties count half: positives {1, 2}, negatives {1, 0} -> pairs (1>0, 1=1, 2>1, 2>0) = 3.5 / 4
    assert L.roc_auc([1, 2, 1, 0], [1, 1, 0, 0]) == pytest.approx(3.5 / 4)
    assert math.isnan(L.roc_auc([1, 2], [True, True]))


def test_moving_masks():
    traj = np.zeros((10, 8, 8, 2), np.float32)
    traj[:, :4, :4, 0] = np.sin(np.arange(10))[:, None, None] * 2.0
    traj[:, 0, 7, 1] = 0.001                           # below the pixel floor
    m = L.moving_mask(traj)
    assert m[:4, :4].all() and m.sum() == 16
    assert not L.moving_mask(np.zeros_like(traj)).any()
    sv = np.fft.rfft(traj, axis=0)[:4]
    sv = np.concatenate([sv.real, sv.imag], -1).astype(np.float32)
    assert (L.moving_mask_from_sv(sv)[:4, :4]).all() and L.moving_mask_from_sv(sv).sum() == 16


def test_amplitude_ratio_and_spectrum_error():
    rng = np.random.default_rng(1)
    truth, mask = _random_sv(rng)
    assert L.amplitude_ratio(2 * truth, truth, mask) == pytest.approx(2.0, rel=1e-6)
    assert L.amplitude_ratio(truth, truth, mask) == pytest.approx(1.0, rel=1e-6)
    assert L.amplitude_ratio(np.zeros_like(truth), truth, mask) == 0.0
    assert L.spectrum_log_error(2 * truth, truth) == pytest.approx(math.log(2), rel=1e-6)
    assert L.spectrum_log_error(truth, truth) == pytest.approx(0.0, abs=1e-7)
    # zero motion hits the stated clamp: |log eps_rel| on every bin whose truth is near the mean
    zero = L.spectrum_log_error(np.zeros_like(truth), truth)
    assert 5.0 < zero < 9.0
    # phases do not matter, only amplitudes
    assert L.spectrum_log_error(_rotate_phase(truth, 1.0), truth) == pytest.approx(0.0, abs=1e-6)


def test_image_dependence():
    rng = np.random.default_rng(2)
    truths = [rng.random((4, 24, 24, 4)).astype(np.float32) ** 4 for _ in range(5)]  # dissimilar
    assert L.image_dependence(truths, truths) == pytest.approx(1.0, abs=0.1)
    fixed = rng.random((4, 24, 24, 4)).astype(np.float32)
    # one prediction for every scene: own and cross correlations cancel exactly
    assert L.image_dependence([fixed] * 5, truths) == pytest.approx(0.0, abs=1e-12)
    assert L.image_dependence([np.zeros_like(fixed)] * 5, truths) == 0.0   # constant -> corr 0
    with pytest.raises(ValueError):
        L.image_dependence(truths[:1], truths[:1])


def test_seed_diversity():
    rng = np.random.default_rng(3)
    sv, _ = _random_sv(rng, k=5, h=16, w=16)
    rotated = [_rotate_phase(sv, phi) for phi in rng.uniform(0, 2 * np.pi, 16)]
    d = L.seed_diversity(rotated)
    assert d["amplitude_agreement"] == pytest.approx(1.0, abs=1e-6)
    assert 0.7 < d["phase_diversity"] < 1.3                    # random phases: 1 in expectation
    same = L.seed_diversity([sv, sv, sv])
    assert same["amplitude_agreement"] == pytest.approx(1.0) and same["phase_diversity"] == pytest.approx(0.0, abs=1e-9)
    opposite = L.seed_diversity([sv, -sv])                     # pi apart: the maximum, S/(S-1)
    assert opposite["phase_diversity"] == pytest.approx(2.0)
    # independent samples: unrelated amplitude maps
    independent = [_random_sv(rng, k=5, h=16, w=16, moving=np.ones((16, 16), bool))[0] for _ in range(4)]
    assert abs(L.amplitude_agreement(independent)) < 0.3


def test_learning_report_floors_and_ceiling():
    rng = np.random.default_rng(4)
    scenes = []
    for i in range(4):
        moving = np.zeros((12, 16), bool)
        moving[:, 4 * i: 4 * i + 4] = True                     # each scene moves elsewhere
        sv, _ = _random_sv(rng, moving=moving)
        scenes.append({"image": np.full((12, 16, 3), i / 4, np.float32), "true_sv": sv})
    by_image = {float(s["image"][0, 0, 0]): s["true_sv"] for s in scenes}

    def oracle(image, seed):                                   # the truth with a seeded phase
        return _rotate_phase(by_image[float(image[0, 0, 0])], 0.7 * seed)

    refs = [s["true_sv"] for s in scenes]
    rep = L.learning_report(oracle, scenes, seeds=(0, 1, 2), untrained=lambda im, s: np.zeros((6, 12, 16, 4)),
                            reference_svs=refs, resampled_wind=[[s["true_sv"], 2 * s["true_sv"]] for s in scenes])
    model, floors, truth = rep["model"], rep["floors"], rep["ceiling"]["truth"]
    assert model["auc"] == pytest.approx(1.0) and model["amplitude_ratio"] == pytest.approx(1.0, rel=1e-5)
    assert model["spectrum_log_error"] == pytest.approx(0.0, abs=1e-5)
    assert model["image_dependence"] == pytest.approx(truth["image_dependence"], abs=1e-6)
    assert model["image_dependence"] > 1.0                    # disjoint regions: cross corr < 0
    assert model["amplitude_agreement"] == pytest.approx(1.0) and model["phase_diversity"] > 0.2
    assert floors["zero_motion"]["auc"] == 0.5 and floors["zero_motion"]["amplitude_ratio"] == 0.0
    assert floors["zero_motion"]["image_dependence"] == 0.0
    assert floors["fixed_map"]["image_dependence"] == pytest.approx(0.0, abs=1e-12)
    assert floors["untrained"]["auc"] == 0.5 and floors["untrained"]["phase_diversity"] is None
    assert truth["auc"] == 1.0 and truth["amplitude_ratio"] == pytest.approx(1.0)
    assert rep["fixed_map_source"] == "reference_scenes" and rep["num_scenes"] == 4
    assert rep["model_stderr"]["auc"] == 0.0                   # every scene exact
    wind = rep["ceiling"]["resampled_wind"]                     # scored like a sampler: draw 0
    assert wind["amplitude_ratio"] == pytest.approx(1.0, rel=1e-5) and wind["amplitude_agreement"] == pytest.approx(1.0)
    loo = L.learning_report(oracle, [(s["image"], s["true_sv"]) for s in scenes], seeds=(0,))
    assert loo["fixed_map_source"] == "leave_one_out" and "phase_diversity" not in loo["model"]
    assert loo["floors"]["fixed_map"]["image_dependence"] < 0       # the stated bias


def test_score_predictions_shorter_k_prediction():
    rng = np.random.default_rng(5)
    truth, mask = _random_sv(rng, k=6)
    scores = L.score_predictions([truth[:3]], [truth], [mask])
    assert scores["auc"] == 1.0 and math.isnan(scores["image_dependence"])
    assert scores["spectrum_log_error"] == pytest.approx(0.0, abs=1e-7)


def test_resampled_wind_ceiling_is_reachable_not_perfect():
    # Other gusts of the same procedural scene: the right place (AUC far above chance), about
    # the right amount, but not the truth's own draw.
    draws = L.resampled_wind_svs(7, (1, 2), size=(64, 40), num_frames=30, num_freqs=8)
    truth = L.procedural_scenes(1, seed=7, size=(64, 40), num_frames=30, num_freqs=8)[0]["true_sv"]
    mask = L.moving_mask_from_sv(truth)
    for sv in draws:
        assert 0.8 < L.localisation_auc(sv, mask) < 1.0
        assert 0.4 < L.amplitude_ratio(sv, truth, mask) < 2.5
    assert not np.allclose(draws[0], draws[1])


def test_stderr_over_scenes_matches_numpy():
    rng = np.random.default_rng(6)
    truths, preds, masks = [], [], []
    for _ in range(5):
        truth, mask = _random_sv(rng)
        truths.append(truth), masks.append(mask)
        preds.append(truth * rng.uniform(0.5, 2.0))            # right place, scene-dependent scale
    scores = L.score_predictions(preds, truths, masks, with_stderr=True)
    ratios = [L.amplitude_ratio(p, t, m) for p, t, m in zip(preds, truths, masks)]
    assert scores["amplitude_ratio"] == pytest.approx(np.mean(ratios))
    assert scores["stderr"]["amplitude_ratio"] == pytest.approx(np.std(ratios, ddof=1) / np.sqrt(5))
    assert scores["stderr"]["auc"] == pytest.approx(0.0, abs=1e-12)   # scaling keeps the ranking
    dep = L.image_dependence(preds, truths)
    assert scores["image_dependence"] == pytest.approx(dep)
    assert "stderr" not in L.score_predictions(preds, truths, masks)


def test_renderer_metrics_zero_motion_splat_reproduces_image():
    import jax.numpy as jnp
    from flax import nnx

    class Identity(nnx.Module):
        """A stand-in renderer: 'synthesises' the encoded image itself, whatever the flow."""
        style_dim, splat_z_scale = 4, 1.0

        def encode(self, image):
            return image

        def synthesize(self, encoded, flows, weight, noise):
            return jnp.broadcast_to(encoded, flows.shape[:3] + (3,))

    rng = np.random.default_rng(6)
    image = rng.random((16, 20, 3)).astype(np.float32)
    flows = np.zeros((2, 16, 20, 2), np.float32)
    out = L.renderer_metrics(Identity(), image, flows, np.stack([image, image]), lpips=False)
    for name in ("renderer", "splat", "splat_filled"):
        assert out[name]["psnr"] == float("inf") or out[name]["psnr"] > 60, (name, out[name])
        assert out[name]["lpips"] is None
    assert out["lpips_note"] == "LPIPS skipped"
    # a one-pixel shift: splatting moves the image, holes (first column) stay black unless filled
    shift = np.zeros_like(flows)
    shift[..., 0] = 1.0
    target = np.roll(image, 1, axis=1)
    moved = L.renderer_metrics(Identity(), image, shift, np.stack([target, target]), lpips=False)
    assert moved["splat_filled"]["psnr"] > moved["splat"]["psnr"] > moved["renderer"]["psnr"]


def test_gid_eval_cell_reports_learning_metrics(monkeypatch):
    """`gid eval`'s cell evaluator with a stand-in pipeline: learn_* metrics appear, finite."""
    import types

    import ml_collections

    import gid_jax.pipeline
    from gid_jax.eval import pipeline_eval

    rng = np.random.default_rng(7)
    examples = [(np.full((12, 16, 3), i / 3, np.float32), _random_sv(rng, k=4)[0]) for i in range(3)]
    calls = []

    class FakePipeline:
        ldm = types.SimpleNamespace(num_freqs=4)
        settings = types.SimpleNamespace(period=8)

        def predict_spectral_volume(self, image, seed=0, **kw):
            calls.append(seed)
            truth = examples[int(round(float(image[0, 0, 0]) * 3))][1]
            return _rotate_phase(truth, 0.3 * seed)

    monkeypatch.setattr(pipeline_eval, "test_examples", lambda *a: examples)
    monkeypatch.setattr(pipeline_eval, "test_pairs", lambda *a: [])
    monkeypatch.setattr(gid_jax.pipeline.Pipeline, "load", staticmethod(lambda path: FakePipeline()))
    config = ml_collections.ConfigDict(dict(data_dir="x", split="test", num_videos=3, seed=0,
                                            diversity_seeds=3, diversity_videos=2))
    metrics = pipeline_eval.make_cell_evaluator(config)({"checkpoint": "fake", "num_freqs": 4})
    assert len(calls) == 3 + 2 * 2                              # one per video + 2 extra for 2 videos
    assert metrics["learn_auc"] == 1.0 and metrics["learn_amplitude_ratio"] == pytest.approx(1.0, rel=1e-5)
    assert metrics["learn_image_dependence"] == pytest.approx(metrics["learn_image_dependence_truth"])
    assert metrics["learn_amplitude_agreement"] == pytest.approx(1.0)
    assert 0 < metrics["learn_phase_diversity"] and "learn_auc_fixed_map" in metrics
    assert all(np.isfinite(v) for v in metrics.values()) and "sv_err" in metrics


def test_sample_scenes_batches_a_pipeline_by_image_size():
    """A Pipeline is asked for same-sized batches (at most batch_size, once per seed) and every
    sample lands at its own image and seed; a plain callable runs per image."""
    calls = []

    class FakePipeline:
        def predict_spectral_volumes(self, images, seed, loop=False, **overrides):
            calls.append((images.shape, seed))
            return np.stack([np.full((2,) + im.shape[:2] + (4,), im[0, 0, 0] + 10 * seed) for im in images])

    images = [np.full((4, 6, 3), i, np.float32) for i in range(3)] + [np.full((8, 6, 3), 3, np.float32)]
    samples = L.sample_scenes(FakePipeline(), images, seeds=(0, 1), batch_size=2)
    assert sorted(calls) == sorted([((2, 4, 6, 3), 0), ((2, 4, 6, 3), 1), ((1, 4, 6, 3), 0),
                                    ((1, 4, 6, 3), 1), ((1, 8, 6, 3), 0), ((1, 8, 6, 3), 1)])
    for i, per_seed in enumerate(samples):
        for j, sv in enumerate(per_seed):
            assert sv.shape == (2,) + images[i].shape[:2] + (4,) and np.all(sv == i + 10 * j)
    plain = L.sample_scenes(lambda im, seed: np.full((1,), im[0, 0, 0] * seed), images, seeds=(2,))
    assert [float(p[0][0]) for p in plain] == [0.0, 2.0, 4.0, 6.0]
