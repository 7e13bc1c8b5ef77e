"""A static wheel index from a wheelhouse, servable by any web server or GitHub Pages:

    SITE/manifest.json                     every wheel, its sha256, variant and archs (fa-dist install)
    SITE/<wheel files>
    SITE/simple/fa-kernels/index.html      PEP 503, all wheels (links carry #sha256=)
    SITE/<variant>/fa-kernels/index.html   one index per variant, like PyTorch's whl/cu130/: plain
                                           `pip install fa-kernels --index-url SITE/cu130-torch2.11/`
                                           sees only the wheels for that torch + CUDA (and the
                                           pure-Triton fallback); a stable-ABI wheel's index,
                                           SITE/cu130-torch2.10-stableabi/, serves every torch >= 2.10
                                           built for CUDA 13

Output is deterministic (sorted, no timestamps): building twice gives the same bytes.
"""

from __future__ import annotations

import html
import json
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from fa_dist.act import wheelhouse
from fa_dist.containment import is_within
from fa_dist.errors import ConfigError
from fa_dist.model import codec
from fa_dist.model.variant import Variant
from fa_dist.model.wheel import WheelEntry

PROJECT = "fa-kernels"


def variant_index_name(variant: Variant) -> str:
    """cu130-torch2.11 (the ABI is not in the name: PyPI-style torch wheels are cxx11abi=TRUE since 2.7;
    a wheel of the other ABI gets its own -abi0 index). A stable-ABI wheel gets cu130-torch2.10-stableabi:
    it serves torch 2.10 and every later torch built for CUDA 13.0 or a newer 13.x."""
    rt = variant.runtime_version
    base = (
        f"cu{rt.major}{rt.minor}" if variant.runtime.value == "cu" else f"rocm{rt.major}.{rt.minor}"
    )
    if variant.stable_abi:
        return f"{base}-torch{variant.torch}-stableabi"
    return f"{base}-torch{variant.torch}" + ("" if variant.cxx11_abi else "-abi0")


def _page(title: str, links: Iterable[tuple[str, str]]) -> str:
    body = "\n".join(
        f'    <a href="{html.escape(href)}">{html.escape(text)}</a><br/>' for href, text in links
    )
    return (
        f'<!DOCTYPE html>\n<html>\n  <head><meta name="pypi:repository-version" content="1.0">'
        f"<title>{html.escape(title)}</title></head>\n  <body>\n{body}\n  </body>\n</html>\n"
    )


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def build(wheels: Path, site: Path) -> dict[str, list[str]]:
    """Write the index for every wheel recorded in ``wheels``' manifest; returns {index: filenames}."""
    entries = wheelhouse.read(wheels)
    if not entries:
        raise ConfigError(
            f"{wheels} has no wheels in its manifest",
            fix="fa-dist build --wheelhouse " + str(wheels),
        )
    for entry in entries:
        if not wheelhouse.verified(wheels, entry):
            raise ConfigError(
                f"{wheels / entry.filename} is missing or does not match its manifest sha256",
                fix="rebuild it (fa-dist build --clean) before publishing",
            )
    site.mkdir(parents=True, exist_ok=True)
    for entry in entries:
        target = site / entry.filename
        if not target.exists() or wheelhouse.sha256_of(target) != entry.sha256:
            shutil.copyfile(wheels / entry.filename, target)
    groups: dict[str, list[WheelEntry]] = {"simple": list(entries)}
    pure = [e for e in entries if e.variant is None]
    for entry in entries:
        if entry.variant:
            groups.setdefault(variant_index_name(Variant.parse(entry.variant)), list(pure)).append(
                entry
            )
    for name, members in sorted(groups.items()):
        links = [
            (f"../../{e.filename}#sha256={e.sha256}", e.filename)
            for e in sorted(members, key=lambda e: e.filename)
        ]
        _write(site / name / PROJECT / "index.html", _page(f"Links for {PROJECT}", links))
        _write(site / name / "index.html", _page("fa-dist index", [(f"{PROJECT}/", PROJECT)]))
    roots = [(f"{name}/", name) for name in sorted(groups)]
    _write(site / "index.html", _page("fa-dist wheel index", roots))
    manifest = {
        "version": wheelhouse.MANIFEST_VERSION,
        "wheels": [codec.encode(e) for e in sorted(entries, key=lambda e: e.filename)],
    }
    _write(site / wheelhouse.MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return {name: sorted(e.filename for e in members) for name, members in sorted(groups.items())}


@dataclass(frozen=True)
class Problem:
    where: str
    what: str


LINK = re.compile(r'href="([^"]+)"')


def check(site: Path) -> list[Problem]:
    """Every manifest file present with its hash; every link resolves, and a #sha256 matches the file."""
    problems: list[Problem] = []
    try:
        entries = wheelhouse.read(site)
    except ConfigError as exc:
        return [Problem(str(site / wheelhouse.MANIFEST), exc.message)]
    if not entries:
        problems.append(Problem(str(site), "no manifest.json (or it lists no wheels)"))
    for entry in entries:
        if not wheelhouse.verified(site, entry):
            problems.append(
                Problem(entry.filename, "missing, or its sha256/size differs from the manifest")
            )
    for page in sorted(site.rglob("index.html")):
        problems += _check_page(site, page)
    return problems


def _check_page(site: Path, page: Path) -> list[Problem]:
    """Every link of one page resolves to a file inside the site (a ``..`` link or a symlink that
    leaves it is a problem, and is not followed), and a #sha256 fragment matches that file."""
    where = str(page.relative_to(site))
    if not is_within(site, page):
        return [Problem(where, "the page is a link to outside the site")]
    try:
        text = page.read_text(errors="replace")
    except OSError as exc:
        return [Problem(where, f"unreadable: {exc.strerror or exc}")]
    problems = []
    for href in LINK.findall(text):
        target, _, fragment = html.unescape(href).partition("#")
        path = page.parent / target / ("index.html" if target.endswith("/") else "")
        if "://" in target or target.startswith("/") or not is_within(site, path):
            problems.append(Problem(where, f"link {target[:200]!r} leaves the site"))
        elif not path.is_file():
            problems.append(Problem(where, f"broken link {target}"))
        elif fragment.startswith("sha256=") and wheelhouse.sha256_of(path) != fragment[7:]:
            problems.append(Problem(where, f"{target}: sha256 does not match its link"))
    return problems
