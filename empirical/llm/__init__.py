"""Real LLMs in Flax (Llama family incl. SmolLM2, Qwen2), loaded offline, and the probe harness."""

from empirical.llm.config import LlamaConfig, config_from_hf, llama3_8b, tiny
from empirical.llm.loading import LLM, load_model, model_from_params, smollm2_path
from empirical.llm.model import Llama, capture_names, init_params
from empirical.llm.scoring import (
    CandidateScores,
    Continuations,
    enumerate_continuations,
    score_candidates,
    score_candidates_naive,
    score_prompts,
)

__all__ = [
    "LLM", "LlamaConfig", "Llama", "CandidateScores", "Continuations", "capture_names",
    "config_from_hf", "enumerate_continuations", "init_params", "llama3_8b", "load_model",
    "model_from_params", "score_candidates", "score_candidates_naive", "score_prompts",
    "smollm2_path", "tiny",
]
