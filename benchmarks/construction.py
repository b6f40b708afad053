"""Benchmark: prompts per second of the constructed model's jitted ``predict``, and its
achieved FLOP/s as a fraction of a large matmul's, measured in the same run.

    python benchmarks/construction.py [--batch 1024] [--examples 64] [--repeats 3]

Writes benchmarks/results/construction_<platform>.json with the device name.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would shadow the
# `construction` package: drop that folder (python -m benchmarks.construction needs no fix).
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import jax
import jax.numpy as jnp

from construction import construct, sample_prompts
from construction.model import _query_block
from empirical.results import provenance, write_json
from construction.tasks import DEFAULT_EXAMPLE_LEN, DEFAULT_VOCAB, default_tasks


def best_time(fn, repeats: int) -> float:
    jax.block_until_ready(fn())  # compile and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_peak(repeats: int, n: int) -> float:
    """FLOP/s of an n x n float32 matmul: the machine's practical peak."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    return 2 * n**3 / best_time(lambda: f(a), repeats)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--examples", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--matmul", type=int, default=None, help="matmul size for the peak (default: by device)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args(argv)
    tasks = default_tasks()
    model = construct(tasks, vocab_size=DEFAULT_VOCAB, example_len=DEFAULT_EXAMPLE_LEN,
                      max_examples=args.examples, dtype="float32")
    tokens = jnp.asarray(sample_prompts(0, tasks, [0.4, 0.3, 0.3], n_examples=args.examples, batch=args.batch,
                                        example_len=DEFAULT_EXAMPLE_LEN).tokens)
    block = model.spec.residual["OUT"]
    params = jax.device_put(model.params)
    fn = lambda: _query_block(model.config, params, tokens, (block.start, block.stop))  # noqa: E731
    flops = _query_block.lower(model.config, params, tokens, (block.start, block.stop)).compile().cost_analysis()
    flops = float((flops[0] if isinstance(flops, list) else flops)["flops"])
    seconds = best_time(fn, args.repeats)
    on_gpu = jax.devices()[0].platform == "gpu"
    peak = matmul_peak(args.repeats, args.matmul or (8192 if on_gpu else 2048))
    result = {
        **provenance({"batch": args.batch, "n_examples": args.examples, "example_len": DEFAULT_EXAMPLE_LEN,
                      "vocab_size": DEFAULT_VOCAB, "num_tasks": len(tasks), "width": model.width,
                      "sequence_length": int(tokens.shape[1]), "dtype": "float32"}),
        "seconds_per_batch": seconds,
        "prompts_per_second": args.batch / seconds,
        "model_flops_per_batch": flops,
        "achieved_flops_per_second": flops / seconds,
        "matmul_peak_flops_per_second": peak,
        "fraction_of_matmul_peak": flops / seconds / peak,
    }
    platform = jax.devices()[0].platform
    path = write_json(Path(args.out) / f"construction_{platform}.json", result)
    print(f"{result['prompts_per_second']:.0f} prompts/s; {result['achieved_flops_per_second'] / 1e9:.1f} GFLOP/s "
          f"= {100 * result['fraction_of_matmul_peak']:.1f}% of the matmul peak "
          f"({peak / 1e9:.1f} GFLOP/s) on {result['device']}  ->  {path}")
    return result


if __name__ == "__main__":
    main()
