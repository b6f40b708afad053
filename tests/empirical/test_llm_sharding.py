"""Sharded runs (weights over a model axis, batches over a data axis, 8 forced host devices)
equal the single-device run. Runs in a subprocess: the device count is fixed when jax starts."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent('''
    import os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    os.environ["JAX_PLATFORMS"] = "cpu"
    import jax
    import numpy as np
    jax.config.update("jax_default_matmul_precision", "highest")
    from empirical.llm import load_model
    from empirical.llm.sharding import make_mesh
    from tests.tiny_llm import tiny_config, write_tiny_gguf

    assert len(jax.devices()) == 8, jax.devices()
    path = write_tiny_gguf(sys.argv[1], tiny_config(n_heads=8, n_kv_heads=4, head_dim=4), seed=5)
    single = load_model(path)
    sharded = load_model(path, mesh=make_mesh(data=2, model=4))
    q = sharded.params["layers"]["q"]["kernel"]
    assert len(q.sharding.device_set) == 8 and not q.sharding.is_fully_replicated
    ids = np.random.default_rng(0).integers(0, single.config.vocab_size, (4, 24))
    a, b = np.asarray(single.logits(ids)), np.asarray(sharded.logits(ids))
    print("logits maxdiff", np.abs(a - b).max())
    assert np.abs(a - b).max() < 1e-4
    prompts = ["12@34=12\\n56@78=", "the cat->c\\nan ant->", "in the\\nthe ", "a-"]
    answers = [["56", "78", "134"], ["a", "t", "an"], ["the", "cat"], [">b", "b"]]
    s1, s2 = single.score_many(prompts, answers), sharded.score_many(prompts, answers)
    for x, y in zip(s1, s2):
        assert np.abs(x.logprobs - y.logprobs).max() < 1e-4, (x.logprobs, y.logprobs)
    c1, c2 = single.continuations(prompts[0], 3), sharded.continuations(prompts[0], 3)
    assert c1.texts[:3] == c2.texts[:3]
    assert np.abs(c1.logprobs[:3] - c2.logprobs[:3]).max() < 1e-4
    print("OK")
''')


def test_sharded_equals_single_device(tmp_path):
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "tiny.gguf")],
                          capture_output=True, text=True, env=env, timeout=300, cwd=root)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-4000:]
