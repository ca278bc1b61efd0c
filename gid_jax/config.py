"""Loading run configurations: `configs/<name>.py:<variant>` plus `--config.a.b=value` overrides.

The same syntax as ml_collections' absl `config_flags`, for our argparse command line. The
configs ship inside the package (`gid_jax/configs/`), so `configs/ldm.py:tiny` works from any
directory and in a non-editable install; a file of that name in the working directory (a copy a
user edits) wins.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import ml_collections

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
VARIANTS = ("tiny", "paper")


def parse_spec(spec: str) -> tuple[str, str | None]:
    """`"configs/NAME.py:VARIANT"` → `("configs/NAME.py", "VARIANT")`; no `:VARIANT` → None (the
    file's own default). The one reader of spec strings: `load_config` calls it."""
    path, sep, arg = str(spec).partition(":")
    return path, (arg if sep and arg else None)


def parse_variant(arg: str | None, where: str, *, default: str = "paper",
                  choices: tuple[str, ...] = VARIANTS) -> str:
    """A config file's `get_config(arg)` argument → one of `choices` (case and surrounding
    spaces ignored; None or "" → `default`). Every config file calls this, so that each
    accepts and refuses variants the same way; `where` names the file in the error."""
    name = (arg or default).strip().lower()
    if name not in choices:
        hint = (" (k=K is an option of configs/prepare.py only: the training stages read K from the "
                "prepared data)" if "k=" in name.replace(" ", "") else "")
        raise ValueError(f"{where}: variant must be one of {', '.join(map(repr, choices))}, got {arg!r}{hint}")
    return name


def parse_variant_k(arg: str | None, where: str, *, default: str = "paper",
                    choices: tuple[str, ...] = VARIANTS) -> tuple[str, int | None]:
    """`"paper,k=8"` → `("paper", 8)`, `"tiny"` → `("tiny", None)`: a variant with the number of
    Fourier bins K of the paper's K ablation (Table 2). Only `configs/prepare.py` takes it: K is
    decided there, once, and every later stage reads it from the prepared data."""
    name, *options = str(arg or default).split(",")
    variant = parse_variant(name, where, default=default, choices=choices)
    k = None
    for option in options:
        key, sep, value = option.partition("=")
        if key.strip().lower() != "k" or not sep:
            raise ValueError(f"{where}: unknown variant option {option.strip()!r} (the only one is "
                             "k=K, e.g. 'paper,k=8')")
        try:
            k = int(value)
        except ValueError:
            raise ValueError(f"{where}: k must be a whole number of Fourier bins, got {value.strip()!r}") from None
        if k < 1:
            raise ValueError(f"{where}: k must be at least 1, got {k}")
    return variant, k


def resolve_config_path(path: str) -> Path:
    """A config file as given, or else the packaged one it names (`configs/X.py` →
    `gid_jax/configs/X.py`)."""
    candidate = Path(path)
    if candidate.is_file():
        return candidate
    if not candidate.is_absolute() and candidate.parts[:1] == ("configs",):
        packaged = CONFIG_DIR.joinpath(*candidate.parts[1:])
        if packaged.is_file():
            return packaged
    raise FileNotFoundError(f"{path}: config file not found (the packaged configs are in {CONFIG_DIR})")


def load_config(spec: str, overrides: list[str] | tuple[str, ...] = ()) -> ml_collections.ConfigDict:
    """`"configs/prepare.py:tiny"` → `get_config("tiny")` of that file, with overrides applied.

    Overrides look like `config.num_freqs=8` or `--config.vae.base_channels=64`; values are
    Python literals (numbers, tuples, True/False) or else plain strings, and must keep the
    field's type (ConfigDict is type-safe).
    """
    path_text, arg = parse_spec(spec)
    path = resolve_config_path(path_text)
    module_spec = importlib.util.spec_from_file_location(f"gid_config_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"{path}: a config file must define get_config(arg)")
    config = module.get_config(arg) if arg else module.get_config()
    for item in overrides:
        apply_override(config, item)
    return config


def apply_override(config: ml_collections.ConfigDict, item: str) -> None:
    key, sep, text = item.lstrip("-").partition("=")
    if not sep or not key.startswith("config."):
        raise ValueError(f"override {item!r} must look like --config.field=value")
    *parents, leaf = key[len("config."):].split(".")
    node = config
    for name in parents:
        if name not in node:
            raise ValueError(f"override {item!r}: no config field {name!r}")
        node = node[name]
    if leaf not in node:
        raise ValueError(f"override {item!r}: no config field {key[len('config.'):]!r}")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text
    if isinstance(node[leaf], str) and not isinstance(value, str):
        value = text
    if isinstance(node[leaf], tuple) and isinstance(value, list):
        value = tuple(value)
    try:
        node[leaf] = value
    except TypeError as err:
        raise ValueError(f"override {item!r}: {err}") from None


def split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """Separates `--config.x=y` items from the other command-line arguments."""
    overrides = [a for a in argv if a.startswith("--config.")]
    return [a for a in argv if not a.startswith("--config.")], overrides
