"""Where one model's training step spends its time (N = 1, the tiny add preset): variants of
the step timed against the shipped step in one process, a per-operation profile of the step,
XLA CPU flags, and the PyTorch reference (issue 21, part 2).

Parts, each in its own process (``--part``), run one after another by the orchestrator:

* **variants** (one process): every variant is compiled once, then timed in rounds that
  alternate between the variants (the order rotated each round), so drift and contention from
  other processes hit all alike; medians over rounds and the ratio to the baseline's median.
  Variants are built in this process only (the library is not changed): a different jit
  wrapper, or a patched attention module or loss traced while the patch is in place. Each
  variant's first step (from the same initial weights and batch) must give the baseline's loss
  and gradient norm, and each patched model the original's logits (float32 tolerance), or the
  variant is refused. Each carries its compiled program's ``cost_analysis()`` (flops, bytes)
  and its number of top-level operations (thunks the XLA CPU runtime executes one by one);
* **profile** (one process, ``--xla_cpu_enable_xprof_traceme=true``): the shipped step under
  ``jax.profiler.trace``; each executed operation's time attributed, through its HLO metadata,
  to a part of the model (embedding, attention, MLP, norms, unembedding, loss, optimiser) and a
  direction (forward, backward, update);
* **flags**: the shipped step in a fresh process per XLA flag (``XLA_FLAGS`` must be set before
  JAX starts) against a process without flags, alternating, ``--flag-rounds`` times; a flag
  this jaxlib refuses is recorded with its error;
* **torch**: PyTorch ``transformers`` LlamaForCausalLM's step (benchmarks/training_many.py's
  ``side_sequential`` with N = 1, its threads set to the cores this process may use), once per
  flag round, between the flag processes.

Run it pinned to the cores it may use (``taskset -c 1``); the JSON records the number of cores
and the load average before and after. Writes ``benchmarks/results/training_variants_cpu.json``.

    taskset -c 1 python benchmarks/training_variants.py
    taskset -c 1 python benchmarks/training_variants.py --rounds 1 --steps 5 --flag-rounds 1   # smoke
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime as _dt
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # before this script's folder (its construction.py would shadow the package)
sys.path.insert(1, str(ROOT / "benchmarks"))  # training_many.py, training.py

#: XLA CPU flags tried one at a time (each in its own process). Names from this jaxlib's flag table.
FLAGS = (
    "--xla_cpu_multi_thread_eigen=false",
    "--xla_cpu_enable_fast_math=true",
    "--xla_cpu_use_thunk_runtime=false",
    "--xla_cpu_use_xnnpack=false",
    "--xla_cpu_experimental_ynn_fusion_type=",
    "--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT",
    "--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY",
    "--xla_cpu_experimental_onednn_custom_call=true",
    "--xla_cpu_opt_preset=CPU_OPT_PRESET_FAST_RUNTIME",
    "--xla_cpu_use_fusion_emitters=false",
    "--xla_cpu_prefer_vector_width=512",
)

#: The in-process variants, in the order they are reported.
VARIANTS = (
    "baseline", "baseline_aot", "no_vmap", "no_donation",
    "attn_dot_product_attention", "attn_dpa_heads_major_rope",
    "attn_fused_qkv_einsum", "attn_2d_matmuls", "attn_token_major_einsums", "attn_additive_causal_mask",
    "loss_one_hot", "loss_logsumexp", "loss_optax_integer_labels",
)

DESCRIPTIONS = {
    "baseline": "make_train_step(cfg) as shipped: vmap of _step_fn with N = 1 inside one jit, state donated",
    "baseline_aot": "the shipped jit object (_jitted_step(cfg)) lowered and compiled ahead of time and called "
                    "directly: the same program as baseline without make_train_step's call path",
    "no_vmap": "jax.jit(_step_fn(shared_config(cfg)), donate_argnums=0), lr a scalar",
    "no_donation": "the shipped program (vmap N = 1) jitted without donating the state",
    "attn_dot_product_attention": "attention through jax.nn.dot_product_attention(implementation='xla', "
                                  "is_causal=True) on [batch, length, heads, dim]; RoPE in that layout",
    "attn_dpa_heads_major_rope": "as attn_dot_product_attention, but q, k, v projected and rotated heads-major "
                                 "(as shipped) and transposed to [batch, length, heads, dim] for it",
    "attn_fused_qkv_einsum": "the query, key and value projections as one einsum against the three weights "
                             "concatenated on the heads axis, then split",
    "attn_2d_matmuls": "projections as 2-D matmuls ([b*l, d] @ [d, h*k]) then reshaped heads-major; output "
                       "projection as [b*l, h*v] @ [h*v, d]",
    "attn_token_major_einsums": "all attention einsums in the [batch, length, heads, dim] layout (no "
                                "heads-major transposes); RoPE in that layout",
    "attn_additive_causal_mask": "causal mask as an added constant bias (0 / float32 min) instead of "
                                 "jnp.where",
    "loss_one_hot": "nll = -(one_hot(target) * log_softmax).sum(-1) instead of take_along_axis",
    "loss_logsumexp": "nll = logsumexp(logits) - (one_hot(target) * logits).sum(-1) (no log_softmax array)",
    "loss_optax_integer_labels": "optax.softmax_cross_entropy_with_integer_labels(logits, target)",
}


def _cores() -> int:
    return len(os.sched_getaffinity(0))


def _emit(payload: dict):
    print("@@RESULT " + json.dumps(payload), flush=True)


def _parse(stdout: str) -> dict | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith("@@RESULT "):
            return json.loads(line[len("@@RESULT "):])
    return None


# --------------------------------------------------------------------------- shared (child side)


def _setup(steps: int, warmup: int):
    import jax.numpy as jnp

    from empirical import training

    cfg = training.tiny("add")
    batches = [{k: jnp.asarray(v) for k, v in training.device_batch(training.make_batch(cfg, s + 1)).items()}
               for s in range(warmup + steps)]
    return cfg, batches


def _timed(step, state, batches, start: int, steps: int):
    """Run ``steps`` steps from ``batches[start:]``; (state, wall ms/step, cpu ms/step)."""
    import jax

    jax.block_until_ready(state)
    t, c = time.perf_counter(), time.process_time()
    for i in range(start, start + steps):
        state, m = step(state, batches[i])
    jax.block_until_ready((state, m))
    return state, 1000 * (time.perf_counter() - t) / steps, 1000 * (time.process_time() - c) / steps


def _n_thunks(hlo_text: str) -> int:
    """Top-level operations of the compiled entry computation that do work (what the thunk
    runtime executes one by one): every instruction but parameters, constants, tuples,
    get-tuple-elements and bitcasts."""
    entry = hlo_text[hlo_text.index("\nENTRY"):]
    ops = re.findall(r"^\s+(?:ROOT )?%\S+ = .*? ([a-z][a-z0-9-]*)\(", entry, flags=re.M)
    return sum(op not in ("parameter", "constant", "tuple", "get-tuple-element", "bitcast") for op in ops)


def _costs(compiled) -> dict:
    ca = compiled.cost_analysis()
    ca = ca[0] if isinstance(ca, (list, tuple)) else (ca or {})
    return {"flops": ca.get("flops"), "bytes_accessed": ca.get("bytes accessed"),
            "transcendentals": ca.get("transcendentals"), "top_level_ops": _n_thunks(compiled.as_text())}


# --------------------------------------------------------------------------- the variants (child side)


def _attention_variant(kind: str):
    """A subclass of construction.parts.Attention with the same parameters (names, shapes) and
    the same function, computed another way (causal, whole sequence; what training calls)."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    from construction import parts
    from construction.primitives import apply_rope, rope_tables

    class Variant(parts.Attention):
        @nn.compact
        def __call__(self, x, tap=parts._untapped, last_only: bool = False):
            assert not last_only and self.num_kv_heads == self.num_heads and self.dtype == jnp.float32
            h, d = self.num_heads, x.shape[-1]
            init = nn.initializers.normal(0.02)
            wq = self.param("query", init, (d, h, self.qk_dim))
            wk = self.param("key", init, (d, h, self.qk_dim))
            wv = self.param("value", init, (d, h, self.v_dim))
            wo = self.param("out", init, (h, self.v_dim, d))
            b, length = x.shape[0], x.shape[1]
            pos = jnp.arange(length)
            causal = pos[None, :] <= pos[:, None]

            def rope_tm(t):  # RoPE on [b, l, h, k]
                cos, sin = rope_tables(pos, t.shape[-1], self.rope_theta)
                return apply_rope(t, cos[:, None, :], sin[:, None, :])

            def rope_hm(t):  # RoPE on [b, h, l, k] (as shipped)
                return parts.rope(t, pos, self.rope_theta)

            if kind == "dpa":
                q, k, v = (jnp.einsum("bld,dhk->blhk", x, w) for w in (wq, wk, wv))
                if self.rope_theta is not None:
                    q, k = rope_tm(q), rope_tm(k)
                z = jax.nn.dot_product_attention(q, k, v, scale=self.scale, is_causal=True, implementation="xla")
                return jnp.einsum("blhk,hkd->bld", z, wo)
            if kind == "dpa_hm":
                q, k, v = (jnp.einsum("bld,dhk->bhlk", x, w) for w in (wq, wk, wv))
                if self.rope_theta is not None:
                    q, k = rope_hm(q), rope_hm(k)
                tm = lambda t: t.transpose(0, 2, 1, 3)  # noqa: E731
                z = jax.nn.dot_product_attention(tm(q), tm(k), tm(v), scale=self.scale, is_causal=True,
                                                 implementation="xla")
                return jnp.einsum("blhk,hkd->bld", z, wo)
            if kind == "token_major":
                q, k, v = (jnp.einsum("bld,dhk->blhk", x, w) for w in (wq, wk, wv))
                if self.rope_theta is not None:
                    q, k = rope_tm(q), rope_tm(k)
                s = jnp.einsum("bqhk,bshk->bhqs", q, k)
                p = parts.attention_probs(s, causal, self.scale)
                z = jnp.einsum("bhqs,bshk->bqhk", p, v)
                return jnp.einsum("bqhk,hkd->bqd", z, wo)
            if kind == "fused_qkv":
                qkv = jnp.einsum("bld,dhk->bhlk", x, jnp.concatenate([wq, wk, wv], axis=1))
                q, k, v = qkv[:, :h], qkv[:, h:2 * h], qkv[:, 2 * h:]
            elif kind == "matmul2d":
                x2 = x.reshape(b * length, d)
                hm = lambda t, w: (x2 @ w.reshape(d, -1)).reshape(b, length, h, -1).transpose(0, 2, 1, 3)  # noqa: E731
                q, k, v = hm(x2, wq), hm(x2, wk), hm(x2, wv)
            else:  # "additive_mask": projections as shipped
                q, k, v = (jnp.einsum("bld,dhk->bhlk", x, w) for w in (wq, wk, wv))
            if self.rope_theta is not None:
                q, k = rope_hm(q), rope_hm(k)
            s = parts.scores(q, k)
            if kind == "additive_mask":
                bias = jnp.where(causal, 0.0, jnp.finfo(jnp.float32).min).astype(jnp.float32)
                p = jax.nn.softmax(s * jnp.float32(self.scale) + bias, axis=-1)
            else:
                p = parts.attention_probs(s, causal, self.scale)
            z = parts.mix(tap("attn.pattern", p), v)
            if kind == "matmul2d":
                return (z.transpose(0, 2, 1, 3).reshape(b * length, -1) @ wo.reshape(-1, d)).reshape(b, length, d)
            return jnp.einsum("bhqk,hkd->bqd", z, wo)

    return Variant


def _loss_variant(kind: str):
    """A replacement of empirical.training.step._sums (hard targets; the same five outputs)."""
    import jax
    import jax.numpy as jnp
    import optax

    from construction.transformer import run

    def sums(model, params, batch):
        assert "soft" not in batch
        tokens = batch["tokens"]
        logits, _ = run(model, params, tokens[:, :-1])
        logits = logits.astype(jnp.float32)
        target = tokens[:, 1:]
        if kind == "one_hot":
            logp = jax.nn.log_softmax(logits, axis=-1)
            nll = -(jax.nn.one_hot(target, logits.shape[-1], dtype=logits.dtype) * logp).sum(-1)
        elif kind == "logsumexp":
            nll = (jax.nn.logsumexp(logits, axis=-1)
                   - (jax.nn.one_hot(target, logits.shape[-1], dtype=logits.dtype) * logits).sum(-1))
        else:
            nll = optax.softmax_cross_entropy_with_integer_labels(logits, target)
        m, am = batch["mask"][:, 1:], batch["answer_mask"][:, 1:]
        hit = (jnp.argmax(logits, axis=-1) == target).astype(jnp.float32)
        return (nll * m).sum(), m.sum(), (hit * am).sum(), am.sum(), hit * am

    return sums


@contextlib.contextmanager
def _patched(variant: str):
    """The library patched, in this process, while a variant is traced."""
    from construction import transformer
    from empirical.training import step as S

    attn = {"attn_dot_product_attention": "dpa", "attn_dpa_heads_major_rope": "dpa_hm",
            "attn_fused_qkv_einsum": "fused_qkv", "attn_2d_matmuls": "matmul2d",
            "attn_token_major_einsums": "token_major", "attn_additive_causal_mask": "additive_mask"}
    loss = {"loss_one_hot": "one_hot", "loss_logsumexp": "logsumexp", "loss_optax_integer_labels": "optax"}
    saved = (transformer.Attention, S._sums)
    try:
        if variant in attn:
            transformer.Attention = _attention_variant(attn[variant])
        if variant in loss:
            S._sums = _loss_variant(loss[variant])
        yield
    finally:
        transformer.Attention, S._sums = saved


def _build(cfg, variant: str):
    """The jitted ``(state, batch) -> (state, metrics)`` of a variant (not yet traced)."""
    import jax
    import jax.numpy as jnp

    from empirical.training import step as S

    if variant == "baseline_aot":
        return S._jitted_step(cfg)
    fn = S._step_fn(S.shared_config(cfg))
    if variant == "no_vmap":
        def step(state, batch):
            return fn(state, jnp.asarray(cfg.lr, jnp.float32), batch)
        return jax.jit(step, donate_argnums=(0,))
    group = jax.vmap(fn)  # exactly _jitted_step's body
    one = lambda tree: jax.tree_util.tree_map(lambda a: a[None], tree)  # noqa: E731
    first = lambda tree: jax.tree_util.tree_map(lambda a: a[0], tree)  # noqa: E731

    def step(state, batch):
        new, metrics = group(one(state), jnp.full((1,), cfg.lr, jnp.float32), one(batch))
        return first(new), first(metrics)

    return jax.jit(step, donate_argnums=() if variant == "no_donation" else (0,))


def _logits_check(cfg, variant: str, params, tokens) -> tuple[float, float]:
    """Max |logits(variant) - logits(shipped)| on one batch (the model patched in-process)."""
    import jax
    import numpy as np

    from construction.transformer import run

    f = lambda p, t: run(cfg.model, p, t[:, :-1])[0]  # noqa: E731
    ref = np.asarray(jax.jit(f)(params, tokens))
    with _patched(variant):
        out = np.asarray(jax.jit(lambda p, t: f(p, t))(params, tokens))
    return float(np.abs(out - ref).max()), float(np.abs(ref).max())


def part_variants(args) -> dict:
    import jax
    import numpy as np

    from empirical import training
    from empirical.training import step as S

    cfg, batches = _setup(args.steps, args.warmup)
    names = [v for v in VARIANTS if v in args.variants.split(",")] if args.variants else list(VARIANTS)
    if "baseline" not in names:
        names.insert(0, "baseline")
    steps, states, info, refused = {}, {}, {}, {}
    params0 = training.init_state(cfg)["params"]
    for name in names:
        t = time.perf_counter()
        state = training.init_state(cfg)
        entry = {"description": DESCRIPTIONS[name]}
        try:
            if name.startswith("attn_"):
                diff, scale = _logits_check(cfg, name, params0, batches[0]["tokens"])
                entry["logits_max_abs_diff"], entry["logits_max_abs"] = diff, scale
                if not diff <= 1e-4 * max(1.0, scale):
                    raise ValueError(f"logits differ from the shipped model's by {diff:.3g}")
            if name == "baseline":
                step = training.make_train_step(cfg)
                shapes = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), state)
                state, m = step(state, batches[0])
                # the same jit object's program, for its costs
                entry.update(_costs(S._jitted_step(cfg).lower(shapes, batches[0]).compile()))
                state = training.init_state(cfg)
            else:
                with _patched(name):
                    compiled = _build(cfg, name).lower(state, batches[0]).compile()
                entry.update(_costs(compiled))
                step = compiled
            state, m = step(state, batches[0])
            entry["first_step"] = {"loss": float(m["loss"]), "grad_norm": float(m["grad_norm"])}
            for i in range(1, args.warmup):
                state, m = step(state, batches[i])
            jax.block_until_ready(state)
        except Exception as e:  # noqa: BLE001 (a variant that fails is recorded, not fatal)
            refused[name] = f"{type(e).__name__}: {e}"[:500]
            print(f"{name}: refused ({refused[name]})", flush=True)
            continue
        entry["compile_and_warmup_s"] = time.perf_counter() - t
        if name != "baseline":
            ref = info["baseline"]["first_step"]
            for k in ("loss", "grad_norm"):
                rel = abs(entry["first_step"][k] - ref[k]) / abs(ref[k])
                entry["first_step"][f"{k}_rel_diff"] = rel
                if rel > 1e-4:
                    refused[name] = f"first step's {k} differs from the baseline's by {rel:.2e} (relative)"
            if name in refused:
                print(f"{name}: refused ({refused[name]})", flush=True)
                continue
        steps[name], states[name], info[name] = step, state, entry
        print(f"{name}: compiled and warmed up in {entry['compile_and_warmup_s']:.1f} s, "
              f"{entry.get('top_level_ops')} top-level ops", flush=True)
    timed = [n for n in names if n in steps]
    wall = collections.defaultdict(list)
    cpu = collections.defaultdict(list)
    for r in range(args.rounds):
        order = timed[r % len(timed):] + timed[:r % len(timed)]
        for name in order:
            states[name], w, c = _timed(steps[name], states[name], batches, args.warmup, args.steps)
            wall[name].append(w)
            cpu[name].append(c)
        print(f"round {r + 1}: " + ", ".join(f"{n} {wall[n][-1]:.0f}" for n in timed) + " ms", flush=True)
    base_w, base_c = statistics.median(wall["baseline"]), statistics.median(cpu["baseline"])
    for name in timed:
        e = info[name]
        e["wall_ms_per_step"], e["cpu_ms_per_step"] = wall[name], cpu[name]
        e["median_wall_ms"], e["median_cpu_ms"] = statistics.median(wall[name]), statistics.median(cpu[name])
        e["ratio_to_baseline_wall"] = e["median_wall_ms"] / base_w
        e["ratio_to_baseline_cpu"] = e["median_cpu_ms"] / base_c
        # per round, against the baseline of the same round (pairs hit by the same contention)
        e["per_round_ratio_cpu"] = [c / b for c, b in zip(cpu[name], cpu["baseline"])]
        e["median_per_round_ratio_cpu"] = statistics.median(e["per_round_ratio_cpu"])
    dev = jax.devices()[0]
    return {"variants": info, "refused": refused, "device": f"{dev.platform}:{dev.device_kind}",
            "jax": jax.__version__, "cores": _cores()}


# --------------------------------------------------------------------------- the profile (child side)


def _classify(op_name: str) -> tuple[str, str]:
    """(part, direction) of an HLO instruction from its metadata op_name."""
    if not op_name:
        return "unlabelled", "unlabelled"
    direction = "backward" if "transpose(" in op_name else "forward" if "jvp(" in op_name else "update"
    if direction == "update":
        return "optimizer (clip + AdamW + apply)", direction
    if "/attn/" in op_name:
        part = "attention (incl. RoPE, projections)"
    elif "/mlp/" in op_name:
        part = "MLP (SwiGLU)"
    elif "norm_" in op_name:
        part = "norms"
    elif "jit(_take)" in op_name:
        part = "embedding"
    elif "Transformer" in op_name and "block_" in op_name:
        part = "residual adds"
    elif "Transformer" in op_name:
        part = "unembedding"
    else:
        part = "loss (log_softmax, gather, masks, metrics)"
    return part, direction


def part_profile(args) -> dict:
    import glob

    import jax
    from jax.profiler import ProfileData

    from empirical import training
    from empirical.training import step as S

    cfg, batches = _setup(args.steps, args.warmup)
    state = training.init_state(cfg)
    compiled = S._jitted_step(cfg).lower(state, batches[0]).compile()  # the shipped program
    text = compiled.as_text()
    entry = text[text.index("\nENTRY"):]
    meta, operands, kinds = {}, {}, {}
    for m in re.finditer(r"^\s+(?:ROOT )?%(\S+) = (.*)$", entry, flags=re.M):
        op = re.search(r'op_name="([^"]*)"', m.group(2))
        meta[m.group(1)] = op.group(1) if op else ""
        kind = re.search(r" ([a-z][a-z0-9-]*)\(", m.group(2))
        kinds[m.group(1)] = kind.group(1) if kind else ""
        operands[m.group(1)] = re.findall(r"%([\w.\-]+)", m.group(2).split("), ")[0])
    labels = {k: _classify(v) for k, v in meta.items()}
    inferred = set()
    for k in meta:  # copies of the incoming state: the vmap / donation bookkeeping
        if not meta[k] and kinds[k] == "copy" and all(kinds.get(o) == "parameter" for o in operands[k]):
            labels[k] = ("state copies", "update")
            inferred.add(k)
    consumers = collections.defaultdict(list)
    for k, ops in operands.items():
        for o in ops:
            consumers[o].append(k)
    for _ in range(8):  # ops without metadata (library fusions, bare dots): their producers' label, else consumers'
        for k in meta:
            if labels[k][0] != "unlabelled" or kinds[k] in ("parameter", "constant"):
                continue
            near = [labels[o] for o in operands[k] if labels.get(o, ("unlabelled",))[0] not in ("unlabelled",)
                    and kinds.get(o) not in ("parameter", "constant")]
            near = near or [labels[c] for c in consumers[k] if labels[c][0] != "unlabelled"]
            if near:  # an op that reads a backward value is backward
                labels[k] = next((x for x in near if x[1] == "backward"), near[0])
                inferred.add(k)
    for i in range(args.warmup):
        state, _ = compiled(state, batches[i])
    jax.block_until_ready(state)
    out = tempfile.mkdtemp(prefix="tv_trace_")
    t = time.perf_counter()
    with jax.profiler.trace(out):
        for i in range(args.warmup, args.warmup + args.steps):
            state, m = compiled(state, batches[i])
        jax.block_until_ready((state, m))
    wall = 1000 * (time.perf_counter() - t) / args.steps
    pb = glob.glob(os.path.join(out, "**", "*.xplane.pb"), recursive=True)
    data = ProfileData.from_file(sorted(pb)[-1])
    shutil.rmtree(out, ignore_errors=True)
    table = collections.defaultdict(float)
    per_op = collections.defaultdict(float)
    executor = 0.0
    events = 0
    inferred_ns = [0.0]
    for plane in data.planes:
        for line in plane.lines:
            for ev in line.events:
                if ev.name == "ThunkExecutor::Execute":
                    executor += ev.duration_ns
                elif ev.name in meta:
                    events += 1
                    table[labels[ev.name]] += ev.duration_ns
                    if ev.name in inferred:
                        inferred_ns[0] += ev.duration_ns
                    per_op[ev.name] += ev.duration_ns
    n = args.steps
    total = sum(table.values())
    rows = [{"part": p, "direction": d, "ms_per_step": v / 1e6 / n, "fraction_of_op_time": v / total}
            for (p, d), v in sorted(table.items(), key=lambda kv: -kv[1])]
    top = [{"op": k, "op_name": meta[k], "label": list(labels[k]), "ms_per_step": v / 1e6 / n, "fraction_of_op_time": v / total}
           for k, v in sorted(per_op.items(), key=lambda kv: -kv[1])[:25]]
    by_dir = collections.defaultdict(float)
    for (p, d), v in table.items():
        by_dir[d] += v / 1e6 / n
    return {"traced_wall_ms_per_step": wall, "executor_ms_per_step": executor / 1e6 / n,
            "op_time_ms_per_step": total / 1e6 / n, "ops_executed_per_step": events / n,
            "top_level_ops": _n_thunks(text), "fraction_of_op_time_labelled_by_neighbours": inferred_ns[0] / total,
            "labelling": "an op's HLO metadata (transpose(...) = backward, jvp(...) = forward, else update); ops without "
                         "metadata (library fusions, bare dots) take their producers' label, else their consumers'",
            "by_direction_ms": dict(by_dir), "breakdown": rows, "top_ops": top,
            "xla_flags": os.environ.get("XLA_FLAGS", "")}


# --------------------------------------------------------------------------- one flag / torch (child side)


def part_flag(args) -> dict:
    import jax

    from empirical import training

    cfg, batches = _setup(args.steps, args.warmup)
    state = training.init_state(cfg)
    step = training.make_train_step(cfg)
    t = time.perf_counter()
    for i in range(args.warmup):
        state, m = step(state, batches[i])
    jax.block_until_ready(state)
    first = float(m["loss"])
    compile_s = time.perf_counter() - t
    state, w, c = _timed(step, state, batches, args.warmup, args.steps)
    _, m = step(state, batches[-1])  # (the state was donated; one more step for the metrics)
    return {"wall_ms": w, "cpu_ms": c, "compile_and_warmup_s": compile_s, "first_loss": first,
            "loss_after": float(m["loss"]), "xla_flags": os.environ.get("XLA_FLAGS", ""), "cores": _cores()}


def part_torch(args) -> dict:
    os.cpu_count = _cores  # training_many sets torch's threads to os.cpu_count(): the cores we may use
    import training_many

    from empirical import training

    cfg = training.tiny("add")
    c = time.process_time()
    res = training_many.side_sequential(cfg, 1, args.steps, args.warmup, 256)
    res["wall_ms"] = 1000 * res.pop("seconds") / args.steps
    res["process_cpu_s_including_setup"] = time.process_time() - c
    res["cores"] = _cores()
    return res


# --------------------------------------------------------------------------- the orchestrator


def _child(part: str, args, xla_flags: str | None = None, cache: str | None = None) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("XLA_FLAGS", None)
    if xla_flags:
        env["XLA_FLAGS"] = xla_flags
    if cache:  # compile once per distinct flag set (XLA_FLAGS are part of the cache key)
        env.update(JAX_COMPILATION_CACHE_DIR=cache, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                   JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    argv = [sys.executable, __file__, "--part", part, "--steps", str(args.steps), "--warmup", str(args.warmup),
            "--rounds", str(args.rounds)]
    if args.variants:
        argv += ["--variants", args.variants]
    t = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=args.child_timeout)
    res = _parse(out.stdout)
    if out.returncode != 0 or res is None:
        lines = [ln for ln in out.stderr.strip().splitlines() if ln.strip()]
        errs = [ln for ln in lines if "rror" in ln or "nknown" in ln or "Check failed" in ln]
        return {"error": (errs or lines or ["failed"])[-1][:500], "returncode": out.returncode}
    res["process_s"] = time.perf_counter() - t
    return res


def _versions() -> dict:
    out = {}
    for pkg in ("jax", "jaxlib", "torch", "transformers", "flax", "optax"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds of the in-process variants")
    p.add_argument("--steps", type=int, default=10, help="timed steps per variant per round")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps (the first compiles)")
    p.add_argument("--flag-rounds", type=int, default=2, help="alternating rounds of the flag processes")
    p.add_argument("--variants", default="", help="comma list of variants (default: all)")
    p.add_argument("--flags", default=None, help="';'-separated XLA flags (default: FLAGS); '' for none")
    p.add_argument("--skip", default="", help="comma list of parts to skip: variants,profile,flags,torch")
    p.add_argument("--child-timeout", type=float, default=1800)
    p.add_argument("--json", default=None)
    p.add_argument("--part", choices=("variants", "profile", "flag", "torch"), default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.part is not None:
        fn = {"variants": part_variants, "profile": part_profile, "flag": part_flag, "torch": part_torch}[args.part]
        _emit(fn(args))
        return 0

    from empirical import training
    from empirical.results import package_version, write_json

    from training import _cpu_name

    cfg = training.tiny("add")
    skip = set(filter(None, args.skip.split(",")))
    flags = FLAGS if args.flags is None else tuple(f for f in args.flags.split(";") if f)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    result = {"benchmark": "training_variants", "config": cfg.to_dict(), "package_version": package_version(),
              "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "device": f"cpu ({_cpu_name()}, {os.cpu_count()} cores on the machine)",
              "cores": _cores(), "versions": _versions(), "n_models": 1,
              "tokens_per_step": cfg.batch_size * cfg.seq_len,
              "settings": {"rounds": args.rounds, "steps": args.steps, "warmup": args.warmup,
                           "flag_rounds": args.flag_rounds},
              "method": "each part in its own process, pinned to the cores this one may use; the in-process variants "
                        "alternate over rounds (order rotated), flags and the PyTorch reference alternate with a "
                        "flag-less process; ms per step are medians over rounds (wall clock and process CPU time); "
                        "ratios are of medians",
              "load_before": load_before}
    if "variants" not in skip:
        print("== variants (one process)", flush=True)
        result["variants"] = _child("variants", args)
        if "error" in result["variants"]:
            print("variants failed:", result["variants"]["error"], flush=True)
    if "profile" not in skip:
        print("== profile", flush=True)
        result["profile"] = _child("profile", args, xla_flags="--xla_cpu_enable_xprof_traceme=true")
        # the same, with XLA's YNNPACK fusions off (the flag that matters most here)
        result["profile_ynn_fusions_off"] = _child(
            "profile", args, xla_flags="--xla_cpu_enable_xprof_traceme=true --xla_cpu_experimental_ynn_fusion_type=")
    runs = collections.defaultdict(list)
    errors = {}
    if "flags" not in skip or "torch" not in skip:
        print("== flags and the PyTorch reference (a process each)", flush=True)
        with tempfile.TemporaryDirectory(prefix="tv_cache_") as cache:
            for r in range(args.flag_rounds):
                order = ["baseline"] + ([] if "flags" in skip else [f for f in flags if f not in errors])
                if "torch" not in skip and "torch" not in errors:
                    order.insert(len(order) // 2 + 1, "torch")
                for what in order:
                    if what == "torch":
                        res = _child("torch", args)
                    else:
                        res = _child("flag", args, xla_flags=None if what == "baseline" else what, cache=cache)
                    if "error" in res:
                        errors[what] = res["error"]
                        print(f"round {r + 1} {what}: error: {res['error']}", flush=True)
                        continue
                    res["round"] = r + 1
                    runs[what].append(res)
                    print(f"round {r + 1} {what}: {res['wall_ms']:.1f} ms/step wall"
                          + (f", {res['cpu_ms']:.1f} cpu" if "cpu_ms" in res else ""), flush=True)
        table = {}
        base = runs.get("baseline")
        for what, rs in runs.items():
            e = {"median_wall_ms": statistics.median(x["wall_ms"] for x in rs), "runs": rs}
            if "cpu_ms" in rs[0]:
                e["median_cpu_ms"] = statistics.median(x["cpu_ms"] for x in rs)
            if base:
                e["ratio_to_baseline_wall"] = e["median_wall_ms"] / statistics.median(x["wall_ms"] for x in base)
                if "median_cpu_ms" in e:
                    e["ratio_to_baseline_cpu"] = e["median_cpu_ms"] / statistics.median(x["cpu_ms"] for x in base)
            table[what] = e
        result["flags"] = {k: v for k, v in table.items() if k != "torch"}
        result["flag_errors"] = {k: v for k, v in errors.items() if k != "torch"}
        if "torch" in table:
            result["pytorch"] = table["torch"]
        elif "torch" in errors:
            result["pytorch"] = {"error": errors["torch"]}
    # ours (best variant) / PyTorch, both as wall ms per step; the best variant's in-process
    # ratio applied to the flag-less process's median, which alternated with PyTorch's.
    var = result.get("variants", {}).get("variants", {})
    if var and "median_wall_ms" in result.get("pytorch", {}) and "baseline" in result.get("flags", {}):
        timed = {k: v for k, v in var.items() if "ratio_to_baseline_cpu" in v}
        best = min(timed, key=lambda k: timed[k]["ratio_to_baseline_cpu"])
        base_ms = result["flags"]["baseline"]["median_wall_ms"]
        torch_ms = result["pytorch"]["median_wall_ms"]
        best_ms = base_ms * timed[best]["ratio_to_baseline_cpu"]
        result["summary"] = {
            "baseline_ms_per_step": base_ms, "pytorch_ms_per_step": torch_ms, "best_variant": best,
            "best_variant_ratio_to_baseline_cpu": timed[best]["ratio_to_baseline_cpu"],
            "best_variant_ms_per_step_estimate": best_ms,
            "speed_baseline_over_pytorch": torch_ms / base_ms,
            "speed_best_variant_over_pytorch": torch_ms / best_ms,
        }
    result["load_after"] = os.getloadavg()
    result["elapsed_s"] = time.perf_counter() - t0
    path = Path(args.json) if args.json else ROOT / "benchmarks" / "results" / "training_variants_cpu.json"
    write_json(path, result)  # atomic: a temporary file renamed over the target
    for name, e in var.items():
        if "median_wall_ms" in e:
            print(f"{name:30s} {e['median_wall_ms']:8.1f} ms wall {e['median_cpu_ms']:8.1f} ms cpu  "
                  f"x{e['ratio_to_baseline_cpu']:.3f} (cpu)")
    if "summary" in result:
        print(json.dumps(result["summary"], indent=1))
    print(f"wrote {path} in {result['elapsed_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
