"""File helpers shared by every layer: content hashes and locating files shipped in packages."""
from __future__ import annotations

import hashlib
import importlib.util

from core.errors import ModelUnavailable


def sha256_file(path: str) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def package_dir(package: str) -> str:
    """The folder of an installed package, found without importing it (some model packages'
    __init__ import things --no-deps did not install); ModelUnavailable when it is missing."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(f"model package {package!r} is not installed; run `bash scripts/setup.sh`")
    return spec.submodule_search_locations[0]
