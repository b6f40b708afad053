"""Training throughput: our jitted step against PyTorch ``transformers``, each side alone.

Each side runs in **its own process** (a live JAX process slows PyTorch several-fold on a
2-core machine, and the reverse), measures its own matmul peak in that process (a square
float32 matmul in its own framework), then times training steps of the same model on the
same batch and sequence length:

* **ours**: the jitted step of empirical/training/step.py (the package's Transformer, AdamW,
  clipping, masked loss);
* **reference**: PyTorch ``transformers`` LlamaForCausalLM with the same configuration
  (width, heads, SwiGLU width, RMSNorm, RoPE theta, untied embeddings), AdamW and clipping.

Model FLOP utilisation = flops_per_token x tokens/s / the side's peak. The sides alternate
(ours, reference, ours, ...) ``--rounds`` times, so a machine whose speed drifts treats both
alike; the ratio is of the median rates. A result whose sanity figures are impossible or not
like-for-like is refused (exit 1, the reason printed): a figure that is not finite, a
utilisation above 1, a loss that does not fall over the timed steps, a reference not using
every core, the two sides training models of different parameter counts, or a round more than
``ROUND_SLACK`` times slower than its side's fastest (contention, as in the LLM harness).

Writes ``benchmarks/results/training_<device>.json`` (device name inside).

    python benchmarks/training.py                         # tiny preset, add family, CPU
    python benchmarks/training.py --rounds 5                # more alternating rounds

(The copy preset is refused: its queries and keys are wider than its values, which a Llama
cannot express, so the reference would train a larger model.)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# First on the path, before this script's own folder (whose construction.py would shadow the package).
sys.path.insert(0, str(ROOT))


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def _config(args):
    from empirical import training

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
    if cfg.model.positions != "rope":
        raise SystemExit(f"the reference is a Llama (RoPE) model; the {args.family} preset uses {cfg.model.positions} "
                         "positions: choose a RoPE family (copy or add)")
    return cfg


# --------------------------------------------------------------------------- one side, in its own process


def llama_config(cfg):
    """The ``transformers`` LlamaConfig of ``cfg``'s model (the reference side's architecture)."""
    from transformers import LlamaConfig

    m = cfg.model
    return LlamaConfig(
        vocab_size=m.input_vocab, hidden_size=m.d_model, intermediate_size=m.mlp_dims[0],
        num_hidden_layers=m.num_layers, num_attention_heads=m.num_heads, num_key_value_heads=m.num_heads,
        head_dim=m.qk_dim, max_position_embeddings=cfg.seq_len + 1, rms_norm_eps=1e-6, rope_theta=m.rope_theta,
        tie_word_embeddings=m.tie_embeddings, attention_bias=False, mlp_bias=False,
    )


def peak_jax(n: int, dtype: str = "float32") -> float:
    """FLOP/s of the best of 5 square n x n matmuls in JAX (this process's peak)."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32).astype(dtype)
    mm = jax.jit(lambda x, y: x @ y)
    mm(a, a).block_until_ready()
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        mm(a, a).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2.0 * n**3 / best


def side_ours(cfg, steps: int, warmup: int, matmul_n: int) -> dict:
    import jax
    import jax.numpy as jnp

    from empirical import training

    peak = peak_jax(matmul_n, cfg.model.dtype)
    state = training.init_state(cfg)
    step = training.make_train_step(cfg)
    batches = [training.make_batch(cfg, s + 1) for s in range(warmup + steps)]
    dev = [{k: jnp.asarray(v) for k, v in training.device_batch(b).items()} for b in batches]
    losses = []
    for i in range(warmup):
        state, m = step(state, dev[i])
        losses.append(float(m["loss"]))
    t = time.perf_counter()
    for i in range(warmup, warmup + steps):
        state, m = step(state, dev[i])
    jax.block_until_ready((state, m))
    elapsed = time.perf_counter() - t
    losses.append(float(m["loss"]))
    dev0 = jax.devices()[0]
    return {"side": "ours", "seconds": elapsed, "steps": steps, "peak_flops_per_s": peak,
            "params": training.param_count(state["params"]),
            "first_loss": losses[0], "last_loss": losses[-1], "jax": jax.__version__,
            "device": dev0.device_kind if dev0.platform != "cpu" else "cpu"}


def side_reference(cfg, steps: int, warmup: int, matmul_n: int) -> dict:
    import numpy as np
    import torch
    from transformers import LlamaForCausalLM

    from empirical import training

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    if not cuda:
        torch.set_num_threads(os.cpu_count() or 1)
    a = torch.randn(matmul_n, matmul_n, device=device)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    a @ a
    sync()
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        a @ a
        sync()
        best = min(best, time.perf_counter() - t)
    peak = 2.0 * matmul_n**3 / best

    m = cfg.model
    lcfg = llama_config(cfg)
    torch.manual_seed(cfg.seed)
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
        batches.append((torch.from_numpy(b["tokens"].astype(np.int64)).to(device), torch.from_numpy(b["mask"]).to(device)))

    def step(tokens, mask):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = model(input_ids=tokens[:, :-1]).logits
        nll = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]),
                                                tokens[:, 1:].reshape(-1), reduction="none")
        msk = mask[:, 1:].reshape(-1)
        loss = (nll * msk).sum() / msk.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        opt.step()
        return loss

    losses = [float(step(*batches[i]).detach()) for i in range(warmup)]
    sync()
    t = time.perf_counter()
    for i in range(warmup, warmup + steps):
        loss = step(*batches[i])
    sync()
    elapsed = time.perf_counter() - t
    losses.append(float(loss.detach().cpu()))
    import transformers

    return {"side": "reference", "seconds": elapsed, "steps": steps, "peak_flops_per_s": peak,
            "params": sum(p.numel() for p in model.parameters()),
            "first_loss": losses[0], "last_loss": losses[-1], "torch": torch.__version__,
            "transformers": transformers.__version__, "threads": torch.get_num_threads(),
            "attn_implementation": model.config._attn_implementation,
            "device": torch.cuda.get_device_name() if cuda else "cpu"}


# --------------------------------------------------------------------------- the orchestrator


def _run_side(side: str, argv: list[str]) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if side == "reference":
        env["CUDA_VISIBLE_DEVICES"] = env.get("CUDA_VISIBLE_DEVICES", "")  # torch sees the GPU as JAX would
    out = subprocess.run([sys.executable, __file__, "--side", side, *argv], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"the {side} process failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


#: Alone, a side's rounds run within ~15% of each other (the committed CPU runs: 1.14x for ours,
#: 1.09x for the reference); a round this many times slower than its side's fastest was slowed
#: by another process and the measurement is refused.
ROUND_SLACK = 1.5


def sanity(ours: list[dict], ref: list[dict], fpt: float, tokens_per_step: int) -> list[str]:
    """The reasons this measurement is impossible or not like-for-like (empty when it is plausible)."""
    rounds = ours + ref
    problems = [f"{r['side']}: {k} is {r.get(k)!r} (not a finite number)" for r in rounds
                for k in ("seconds", "steps", "peak_flops_per_s", "first_loss", "last_loss", "params")
                if not (isinstance(r.get(k), (int, float)) and math.isfinite(r[k]))]
    if problems or not (math.isfinite(fpt) and fpt > 0 and tokens_per_step > 0):
        return problems or [f"flops per token {fpt!r} or tokens per step {tokens_per_step!r} is not a positive number"]
    for r in rounds:
        rate = r["steps"] * tokens_per_step / r["seconds"]
        mfu = fpt * rate / r["peak_flops_per_s"]
        if not 0 < mfu <= 1:
            problems.append(f"{r['side']}: utilisation {mfu:.2f} of its own measured peak is impossible")
        if r["last_loss"] >= r["first_loss"]:
            problems.append(f"{r['side']}: the loss did not fall over the timed steps "
                            f"({r['first_loss']:.3f} -> {r['last_loss']:.3f}): not a training step")
    for r in ref:
        if r.get("device") == "cpu" and r.get("threads") != (os.cpu_count() or 1):
            problems.append(f"reference used {r.get('threads')} threads on {os.cpu_count()} cores")
    counts = sorted({r["params"] for r in rounds})
    if len(counts) > 1:
        problems.append(f"the sides train models of different sizes ({counts} parameters): not the same model")
    for side in (ours, ref):
        rates = [r["steps"] / r["seconds"] for r in side]
        if side and max(rates) > ROUND_SLACK * min(rates):
            problems.append(f"{side[0]['side']}: a round ran {max(rates) / min(rates):.1f}x slower than its fastest "
                            f"(> {ROUND_SLACK}): slowed by contention (another process on the cores?)")
    return problems


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--family", default="add")
    p.add_argument("--batch", type=int, default=None, help="sequences per step (default: the preset's)")
    p.add_argument("--examples", type=int, default=None, help="examples per sequence (default: the preset's)")
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16"], help="compute dtype (default: preset's)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per round")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps (compilation) per round")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds of ours and the reference")
    p.add_argument("--matmul-n", type=int, default=None, help="matmul size for the peak (default 2048 CPU, 8192 GPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="output path (default benchmarks/results/training_<device>.json)")
    p.add_argument("--side", choices=["ours", "reference"], default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    cfg = _config(args)
    on_gpu = bool(os.environ.get("CUDA_VISIBLE_DEVICES")) or Path("/dev/nvidia0").exists()
    n = args.matmul_n or (8192 if on_gpu else 2048)

    if args.side is not None:  # a child process: one side, one JSON line
        fn = side_ours if args.side == "ours" else side_reference
        print(json.dumps(fn(cfg, args.steps, args.warmup, n)))
        return 0

    from empirical import training
    from empirical.results import provenance, write_json

    child = [a for a in (argv if argv is not None else sys.argv[1:])]
    child = [*child, "--matmul-n", str(n)] if args.matmul_n is None else child
    tokens_per_step = cfg.batch_size * cfg.seq_len
    fpt = training.flops_per_token(cfg.model, cfg.seq_len)
    ours, ref = [], []
    for r in range(args.rounds):
        for side, into in (("ours", ours), ("reference", ref)):
            load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
            res = _run_side(side, child)
            res["load_before"] = load
            res["tokens_per_s"] = res["steps"] * tokens_per_step / res["seconds"]
            res["mfu"] = fpt * res["tokens_per_s"] / res["peak_flops_per_s"]
            into.append(res)
            print(f"round {r + 1} {side:9s}: {res['tokens_per_s']:8.0f} tokens/s, peak "
                  f"{res['peak_flops_per_s'] / 1e9:6.1f} GFLOP/s, MFU {res['mfu']:.1%}", flush=True)
    problems = sanity(ours, ref, fpt, tokens_per_step)
    if problems:
        print("refusing to write a result:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    med = lambda rs, k: statistics.median(r[k] for r in rs)  # noqa: E731
    ratio = med(ours, "tokens_per_s") / med(ref, "tokens_per_s")
    device = ours[0]["device"]
    device = f"cpu ({_cpu_name()}, {os.cpu_count()} cores)" if device == "cpu" else device
    result = {
        "benchmark": "training",
        **provenance(cfg.to_dict()),
        "device": device,
        "method": "each side in its own process, alternating rounds; each side's MFU against a float32 matmul "
                  "peak measured in its own process; ratio of median tokens/s",
        "seq_len": cfg.seq_len,
        "tokens_per_step": tokens_per_step,
        "flops_per_token": fpt,
        "ours": {"tokens_per_s": med(ours, "tokens_per_s"), "mfu": med(ours, "mfu"), "rounds": ours},
        "reference": {"tokens_per_s": med(ref, "tokens_per_s"), "mfu": med(ref, "mfu"), "rounds": ref},
        "ratio_ours_over_reference": ratio,
    }
    slug = "cpu" if device.startswith("cpu") else re.sub(r"[^a-z0-9]+", "_", device.lower()).strip("_")
    path = Path(args.json) if args.json else ROOT / "benchmarks" / "results" / f"training_{args.family}_{slug}.json"
    write_json(path, result)
    print(f"ours / reference = {ratio:.2f}x (median tokens/s); wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
