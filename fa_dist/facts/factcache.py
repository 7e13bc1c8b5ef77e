"""The target's facts that cost an ``import torch`` (does it import, which GPUs it sees, its arch
list, whether each kernel package imports, SDPA), kept on disk so that a repeated command does not
pay seconds for them again.

An entry is keyed on everything those facts depend on, as seen without running the target:
the interpreter; the torch install (mtime, size and inode of ``torch/version.py`` and of its
dist-info ``RECORD``); every ``sys.path`` folder's own mtime (pip adds or removes a dist-info
folder there on every install, upgrade or uninstall, of torch or of anything torch loads); each
kernel package's ``RECORD`` and the files at the top of its package folder; the environment
variables that steer loading and device visibility; the driver (``/proc/driver/nvidia/version``)
and the device nodes; fa-dist's version and its probe. Anything else (a system library changed
under the same paths) is not seen: ``--refresh`` re-probes. Only healthy answers are stored (see
``worth_keeping``): a broken state is probed afresh every time, as its fix is what the user is
trying. Entries are written atomically (temporary file, then rename), one file per key.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from fa_dist._version import __version__
from fa_dist.paths import cache_dir

log = logging.getLogger("fa_dist")

SCHEMA = 1
# variables that change what `import torch` finds or which devices it sees
ENV_PREFIXES = (
    "CUDA_",
    "HIP_",
    "ROCR_",
    "ROCM_",
    "LD_",
    "PYTHON",
    "TORCH",
    "PYTORCH_",
    "TRITON_",
    "NVIDIA_",
    "FA_KERNELS_",
)
DEVICE_NODES = ("nvidia", "kfd", "dri")
PROBE = Path(__file__).parent / "_probe" / "probe.py"


def folder() -> Path:
    return cache_dir() / "facts"


def stamp(path: Path) -> list[int] | None:
    """(mtime_ns, size, inode) of ``path``, or None when it does not exist."""
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_mtime_ns, st.st_size, st.st_ino]


def stamps(paths: Iterable[Path]) -> dict[str, list[int] | None]:
    return {str(p): stamp(p) for p in paths}


def folder_stamps(path: Path) -> dict[str, list[int] | None]:
    """The stamps of the entries directly inside ``path`` (nothing when it is no folder)."""
    try:
        entries = sorted(os.scandir(path), key=lambda e: e.name)
    except OSError:
        return {}
    return stamps(Path(e.path) for e in entries)


def relevant_env(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in sorted(env.items()) if k.startswith(ENV_PREFIXES)}


def device_nodes(dev: Path = Path("/dev")) -> list[str]:
    try:
        return sorted(n for n in os.listdir(dev) if n.startswith(DEVICE_NODES))
    except OSError:
        return []


def identity(python: str, py: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """What the cached facts of ``python`` depend on; ``py`` is the probe's python section."""
    torch_dist = py.get("torch_dist") or {}
    torch_dir = py.get("torch_dir")
    dists = [*py.get("dists", ()), *py.get("neighbours", ())]
    return {
        "fa_dist": [__version__, stamp(PROBE)],
        "python": [python, py.get("executable"), stamp(Path(python).resolve())],
        "torch": stamps(
            [
                Path(torch_dir or "-") / "version.py",
                Path(torch_dist.get("dist_info") or "-") / "RECORD",
            ]
        ),
        "sys_path": stamps(Path(p) for p in py.get("sys_path", ())),
        "dists": {d["name"]: _dist_stamps(d) for d in dists},
        "env": relevant_env(env),
        "driver": stamp(Path("/proc/driver/nvidia/version")),
        "devices": device_nodes(),
    }


def _dist_stamps(dist: Mapping[str, Any]) -> dict[str, Any]:
    found = stamps([Path(dist.get("dist_info") or "-") / "RECORD"])
    for folder in dist.get("package_dirs", ()):
        found.update(folder_stamps(Path(folder)))
    return found


def key(identity: Mapping[str, Any]) -> str:
    """The entry's name: a hash of the identity (pure: the same identity, the same key)."""
    text = json.dumps({"schema": SCHEMA, **identity}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def worth_keeping(answers: Mapping[str, Any]) -> bool:
    """Only a healthy target is cached: torch imports and sees its devices without error, and
    every package import and the SDPA probe (when asked) succeeded."""
    torch = answers.get("torch") or {}
    if torch.get("status") != "ok" or torch.get("cuda_error"):
        return False
    imports = [*answers.get("packages", {}).values(), *answers.get("neighbours", {}).values()]
    sdpa = answers.get("sdpa")
    return all(i.get("status") == "ok" for i in imports) and not (sdpa and "error" in sdpa)


def cached(
    identity: Mapping[str, Any],
    probe_all: Callable[[], dict[str, Any]],
    probe_sdpa: Callable[[], dict[str, Any]],
    *,
    sdpa: bool,
    refresh: bool,
) -> dict[str, Any]:
    """The answers for ``identity``: the cached entry, else ``probe_all()`` (kept when healthy); an
    entry without the SDPA facts that are asked for gains them from ``probe_sdpa()`` alone."""
    name = key(identity)
    entry = None if refresh else load(name)
    if entry is not None and (not sdpa or "sdpa" in entry):
        log.debug("facts cache: hit %s (from %s)", name, entry.get("captured_at"))
        return entry
    if entry is not None:
        answers = {**entry, "sdpa": probe_sdpa()}
    else:
        log.debug("facts cache: %s %s", "refresh" if refresh else "miss", name)
        answers = {**probe_all(), "captured_at": _now()}
    if worth_keeping(answers):
        store(name, answers)
    return answers


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def load(name: str) -> dict[str, Any] | None:
    path = folder() / f"{name}.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("schema") == SCHEMA else None


def store(name: str, answers: Mapping[str, Any]) -> None:
    """Write the entry atomically; a cache that cannot be written only costs speed."""
    target = folder() / f"{name}.json"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".json")
    except OSError as exc:
        log.debug("facts cache: cannot write in %s: %s", target.parent, exc)
        return
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({"schema": SCHEMA, **answers}, f)
        os.replace(tmp, target)
    except OSError as exc:
        log.debug("facts cache: cannot write %s: %s", target, exc)
        Path(tmp).unlink(missing_ok=True)
