"""Every model is jit-able on a mesh of 8 fake CPU devices with its parameters really sharded."""

import json
import os
import subprocess
import sys
from pathlib import Path


def test_models_run_sharded_on_eight_devices():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    script = Path(__file__).parent / "scripts" / "sharded_models.py"
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env,
                         timeout=900, cwd=Path(__file__).parents[1])
    assert out.returncode == 0, out.stderr[-3000:]
    rows = {r["model"]: r for r in map(json.loads, filter(None, out.stdout.splitlines()))}
    assert set(rows) == {"vae", "image_encoder", "denoiser_stage2", "renderer"}
    for row in rows.values():
        assert row["sharded"] > 0, row            # some parameters are split across devices
        assert row["output_scale"] > 1e-3, row    # a non-trivial output to compare
        # the same function as unsharded, up to float32 summation order
        assert row["max_abs_diff"] < 1e-4 * max(1.0, row["output_scale"]), row
