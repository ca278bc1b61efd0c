"""Motion-consistent augmentation and the training input (data_pipelines/training_input.py, tf.data)."""


import numpy as np
import pytest
import tensorflow as tf

from data_pipelines import augment as aug
from data_pipelines import training_input as ip

GEOMETRIC = aug.AugmentConfig(brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0)


def _geom(params, fields=None, image=None, out_hw=None, config=GEOMETRIC):
    ref = image if image is not None else fields[0]
    out_hw = out_hw or ref.shape[:2]
    img, f = aug.apply_geometry(params, config, out_hw,
                                image=None if image is None else tf.constant(image, tf.float32),
                                fields=None if fields is None else tf.constant(fields, tf.float32))
    return (None if img is None else img.numpy()), (None if f is None else f.numpy())


def _irfft(sv, num_frames):
    """Numpy reference: (K, H, W, 4) [Re x, Re y, Im x, Im y] -> (T, H, W, 2), bins K.. zero."""
    c = sv[..., :2] + 1j * sv[..., 2:]
    full = np.zeros((num_frames // 2 + 1,) + c.shape[1:], complex)
    full[: len(c)] = c
    return np.fft.irfft(full, n=num_frames, axis=0)


# ---------------------------------------------------------------------------------------------
# augmentation geometry
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("config", [GEOMETRIC, aug.AugmentConfig.none()], ids=["resample", "exact"])
def test_flip_mirrors_map_and_negates_x(config):
    rng = np.random.default_rng(0)
    sv = rng.normal(size=(3, 6, 10, 4)).astype(np.float32)
    image = rng.uniform(size=(6, 10, 3)).astype(np.float32)
    img, out = _geom(aug.make_params(flip=True), sv, image, config=config)
    expected = sv[:, :, ::-1] * np.array([-1, 1, -1, 1], np.float32)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    np.testing.assert_allclose(img, image[:, ::-1], atol=1e-6)
    _, same = _geom(aug.make_params(flip=False), sv, config=config)
    np.testing.assert_allclose(same, sv, atol=1e-6)


def test_rotation_90_turns_content_and_vectors_together():
    size, c = 9, 4                       # square, centre pixel (4, 4)
    image = np.zeros((size, size, 3), np.float32)
    image[c, c + 2] = 1.0                # a dot 2 px right of the centre
    sv = np.zeros((1, size, size, 4), np.float32)
    sv[..., 0], sv[..., 2] = 1.0, 0.5    # everything moves right: Re x = 1, Im x = 0.5
    img, out = _geom(aug.make_params(angle_deg=90.0), sv, image)
    # counter-clockwise on screen (y down): "right" becomes "up" for content and for vectors
    assert np.unravel_index(np.argmax(img[..., 0]), img.shape[:2]) == (c - 2, c)
    np.testing.assert_allclose(out[0, c, c], [0.0, -1.0, 0.0, -0.5], atol=1e-5)
    np.testing.assert_allclose(out[..., 1], -1.0, atol=1e-5)
    # and a displacement pointing down turns to point right
    down = np.zeros_like(sv)
    down[..., 1] = 1.0
    _, out_down = _geom(aug.make_params(angle_deg=90.0), down)
    np.testing.assert_allclose(out_down[..., 0], 1.0, atol=1e-5)
    np.testing.assert_allclose(out_down[..., 1], 0.0, atol=1e-5)


def test_scale_two_doubles_displacements_and_distances():
    size, c = 17, 8
    image = np.zeros((size, size, 3), np.float32)
    image[c, c + 2] = 1.0
    sv = np.zeros((2, size, size, 4), np.float32)
    sv[...] = [0.3, -0.7, 1.5, 0.25]
    img, out = _geom(aug.make_params(scale=2.0), sv, image)
    np.testing.assert_allclose(out, 2.0 * sv, rtol=1e-5)
    assert np.unravel_index(np.argmax(img[..., 0]), img.shape[:2]) == (c, c + 4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_augment_then_reconstruct_equals_reconstruct_then_augment(seed):
    rng = np.random.default_rng(seed)
    k, h, w, t = 5, 14, 18, 24
    sv = rng.normal(size=(k, h, w, 4)).astype(np.float32) * np.float32(10.0)
    config = aug.AugmentConfig(max_scale=1.3, max_rotation_deg=5.0)
    out_hw = (12, 16)                                  # crop as well
    params = aug.sample_params(tf.constant([seed, 7], tf.int64), config, (h, w), out_hw)
    params["flip"] = tf.constant(float(seed % 2))      # both flip states across the seeds
    _, sv_aug = _geom(params, sv, out_hw=out_hw, config=config)
    traj_a = _irfft(sv_aug.astype(np.float64), t)
    traj = _irfft(sv.astype(np.float64), t).astype(np.float32)
    _, traj_b = _geom(params, traj, out_hw=out_hw, config=config)
    assert traj_a.shape == (t, *out_hw, 2)
    np.testing.assert_allclose(traj_a, traj_b, atol=2e-4 * np.abs(traj_b).max())
    assert not np.allclose(traj_b, traj[:, : out_hw[0], : out_hw[1]], atol=1e-2)  # it did something


def test_sampled_params_respect_config():
    config = aug.AugmentConfig()
    draws = [aug.sample_params(tf.constant([3, i], tf.int64), config, (160, 256), (160, 256)) for i in range(64)]
    scales = np.array([float(p["scale"]) for p in draws])
    angles = np.degrees([float(p["angle"]) for p in draws])
    flips = np.array([float(p["flip"]) for p in draws])
    assert scales.min() >= 1.0 and scales.max() <= 1.15 and np.abs(angles).max() <= 5.0
    assert 0 < flips.mean() < 1
    for p in draws:   # the crop window stays inside the scaled image
        s = float(p["scale"])
        assert abs(float(p["offset_x"])) <= (s * 256 - 256) / 2 + 1e-4
        assert abs(float(p["offset_y"])) <= (s * 160 - 160) / 2 + 1e-4
    again = aug.sample_params(tf.constant([3, 5], tf.int64), config, (160, 256), (160, 256))
    assert all(np.array_equal(again[k].numpy(), draws[5][k].numpy()) for k in again)
    with pytest.raises(ValueError, match="unknown augmentation fields"):
        aug.AugmentConfig.from_config({"flip_probability": 0.5})


def test_jax_geometry_matches_tf():
    rng = np.random.default_rng(4)
    b, k, h, w, out_hw = 3, 2, 10, 14, (8, 12)
    images = rng.uniform(size=(b, h, w, 3)).astype(np.float32)
    svs = rng.normal(size=(b, k, h, w, 4)).astype(np.float32)
    scales = np.array([0.5, 2.0], np.float32)
    config = aug.AugmentConfig(max_scale=1.2)
    packed, ref_img, ref_sv = [], [], []
    for i in range(b):
        p = aug.sample_params(tf.constant([9, i], tf.int64), config, (h, w), out_hw)
        p["flip"] = tf.constant(float(i % 2))
        packed.append(aug.pack_params(p).numpy())
        img, sv = aug.apply_geometry(p, config, out_hw, image=tf.constant(images[i]), fields=tf.constant(svs[i]))
        ref_img.append(img.numpy())
        ref_sv.append(aug.normalize_tf(sv, scales).numpy())
    out = aug.augment_batch_jax({"image": images, "spectral_volume": svs, "augment_params": np.stack(packed)},
                                out_hw, config, normalizer_scales=scales)
    np.testing.assert_allclose(np.asarray(out["image"]), np.stack(ref_img), atol=1e-5)
    np.testing.assert_allclose(np.asarray(out["spectral_volume"]), np.stack(ref_sv), atol=1e-4)


# ---------------------------------------------------------------------------------------------
# the training input
# ---------------------------------------------------------------------------------------------

N, K, H, W = 12, 2, 8, 12


@pytest.fixture(scope="module")
def arrays():
    rng = np.random.default_rng(0)
    return {"image": rng.integers(0, 256, (N, H, W, 3), dtype=np.uint8),
            "spectral_volume": (rng.normal(size=(N, K, H, W, 4)) * 5).astype(np.float32),
            "id": np.arange(N, dtype=np.int64)}


@pytest.fixture()
def source(arrays):
    return tf.data.Dataset.from_tensor_slices(arrays)


def _take(it, n):
    return [next(it) for _ in range(n)]


def _same(a, b):
    return all(x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x) for x, y in zip(a, b))


def test_hosts_read_disjoint_complete_parts(source):
    ids = []
    for index in range(3):
        it = ip.make_dataset(source, 2, seed=1, process_index=index, process_count=3, repeat=False)
        batches = list(it)
        assert all(b["image"].shape == (2, H, W, 3) and b["image"].dtype == np.float32 for b in batches)
        ids.append({int(i) for b in batches for i in b["id"]})
    assert set().union(*ids) == set(range(N))
    assert sum(len(s) for s in ids) == N


def test_same_seed_same_batches_other_seed_other_batches(source):
    a = _take(ip.make_dataset(source, 4, seed=5, process_index=0, process_count=1), 5)
    b = _take(ip.make_dataset(source, 4, seed=5, process_index=0, process_count=1), 5)
    c = _take(ip.make_dataset(source, 4, seed=6, process_index=0, process_count=1), 5)
    assert _same(a, b)
    assert not _same(a, c)
    epoch1 = sorted(int(i) for x in a[:3] for i in x["id"])
    epoch2 = [int(i) for x in a[3:5] for i in x["id"]]
    assert epoch1 == list(range(N))                               # each epoch sees every example once
    assert epoch2 != [int(i) for x in a[:2] for i in x["id"]]     # ... in a new order
    assert 0.0 <= a[0]["image"].min() and a[0]["image"].max() <= 1.0


def test_restore_continues_exactly(source, tmp_path):
    kwargs = dict(seed=3, process_index=1, process_count=2)          # 6 examples, 2 batches/epoch
    reference = _take(ip.make_dataset(source, 3, **kwargs), 9)
    it = ip.make_dataset(source, 3, **kwargs)
    _take(it, 3)                                                      # mid-epoch
    path = it.save(tmp_path / "input.json")
    assert path.stat().st_size < 1000
    fresh = ip.make_dataset(source, 3, **kwargs)
    ip.restore_state(fresh, path)
    assert _same(_take(fresh, 6), reference[3:])
    other = ip.make_dataset(source, 3, **{**kwargs, "seed": 4})
    with pytest.raises(ValueError, match="seed"):
        other.restore(path)


def test_normalisation_matches_numpy(source, arrays):
    scales = np.array([2.0, 0.25], np.float32)
    it = ip.make_dataset(source, 4, seed=0, augment=None, normalizer_scales=scales,
                         process_index=0, process_count=1, shuffle_buffer=0, repeat=False)
    batch = next(it)
    sv = arrays["spectral_volume"][batch["id"]].astype(np.float64)
    expected = np.sign(sv) * np.sqrt(np.abs(sv) / scales[:, None, None, None])
    np.testing.assert_allclose(batch["spectral_volume"], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(batch["image"], arrays["image"][batch["id"]] / 255.0, atol=1e-6)


def test_device_geometry_equals_host_geometry(source):
    scales = np.array([2.0, 0.25], np.float32)
    config = aug.AugmentConfig(hue=0.0)
    kwargs = dict(seed=2, augment=config, normalizer_scales=scales, process_index=0, process_count=1,
                  output_size=(6, 10))
    host = next(ip.make_dataset(source, 4, **kwargs))
    dev_it = ip.make_dataset(source, 4, geometry="device", **kwargs)
    dev = dev_it.device_fn(next(dev_it))
    assert host.keys() == dev.keys() and host["spectral_volume"].shape == (4, K, 6, 10, 4)
    for key in host:
        np.testing.assert_allclose(np.asarray(dev[key]), host[key], atol=1e-4)


def _tiny_tfds_builder(data_dir, arrays):
    """A TFDS dataset with `gid prepare`'s `spectral` schema (float16 zlib volumes, PNG images)."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core import registered

    with registered.skip_registration():
        class TinyMotion(tfds.core.GeneratorBasedBuilder):
            VERSION = tfds.core.Version("1.0.0")

            @tfds.core.utils.classproperty
            @classmethod
            def code_path(cls):   # no checksum files (avoids TFDS' importlib_resources lookup)
                return None

            def _info(self):
                return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                    "image": tfds.features.Image(shape=(H, W, 3)),
                    "spectral_volume": tfds.features.Tensor(shape=(K, H, W, 4), dtype=np.float16,
                                                            encoding=tfds.features.Encoding.ZLIB),
                    "spectral_scale": tfds.features.Tensor(shape=(K,), dtype=np.float32),
                    "video": tfds.features.Text(),
                    "start_frame": tfds.features.Scalar(dtype=np.int32),
                }))

            def _split_generators(self, dl_manager):
                return {"train": self._generate_examples()}

            def _generate_examples(self):
                for i in range(N):
                    yield i, {"image": arrays["image"][i], "video": f"v{i}.mp4", "start_frame": i,
                              "spectral_volume": arrays["spectral_volume"][i].astype(np.float16),
                              "spectral_scale": np.ones(K, np.float32)}

    builder = TinyMotion(data_dir=data_dir)
    builder.download_and_prepare()
    return builder


def test_tfds_directory_source(tmp_path, arrays):
    _tiny_tfds_builder(tmp_path, arrays)
    ids = []
    for index in range(2):
        it = ip.make_dataset(tmp_path, 3, seed=0, augment=None, process_index=index, process_count=2,
                             repeat=False)
        batches = list(it)
        assert set(batches[0]) == {"image", "spectral_volume", "start_frame"}
        for b in batches:
            expected = arrays["spectral_volume"][b["start_frame"]].astype(np.float16).astype(np.float32)
            np.testing.assert_array_equal(b["spectral_volume"], expected)
        ids.append({int(i) for b in batches for i in b["start_frame"]})
    assert ids[0].isdisjoint(ids[1]) and ids[0] | ids[1] == set(range(N))
    with pytest.raises(FileNotFoundError, match="not found"):
        ip.make_dataset(tmp_path / "nope", 3, seed=0, process_index=0, process_count=1)


def test_readers_do_not_import_apache_beam():
    """Training and the training input read the format module only, not the Beam writer."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys; import data_pipelines.dataset_format; "
            "assert not {'apache_beam', 'tensorflow'} & set(sys.modules), 'format module'; "
            "import gid_jax.train.motion_data, data_pipelines.training_input; "
            "assert 'apache_beam' not in sys.modules, 'readers'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr[-2000:]
