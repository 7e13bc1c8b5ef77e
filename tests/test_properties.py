"""Property tests for every parser of untrusted input (issue #12): wheel file names, index manifests,
index pages, environment snapshots, matrix.yaml and build logs. Whatever the input, the answer is a
value or an fa-dist error (which carries an exit code), never another exception, and nothing is
written outside the folder the operation owns."""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fa_dist.act import index, wheelhouse
from fa_dist.containment import UnsafePath, safe_filename, within
from fa_dist.decide import buildlog, checks, index_manifest, matrix, resolve
from fa_dist.errors import FaDistError
from fa_dist.model.environment import Environment

from .envs import FIXTURES, H100

ROOT = Path(__file__).resolve().parent.parent
BOUNDED = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
wheelish = st.one_of(
    st.text(max_size=80),
    st.builds(lambda *parts: "-".join(parts) + ".whl",
              st.sampled_from(["fa_kernels", "fa-kernels", "torch", ""]),
              st.from_regex(r"[0-9a-z.+!_]{0,20}", fullmatch=True),
              st.sampled_from(["cp312", "py3", "cp3x"]), st.sampled_from(["cp312", "none", "abi3"]),
              st.sampled_from(["linux_x86_64", "any", "manylinux_2_28_x86_64", "../x"])),
)


def answer(call: Callable[[], Any]) -> Any:
    """The call's value, or None when it raised an fa-dist error with an exit code."""
    try:
        return call()
    except FaDistError as exc:
        assert isinstance(exc.exit_code, int) and exc.exit_code > 0 and exc.message
        return None


def _plain(name: str) -> bool:
    try:
        safe_filename(name)
    except UnsafePath:
        return False
    return True


@contextmanager
def sandbox() -> Iterator[Path]:
    """A temporary folder with an 'owned' subfolder; yields the owned one, and fails if anything
    appeared in the sandbox outside it."""
    with tempfile.TemporaryDirectory() as top:
        owned = Path(top) / "owned"
        owned.mkdir()
        (Path(top) / "outside.whl").write_bytes(b"x")
        yield owned
        outside = {p for p in Path(top).rglob("*") if not p.is_relative_to(owned)}
        assert outside == {Path(top) / "outside.whl"}, outside


@BOUNDED
@given(name=wheelish, archs=st.lists(st.text(max_size=8), max_size=3), ptx=st.none() | st.text(max_size=8))
def test_any_wheel_file_name_is_judged(name: str, archs: list[str], ptx: str | None) -> None:
    cand = resolve.Candidate(filename=name, location=name, sha256=None, archs=tuple(archs), ptx=ptx)
    res = resolve.resolve(H100(), [cand])
    assert len(res.trace) == 1 and res.trace[0].reason
    safe = answer(lambda: safe_filename(name))
    if safe is not None:
        with tempfile.TemporaryDirectory() as top:
            assert within(Path(top), safe).parent == Path(top).resolve()


@BOUNDED
@given(data=json_values | st.fixed_dictionaries({"wheels": st.lists(
    st.fixed_dictionaries({"filename": wheelish}, optional={
        "sha256": st.none() | st.text(max_size=70) | st.just("a" * 64), "size": json_values,
        "archs": json_values, "extra": json_values}), max_size=4)}))
def test_any_index_manifest_gives_candidates_or_an_error(data: Any) -> None:
    cands = answer(lambda: index_manifest.candidates(data, base="https://x/", source="x"))
    if cands is not None:
        for verdict in resolve.resolve(H100(), cands).trace:
            assert verdict.reason
            if verdict.accepted:  # only a plain name with a valid hash gets through
                assert verdict.candidate.problem is None and verdict.candidate.sha256
                assert safe_filename(verdict.candidate.filename)


@BOUNDED
@given(content=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()),
       page=st.text(max_size=200) | st.lists(st.text(max_size=30), max_size=4).map(
           lambda hrefs: "".join(f'<a href="{h}">x</a>' for h in hrefs)))
def test_any_local_manifest_and_index_page_is_checked_without_leaving_the_site(content: bytes, page: str) -> None:
    with sandbox() as site:
        (site / "manifest.json").write_bytes(content)
        (site / "simple").mkdir()
        (site / "simple" / "index.html").write_text(page, errors="surrogateescape")
        entries = answer(lambda: wheelhouse.read(site))  # a value or an fa-dist error, never a traceback
        assert entries is None or all(_plain(e.filename) for e in entries)
        problems = index.check(site)
        assert all(p.what for p in problems)


@BOUNDED
@given(names=st.lists(wheelish, min_size=1, max_size=3))
def test_index_build_writes_only_into_its_site(names: list[str]) -> None:
    with sandbox() as owned:
        wheels, site = owned / "wheels", owned / "site"
        wheels.mkdir()
        entries = []
        for n in names:
            data = f"wheel {n}".encode("utf-8", "surrogateescape")
            if _plain(n):  # a real file with its real hash, so that the build gets to its writes
                (wheels / n).write_bytes(data)
            entries.append({"filename": n, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                            "name": "fa-kernels", "version": "0.1.0", "variant": None, "archs": [],
                            "python": "py3", "platform": "any", "recipe": "triton", "source_digest": "",
                            "built_at": ""})
        (wheels / "manifest.json").write_text(json.dumps({"version": 1, "wheels": entries}))
        built = answer(lambda: index.build(wheels, site))
        if built is not None:  # it wrote pages: every file it wrote lies inside the site
            assert site.is_dir() and all(p.is_relative_to(site) for p in site.rglob("*"))


SNAPSHOT = json.loads((FIXTURES / "envs" / "h100-torch2.11-cu130.json").read_text())


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            found += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += _paths(v, (*prefix, i))
    return found


PATHS = _paths(SNAPSHOT)[1:]


def _replace(data: Any, path: tuple[Any, ...], value: Any) -> Any:
    copy = json.loads(json.dumps(data))
    node = copy
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return copy


@BOUNDED
@given(edits=st.lists(st.tuples(st.sampled_from(PATHS), json_values), min_size=1, max_size=3),
       raw=st.none() | st.binary(max_size=100))
def test_any_env_snapshot_loads_and_is_judged_or_is_an_error(edits: list[tuple[Any, Any]], raw: bytes | None) -> None:
    data: Any = SNAPSHOT
    for path, value in edits:
        try:
            data = _replace(data, path, value)
        except (KeyError, IndexError, TypeError):  # an earlier edit removed the parent
            continue
    with tempfile.TemporaryDirectory() as top:
        path = Path(top) / "env.json"
        path.write_bytes(raw if raw is not None else json.dumps(data).encode())
        env = answer(lambda: Environment.load(path))
    if env is not None:
        cand = resolve.Candidate(filename="fa_kernels-0.1.0+cu130torch2.11cxx11abitrue-cp312-cp312-linux_x86_64.whl",
                                 location="x", sha256=None, archs=("sm_90a",))
        answer(lambda: resolve.resolve(env, [cand]))
        answer(lambda: checks.verdict(checks.run_checks(env)))


BASE_LINES = (ROOT / "matrix.yaml").read_text().splitlines()
yaml_scalars = st.sampled_from(["3.10", "2.10", "'x'", "true", "[true, false]", "&a [1]", "*a", "{}", "[]",
                                "null", "sm_999", "[sm_80, sm_80]", "!!python/object:os.system x", "- -", "\x00"])


@BOUNDED
@given(edits=st.lists(st.tuples(st.integers(0, len(BASE_LINES) - 1), yaml_scalars), max_size=3),
       raw=st.none() | st.text(max_size=200))
def test_any_matrix_file_expands_or_is_an_error(edits: list[tuple[int, str]], raw: str | None) -> None:
    lines = list(BASE_LINES)
    for i, value in edits:
        key, sep, _ = lines[i].partition(":")
        lines[i] = f"{key}: {value}" if sep else f"{lines[i][: len(lines[i]) - len(lines[i].lstrip())]}- {value}"
    with tempfile.TemporaryDirectory() as top:
        path = Path(top) / "matrix.yaml"
        path.write_text(raw if raw is not None else "\n".join(lines) + "\n", errors="surrogateescape")
        data = answer(lambda: matrix.load(path))
    if data is not None:
        expansion = answer(lambda: matrix.expand(data))
        if expansion is not None:
            ids = [c.id for c in expansion.cells]
            assert len(ids) == len(set(ids))


@BOUNDED
@given(log=st.text(max_size=400) | st.lists(st.sampled_from([
    "fatal error: cublas_v2.h: No such file or directory", "Killed", "Unsupported gpu architecture 'compute_999'",
    "detected CUDA version (12.8) mismatches the version that was used to compile", "\x00", "",
]), max_size=5).map("\n".join))
def test_any_build_log_is_classified_or_not(log: str) -> None:
    cause = buildlog.classify(log)
    assert cause is None or (cause.title and cause.fix)
    assert isinstance(buildlog.tail(log), tuple)


def test_unsafe_names_are_refused_with_an_exit_code() -> None:
    try:
        safe_filename("../x")
    except UnsafePath as exc:
        assert exc.exit_code == 2
