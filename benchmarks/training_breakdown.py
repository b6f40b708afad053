"""Where our training step's time goes on this machine (the tiny add preset, batch and length
as trained): forward alone, forward + backward, the whole step (AdamW included), and
forward + backward with one architectural piece changed at a time (RoPE off, ReLU instead of
SwiGLU, no norms, one layer, one wide head). One process, JAX only; best of ``--repeats``.

Writes ``benchmarks/results/training_breakdown_<device>.json``.

    python benchmarks/training_breakdown.py
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # before this script's folder (its construction.py would shadow the package)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from construction.transformer import run  # noqa: E402
from empirical import training  # noqa: E402
from empirical.results import provenance, write_json  # noqa: E402

VARIANTS = {
    "as trained": {},
    "no RoPE": {"positions": "none"},
    "ReLU MLP instead of SwiGLU": {"mlp": "relu"},
    "no norms": {"norm": "none"},
    "1 layer instead of 3": {"num_layers": 1, "mlp_dims": 128},
    "1 head of 64 instead of 4 of 16": {"num_heads": 1, "qk_dim": 64, "v_dim": 64},
}


def _ms(fn, *args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t)
    return 1000.0 * best


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", default="add")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    base = training.tiny(args.family)
    if base.model.positions != "rope":
        raise SystemExit(f"the {args.family} preset does not use RoPE; choose add")
    b = training.make_batch(base, 1)
    dev = {k: jnp.asarray(v) for k, v in training.device_batch(b).items()}
    tok = dev["tokens"]
    state = training.init_state(base)
    step = training.make_train_step(base)
    holder = {"state": state}

    def one_step():
        holder["state"], m = step(holder["state"], dev)
        return m

    loss = lambda m: (lambda p, t: run(m, p, t[:, :-1])[0].astype(jnp.float32).mean())  # noqa: E731
    rows = {"step (AdamW included)": _ms(one_step, repeats=args.repeats)}
    fwd = jax.jit(loss(base.model))
    rows["forward"] = _ms(fwd, training.init_state(base)["params"], tok, repeats=args.repeats)  # (state is donated)
    for name, change in VARIANTS.items():
        cfg = base.replace(model=base.model.replace(**change))
        params = training.init_state(cfg)["params"]
        rows[f"forward+backward, {name}"] = _ms(jax.jit(jax.grad(loss(cfg.model))), params, tok,
                                                 repeats=args.repeats)
        print(f"{name:34s} forward+backward {rows[f'forward+backward, {name}']:7.1f} ms", flush=True)
    dev = jax.devices()[0]
    device = "cpu" if dev.platform == "cpu" else dev.device_kind
    result = {"benchmark": "training_breakdown", **provenance(base.to_dict()), "device": device,
              "batch": base.batch_size, "seq_len": base.seq_len, "milliseconds": rows}
    slug = re.sub(r"[^a-z0-9]+", "_", device.lower()).strip("_")
    path = Path(args.json) if args.json else ROOT / "benchmarks" / "results" / f"training_breakdown_{slug}.json"
    write_json(path, result)
    for k, v in rows.items():
        print(f"{k:50s} {v:7.1f} ms")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
