"""On-disk cache of generated training arrays (runs/, git-ignored), keyed by what produced them.

A key names the parameters of a dataset; `source_fingerprint` adds the source of the code that draws it, so editing
a generator or the cell stage regenerates the data instead of training on stale cells.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]


def source_fingerprint(*modules: str) -> str:
    """Hash of the named source files (paths from the repository root)."""
    h = hashlib.sha256()
    for mod in modules:
        h.update((REPO_ROOT / mod).read_bytes())
    return h.hexdigest()[:12]


def cached_arrays(
    cache_dir: Path | None, prefix: str, key: str, build: Callable[[], dict[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """The arrays `build` makes, from `<cache_dir>/<prefix>-<hash of key>.npz` when present (no cache: None)."""
    path = None if cache_dir is None else Path(cache_dir) / f"{prefix}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"
    if path is not None and path.exists():
        with np.load(path) as d:
            return {k: d[k] for k in d.files}
    arrays = build()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **arrays)
    return arrays
