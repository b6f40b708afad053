"""Training throughput of the shared transformer, against a matmul peak and a PyTorch reference.

In one run, on the default JAX device:

1. **peak**: the best FLOP rate of a square matmul in the model's compute dtype;
2. **ours**: tokens per second of the jitted training step of empirical/training.py (AdamW,
   clipping, the real data), and model FLOP utilisation = flops_per_token * tokens/s / peak;
3. **reference**: the same model trained the usual way, PyTorch ``transformers``
   LlamaForCausalLM with the same configuration, batch, sequence length and optimiser
   (bf16 autocast where our model computes in bf16), when torch and transformers import;
   reported as the ratio ours / reference;
4. the host data generator's rate (to show it is not the bottleneck).

Writes ``benchmarks/results/training_<device>.json`` (device name inside).

    python benchmarks/training.py                          # tiny preset, CPU-sized
    python benchmarks/training.py --preset paper --batch 32 # the issue's GPU comparison
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from empirical import synthetic, training  # noqa: E402


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def device_name() -> str:
    dev = jax.devices()[0]
    return dev.device_kind if dev.platform != "cpu" else f"cpu ({_cpu_name()}, {os.cpu_count()} cores)"


def device_slug() -> str:
    dev = jax.devices()[0]
    kind = "cpu" if dev.platform == "cpu" else dev.device_kind
    return re.sub(r"[^a-z0-9]+", "_", kind.lower()).strip("_")


def matmul_peak(dtype: str, n: int, reps: int = 10) -> dict:
    """Best FLOP rate of an n x n x n matmul (jitted, result kept on device)."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32).astype(dtype)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32).astype(dtype)
    f = jax.jit(lambda x, y: x @ y)
    f(a, b).block_until_ready()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        f(a, b).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return {"n": n, "dtype": dtype, "seconds": best, "flops_per_s": 2.0 * n**3 / best}


def time_ours(cfg: training.TrainConfig, steps: int, warmup: int) -> dict:
    state = training.init_state(cfg)
    step = training.make_train_step(cfg)
    batches = [training.make_batch(cfg, s + 1) for s in range(warmup + steps)]
    dev = [tuple(jnp.asarray(b[k]) for k in ("tokens", "mask", "answer_mask")) for b in batches]
    t_compile = time.perf_counter()
    for i in range(warmup):
        state, m = step(state, *dev[i])
    jax.block_until_ready(m)
    t_compile = time.perf_counter() - t_compile
    t = time.perf_counter()
    for i in range(warmup, warmup + steps):
        state, m = step(state, *dev[i])
    jax.block_until_ready((state, m))
    elapsed = time.perf_counter() - t
    tokens = steps * cfg.batch_size * cfg.seq_len
    return {
        "seconds": elapsed,
        "seconds_per_step": elapsed / steps,
        "tokens_per_s": tokens / elapsed,
        "warmup_and_compile_s": t_compile,
        "final_loss": float(m["loss"]),
        "params": training.param_count(state["params"]),
    }


def time_data(cfg: training.TrainConfig, reps: int = 5) -> dict:
    t = time.perf_counter()
    for s in range(reps):
        training.make_batch(cfg, s + 1)
    elapsed = time.perf_counter() - t
    return {"tokens_per_s": reps * cfg.batch_size * cfg.seq_len / elapsed}


def time_reference(cfg: training.TrainConfig, steps: int, warmup: int) -> dict:
    """PyTorch transformers LlamaForCausalLM, same config/batch/length/optimiser."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    m = cfg.model
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    if not cuda:
        torch.set_num_threads(os.cpu_count() or 1)
    lcfg = LlamaConfig(
        vocab_size=m.input_vocab,
        hidden_size=m.d_model,
        intermediate_size=m.mlp_dims[0],
        num_hidden_layers=m.num_layers,
        num_attention_heads=m.num_heads,
        num_key_value_heads=m.num_heads,
        head_dim=m.qk_dim,
        max_position_embeddings=cfg.seq_len,
        rms_norm_eps=1e-6,
        rope_theta=m.rope_theta,
        tie_word_embeddings=m.tie_embeddings,
        attention_bias=False,
        mlp_bias=False,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(lcfg).to(device)
    model.train()
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(cfg.b1, cfg.b2), eps=cfg.eps, **({"fused": True} if cuda else {}),
    )
    autocast = m.dtype == "bfloat16"
    batches = []
    for s in range(warmup + steps):
        b = training.make_batch(cfg, s + 1)
        tokens = torch.from_numpy(b["tokens"].astype(np.int64)).to(device)
        mask = torch.from_numpy(b["mask"]).to(device)
        batches.append((tokens, mask))

    def step(tokens, mask):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = model(input_ids=tokens[:, :-1]).logits
        nll = torch.nn.functional.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1), reduction="none"
        )
        msk = mask[:, 1:].reshape(-1)
        loss = (nll * msk).sum() / msk.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        opt.step()
        return loss

    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for i in range(warmup):
        loss = step(*batches[i])
    sync()
    t = time.perf_counter()
    for i in range(warmup, warmup + steps):
        loss = step(*batches[i])
    sync()
    elapsed = time.perf_counter() - t
    return {
        "seconds": elapsed,
        "seconds_per_step": elapsed / steps,
        "tokens_per_s": steps * cfg.batch_size * cfg.seq_len / elapsed,
        "final_loss": float(loss.detach().cpu()),
        "params": sum(p.numel() for p in model.parameters()),
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "autocast_bf16": autocast,
        "attn_implementation": model.config._attn_implementation,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny", choices=sorted(training.PRESETS))
    p.add_argument("--family", default="copy", choices=sorted(synthetic.FAMILIES))
    p.add_argument("--batch", type=int, default=None, help="sequences per step (default: the preset's)")
    p.add_argument("--examples", type=int, default=None, help="examples per sequence (default: the preset's)")
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16"], help="compute dtype (default: preset's)")
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps (compilation)")
    p.add_argument("--matmul-n", type=int, default=None, help="matmul size for the peak (default 2048 CPU, 8192 GPU)")
    p.add_argument("--no-reference", action="store_true", help="skip the PyTorch reference")
    p.add_argument("--json", default=None, help="output path (default benchmarks/results/training_<device>.json)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    cfg = training.PRESETS[args.preset](family=args.family, seed=args.seed)
    changes = {}
    if args.batch:
        changes["batch_size"] = args.batch
        changes["microbatch"] = 0 if (cfg.microbatch == 0 or args.batch % cfg.microbatch) else cfg.microbatch
    if args.examples:
        changes["n_examples"] = args.examples
    cfg = cfg.replace(**changes)
    if args.dtype:
        cfg = cfg.replace(model=cfg.model.replace(dtype=args.dtype))
    on_cpu = jax.devices()[0].platform == "cpu"
    n = args.matmul_n or (2048 if on_cpu else 8192)
    compute_dtype = cfg.model.dtype

    peak = matmul_peak(compute_dtype, n)
    print(f"matmul peak ({compute_dtype}, n={n}): {peak['flops_per_s'] / 1e9:.1f} GFLOP/s", flush=True)
    ours = time_ours(cfg, args.steps, args.warmup)
    fpt = training.flops_per_token(cfg.model, cfg.seq_len)
    ours["model_flops_per_s"] = fpt * ours["tokens_per_s"]
    ours["mfu"] = ours["model_flops_per_s"] / peak["flops_per_s"]
    print(f"ours: {ours['tokens_per_s']:.0f} tokens/s, MFU {ours['mfu']:.1%}", flush=True)
    data = time_data(cfg)
    print(f"data generator: {data['tokens_per_s']:.3g} tokens/s", flush=True)

    reference, ratio, why = None, None, None
    if args.no_reference:
        why = "skipped (--no-reference)"
    else:
        try:
            import torch  # noqa: F401
            import transformers  # noqa: F401
        except ImportError as err:
            why = f"not importable: {err}"
        else:
            reference = time_reference(cfg, args.steps, args.warmup)
            reference["mfu"] = fpt * reference["tokens_per_s"] / peak["flops_per_s"]
            ratio = ours["tokens_per_s"] / reference["tokens_per_s"]
            print(f"reference (torch LlamaForCausalLM): {reference['tokens_per_s']:.0f} tokens/s; "
                  f"ratio ours/reference {ratio:.2f}", flush=True)
    if why:
        print(f"reference: {why}", flush=True)

    result = {
        "benchmark": "training",
        **training.provenance(cfg),
        "device": device_name(),
        "jax": jax.__version__,
        "seq_len": cfg.seq_len,
        "tokens_per_step": cfg.batch_size * cfg.seq_len,
        "flops_per_token": fpt,
        "matmul_peak": peak,
        "ours": ours,
        "data_generator": data,
        "reference": reference,
        "reference_note": why,
        "ratio_ours_over_reference": ratio,
        "timed_steps": args.steps,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    path = Path(args.json) if args.json else ROOT / "benchmarks" / "results" / f"training_{device_slug()}.json"
    training.write_json_atomic(path, result)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
