"""Content fingerprints of the files behind catalog datasets: streamed sha256, cached.

The cache key is the file's path, size and modification time, so an unchanged file
is never read twice, and any rewrite is read again. Datasets are never loaded,
serialised or printed: only their files are read.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from filelock import FileLock

_CHUNK = 1 << 20
# MLflow stores a dataset digest in at most 36 characters.
MLFLOW_DIGEST_LENGTH = 36


@dataclass(frozen=True)
class Fingerprint:
    """What a dataset's stored content was when the run read it.

    Attributes:
        sha256: sha256 of the file, or of the sorted (path, sha256) list of a folder.
        source: Where the content lives.
        files: Number of files hashed.
        size: Bytes hashed.
    """

    sha256: str
    source: str
    files: int
    size: int

    @property
    def digest(self) -> str:
        """The sha256 shortened to what MLflow accepts as a dataset digest."""
        return self.sha256[:MLFLOW_DIGEST_LENGTH]


def local_path(dataset: Any) -> Path | None:
    """The local file or folder a catalog dataset reads, if it has one.

    Args:
        dataset: A Kedro dataset object (never loaded).

    Returns:
        The path, or ``None`` for in-memory, remote or path-less datasets.
    """
    protocol = getattr(dataset, "_protocol", "file")
    if protocol not in {"file", "local"}:
        return None
    get_load_path = getattr(dataset, "_get_load_path", None)
    if getattr(dataset, "_version", None) is not None and callable(get_load_path):
        path = get_load_path()
    else:
        path = getattr(dataset, "_filepath", None)
    if not isinstance(path, PurePosixPath | Path | str):
        return None
    return Path(str(path))


class FingerprintCache:
    """sha256 of files keyed by (path, size, mtime), kept in a JSON file between runs."""

    def __init__(self, cache_file: Path) -> None:
        self._file = cache_file
        self._entries: dict[str, dict[str, Any]] = {}
        self._dirty = False
        if cache_file.is_file():
            try:
                self._entries = json.loads(cache_file.read_text())
            except ValueError:
                self._entries = {}

    def fingerprint(self, path: Path) -> Fingerprint | None:
        """Fingerprint a file or a folder of files.

        Args:
            path: What the dataset reads.

        Returns:
            The fingerprint, or ``None`` when nothing exists there yet.
        """
        if path.is_file():
            sha, size = self._file_sha256(path)
            return Fingerprint(
                sha256=sha, source=str(path.resolve()), files=1, size=size
            )
        if path.is_dir():
            return self._folder(path)
        return None

    def save(self) -> None:
        """Write the cache back if it changed (under a file lock)."""
        if not self._dirty:
            return
        self._file.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self._file) + ".lock"):
            merged = {}
            if self._file.is_file():
                try:
                    merged = json.loads(self._file.read_text())
                except ValueError:
                    merged = {}
            merged.update(self._entries)
            temporary = self._file.with_suffix(".tmp")
            temporary.write_text(json.dumps(merged))
            temporary.replace(self._file)
        self._dirty = False

    def _folder(self, folder: Path) -> Fingerprint:
        outer = hashlib.sha256()
        files = total = 0
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            sha, size = self._file_sha256(file)
            outer.update(f"{file.relative_to(folder).as_posix()}\0{sha}\n".encode())
            files, total = files + 1, total + size
        return Fingerprint(
            sha256=outer.hexdigest(),
            source=str(folder.resolve()),
            files=files,
            size=total,
        )

    def _file_sha256(self, file: Path) -> tuple[str, int]:
        stat = file.stat()
        key = str(file.resolve())
        cached = self._entries.get(key)
        if (
            cached
            and cached["size"] == stat.st_size
            and cached["mtime_ns"] == stat.st_mtime_ns
        ):
            return str(cached["sha256"]), stat.st_size
        digest = hashlib.sha256()
        with file.open("rb") as stream:
            while chunk := stream.read(_CHUNK):
                digest.update(chunk)
        sha = digest.hexdigest()
        self._entries[key] = {
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "sha256": sha,
        }
        self._dirty = True
        return sha, stat.st_size
