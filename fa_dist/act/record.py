"""The install record: ``fa-dist-install.json`` in the target's prefix says which wheel fa-dist
installed, from where, with which sha256, and whether its smoke test passed (doctor shows it); the
flash-attn compat adds its own entry (act/compat_install.py)."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

from fa_dist.containment import publish
from fa_dist.model.environment import Environment
from fa_dist.model.wheel import Candidate

RECORD_NAME = "fa-dist-install.json"
COMPAT_KEY = "flash_attn_compat"  # the flash-attn compat's entry in the record (compat_install.py)


def write_atomic(path: Path, record: dict[str, Any]) -> Path:
    """Replace the record in one rename (a reader sees the old or the new one, never half of one),
    with the mode a plain open() gives (umask)."""
    publish(path, (json.dumps(record, indent=1) + "\n").encode())
    return path


def write_record(
    env: Environment,
    cand: Candidate,
    digest: str,
    smoke_data: dict[str, Any] | None,
    verified: bool = True,
    *,
    compat_entry: dict[str, Any] | None = None,
) -> Path:
    """The record of this install; ``compat_entry``: the flash-attn compat installed in the same
    transaction (else a compat installed before keeps its entry)."""
    assert env.python is not None
    path = Path(env.python.prefix) / RECORD_NAME
    previous = read_record(env.python.prefix) or {}
    record = {
        "wheel": cand.filename,
        "source": cand.source,
        "location": cand.location,
        "sha256": digest,
        "sha256_verified": verified,
        "installed_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "smoke": {"passed": smoke_data["passed"], "device": smoke_data["device"]}
        if smoke_data
        else None,
    }
    if compat_entry is not None:
        record[COMPAT_KEY] = compat_entry
    elif COMPAT_KEY in previous:  # the flash-attn compat stays installed over a new fa-kernels
        record[COMPAT_KEY] = previous[COMPAT_KEY]
    return write_atomic(path, record)


def read_record(prefix: str) -> dict[str, Any] | None:
    path = Path(prefix) / RECORD_NAME
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):  # missing, unreadable, not UTF-8, not JSON: no usable record
        return None
    return data if isinstance(data, dict) else None
