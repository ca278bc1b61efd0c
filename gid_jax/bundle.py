"""The inference bundle format, writing and reading (`gid export` in gid_jax/export.py writes one
from a pipeline directory; `Pipeline.load(BUNDLE)` reads one).

A bundle is everything inference needs, in one directory, loadable by `Pipeline.load(BUNDLE)` in a
fresh process without the training code (no Orbax, no `gid_jax.train`):

    BUNDLE/
      manifest.json         format + version, library versions, shapes (image size, K, latent),
                            sampler settings, the DDIM step list, the exported functions' signatures,
                            and the SHA-256 + size of every other file
      ldm_config.json       the LDM (stage 2) training run's config.json, verbatim
      renderer_config.json  the renderer training run's config.json, verbatim
      ldm_params.npz        EMA weights of the whole MotionLDM, by flattened nnx state path:
                            `vae/...` (encoder kept too: simpler, and `ldm.encode` keeps working),
                            `denoiser/image_encoder/...`, `denoiser/unet/...`, and the `Constant`s
                            `latent_mean`, `latent_std`, `freq_scales`
      renderer_params.npz   EMA weights of the renderer, same layout
      statistics.json       the normalisation / latent statistics again, human-readable (checked
                            against the .npz on load)
      sampler_step.bin      jax.export (StableHLO) of one deterministic DDIM step with classifier-free
                            guidance, batch 1: (params, z (K,h,w,c), t, t_prev, image (1,H,W,3) in
                            [-1,1], guidance_weight) -> z_prev
      decode.bin            (params, latents (K,h,w,c)) -> spectral volume (K,H,W,4) in pixels
      render_chunk.bin      (params, image (1,H,W,3) in [-1,1], flows (F,H,W,2), weight (1,H,W,1),
                            style noise (1,style_dim)) -> frames (F,H,W,3) in [-1,1]

Why `.npz` of flat paths for the weights: reading them needs nothing but numpy (no Orbax, no
checkpoint manager, no tensorstore), each is one file with one checksum, the names are the model's
own parameter paths (so a shape or name mismatch with the config is reported by name), and the
same dict of arrays is exactly what the exported functions take as their `params` argument, so
the weights are stored once rather than baked into every `.bin` as constants.

The exported functions run without any gid_jax code: `exp = jax.export.deserialize(bytes)`, then
`exp.call(dict(np.load("ldm_params.npz")), z, t, t_prev, image, w)`. They are compiled for the
platforms named at export time (the current backend by default; see `--platforms`). With the
manifest's `sampler.match_amplitude`, run the steps twice from the same noise, at
`guidance_weight` and at 0, and scale the first volume by the ratio of their mean amplitude maps
(what `Pipeline` does; gid_jax/pipeline.py `SamplerSettings`).

Trust. A bundle is data, loaded by our own code: `Pipeline.load(BUNDLE)` parses JSON, reads the
`.npz` arrays with `allow_pickle=False` and builds the models from the configs; it never
deserialises the `.bin` files (only `load_exported` does, on request) and executes nothing from
the bundle. Loading refuses symlinks, folders and files the manifest does not list, and checks
every listed file's SHA-256. Checksums catch corruption, not tampering: whoever can edit the
files can re-hash them. To check where a bundle came from, compare the SHA-256 of its
`manifest.json` (`sha256sum BUNDLE/manifest.json`) with the one its publisher states. The
manifest pins every other file's hash.

Layering: this module imports neither `gid_jax.pipeline` nor `gid_jax.export` (the pipeline
imports it; `write_bundle` takes an already loaded pipeline), and the functions it exports are
the ones the pipeline runs (`ddim_step`, `render_chunk`, `decode_spectral_volumes`), so an
exported bundle and the Python pipeline compute the same thing by construction.

Writing is atomic: the bundle is built in a temporary sibling directory and renamed into place;
an existing bundle is only replaced with `overwrite=True` (`--overwrite`), and then only once the
new one is complete.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from gid_jax.diffusion import NoiseSchedule
from gid_jax.diffusion.samplers import ddim_step
from gid_jax.parallel.rules import path_str

if TYPE_CHECKING:   # the models are imported when loading: `gid` imports this for every command
    from gid_jax.models.ldm import MotionLDM
    from gid_jax.models.renderer import Renderer

FORMAT = "gid-jax-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
LDM_CONFIG, RENDERER_CONFIG = "ldm_config.json", "renderer_config.json"
LDM_PARAMS, RENDERER_PARAMS = "ldm_params.npz", "renderer_params.npz"
STATISTICS = "statistics.json"
EXPORTED = {"sampler_step": "sampler_step.bin", "decode": "decode.bin", "render_chunk": "render_chunk.bin"}
PARAMS_OF = {"sampler_step": LDM_PARAMS, "decode": LDM_PARAMS, "render_chunk": RENDERER_PARAMS}
STAT_NAMES = ("latent_mean", "latent_std", "freq_scales")


class BundleError(ValueError):
    """A bundle that is damaged, incomplete or incompatible with this version of gid-jax."""


# ----------------------------------------------------------------------------- model functions
# What the pipeline runs and what a bundle exports: one copy of each.

def render_chunk(renderer: Renderer, image, flows, weight, noise):
    """Frames (F,H,W,3) in [-1,1]: `image` (1,H,W,3) in [-1,1] warped by `flows` (F,H,W,2) with
    the motion weight (1,H,W,1) and style noise (1,style_dim) shared by every frame."""
    encoded = renderer.encode(image)
    return renderer.synthesize(encoded, flows, jnp.broadcast_to(weight, flows.shape[:3] + (1,)),
                               jnp.broadcast_to(noise, (flows.shape[0], noise.shape[1])))


def decode_spectral_volumes(ldm: MotionLDM, latents, batch: int, height: int, width: int):
    """(B·K, h, w, c) latent slices → (B, K, H, W, 4) spectral volumes in pixels."""
    slices = ldm.decode(latents).reshape((batch, ldm.num_freqs, height, width, 4))
    return ldm.denormalize(slices)


def abstract_model(build, config_path: Path):
    """A model with its structure but no values yet (nnx.eval_shape), each array slot a
    ShapeDtypeStruct on the default device, to be filled from a bundle or a checkpoint (Orbax
    restores straight onto it): a random initialisation would cost ~50 s of op-by-op compilation
    on a CPU just to be overwritten. A config that cannot build it (a missing field, a wrong
    type) is one line naming `config_path`."""
    try:
        model = nnx.eval_shape(build)
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{config_path}: cannot build the model from this config ({err})") from None
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    nnx.update(model, jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
                                   nnx.state(model)))
    return model


# ----------------------------------------------------------------------------- flat nnx state

def _path_key(path) -> str:
    key = path_str(path)   # nnx Variables flatten to their `.value`
    return key[:-len("/value")] if key.endswith("/value") else key


def flat_params(model) -> dict[str, np.ndarray]:
    """{'/'-joined nnx state path: numpy array} of every array in `model`."""
    leaves = jax.tree_util.tree_flatten_with_path(nnx.state(model))[0]
    return {_path_key(p): np.asarray(jax.device_get(v)) for p, v in leaves}


class _Structure:
    """A model's graph definition + the flat keys of its state, to rebuild it from a flat dict."""

    def __init__(self, model):
        self.graphdef, state = nnx.split(model)
        leaves, self.treedef = jax.tree_util.tree_flatten_with_path(state)
        self.keys = [_path_key(p) for p, _ in leaves]
        self.avals = {k: (tuple(v.shape), np.dtype(v.dtype)) for k, (_, v) in zip(self.keys, leaves)}

    def merge(self, params: dict):
        state = jax.tree_util.tree_unflatten(self.treedef, [params[k] for k in self.keys])
        return nnx.merge(self.graphdef, state)

    def check(self, params, where: str) -> None:
        missing = [k for k in self.keys if k not in params]
        extra = sorted(set(params) - set(self.keys))
        wrong = [f"{k}: file {tuple(params[k].shape)} {params[k].dtype}, model {s} {d}"
                 for k, (s, d) in self.avals.items()
                 if k in params and (tuple(params[k].shape) != s or np.dtype(params[k].dtype) != d)]
        problems = ([f"missing {k}" for k in missing[:5]] + [f"unexpected {k}" for k in extra[:5]]
                    + wrong[:5])
        if problems:
            raise BundleError(f"{where}: the parameters do not match the model its config builds: "
                              + "; ".join(problems))


# ----------------------------------------------------------------------------- exported functions

def _sampler_step_fn(structure: _Structure, schedule: NoiseSchedule):
    """One deterministic (η = 0) DDIM step with classifier-free guidance, as a pure function."""
    def step(params, z, t, t_prev, image, guidance_weight):
        ldm = structure.merge(params)
        features = ldm.denoiser.encode_image(image)
        eps = ldm.denoiser.guided_eps(z, jnp.full((z.shape[0],), t, jnp.int32), features,
                                      guidance_weight)
        return ddim_step(z, eps, schedule.alpha_bar(t), schedule.alpha_bar(t_prev))

    return step


def _decode_fn(structure: _Structure, height: int, width: int):
    def decode(params, latents):
        return decode_spectral_volumes(structure.merge(params), latents, 1, height, width)[0]

    return decode


def _render_fn(structure: _Structure):
    def render(params, image, flows, weight, noise):
        return render_chunk(structure.merge(params), image, flows, weight, noise)

    return render


def _spec(params: dict) -> dict:
    return {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in params.items()}


# ----------------------------------------------------------------------------- writing

def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _versions() -> dict:
    import flax

    import gid_jax

    return {"gid_jax": gid_jax.__version__, "jax": jax.__version__, "jaxlib": _jaxlib_version(),
            "flax": flax.__version__, "numpy": np.__version__}


def _jaxlib_version() -> str:
    try:
        import jaxlib

        return jaxlib.__version__
    except Exception:  # pragma: no cover - jaxlib always ships with jax
        return "unknown"


def check_target(out: str | os.PathLike, overwrite: bool = False) -> None:
    """Refuses an `out` that `write_bundle` must not replace (cheap: call it before loading)."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out}: already exists (pass --overwrite to replace it)")
    if out.exists() and not (out / MANIFEST).is_file():
        raise FileExistsError(f"{out}: exists and is not a bundle; refusing to replace it")


def write_bundle(out: str | os.PathLike, pipe, ldm_config: Path, renderer_config: Path, *,
                 source: dict, chunk_frames: int = 16, platforms: tuple[str, ...] | None = None,
                 overwrite: bool = False, provenance: dict | None = None) -> Path:
    """Writes the bundle of `pipe` (a loaded `Pipeline`: its ldm, renderer, size, schedule and
    settings) to `out`; `ldm_config` / `renderer_config` are its training runs' config.json
    files, `source` (JSON-able: where it came from) and `provenance` (how it was made) go into
    the manifest."""
    out = Path(out)
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
    check_target(out, overwrite)
    ldm, renderer, s = pipe.ldm, pipe.renderer, pipe.settings
    height, width, k = pipe.height, pipe.width, int(ldm.num_freqs)
    latent_shape = tuple(int(v) for v in ldm.latent_shape(height, width))

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)            # mkdtemp makes it private; a bundle is not
    try:
        shutil.copyfile(ldm_config, tmp / LDM_CONFIG)
        shutil.copyfile(renderer_config, tmp / RENDERER_CONFIG)
        ldm_params, renderer_params = flat_params(ldm), flat_params(renderer)
        np.savez(tmp / LDM_PARAMS, **ldm_params)
        np.savez(tmp / RENDERER_PARAMS, **renderer_params)
        stats = {name: ldm_params[name].tolist() for name in STAT_NAMES}
        (tmp / STATISTICS).write_text(json.dumps(stats, indent=1))

        f32 = jnp.float32
        ldm_struct, renderer_struct = _Structure(ldm), _Structure(renderer)
        scalar_i = jax.ShapeDtypeStruct((), jnp.int32)
        latents = jax.ShapeDtypeStruct((k, *latent_shape), f32)
        image = jax.ShapeDtypeStruct((1, height, width, 3), f32)
        args = {
            "sampler_step": (_sampler_step_fn(ldm_struct, pipe.schedule),
                             (_spec(ldm_params), latents, scalar_i, scalar_i, image,
                              jax.ShapeDtypeStruct((), f32))),
            "decode": (_decode_fn(ldm_struct, height, width), (_spec(ldm_params), latents)),
            "render_chunk": (_render_fn(renderer_struct),
                             (_spec(renderer_params), image,
                              jax.ShapeDtypeStruct((chunk_frames, height, width, 2), f32),
                              jax.ShapeDtypeStruct((1, height, width, 1), f32),
                              jax.ShapeDtypeStruct((1, int(renderer.style_dim)), f32)))}
        exported_info = {}
        for name, (fn, shapes) in args.items():
            exp = jax.export.export(jax.jit(fn), platforms=platforms)(*shapes)
            (tmp / EXPORTED[name]).write_bytes(exp.serialize())
            n_params = len(shapes[0])
            exported_info[name] = {
                "file": EXPORTED[name], "params": PARAMS_OF[name],
                "inputs": [[list(a.shape), str(a.dtype)] for a in exp.in_avals[n_params:]],
                "outputs": [[list(a.shape), str(a.dtype)] for a in exp.out_avals],
                "platforms": list(exp.platforms)}
        exported_info["sampler_step"]["signature"] = (
            "(params, z, t, t_prev, image, guidance_weight) -> z_prev: one deterministic DDIM step "
            "with classifier-free guidance; t_prev = -1 is the last step")
        exported_info["decode"]["signature"] = "(params, latents) -> spectral volume (K,H,W,4) in pixels"
        exported_info["render_chunk"]["signature"] = (
            "(params, image in [-1,1], flows, motion weight, style noise) -> frames in [-1,1]")

        files = {}
        for path in sorted(tmp.iterdir()):
            files[path.name] = {"sha256": _sha256(path), "bytes": path.stat().st_size}
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "versions": _versions(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "source": source,
            "image_size": [height, width], "num_freqs": k, "latent_shape": list(latent_shape),
            "stage": int(ldm.stage), "style_dim": int(renderer.style_dim), "chunk_frames": chunk_frames,
            "sampler": dataclasses.asdict(s),
            # the exported step is deterministic DDIM (whatever `sampler.solver` the Python
            # pipeline uses): its steps, on the sampler's grid (uniform unless one is set)
            "sampling_steps": [int(v) for v in pipe.schedule.sampling_steps(
                s.num_steps, s.grid or "uniform")],
            "num_train_steps": int(pipe.schedule.num_steps),
            "exported": exported_info, "files": files}
        if provenance is not None:
            manifest["provenance"] = provenance
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _replace_dir(new: Path, out: Path) -> None:
    """Renames `new` to `out`; an existing `out` is moved aside first and removed only after."""
    if not out.exists():
        os.replace(new, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    os.rmdir(old)
    os.replace(out, old)
    try:
        os.replace(new, out)
    except BaseException:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def bundle_size(path: str | os.PathLike) -> int:
    return sum(p.stat().st_size for p in Path(path).iterdir() if p.is_file())


# ----------------------------------------------------------------------------- reading

def is_bundle(path: str | os.PathLike) -> bool:
    return (Path(path) / MANIFEST).is_file()


def read_manifest(path: str | os.PathLike, verify: bool = True) -> dict:
    """The bundle's manifest, after checking its format and (with `verify`) every file's SHA-256."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such bundle directory")
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise FileNotFoundError(f"{path}: no {MANIFEST} here (not an exported bundle; "
                                "make one with `gid export --workdir PIPELINE_DIR --out BUNDLE`)")
    try:
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BundleError(f"{mpath}: not valid JSON ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{mpath}: not a {FORMAT} manifest")
    version = manifest.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise BundleError(f"{mpath}: bundle format version {version!r}, this gid-jax reads "
                          f"1..{FORMAT_VERSION}; re-export it with this version")
    files = manifest.get("files")
    required = [LDM_CONFIG, RENDERER_CONFIG, LDM_PARAMS, RENDERER_PARAMS, STATISTICS, *EXPORTED.values()]
    if not isinstance(files, dict) or any(name not in files for name in required):
        missing = [n for n in required if not isinstance(files, dict) or n not in files]
        raise BundleError(f"{mpath}: the manifest lists no checksum for {', '.join(missing)}")
    # Only plain files that the manifest lists: a symlink could point anywhere outside the
    # bundle, and an unlisted file is something the export never wrote.
    for entry in sorted(path.iterdir()):
        if entry.is_symlink() or not entry.is_file():
            raise BundleError(f"{entry}: not a plain file (a bundle holds only the files its "
                              f"{MANIFEST} lists; symlinks and folders are refused)")
        if entry.name != MANIFEST and entry.name not in files:
            raise BundleError(f"{entry}: not listed in {MANIFEST} (remove it or re-export the bundle)")
    for name, entry in files.items():
        fpath = path / name
        if Path(name).name != name or name == MANIFEST or not isinstance(entry, dict):
            raise BundleError(f"{mpath}: invalid file entry {name!r}: {entry!r}")
        if not fpath.is_file():
            raise BundleError(f"{fpath}: missing from the bundle (listed in {MANIFEST})")
        if verify:
            size = fpath.stat().st_size
            if size != entry.get("bytes") or _sha256(fpath) != entry.get("sha256"):
                raise BundleError(f"{fpath}: checksum mismatch (the file was modified or is "
                                  f"corrupt: {size} bytes, manifest says {entry.get('bytes')}); "
                                  "re-export the bundle")
    ours, theirs = _versions(), manifest.get("versions", {})
    if not isinstance(theirs, dict):
        raise BundleError(f"{mpath}: 'versions' must be an object of library versions, got {theirs!r}")
    if any(theirs.get(key) != ours[key] for key in ("gid_jax", "jax", "flax")):
        warnings.warn(f"{path}: exported with gid_jax {theirs.get('gid_jax')}, jax {theirs.get('jax')}, "
                      f"flax {theirs.get('flax')}; running gid_jax {ours['gid_jax']}, jax {ours['jax']}, "
                      f"flax {ours['flax']}", stacklevel=2)
    return manifest


def _read_params(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError) as err:
        raise BundleError(f"{path}: cannot read the parameters ({err})") from None


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BundleError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise BundleError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def load_models(path: str | os.PathLike, manifest: dict
                ) -> tuple[MotionLDM, Renderer, tuple[int, int], NoiseSchedule]:
    """`(ldm, renderer, image_size, schedule)` of the bundle at `path` (its manifest from
    `read_manifest`, which checked the checksums): checks that the configs, weights and
    statistics agree on the image size and K, builds the models from the configs and fills in
    the weights from the .npz files (no Orbax, no training code)."""
    from gid_jax.models.ldm import MotionLDM
    from gid_jax.models.renderer import Renderer

    path = Path(path)
    mpath = path / MANIFEST
    ldm_cfg = ml_collections.ConfigDict(_read_json(path / LDM_CONFIG))
    renderer_cfg = ml_collections.ConfigDict(_read_json(path / RENDERER_CONFIG))
    try:
        image_size = [int(v) for v in ldm_cfg.model.image_size]
        num_freqs, stage = int(ldm_cfg.model.num_freqs), int(ldm_cfg.stage)
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        raise BundleError(f"{path / LDM_CONFIG}: not an LDM run config ({err})") from None
    if manifest.get("image_size") != image_size:
        raise BundleError(f"{mpath}: image size {manifest.get('image_size')} but {LDM_CONFIG} "
                          f"says {image_size}")
    if manifest.get("num_freqs") != num_freqs:
        raise BundleError(f"{mpath}: K = {manifest.get('num_freqs')} but {LDM_CONFIG} says {num_freqs}")

    # shapes only (no random init); every array is then filled in from the bundle
    try:
        ldm = abstract_model(lambda: MotionLDM(ldm_cfg.model, num_freqs=num_freqs, stage=stage,
                                               diffusion=ldm_cfg.diffusion, rngs=nnx.Rngs(0)),
                             path / LDM_CONFIG)
        renderer = abstract_model(lambda: Renderer(renderer_cfg.model.renderer, rngs=nnx.Rngs(0)),
                                  path / RENDERER_CONFIG)
    except ValueError as err:
        raise BundleError(str(err)) from None
    for model, name in ((ldm, LDM_PARAMS), (renderer, RENDERER_PARAMS)):
        params = _read_params(path / name)
        structure = _Structure(model)
        structure.check(params, str(path / name))
        nnx.update(model, jax.tree_util.tree_unflatten(
            structure.treedef, [jnp.asarray(params[k]) for k in structure.keys]))
    stats = _read_json(path / STATISTICS)
    for name in STAT_NAMES:
        value = np.asarray(getattr(ldm, name)[...])
        saved = np.asarray(stats.get(name, []), np.float32) if isinstance(stats, dict) else None
        if saved is None or saved.shape != value.shape or not np.array_equal(saved, value):
            raise BundleError(f"{path / STATISTICS}: {name} disagrees with {LDM_PARAMS}")
    if ldm.freq_scales[...].shape != (num_freqs,):
        raise BundleError(f"{path / LDM_PARAMS}: {ldm.freq_scales[...].shape[0]} frequency scales "
                          f"for K = {num_freqs}")
    try:
        schedule = NoiseSchedule.from_config(ldm_cfg)
    except (AttributeError, KeyError, ValueError) as err:
        raise BundleError(f"{path / LDM_CONFIG}: invalid diffusion settings ({err})") from None
    return ldm, renderer, (image_size[0], image_size[1]), schedule


def load_exported(path: str | os.PathLike, name: str, manifest: dict | None = None):
    """`(exported, params)`: the deserialized `jax.export.Exported` function `name` of a bundle
    (one of `sampler_step`, `decode`, `render_chunk`) and the parameter dict to pass it first:
    `exported.call(params, *arrays)`. Checksums and shapes are verified."""
    path = Path(path)
    if name not in EXPORTED:
        raise ValueError(f"unknown exported function {name!r}; the bundle has {sorted(EXPORTED)}")
    manifest = manifest or read_manifest(path)
    fpath = path / EXPORTED[name]
    data = bytearray(fpath.read_bytes())
    try:
        exp = jax.export.deserialize(data)
    except Exception as err:  # malformed bytes: the flatbuffer parser raises struct.error and more
        raise BundleError(f"{fpath}: not a serialized jax.export function ({type(err).__name__}: "
                          f"{err})") from None
    params = _read_params(path / PARAMS_OF[name])
    try:
        want = manifest["exported"][name]["inputs"]
    except (KeyError, TypeError):
        raise BundleError(f"{path / MANIFEST}: no input signature for {name!r} under "
                          "'exported'") from None
    got = [[list(a.shape), str(a.dtype)] for a in exp.in_avals[len(params):]]
    if got != want:
        raise BundleError(f"{path / EXPORTED[name]}: inputs {got}, manifest says {want}")
    return exp, params


__all__ = ["BundleError", "abstract_model", "bundle_size", "check_target", "decode_spectral_volumes",
           "flat_params", "is_bundle", "load_exported", "load_models", "read_manifest",
           "render_chunk", "write_bundle"]
