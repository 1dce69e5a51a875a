"""Key rotation: a new primary key-encryption key, every data key re-wrapped.

Only the file headers change (``envelope.rewrap``: temporary file, fsync,
rename), never the encrypted payload. A marker beside the keyring records the
rotation in progress, so a rotation interrupted between (or inside) files is
finished by running it again, without minting yet another key. Versions that no
file references any more are retired at the end.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bankplatform.security.envelope import (
    EnvelopeError,
    is_encrypted,
    read_header,
    rewrap,
)
from bankplatform.security.kms import KeyManagementService

_TEMPORARY_SUFFIXES = (".rewrap", ".partial")


@dataclass(frozen=True)
class RotationResult:
    """What a rotation did.

    Attributes:
        primary: The new primary key version.
        resumed: An interrupted rotation was finished.
        rewrapped: Files whose data key was re-wrapped now.
        retired: Key versions retired (no file referenced them any more).
        kept_for_saves: Older versions kept because a save in progress uses
            them (a later rotation retires them).
    """

    primary: int
    resumed: bool
    rewrapped: list[Path] = field(default_factory=list)
    retired: list[int] = field(default_factory=list)
    kept_for_saves: list[int] = field(default_factory=list)


def encrypted_files(data_root: Path) -> Iterator[Path]:
    """Every encrypted file under ``data_root``; leftovers of killed writes are removed."""
    for path in sorted(data_root.rglob("*")):
        if not path.is_file():
            continue
        if path.name.startswith(".") and path.name.endswith(_TEMPORARY_SUFFIXES):
            if path.name.endswith(".rewrap"):
                path.unlink(missing_ok=True)  # a killed re-wrap; the original is intact
            continue
        if is_encrypted(path):
            yield path


def saves_in_progress(data_root: Path) -> Counter[int]:
    """Key versions of encrypted files still being written (``.partial``): a version
    such a save uses must not be retired, or the file would never open again."""
    counts: Counter[int] = Counter()
    for path in data_root.rglob(".*.partial"):
        try:
            with path.open("rb") as stream:
                counts[read_header(stream).key_version] += 1
        except (OSError, EnvelopeError):
            continue  # vanished (renamed into place) or not yet a header
    return counts


def files_per_key_version(data_root: Path) -> Counter[int]:
    """How many encrypted files each key version protects."""
    counts: Counter[int] = Counter()
    for path in encrypted_files(data_root):
        with path.open("rb") as stream:
            counts[read_header(stream).key_version] += 1
    return counts


def rotate_keys(
    kms: KeyManagementService,
    data_root: Path,
    marker: Path,
    on_file: Callable[[Path, int, int], None] | None = None,
) -> RotationResult:
    """Rotate to a new primary key (or finish an interrupted rotation).

    Args:
        kms: The key service.
        data_root: The workspace's data folder; every encrypted file under it is re-wrapped.
        marker: Records a rotation in progress.
        on_file: Called after each re-wrapped file with (path, old, new version).

    Returns:
        What was done.
    """
    resumed = marker.is_file()
    if resumed:
        primary = int(json.loads(marker.read_text())["primary"])
    else:
        primary = kms.rotate()
        marker.write_text(json.dumps({"primary": primary}))
    result = RotationResult(primary=primary, resumed=resumed)
    in_use: Counter[int] = Counter()
    for path in encrypted_files(data_root):
        old, new = rewrap(path, kms)
        in_use[new] += 1  # the version that protects the file from now on
        if old != new:
            result.rewrapped.append(path)
            if on_file is not None:
                on_file(path, old, new)
    in_flight = saves_in_progress(data_root)
    in_use.update(in_flight)
    result.kept_for_saves.extend(sorted(v for v in in_flight if v != primary))
    for version in kms.status():
        if (
            version.version != primary
            and version.retired_at is None
            and not in_use[version.version]
        ):
            kms.retire(version.version)
            result.retired.append(version.version)
    marker.unlink()
    return result
