"""Register llama.cpp's CPU backend for the prebuilt GGML_BACKEND_DL wheel.

The wheel ships one CPU backend per instruction-set level and ggml picks the best one the
CPU *reports*. Some virtual machines report features (AMX, AVX512-FP16) they then fault on,
so the best reported variant can die with SIGILL. We therefore probe variants, best first,
in a child process running a tiny model, and remember the first that works in a cache file.
Set FATHOM_GGML_CPU_VARIANT (e.g. "haswell") to force one. A source-built llama-cpp-python
has no variant files and needs none of this.
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import os
import subprocess
import sys

import llama_cpp

ORDER = ("sapphirerapids", "zen4", "cooperlake", "icelake", "cannonlake", "cascadelake", "skylakex",
         "alderlake", "haswell", "piledriver", "ivybridge", "sandybridge", "sse42", "x64")
_LIB_DIR = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
_loaded: str | None = None


def _ggml():
    lib = ctypes.CDLL(os.path.join(_LIB_DIR, "libggml.so.0"))
    lib.ggml_backend_reg_count.restype = ctypes.c_size_t
    lib.ggml_backend_load.restype = ctypes.c_void_p
    lib.ggml_backend_load.argtypes = [ctypes.c_char_p]
    return lib


def variants() -> list[str]:
    """CPU backend variants shipped with this llama-cpp-python, best first."""
    return [v for v in ORDER if os.path.exists(os.path.join(_LIB_DIR, f"libggml-cpu-{v}.so"))]


def _cache_file() -> str:
    base = os.environ.get("FATHOM_MODELS") or os.path.join(os.path.expanduser("~"), ".cache", "fathom", "models")
    return os.path.join(base, "ggml-cpu-variant.json")


def _cpu_key() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((ln for ln in f if ln.startswith("flags")), "")
    except OSError:
        flags = ""
    return hashlib.sha256((flags + _LIB_DIR).encode()).hexdigest()[:16]


def _probe(variant: str, model: str) -> bool:
    code = ("import sys; from synthesizer.backends import _load_variant; _load_variant(sys.argv[1]); "
            "import llama_cpp; m = llama_cpp.Llama(sys.argv[2], n_ctx=256, n_threads=1, verbose=False); "
            "m.create_completion('Hello, my name is', max_tokens=4, temperature=0)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), os.environ.get("PYTHONPATH")])))
    try:
        proc = subprocess.run([sys.executable, "-c", code, variant, model], capture_output=True,
                              timeout=120, env=env)
    except subprocess.TimeoutExpired:
        return False
    return proc.returncode == 0


def _load_variant(variant: str) -> None:
    lib = _ggml()
    if lib.ggml_backend_reg_count() == 0:
        path = os.path.join(_LIB_DIR, f"libggml-cpu-{variant}.so")
        if not lib.ggml_backend_load(os.fsencode(path)):
            raise OSError(f"could not load llama.cpp CPU backend {path}")


def choose_variant(probe_model: str) -> str:
    """The best CPU variant that really runs here (probed once, then cached)."""
    forced = os.environ.get("FATHOM_GGML_CPU_VARIANT")
    if forced:
        return forced
    key = _cpu_key()
    path = _cache_file()
    try:
        with open(path) as f:
            cached = json.load(f)
        if cached.get("key") == key and cached.get("variant") in variants():
            return cached["variant"]
    except (OSError, ValueError):
        pass
    for v in variants():
        if _probe(v, probe_model):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                json.dump({"key": key, "variant": v}, f)
            return v
    raise OSError("no llama.cpp CPU backend variant runs on this machine")


def load_ggml_backends(probe_model: str) -> str:
    """Load a working CPU backend once per process; returns its name ('builtin' for a
    source build, which registers its own)."""
    global _loaded
    if _loaded:
        return _loaded
    if not variants():
        _loaded = "builtin"
        return _loaded
    lib = _ggml()
    if lib.ggml_backend_reg_count() > 0:
        _loaded = "preloaded"
        return _loaded
    variant = choose_variant(probe_model)
    _load_variant(variant)
    _loaded = variant
    return variant
