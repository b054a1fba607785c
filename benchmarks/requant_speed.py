"""Prompt-evaluation and generation speed of the slow model as shipped (Q4_K_M) against copies
requantized here (Q8_0, Q4_0) with llama.cpp's own quantizer, in one run, on the same prompt.

    PYTHONPATH=. .venv/bin/python benchmarks/requant_speed.py --out /tmp/requant --rounds 3

Requantizing costs ~10 s per file and ~1.9 GB of disk for Q8_0. Prints tok/s per round.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from synthesizer.backends import load_ggml_backends  # noqa: E402
from synthesizer.models import model_path  # noqa: E402

FTYPES = {"q8_0": 7, "q4_0": 2}  # llama_ftype values


def requantize(src: str, dst: str, ftype: int) -> None:
    import llama_cpp
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype, params.allow_requantize, params.nthread = ftype, True, 2
    if llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params)) != 0:
        raise SystemExit(f"quantizing {src} to {dst} failed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="qwen2.5-coder-1.5b")
    parser.add_argument("--out", required=True, help="directory for the requantized copies")
    parser.add_argument("--prompt-tokens", type=int, default=850)
    parser.add_argument("--gen-tokens", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    src = model_path(args.model)
    print("llama.cpp CPU variant:", load_ggml_backends(src))
    import llama_cpp
    os.makedirs(args.out, exist_ok=True)
    files = {"shipped": src}
    for name, ftype in FTYPES.items():
        files[name] = os.path.join(args.out, f"{args.model}-{name}.gguf")
        if not os.path.exists(files[name]):
            requantize(src, files[name], ftype)
    text = open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")).read()
    models = {n: llama_cpp.Llama(p, n_ctx=4096, n_threads=2, flash_attn=True, verbose=False) for n, p in files.items()}
    print(f"load average {open('/proc/loadavg').read().strip()}")
    for rnd in range(args.rounds):  # alternate the files each round: machines drift
        for name, llm in models.items():
            tokens = llm.tokenize(text.encode())[:args.prompt_tokens]
            llm.reset()
            t = time.perf_counter()
            llm.eval(tokens)
            prompt_s = time.perf_counter() - t
            t, n = time.perf_counter(), 0
            for _ in llm.generate([], temp=0.0, reset=False):
                n += 1
                if n >= args.gen_tokens:
                    break
            gen_s = time.perf_counter() - t
            print(f"round {rnd} {name:8s} prompt {len(tokens) / prompt_s:6.1f} tok/s ({prompt_s:5.2f} s)  "
                  f"generation {n / gen_s:5.1f} tok/s", flush=True)
    print(f"load average {open('/proc/loadavg').read().strip()}")


if __name__ == "__main__":
    main()
