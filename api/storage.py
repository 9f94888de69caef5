"""Photo storage on the local filesystem: server-generated, content-addressed names; durable before acknowledged.

A photo is written to a temporary file in the target directory, fsynced, then linked into place and the directory
fsynced, so after `put` returns the bytes survive a crash. Names are `photos/ab/<sha256>.<ext>`: no client text ever
reaches a path, and a name can never be overwritten with different bytes. The API never deletes photos.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "image/heic": "heic"}


@dataclass(frozen=True)
class StoredPhoto:
    storage_name: str  # relative to the store root
    sha256: str
    size_bytes: int


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class PhotoStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def name_for(self, sha256: str, content_type: str) -> str:
        return f"{sha256[:2]}/{sha256}.{EXTENSIONS[content_type]}"

    def path(self, storage_name: str) -> Path:
        # Only names this class generated are stored; still refuse anything that would leave the root.
        p = (self.root / storage_name).resolve()
        if self.root.resolve() not in p.parents:
            raise ValueError("storage name outside the photo store")
        return p

    def put(self, data: bytes, content_type: str) -> StoredPhoto:
        digest = sha256_hex(data)
        name = self.name_for(digest, content_type)
        final = self.root / name
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists() and final.stat().st_size == len(data):
            # Same name means same SHA-256: these bytes are already durable.
            return StoredPhoto(name, digest, len(data))
        fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, final)  # never replaces an existing file
            except FileExistsError:
                pass
        finally:
            os.unlink(tmp)
        _fsync_dir(final.parent)
        _fsync_dir(final.parent.parent)
        return StoredPhoto(name, digest, len(data))

    def read(self, storage_name: str) -> bytes:
        return self.path(storage_name).read_bytes()
