"""Training N models at once: our one vmapped step against PyTorch, each side alone.

The workload of a study is many small models (seeds, learning rates, data settings). Each
side trains N models of one configuration (the tiny add preset by default, seeds 0..N-1, each
its own batch stream) for the same steps, in **its own process**, and reports the aggregate
training tokens/s (N x tokens per step x steps / seconds) and its model FLOP utilisation
against a float32 matmul peak measured in that process:

* **ours**: ``training.make_group_step`` (``jax.vmap`` of one model's step over weights,
  optimiser states, learning rates and batches, one jit), the code ``superpose train --seeds``
  runs;
* **sequential**: PyTorch ``transformers`` ``LlamaForCausalLM`` (the same configuration as
  benchmarks/training.py's reference), the N models trained one after another in one process
  (each step: model 1, model 2, ..., model N), its ordinary way;
* **torch.func**: the N models' weights stacked (``torch.func.stack_module_state``), loss and
  gradients by ``vmap(grad(functional_call(...)))``, clipping and AdamW applied to the stacked
  tensors by hand (the same update rule). Skipped, with the reason recorded, if it fails.

Sides alternate over ``--rounds``; ratios are of the median rates. A measurement is refused
(exit 1, the reasons printed) when a utilisation is not in (0, 1], a figure is not finite, a
loss does not fall over the timed steps, the sides' parameter counts differ, or other
processes kept more than ``--max-load`` cores busy just before a side (contention would slow
one side alone).

    python benchmarks/training_many.py                       # N = 1, 4, 8, CPU
    python benchmarks/training_many.py --models 1,4 --rounds 1
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "benchmarks"))  # benchmarks/training.py: the peak and the CPU's name

SIDES = ("ours", "sequential", "torchfunc")


def _config(args):
    from empirical import training

    return training.PRESETS[args.preset](family=args.family, seed=0)


def _peak_torch(n: int) -> float:
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    a = torch.randn(n, n)
    a @ a
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - t)
    return 2.0 * n**3 / best


# --------------------------------------------------------------------------- the sides


def side_ours(cfg, n_models: int, steps: int, warmup: int, matmul_n: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from empirical import training
    from empirical.training.loop import _stack

    from training import peak_jax

    peak = peak_jax(matmul_n)
    cfgs = [cfg.replace(seed=s) for s in range(n_models)]
    state = _stack([training.init_state(c) for c in cfgs], jnp)
    n_params = training.param_count(jax.tree_util.tree_map(lambda a: a[0], state["params"]))
    lrs = np.asarray([c.lr for c in cfgs], np.float32)
    step = training.make_group_step(training.shared_config(cfg))
    batches = [_stack([training.device_batch(training.make_batch(c, s + 1)) for c in cfgs])
               for s in range(warmup + steps)]
    batches = [jax.tree_util.tree_map(jnp.asarray, b) for b in batches]
    first = None
    for i in range(warmup):
        state, m = step(state, lrs, batches[i])
        first = float(m["loss"].mean()) if first is None else first
    jax.block_until_ready(state)
    t = time.perf_counter()
    for i in range(warmup, warmup + steps):
        state, m = step(state, lrs, batches[i])
    jax.block_until_ready((state, m))
    elapsed = time.perf_counter() - t
    return {"side": "ours", "seconds": elapsed, "peak_flops_per_s": peak, "params_per_model": n_params,
            "first_loss": first, "last_loss": float(m["loss"].mean()), "jax": jax.__version__}


def _torch_models(cfg, n_models: int):
    import torch
    from training import llama_config
    from transformers import LlamaForCausalLM

    lcfg = llama_config(cfg)
    models = []
    for s in range(n_models):
        torch.manual_seed(s)
        models.append(LlamaForCausalLM(lcfg).train())
    return models


def _torch_batches(cfg, n_models: int, total: int):
    import numpy as np
    import torch

    from empirical import training

    out = []
    for s in range(total):
        bs = [training.make_batch(cfg.replace(seed=k), s + 1) for k in range(n_models)]
        out.append([(torch.from_numpy(b["tokens"].astype(np.int64)), torch.from_numpy(b["mask"])) for b in bs])
    return out


def _masked_loss(logits, tokens, mask):
    import torch

    nll = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]),
                                            tokens[:, 1:].reshape(-1), reduction="none")
    msk = mask[:, 1:].reshape(-1)
    return (nll * msk).sum() / msk.sum()


def side_sequential(cfg, n_models: int, steps: int, warmup: int, matmul_n: int) -> dict:
    import torch
    import transformers

    peak = _peak_torch(matmul_n)
    models = _torch_models(cfg, n_models)
    opts = []
    for model in models:
        decay = [p for p in model.parameters() if p.ndim >= 2]
        no_decay = [p for p in model.parameters() if p.ndim < 2]
        opts.append(torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                       {"params": no_decay, "weight_decay": 0.0}],
                                      lr=cfg.lr, betas=(cfg.b1, cfg.b2), eps=cfg.eps))
    batches = _torch_batches(cfg, n_models, warmup + steps)

    def step(i):
        losses = []
        for model, opt, (tokens, mask) in zip(models, opts, batches[i]):
            loss = _masked_loss(model(input_ids=tokens[:, :-1]).logits, tokens, mask)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            opt.step()
            losses.append(float(loss.detach()))
        return sum(losses) / len(losses)

    first = [step(i) for i in range(warmup)][0]
    t = time.perf_counter()
    for i in range(warmup, warmup + steps):
        last = step(i)
    elapsed = time.perf_counter() - t
    return {"side": "sequential", "seconds": elapsed, "peak_flops_per_s": peak,
            "params_per_model": sum(p.numel() for p in models[0].parameters()), "first_loss": first,
            "last_loss": last, "torch": torch.__version__, "transformers": transformers.__version__,
            "threads": torch.get_num_threads()}


def side_torchfunc(cfg, n_models: int, steps: int, warmup: int, matmul_n: int) -> dict:
    import torch
    from torch.func import functional_call, grad_and_value, stack_module_state, vmap

    peak = _peak_torch(matmul_n)
    models = _torch_models(cfg, n_models)
    params, buffers = stack_module_state(models)
    params = {k: v.detach().clone() for k, v in params.items()}
    base = models[0].to("meta")
    decay = {k: v.ndim >= 3 for k, v in params.items()}  # stacked: a matrix has 3 dims here
    m1 = {k: torch.zeros_like(v) for k, v in params.items()}
    m2 = {k: torch.zeros_like(v) for k, v in params.items()}
    batches = _torch_batches(cfg, n_models, warmup + steps)

    def loss_fn(p, b, tokens, mask):
        logits = functional_call(base, (p, b), (tokens[:, :-1],)).logits
        return _masked_loss(logits, tokens, mask)

    grads_of = vmap(grad_and_value(loss_fn), in_dims=(0, 0, 0, 0))
    count = [0]

    def step(i):
        tokens = torch.stack([t for t, _ in batches[i]])
        mask = torch.stack([m for _, m in batches[i]])
        grads, losses = grads_of(params, buffers, tokens, mask)
        norms = torch.sqrt(sum((g.reshape(n_models, -1) ** 2).sum(1) for g in grads.values()))  # per model
        scale = torch.clamp(cfg.clip / (norms + 1e-6), max=1.0)
        count[0] += 1
        c1, c2 = 1 - cfg.b1 ** count[0], 1 - cfg.b2 ** count[0]
        with torch.no_grad():
            for k, p in params.items():
                g = grads[k] * scale.reshape(-1, *([1] * (p.ndim - 1)))
                m1[k].mul_(cfg.b1).add_(g, alpha=1 - cfg.b1)
                m2[k].mul_(cfg.b2).addcmul_(g, g, value=1 - cfg.b2)
                if decay[k]:
                    p.mul_(1 - cfg.lr * cfg.weight_decay)
                p.addcdiv_(m1[k] / c1, (m2[k] / c2).sqrt_().add_(cfg.eps), value=-cfg.lr)
        return float(losses.mean())

    first = [step(i) for i in range(warmup)][0]
    t = time.perf_counter()
    for i in range(warmup, warmup + steps):
        last = step(i)
    elapsed = time.perf_counter() - t
    per_model = sum(v[0].numel() for v in params.values())
    return {"side": "torchfunc", "seconds": elapsed, "peak_flops_per_s": peak, "params_per_model": per_model,
            "first_loss": first, "last_loss": last, "torch": torch.__version__, "threads": torch.get_num_threads()}


# --------------------------------------------------------------------------- the orchestrator


def busy_cores(seconds: float = 1.0) -> float:
    """Cores kept busy by other processes over ``seconds`` (from /proc/stat): the contention a
    side would start under. The load average would count the previous side's own work."""
    def sample():
        with open("/proc/stat") as f:
            fields = [float(x) for x in f.readline().split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    (t0, i0), _ = sample(), time.sleep(seconds)
    t1, i1 = sample()
    return (os.cpu_count() or 1) * (1.0 - (i1 - i0) / max(t1 - t0, 1e-9))


def _run_side(side: str, n_models: int, argv: list[str]) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, __file__, "--side", side, "--n", str(n_models), *argv],
                         capture_output=True, text=True, env=env)
    if out.returncode != 0:
        return {"side": side, "error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def sanity(rows: list[dict], max_load: float) -> list[str]:
    """The reasons a measurement is impossible or contended (empty when it is plausible).
    ``rows``: every finished side's record (``mfu``, ``tokens_per_s``, losses, ``busy_before``,
    ``params_per_model``, ``n_models``, ``busy_before``)."""
    problems = []
    for r in rows:
        name = f"{r['side']} N={r['n_models']}"
        figures = [r.get(k) for k in ("seconds", "tokens_per_s", "mfu", "first_loss", "last_loss")]
        if not all(isinstance(x, (int, float)) and math.isfinite(x) for x in figures):
            problems.append(f"{name}: a figure is not finite")
            continue
        if not 0 < r["mfu"] <= 1:
            problems.append(f"{name}: utilisation {r['mfu']:.2f} of its own measured peak is impossible")
        if r["last_loss"] >= r["first_loss"]:
            problems.append(f"{name}: the loss did not fall ({r['first_loss']:.3f} -> {r['last_loss']:.3f})")
        if r.get("busy_before") is not None and r["busy_before"] > max_load:
            problems.append(f"{name}: {r['busy_before']:.2f} cores busy before it ran (another job was running)")
    counts = {r["params_per_model"] for r in rows if "params_per_model" in r}
    if len(counts) > 1:
        problems.append(f"the sides train models of different sizes: {sorted(counts)} parameters")
    return problems


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--family", default="add")
    p.add_argument("--models", default="1,4,8", help="numbers of models N (comma list)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per side")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps (compilation)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--matmul-n", type=int, default=1024)
    p.add_argument("--max-load", type=float, default=0.3,
                   help="refuse a side started while other processes kept more cores busy than this")
    p.add_argument("--json", default=None)
    p.add_argument("--side", choices=SIDES, default=None, help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    cfg = _config(args)
    if args.side is not None:
        fn = {"ours": side_ours, "sequential": side_sequential, "torchfunc": side_torchfunc}[args.side]
        print(json.dumps(fn(cfg, args.n, args.steps, args.warmup, args.matmul_n)))
        return 0

    from empirical import training
    from empirical.results import provenance, write_json

    from training import _cpu_name

    models = [int(x) for x in args.models.split(",")]
    child = ["--preset", args.preset, "--family", args.family, "--steps", str(args.steps), "--warmup",
             str(args.warmup), "--matmul-n", str(args.matmul_n)]
    tokens_per_step = cfg.batch_size * cfg.seq_len
    fpt = training.flops_per_token(cfg.model, cfg.seq_len)
    rows, skipped = [], {}
    for r in range(args.rounds):
        for n in models:
            for side in SIDES:
                if side in skipped:
                    continue
                load = busy_cores()
                res = _run_side(side, n, child)
                if "error" in res:
                    skipped[side] = res["error"]
                    print(f"{side}: skipped ({res['error']})", flush=True)
                    continue
                res.update(n_models=n, round=r + 1, busy_before=load)
                res["tokens_per_s"] = n * args.steps * tokens_per_step / res["seconds"]
                res["mfu"] = fpt * res["tokens_per_s"] / res["peak_flops_per_s"]
                rows.append(res)
                print(f"round {r + 1} N={n} {side:10s}: {res['tokens_per_s']:9.0f} tokens/s, "
                      f"MFU {res['mfu']:.1%}, cores busy before {load:.2f}", flush=True)
    problems = sanity(rows, args.max_load)
    if problems:
        print("refusing to write a result:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    med = {(side, n): statistics.median(x["tokens_per_s"] for x in rows if x["side"] == side and x["n_models"] == n)
           for side in SIDES if side not in skipped for n in models}
    per_n = {}
    for n in models:
        entry = {side: {"tokens_per_s": med[(side, n)],
                        "mfu": statistics.median(x["mfu"] for x in rows if x["side"] == side and x["n_models"] == n)}
                 for side in SIDES if side not in skipped}
        refs = [s for s in ("sequential", "torchfunc") if s in entry]
        best = max(refs, key=lambda s: entry[s]["tokens_per_s"])
        entry["best_pytorch"] = best
        entry["ratio_ours_over_best_pytorch"] = entry["ours"]["tokens_per_s"] / entry[best]["tokens_per_s"]
        per_n[str(n)] = entry
    device = f"cpu ({_cpu_name()}, {os.cpu_count()} cores)"
    result = {"benchmark": "training_many", **provenance(cfg.to_dict()), "device": device,
              "method": "each side in its own process per N, alternating; aggregate tokens/s of N models; MFU "
                        "against a float32 matmul peak measured in each process; ratios of medians",
              "tokens_per_step_per_model": tokens_per_step, "flops_per_token": fpt, "skipped": skipped,
              "models": per_n, "rounds": rows}
    slug = "cpu"
    path = Path(args.json) if args.json else ROOT / "benchmarks" / "results" / f"training_many_{args.family}_{slug}.json"
    write_json(path, result)
    for n, e in per_n.items():
        print(f"N={n}: ours / {e['best_pytorch']} = {e['ratio_ours_over_best_pytorch']:.2f}x")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
