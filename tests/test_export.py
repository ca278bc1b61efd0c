"""Export bundles (`gid export`): layout and checksums, a fresh-process round trip through
`Pipeline.load(BUNDLE)`, the jax.export functions run without any gid_jax code, and the errors
for damaged, incompatible or missing bundles."""

import ast
import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gid_jax
from gid_jax import bundle as bundle_format
from gid_jax import export
from gid_jax.cli import main as gid_main
from gid_jax.pipeline import Pipeline, _render_chunk

SEED = 3
CHUNK = 4


@pytest.fixture(scope="module")
def bundle(tiny_runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "bundle"
    assert gid_main(["export", "--workdir", str(tiny_runs["pipeline"]), "--out", str(out),
                     "--chunk-frames", str(CHUNK)]) == 0
    return out


@pytest.fixture(scope="module")
def image(pipe):
    rng = np.random.default_rng(0)
    return rng.random((pipe.height, pipe.width, 3)).astype(np.float32)


def test_cli_writes_a_complete_checksummed_bundle(bundle, tiny_runs, capsys):
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["format"] == "gid-jax-bundle" and manifest["format_version"] == 1
    assert {"gid_jax", "jax", "flax"} <= set(manifest["versions"])
    assert manifest["versions"]["jax"] == jax.__version__
    names = {"ldm_config.json", "renderer_config.json", "ldm_params.npz", "renderer_params.npz",
             "statistics.json", "sampler_step.bin", "decode.bin", "render_chunk.bin"}
    assert set(manifest["files"]) == names
    assert {p.name for p in bundle.iterdir()} == names | {"manifest.json"}
    for name, entry in manifest["files"].items():
        data = (bundle / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["bytes"]
    assert not [p for p in bundle.parent.iterdir() if p.name.startswith(".")]   # no temp dirs left
    with np.load(bundle / "ldm_params.npz") as params:
        keys = set(params.files)
        assert {"latent_mean", "latent_std", "freq_scales"} <= keys
        assert any(k.startswith("denoiser/unet/") for k in keys)
        assert any(k.startswith("denoiser/image_encoder/") for k in keys)
        assert any(k.startswith("vae/decoder/") for k in keys)
    decode, params = export.load_exported(bundle, "decode")
    assert set(params) == keys
    assert decode.out_avals[0].shape == (manifest["num_freqs"], *manifest["image_size"], 4)
    # an existing bundle is not replaced without --overwrite
    assert gid_main(["export", "--workdir", str(tiny_runs["pipeline"]), "--out", str(bundle)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_export_help():
    with pytest.raises(SystemExit) as exit_info:
        gid_main(["export", "--help"])
    assert exit_info.value.code == 0


FRESH_PROCESS = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import numpy as np
    import jax, jax.numpy as jnp

    bundle, inputs, out = Path(sys.argv[1]), np.load(sys.argv[2]), sys.argv[3]
    manifest = json.loads((bundle / "manifest.json").read_text())
    results = {}

    def load(name):   # the exported functions alone: no gid_jax code at all
        entry = manifest["exported"][name]
        exp = jax.export.deserialize(bytearray((bundle / entry["file"]).read_bytes()))
        return exp, dict(np.load(bundle / entry["params"]))

    step, ldm_params = load("sampler_step")
    decode, _ = load("decode")
    render, renderer_params = load("render_chunk")
    w = np.float32(manifest["sampler"]["guidance_weight"])
    img = inputs["image"][None] * 2 - 1
    results["step"] = step.call(ldm_params, inputs["z"], np.int32(inputs["t"]),
                                np.int32(inputs["t_prev"]), img, w)
    results["decode"] = decode.call(ldm_params, inputs["z"])
    results["render"] = render.call(renderer_params, img, inputs["flows"], inputs["weight"],
                                    inputs["noise"])
    # a whole deterministic DDIM run from the pipeline's initial noise for this seed
    noise_key, _ = jax.random.split(jax.random.key(int(inputs["seed"])))
    z = jax.random.normal(noise_key, (manifest["num_freqs"], *manifest["latent_shape"]))
    steps = manifest["sampling_steps"]
    z = np.asarray(z)   # numpy in, as above: one compiled executable per function
    for t, t_prev in zip(steps, steps[1:] + [-1]):
        z = np.asarray(step.call(ldm_params, z, np.int32(t), np.int32(t_prev), img, w))
    results["sv_exported"] = decode.call(ldm_params, z)
    assert not [m for m in sys.modules if m.startswith("gid_jax")]

    from gid_jax.pipeline import Pipeline     # now the bundle through the normal API
    pipe = Pipeline.load(bundle)
    results["sv_bundle"] = pipe.predict_spectral_volume(inputs["image"], seed=int(inputs["seed"]))
    results["frames"] = pipe.render(inputs["image"], inputs["flows"], inputs["weight"][0, :, :, 0],
                                    seed=int(inputs["seed"]), batch_frames=len(inputs["flows"]))
    results = {k: np.asarray(v) for k, v in results.items()}
    results["training_modules"] = np.array(sorted(
        m for m in sys.modules if m.startswith(("orbax", "gid_jax.train", "gid_jax.checkpoints",
                                                "gid_jax.export", "tensorflow", "clu",
                                                "apache_beam"))), dtype=str)
    np.savez(out, **results)
""")


def test_round_trip_in_a_fresh_process(bundle, pipe, image, tmp_path):
    ldm = pipe.ldm
    k, (h, w, c) = ldm.num_freqs, ldm.latent_shape(pipe.height, pipe.width)
    rng = np.random.default_rng(1)
    steps = pipe.schedule.sampling_steps(pipe.settings.num_steps)
    inputs = {"image": image, "seed": SEED, "t": int(steps[0]), "t_prev": int(steps[1]),
              "z": rng.normal(size=(k, h, w, c)).astype(np.float32),
              "flows": rng.normal(scale=2.0, size=(CHUNK, pipe.height, pipe.width, 2)).astype(np.float32),
              "weight": rng.random((1, pipe.height, pipe.width, 1)).astype(np.float32),
              "noise": rng.normal(size=(1, pipe.renderer.style_dim)).astype(np.float32)}
    np.savez(tmp_path / "inputs.npz", **inputs)
    script = tmp_path / "fresh.py"
    script.write_text(FRESH_PROCESS)
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.Popen([sys.executable, str(script), str(bundle), str(tmp_path / "inputs.npz"),
                             str(tmp_path / "out.npz")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    sv_live = pipe.predict_spectral_volume(image, seed=SEED)    # meanwhile, the live side
    live_frames = pipe.render(image, inputs["flows"], inputs["weight"][0, :, :, 0], seed=SEED,
                              batch_frames=CHUNK)
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    got = np.load(tmp_path / "out.npz")
    assert list(got["training_modules"]) == []

    # same seed → the identical spectral volume from the pipeline directory and from the bundle
    np.testing.assert_array_equal(got["sv_bundle"], sv_live)
    # the exported DDIM steps + decode reproduce the pipeline's DDIM sampler
    sv_ddim = pipe.predict_spectral_volume(image, seed=SEED, solver="ddim")
    scale = np.abs(sv_ddim).max() + 1e-6
    np.testing.assert_allclose(got["sv_exported"] / scale, sv_ddim / scale, atol=1e-4)

    # one exported step against the live model (CFG + deterministic DDIM update, written out here)
    img = jnp.asarray(image)[None] * 2 - 1
    z, weight = jnp.asarray(inputs["z"]), pipe.settings.guidance_weight
    t_vec = jnp.full((k,), inputs["t"], jnp.int32)
    features = ldm.denoiser.encode_image(img)
    out = ((1 + weight) * ldm.denoiser.unet(z, t_vec, None, features)
           - weight * ldm.denoiser.unet(z, t_vec, None, jnp.zeros_like(features)))
    eps = ldm.denoiser.to_eps(out, z, t_vec)     # the tiny LDM predicts v
    abar, abar_prev = (float(pipe.schedule.alphas_cumprod[inputs[t]]) for t in ("t", "t_prev"))
    x0 = (z - np.sqrt(1 - abar) * eps) / np.sqrt(abar)
    want = np.sqrt(abar_prev) * x0 + np.sqrt(1 - abar_prev) * eps
    np.testing.assert_allclose(got["step"], want, rtol=1e-4, atol=1e-4)
    decoded = ldm.denormalize(ldm.decode(z).reshape((1, k, pipe.height, pipe.width, 4)))[0]
    np.testing.assert_allclose(got["decode"], decoded, rtol=1e-4, atol=1e-4)
    frames = _render_chunk(pipe.renderer, img, jnp.asarray(inputs["flows"]),
                           jnp.asarray(inputs["weight"]), jnp.asarray(inputs["noise"]))
    np.testing.assert_allclose(got["render"], frames, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(got["frames"], live_frames)


def _copy(bundle, tmp_path):
    return shutil.copytree(bundle, tmp_path / "copy")


def test_a_modified_file_is_named(bundle, tmp_path):
    copy = _copy(bundle, tmp_path)
    data = bytearray((copy / "renderer_params.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "renderer_params.npz").write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"renderer_params\.npz: checksum mismatch"):
        Pipeline.load(copy)
    (copy / "decode.bin").unlink()
    with pytest.raises(ValueError, match=r"decode\.bin: missing from the bundle"):
        export.read_manifest(copy)


def test_incompatible_manifest_is_rejected(bundle, tmp_path):
    copy = _copy(bundle, tmp_path)
    original = json.loads((copy / "manifest.json").read_text())
    for change, message in [({"format_version": 99}, "format version 99"),
                            ({"num_freqs": original["num_freqs"] + 1}, "K = "),
                            ({"image_size": [8, 8]}, "image size")]:
        (copy / "manifest.json").write_text(json.dumps({**original, **change}))
        with pytest.raises(ValueError, match=message):
            Pipeline.load(copy)


@pytest.mark.parametrize("change, message", [
    (lambda m: {**m, "versions": ["jax", jax.__version__]}, "'versions' must be an object"),
    (lambda m: {**m, "files": {**m["files"], "decode.bin": "0123abcd"}},
     "invalid file entry 'decode.bin': '0123abcd'"),
])
def test_a_malformed_manifest_is_named(bundle, tmp_path, change, message):
    copy = _copy(bundle, tmp_path)
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps(change(manifest)))
    with pytest.raises(export.BundleError, match=message):
        Pipeline.load(copy)


def test_a_bad_config_in_a_bundle_is_named(bundle, tmp_path):
    copy = _copy(bundle, tmp_path)
    manifest = json.loads((copy / "manifest.json").read_text())
    for config, message in [([1, 2], "expected a JSON object, got list"),
                            ({"model": 3}, "cannot build the model from this config")]:
        data = json.dumps(config).encode()
        (copy / "renderer_config.json").write_bytes(data)
        manifest["files"]["renderer_config.json"] = {"sha256": hashlib.sha256(data).hexdigest(),
                                                     "bytes": len(data)}
        (copy / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(export.BundleError, match=rf"renderer_config\.json: {message}"):
            Pipeline.load(copy)


def test_load_exported_names_a_file_that_is_not_an_exported_function(bundle, tmp_path):
    copy = _copy(bundle, tmp_path)
    manifest = export.read_manifest(copy)
    (copy / "decode.bin").write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(export.BundleError, match=r"decode\.bin: not a serialized jax\.export function"):
        export.load_exported(copy, "decode", manifest)     # the checksums were read before


def test_missing_bundle_and_failed_export(bundle, tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere: no such bundle directory"):
        export.load_bundle(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        Pipeline.load(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        export.export_bundle(tmp_path / "nowhere", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="already an exported bundle"):
        export.export_bundle(bundle, tmp_path / "out")


def test_failed_overwrite_keeps_the_old_bundle(bundle, tiny_runs, tmp_path, monkeypatch):
    copy = _copy(bundle, tmp_path)
    before = (copy / "manifest.json").read_bytes()

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(bundle_format, "flat_params", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        export.export_bundle(tiny_runs["pipeline"], copy, overwrite=True)
    assert (copy / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"]
    export.read_manifest(copy)


def test_symlinks_and_unlisted_files_are_refused(bundle, tmp_path):
    """A bundle is only the plain files its manifest lists: a symlink (which could point outside
    it) or a file the export never wrote is refused by name, before anything is loaded."""
    copy = _copy(bundle, tmp_path)
    (copy / "notes.txt").write_text("not from the export")
    with pytest.raises(ValueError, match=r"notes\.txt: not listed in manifest\.json"):
        export.read_manifest(copy)
    (copy / "notes.txt").unlink()
    outside = tmp_path / "outside.npz"
    os.replace(copy / "renderer_params.npz", outside)
    os.symlink(outside, copy / "renderer_params.npz")
    with pytest.raises(ValueError, match=r"renderer_params\.npz: not a plain file"):
        Pipeline.load(copy)


def _imports(module: str) -> set[str]:
    """Every module that `module`'s source imports, at the top or inside a function."""
    path = Path(gid_jax.__file__).parent / (module.split(".", 1)[1].replace(".", "/") + ".py")
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.update([node.module] + [f"{node.module}.{alias.name}" for alias in node.names])
    return names


def _under(names, *packages):
    return sorted(n for n in names if any(n == p or n.startswith(p + ".") for p in packages))


def test_the_bundle_format_is_below_the_pipeline():
    """Layering, walked in the sources and checked in fresh processes: gid_jax/bundle.py (the
    format, reading and writing) imports neither the pipeline nor `gid export`, the pipeline
    never imports `gid export`, and neither imports training code. Loading a bundle thus needs
    no Orbax; only `Pipeline.from_runs` imports gid_jax.checkpoints (Orbax), when called."""
    assert _under(_imports("gid_jax.bundle"), "gid_jax.pipeline", "gid_jax.export",
                  "gid_jax.train", "gid_jax.checkpoints", "orbax") == []
    assert _under(_imports("gid_jax.pipeline"), "gid_jax.export", "gid_jax.train", "orbax") == []
    code = ("import sys, importlib; importlib.import_module(sys.argv[1]); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('orbax', 'tensorflow', "
            "'clu', 'apache_beam') or m.startswith(('gid_jax.pipeline', 'gid_jax.export', "
            "'gid_jax.train', 'gid_jax.checkpoints'))))")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    for module, allowed in [("gid_jax.bundle", []), ("gid_jax.pipeline", ["gid_jax.pipeline"])]:
        res = subprocess.run([sys.executable, "-c", code, module], capture_output=True, text=True,
                             env=env, timeout=300)
        assert res.returncode == 0, res.stderr[-2000:]
        assert res.stdout.strip().splitlines()[-1] == repr(allowed), (module, res.stdout)
