"""Record wheels built elsewhere (cibuildwheel jobs) in the folder's manifest.json, reading each wheel's
own fa_kernels/_build_info.json: the index needs every wheel's sha256, variant and archs."""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

from fa_dist.act import wheelhouse
from fa_dist.model.variant import Variant
from fa_dist.model.wheel import WheelEntry


def entry_for(wheel: Path) -> WheelEntry:
    _name, version, python, _abi, platform = wheel.name[:-4].split("-")
    with zipfile.ZipFile(wheel) as z:
        info = json.loads(z.read("fa_kernels/_build_info.json")) if "fa_kernels/_build_info.json" in z.namelist() else {}
    variant = Variant.from_local_version(version)
    return wheelhouse.with_hash(WheelEntry(
        filename=wheel.name, sha256="", size=0, name="fa-kernels", version=version,
        variant=str(variant) if variant else None, archs=tuple(info.get("archs", "").split()),
        python=python, platform=platform, recipe=info.get("recipe", "triton"),
        source_digest=info.get("fa_kernels", ""), built_at=info.get("built_at", ""),
        extra={"ptx": info["ptx"]} if info.get("ptx") else {}), wheel)


def main(folder: Path) -> None:
    for wheel in sorted(folder.glob("*.whl")):
        wheelhouse.add(folder, entry_for(wheel))
        print("recorded", wheel.name)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
