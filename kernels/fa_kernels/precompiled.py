"""Triton kernels compiled ahead of time, so that a first call loads instead of compiling.

Triton keeps what it compiled in a cache folder, one entry a kernel specialisation, named by the
sha256 of everything the result depends on: Triton itself (its sources and libtriton), the kernel's
source and the functions it calls, the GPU target, the compile options, the argument specialisation
and the cache-relevant environment. fa_kernels ships or is given such entries in
``fa_kernels/_precompiled/<group>/`` (a group: one Triton version and one GPU target, with a
manifest.json) and, once per process before its first Triton launch, points Triton's own cache folder
at the entries of the groups of this Triton (and at their launchers: see ``module_file``). Triton then finds them under the
very name it would have compiled to; anything that differs (another Triton build, another GPU, a
changed kernel) hashes to another name, misses, and compiles as always. A precompiled kernel can
therefore be unused, never wrong.

    python -m fa_kernels.precompiled warm [--jobs N] [--json]   compile the common cases into the store
    python -m fa_kernels.precompiled status [--json]            what the store holds and what matches here

FA_KERNELS_PRECOMPILED=0 turns this off; FA_KERNELS_PRECOMPILED_DIR names another store.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STORE = Path(__file__).parent / "_precompiled"
ENV_DIR = "FA_KERNELS_PRECOMPILED_DIR"  # another store instead (a shared, read-only one; tests)
MANIFEST = "manifest.json"
FORMAT = 1
GROUP_FILE = "__grp__"  # Triton's name prefix for an entry's index of its files
ENV_SWITCH = "FA_KERNELS_PRECOMPILED"


@dataclass(frozen=True)
class Group:
    """One Triton version x GPU target's worth of cache entries."""

    path: Path
    triton: str
    target: str  # "cuda:90", "hip:gfx942"
    entries: tuple[str, ...]  # Triton's cache entry names (its key's sha256)
    digest: str  # of the manifest: a changed group is seeded again
    modules: tuple[str, ...] = ()  # entries of compiled host modules: the kernels' launchers, driver utils

    @property
    def name(self) -> str:
        return self.path.name


def target_name(backend: str, arch: int | str) -> str:
    """Triton's GPUTarget as one string: ("cuda", 90) -> "cuda:90", ("hip", "gfx942") -> "hip:gfx942"."""
    return f"{backend}:{arch}"


def group_name(triton: str, target: str) -> str:
    return f"triton-{triton}-{target.replace(':', '-')}"


def store_dir() -> Path:
    """The store: $FA_KERNELS_PRECOMPILED_DIR, else the package's own fa_kernels/_precompiled."""
    return Path(os.environ[ENV_DIR]) if os.environ.get(ENV_DIR) else STORE


def read_groups(store: Path | None = None) -> list[Group]:
    """The store's groups; a folder without a readable, well-formed manifest is no group."""
    store = store if store is not None else store_dir()
    groups = []
    for folder in sorted(store.iterdir()) if store.is_dir() else []:
        try:
            text = (folder / MANIFEST).read_text()
            data = json.loads(text)
            if data.get("format") != FORMAT:
                continue
            entries = tuple(str(e) for e in data["entries"])
            modules = tuple(str(m) for m in data.get("modules", ()))
            groups.append(Group(folder, str(data["triton"]), str(data["target"]), entries,
                                hashlib.sha256(text.encode()).hexdigest()[:16], modules))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
    return groups


def matching(groups: list[Group], triton: str, targets: list[str]) -> list[Group]:
    """The groups made by this Triton version for one of these GPU targets."""
    return [g for g in groups if g.triton == triton and g.target in targets]


def _is_entry_name(name: str) -> bool:
    """Triton names a cache entry by its key's sha256: base32 (Triton >= 3.2) or hex (older)."""
    return re.fullmatch(r"[A-Z2-7]{52}|[0-9a-f]{64}", name) is not None


def seed(group: Group, cache_dir: Path) -> int:
    """Make Triton's cache find the group's entries it lacks; -> how many were added.

    Only each entry's index of files (Triton's ``__grp__*.json``) is written into the cache, pointing
    at the files in the store: nothing is copied, so seeding costs a small write per entry. Should the
    store go away (the package uninstalled), Triton finds the indexed files missing, ignores the entry
    and compiles as without it. Written under a temporary name and renamed into place, as Triton writes
    its own: a process reading the cache meanwhile sees an entry whole or not at all."""
    added = 0
    for entry in group.entries:
        source, target = group.path / entry, cache_dir / entry
        if not _is_entry_name(entry) or not source.is_dir():
            continue
        index_files = sorted(source.glob(f"{GROUP_FILE}*.json"))
        if not index_files or all((target / f.name).exists() for f in index_files):
            continue
        indexes = [_pointed(index, source) for index in index_files]
        if any(i is None for i in indexes):  # a damaged entry is left to Triton to compile
            continue
        target.mkdir(parents=True, exist_ok=True)
        for index, pointed in zip(index_files, indexes, strict=True):
            _put(target / index.name, json.dumps({"child_paths": pointed}).encode())
        added += 1
    return added + sum(_copy_module(group, m, cache_dir / m) for m in group.modules if _is_entry_name(m))


def module_file(entry: Path) -> Path | None:
    """The one shared object of a compiled host module's entry, else None.

    Before its first launch of a kernel signature, Triton builds a small C launcher for it with the host
    compiler (and once its driver utilities): about a second each, cached like the kernels, but as a
    single file under the sha256 of its C source and the platform, without an index. The file name
    carries the Python ABI (``__triton_launcher.cpython-312-x86_64-linux-gnu.so``), so another Python
    looks for another name; one that does not load (another C library) Triton rebuilds. The store is
    trusted like the package's own code: seeding copies these into Triton's cache (``_copy_module``)."""
    try:
        files = [f for f in entry.iterdir() if not f.name.startswith(".")]
    except OSError:
        return None
    if len(files) != 1 or ".tmp." in files[0].name or not files[0].name.endswith(".so"):
        return None
    return files[0] if files[0].is_file() and not files[0].is_symlink() else None


def _copy_module(group: Group, name: str, target: Path) -> bool:
    """Copy the store's module ``name`` into Triton's cache entry ``target`` (Triton looks a module up
    as a file there); -> whether it was copied. Copied, not linked: it is native code that processes
    load, and Triton names a launcher by its C source alone, so programs that never import fa_kernels
    load it too. Its bytes are therefore fixed when seeded, and taken only from an entry that is no link,
    a file that is no link, owned by this user or root and writable by no one else."""
    source = group.path / name
    if source.is_symlink() or not source.is_dir():
        return False
    module = module_file(source)
    if module is None or not _trusted(module) or (target / module.name).exists():
        return False
    target.mkdir(parents=True, exist_ok=True)
    _put(target / module.name, module.read_bytes())
    return True


def _trusted(file: Path) -> bool:
    try:
        st = file.stat()
    except OSError:
        return False
    return st.st_uid in (os.getuid(), 0) and not st.st_mode & 0o022


def _pointed(index: Path, source: Path) -> dict[str, str] | None:
    """The index's files as absolute paths in the store's entry; None unless every one is a plain file
    name present there (an index naming "../x" or a missing file would have Triton load garbage)."""
    try:
        children = json.loads(index.read_text())["child_paths"]
        names = list(children)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not names or any(not isinstance(n, str) or Path(n).name != n or not (source / n).is_file() for n in names):
        return None
    root = source.resolve()  # once an entry: resolving every file cost 0.24 s of a first call on an H200
    return {name: str(root / name) for name in names}


def _put(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all (a unique temporary name, then a rename), unless it exists."""
    if path.exists():
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o644)  # as Triton writes its own entries
    os.replace(tmp, path)


def triton_cache_dir() -> Path | None:
    """The folder Triton's file cache uses in this process; None when a custom cache manager (a
    remote or user-defined one) is configured, which entries in a folder would not feed."""
    if os.environ.get("TRITON_CACHE_MANAGER"):
        return None
    try:
        from triton import knobs

        folder = knobs.cache.dir
    except (ImportError, AttributeError):
        folder = os.environ.get("TRITON_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".triton", "cache")
    return Path(folder) if folder else None


def visible_targets() -> list[str]:
    """The Triton targets of the GPUs torch sees."""
    import torch

    if not torch.cuda.is_available():
        return []
    targets = []
    for i in range(torch.cuda.device_count()):
        if torch.version.hip:
            arch = torch.cuda.get_device_properties(i).gcnArchName.split(":")[0]
            targets.append(target_name("hip", arch))
        else:
            major, minor = torch.cuda.get_device_capability(i)
            targets.append(target_name("cuda", major * 10 + minor))
    return sorted(set(targets))


_seeded = False


def ensure_seeded() -> None:
    """Once per process, before the first Triton launch: point Triton's cache at the matching groups.

    Never raises: whatever goes wrong here only costs the compile that would have happened anyway."""
    global _seeded
    if _seeded:
        return
    _seeded = True
    if os.environ.get(ENV_SWITCH, "1") == "0" or os.environ.get("TRITON_INTERPRET", "0") == "1":
        return
    try:
        _seed_here()
    except Exception:  # a failed copy must not fail the user's call
        return


def _seed_here() -> None:
    """Seed every group of this Triton version, whatever its GPU target: an entry for another GPU is
    never looked up there (the target is part of Triton's key), and not asking torch which GPUs this
    process sees keeps CUDA uninitialised at import (a doctor probe imports fa_kernels)."""
    groups = read_groups()
    if not groups:
        return
    import triton

    cache_dir = triton_cache_dir()
    if cache_dir is None:
        return
    for group in (g for g in groups if g.triton == triton.__version__):
        # keyed on the store's place too: another environment's copy of the same wheel seeds its own
        where = hashlib.sha256(str(group.path.resolve()).encode()).hexdigest()[:8]
        stamp = cache_dir / f"fa_kernels-{group.name}-{group.digest}-{where}.seeded"
        if stamp.exists():
            continue
        cache_dir.mkdir(parents=True, exist_ok=True)
        seed(group, cache_dir)
        stamp.touch()


def write_group(store: Path, cache: Path, triton: str, target: str, fa_kernels: str,
                cases: list[str]) -> Group:
    """Move the complete entries of a warm-up's private Triton cache into the store as one group
    (replacing that group's previous content) -> the group."""
    final = store / group_name(triton, target)
    staging = Path(tempfile.mkdtemp(dir=store, prefix=f".{final.name}."))
    entries, modules = [], []
    for entry in sorted(p for p in cache.iterdir() if p.is_dir() and _is_entry_name(p.name)):
        indexes = list(entry.glob(f"{GROUP_FILE}*.json"))
        if not indexes and (module := module_file(entry)) is not None:
            (staging / entry.name).mkdir()
            shutil.copy2(module, staging / entry.name / module.name)
            modules.append(entry.name)
        if not indexes:  # a module, or a compile that did not finish
            continue
        (staging / entry.name).mkdir()
        for file in entry.iterdir():
            if file.name.startswith(GROUP_FILE):
                children = json.loads(file.read_text())["child_paths"]
                (staging / entry.name / file.name).write_text(
                    json.dumps({"child_paths": {name: name for name in children}}))
            elif not file.name.startswith(".") and ".tmp." not in file.name:
                shutil.copy2(file, staging / entry.name / file.name)
        entries.append(entry.name)
    manifest = {"format": FORMAT, "triton": triton, "target": target, "fa_kernels": fa_kernels,
                "entries": entries, "modules": modules, "cases": cases}
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    return next(g for g in read_groups(store) if g.path == final)


def record_store(store: Path) -> bool:
    """List the store's files in the installed fa-kernels' RECORD, so that uninstalling or upgrading
    the package removes them too; -> False when fa_kernels is not an installed distribution whose
    files contain the store (a checkout, an editable install)."""
    import base64
    from importlib import metadata

    try:
        dist = metadata.distribution("fa-kernels")
    except metadata.PackageNotFoundError:
        return False
    record = next((f for f in dist.files or () if f.name == "RECORD" and f.parent.name.endswith(".dist-info")), None)
    if record is None:
        return False
    site = Path(str(dist.locate_file(""))).resolve()
    record_path = Path(str(record.locate())).resolve()
    try:
        prefix = store.resolve().relative_to(site).as_posix() + "/"
    except ValueError:
        return False
    kept = [line for line in record_path.read_text().splitlines() if line and not line.startswith(prefix)]
    for file in sorted(p for p in store.rglob("*") if p.is_file()):
        data = file.read_bytes()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        kept.append(f"{file.resolve().relative_to(site).as_posix()},sha256={digest},{len(data)}")
    tmp = record_path.with_name(f".RECORD.{os.getpid()}.tmp")
    tmp.write_text("\n".join(kept) + "\n")
    os.replace(tmp, record_path)
    return True


def describe(groups: list[Group], triton: str | None, targets: list[str]) -> dict[str, Any]:
    """The store's state as JSON-able facts (for `status` and fa-dist doctor)."""
    return {
        "triton": triton, "targets": targets,
        "groups": [{"name": g.name, "triton": g.triton, "target": g.target, "kernels": len(g.entries),
                    "launchers": len(g.modules)}
                   for g in groups],
        "matching": [g.name for g in matching(groups, triton, targets)] if triton else [],
    }
