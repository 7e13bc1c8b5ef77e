"""Add files to a built wheel: rewrite the zip with them and a RECORD that lists every file with its
hash (PEP 376/427), replacing the wheel in place atomically. Used to put the Triton kernels a build
precompiled (fa_kernels/_precompiled/) into the wheel it made."""

from __future__ import annotations

import base64
import hashlib
import os
import zipfile
from pathlib import Path


def record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def add_tree(wheel: Path, folder: Path, prefix: str) -> int:
    """Put every file under ``folder`` into ``wheel`` at ``prefix``/<relative path> (replacing what
    the wheel had under that prefix); -> how many files were added."""
    prefix = prefix.strip("/") + "/"
    added = sorted(p for p in folder.rglob("*") if p.is_file())
    tmp = wheel.with_name(f".{wheel.name}.{os.getpid()}.tmp")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        record_name = next(n for n in src.namelist() if n.endswith(".dist-info/RECORD"))
        lines = []
        for info in src.infolist():
            if info.filename == record_name or info.filename.startswith(prefix):
                continue
            data = src.read(info)
            dst.writestr(info, data)
            lines.append(record_line(info.filename, data))
        for path in added:
            name = prefix + path.relative_to(folder).as_posix()
            data = path.read_bytes()
            dst.writestr(name, data)
            lines.append(record_line(name, data))
        lines.append(f"{record_name},,")
        dst.writestr(record_name, "\n".join(lines) + "\n")
    os.replace(tmp, wheel)
    return len(added)
