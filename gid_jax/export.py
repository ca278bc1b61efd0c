"""Self-contained inference bundles: `gid export --workdir PIPELINE_DIR --out BUNDLE`.

A bundle is everything inference needs, in one directory, loadable by `Pipeline.load(BUNDLE)` in a
fresh process without the training code (no Orbax checkpoint manager, no `gid_jax.train`):

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
platforms named at export time (the current backend by default; see `--platforms`).

Trust. A bundle is data, loaded by our own code: `Pipeline.load(BUNDLE)` parses JSON, reads the
`.npz` arrays with `allow_pickle=False` and builds the models from the configs; it never
deserialises the `.bin` files (only `load_exported` does, on request) and executes nothing from
the bundle. Loading refuses symlinks, folders and files the manifest does not list, and checks
every listed file's SHA-256. Checksums catch corruption, not tampering: whoever can edit the
files can re-hash them. To check where a bundle came from, compare the SHA-256 of its
`manifest.json` (`sha256sum BUNDLE/manifest.json`) with the one its publisher states. The
manifest pins every other file's hash.

Writing is atomic: the bundle is built in a temporary sibling directory and renamed into place;
an existing bundle is only replaced with `overwrite=True` (`--overwrite`), and then only once the
new one is complete.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from gid_jax.parallel.rules import path_str

log = logging.getLogger(__name__)

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


# ----------------------------------------------------------------------------- flat nnx state

def _path_key(path) -> str:
    key = path_str(path)   # nnx Variables flatten to their `.value`
    return key[:-len("/value")] if key.endswith("/value") else key


def flat_params(model) -> dict[str, np.ndarray]:
    """{'/'-joined nnx state path: numpy array} of every array in `model`."""
    from flax import nnx

    leaves = jax.tree_util.tree_flatten_with_path(nnx.state(model))[0]
    return {_path_key(p): np.asarray(jax.device_get(v)) for p, v in leaves}


class _Structure:
    """A model's graph definition + the flat keys of its state, to rebuild it from a flat dict."""

    def __init__(self, model):
        from flax import nnx

        self.graphdef, state = nnx.split(model)
        leaves, self.treedef = jax.tree_util.tree_flatten_with_path(state)
        self.keys = [_path_key(p) for p, _ in leaves]
        self.avals = {k: (tuple(v.shape), np.dtype(v.dtype)) for k, (_, v) in zip(self.keys, leaves)}

    def merge(self, params: dict):
        from flax import nnx

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


# ----------------------------------------------------------------------------- functions

def _sampler_step_fn(structure: _Structure, alphas_cumprod: np.ndarray):
    """One deterministic (η = 0) DDIM step with classifier-free guidance, as a pure function."""
    table = jnp.asarray(np.append(alphas_cumprod, 1.0), jnp.float32)   # step −1 = clean end
    last = len(alphas_cumprod)

    def step(params, z, t, t_prev, image, guidance_weight):
        ldm = structure.merge(params)
        features = ldm.denoiser.encode_image(image)
        steps = jnp.full((z.shape[0],), t, jnp.int32)
        eps = ldm.denoiser.guided_eps(z, steps, features, guidance_weight)
        abar = table[jnp.where(t < 0, last, t)]
        abar_prev = table[jnp.where(t_prev < 0, last, t_prev)]
        x0 = (z - jnp.sqrt(1.0 - abar) * eps) / jnp.sqrt(abar)
        return jnp.sqrt(abar_prev) * x0 + jnp.sqrt(jnp.maximum(1.0 - abar_prev, 0.0)) * eps

    return step


def _decode_fn(structure: _Structure):
    def decode(params, latents):
        ldm = structure.merge(params)
        slices = ldm.decode(latents)
        return ldm.denormalize(slices.reshape((1,) + slices.shape))[0]

    return decode


def _render_fn(structure: _Structure):
    def render(params, image, flows, weight, noise):
        renderer = structure.merge(params)
        encoded = renderer.encode(image)
        return renderer.synthesize(encoded, flows, jnp.broadcast_to(weight, flows.shape[:3] + (1,)),
                                   jnp.broadcast_to(noise, (flows.shape[0], noise.shape[1])))

    return render


def _spec(params: dict) -> dict:
    return {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in params.items()}


# ----------------------------------------------------------------------------- export

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


def export_bundle(workdir: str | os.PathLike, out: str | os.PathLike, *, chunk_frames: int = 16,
                  platforms: tuple[str, ...] | None = None, overwrite: bool = False,
                  provenance: dict | None = None) -> Path:
    """Writes the inference bundle of the pipeline directory `workdir` to `out` (see module doc).
    `provenance` (JSON-able: how the model was made, e.g. commit, data recipe, metrics) is
    stored in the manifest under that key."""
    from gid_jax.pipeline import PIPELINE_FILE, Pipeline

    workdir, out = Path(workdir), Path(out)
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out}: already exists (pass --overwrite to replace it)")
    if out.exists() and not (out / MANIFEST).is_file():
        raise FileExistsError(f"{out}: exists and is not a bundle; refusing to replace it")
    if (workdir / MANIFEST).is_file():
        raise ValueError(f"{workdir}: is already an exported bundle; export a pipeline directory")
    pipe = Pipeline.load(workdir)               # clear errors for a missing/invalid pipeline dir
    spec = json.loads((workdir / PIPELINE_FILE).read_text())
    ldm_dir, renderer_dir = (workdir / spec[key] for key in ("ldm", "renderer"))
    ldm, renderer, s = pipe.ldm, pipe.renderer, pipe.settings
    height, width, k = pipe.height, pipe.width, int(ldm.num_freqs)
    latent_shape = tuple(int(v) for v in ldm.latent_shape(height, width))

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)            # mkdtemp makes it private; a bundle is not
    try:
        shutil.copyfile(ldm_dir / "config.json", tmp / LDM_CONFIG)
        shutil.copyfile(renderer_dir / "config.json", tmp / RENDERER_CONFIG)
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
            "sampler_step": (_sampler_step_fn(ldm_struct, pipe.schedule.alphas_cumprod),
                             (_spec(ldm_params), latents, scalar_i, scalar_i, image,
                              jax.ShapeDtypeStruct((), f32))),
            "decode": (_decode_fn(ldm_struct), (_spec(ldm_params), latents)),
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
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "source": {"pipeline": str(workdir.absolute()), "ldm": str(ldm_dir.absolute()),
                       "renderer": str(renderer_dir.absolute())},
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
    log.info("exported %s → %s (%.1f MB)", workdir, out, bundle_size(out) / 1e6)
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


# ----------------------------------------------------------------------------- loading

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


def load_bundle(path: str | os.PathLike):
    """A `Pipeline` from an exported bundle (what `Pipeline.load` calls for a bundle directory).

    Checks every file's checksum, the manifest format version and that the configs, weights and
    statistics agree on the image size and K; builds the models from the configs and fills in the
    weights from the .npz files (no Orbax, no training code). The pipeline gets `bundle` (its
    path) and `manifest` attributes."""
    import ml_collections
    from flax import nnx

    from gid_jax.models.ldm import MotionLDM
    from gid_jax.models.renderer import Renderer
    from gid_jax.pipeline import Pipeline, SamplerSettings, _abstract, noise_schedule

    path = Path(path)
    manifest = read_manifest(path)
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
    try:
        settings = SamplerSettings(**manifest.get("sampler", {})).validate()
    except (TypeError, ValueError) as err:
        raise BundleError(f"{mpath}: invalid sampler settings ({err})") from None

    # shapes only (no random init); every array is then filled in from the bundle
    try:
        ldm = _abstract(lambda: MotionLDM(ldm_cfg.model, num_freqs=num_freqs, stage=stage,
                                          rngs=nnx.Rngs(0)), path / LDM_CONFIG)
        renderer = _abstract(lambda: Renderer(renderer_cfg.model, rngs=nnx.Rngs(0)),
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
        schedule = noise_schedule(ldm_cfg)
    except (AttributeError, KeyError, ValueError) as err:
        raise BundleError(f"{path / LDM_CONFIG}: invalid diffusion settings ({err})") from None
    pipe = Pipeline(ldm, renderer, tuple(image_size), schedule, settings)
    pipe.bundle = path
    pipe.manifest = manifest
    return pipe


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


# ----------------------------------------------------------------------------- command line

def _cmd_export(args) -> None:
    platforms = tuple(p.strip() for p in args.platforms.split(",")) if args.platforms else None
    out = export_bundle(args.workdir, args.out, chunk_frames=args.chunk_frames, platforms=platforms,
                        overwrite=args.overwrite)
    manifest = read_manifest(out)
    print(f"bundle → {out} ({bundle_size(out) / 1e6:.1f} MB; image {manifest['image_size'][1]}x"
          f"{manifest['image_size'][0]}, K={manifest['num_freqs']}; exported "
          f"{', '.join(manifest['exported'])} for {', '.join(manifest['exported']['decode']['platforms'])})")


def add_export_command(sub) -> None:
    """Registers `gid export`."""
    p = sub.add_parser(
        "export", help="write a self-contained inference bundle",
        description="Export a pipeline directory (pipeline.json naming the LDM and renderer "
        "training runs; `gid quickstart` writes WORKDIR/pipeline) into a bundle: EMA weights as "
        ".npz, configs, normalisation/latent statistics, a manifest with versions and SHA-256 "
        "checksums, and StableHLO (jax.export) functions for one DDIM step, the VAE decode and one "
        "renderer chunk. `gid animate --checkpoint BUNDLE` and Pipeline.load(BUNDLE) read it "
        "without the training code. The bundle is written to a temporary directory and renamed "
        "into place.")
    p.add_argument("--workdir", required=True, help="pipeline directory to export")
    p.add_argument("--out", required=True, help="bundle directory to write")
    p.add_argument("--chunk-frames", type=int, default=16,
                   help="frames per exported renderer call (default: 16)")
    p.add_argument("--platforms", help="comma-separated jax.export platforms, e.g. cpu,cuda "
                   "(default: the current backend)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle at --out")
    p.set_defaults(run=_cmd_export)


__all__ = ["BundleError", "export_bundle", "load_bundle", "load_exported", "read_manifest",
           "is_bundle", "flat_params", "add_export_command"]
