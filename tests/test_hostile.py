"""Issue #12, without processes or sockets: crafted manifests, RECORDs, snapshots, matrix files and smoke
output. Each test names the numbered item of the issue it covers."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from fa_dist.act import index, install, net, smoke, transaction, wheelcheck, wheelhouse
from fa_dist.containment import UnsafePath, safe_filename, within
from fa_dist.decide import index_manifest, matrix, resolve
from fa_dist.errors import ConfigError, FaDistError
from fa_dist.model.environment import Environment

from . import wheelcraft
from .envs import FIXTURES, H100

ROOT = Path(__file__).resolve().parent.parent
SHA = "a" * 64
COMPILED = "fa_kernels-0.1.0+cu130torch2.11cxx11abitrue-cp312-cp312-linux_x86_64.whl"


def tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


# -- 2 and 11: the backup stays in its folder; the restore removes stray dist-infos -------------------


def fake_env(tmp_path: Path) -> tuple[transaction.Target, Path]:
    prefix = tmp_path / "env"
    site = prefix / "lib" / "python3.12" / "site-packages"
    (site / "fa_kernels").mkdir(parents=True)
    (prefix / "bin").mkdir()
    (site / "fa_kernels" / "__init__.py").write_text("__version__ = '0.1.0'\n")
    (prefix / "bin" / "fa-kernels-smoke").write_text("#!/bin/sh\necho old\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x").write_text("not yours\n")
    info = site / "fa_kernels-0.1.0.dist-info"
    info.mkdir()
    (info / "RECORD").write_text(
        "fa_kernels/__init__.py,,\n../../../bin/fa-kernels-smoke,,\n../../../../outside/x,,\n"
        f"{outside / 'x'},,\nfa_kernels-0.1.0.dist-info/RECORD,,\n")
    return transaction.Target(python="python", prefix=prefix, sites=(site,)), outside


def test_backup_stays_inside_its_folder_and_restore_is_exact(tmp_path: Path) -> None:  # item 2, item 11
    target, outside = fake_env(tmp_path)
    before_outside = (outside / "x").read_text()
    into = tmp_path / "backup"
    into.mkdir()
    before = tree(tmp_path)
    saved = transaction.backup(target, into)
    assert {p for p in tree(tmp_path) if not p.startswith("backup/")} == before  # nothing new outside
    assert all("/" not in name for name in tree(into))  # flat, numbered names
    assert saved.version == "0.1.0" and len(saved.files) == 3  # package file, bin script, RECORD
    site = target.sites[0]
    # a new install: other files, no script, and a stray dist-info pip left behind
    (site / "fa_kernels" / "__init__.py").write_text("__version__ = '0.2.0'\n")
    (site / "fa_kernels" / "new.py").write_text("")
    (target.prefix / "bin" / "fa-kernels-smoke").unlink()
    stray = site / "fa_kernels-0.2.0.dist-info"
    stray.mkdir()
    (stray / "METADATA").write_text("Name: fa-kernels\nVersion: 0.2.0\n")
    assert transaction.restore(target, saved) == "restored fa-kernels 0.1.0"
    assert (site / "fa_kernels" / "__init__.py").read_text() == "__version__ = '0.1.0'\n"
    assert not (site / "fa_kernels" / "new.py").exists() and not stray.exists()
    assert (target.prefix / "bin" / "fa-kernels-smoke").read_text() == "#!/bin/sh\necho old\n"
    assert (outside / "x").read_text() == before_outside  # listed in RECORD, outside the env: untouched


def test_restore_with_nothing_before_removes_the_new_install(tmp_path: Path) -> None:  # item 11
    target, _ = fake_env(tmp_path)
    empty = transaction.backup(transaction.Target("python", target.prefix, (tmp_path / "none",)), tmp_path)
    assert transaction.restore(target, empty).startswith("removed the new fa-kernels")
    assert transaction.dist_infos(target) == [] and not (target.sites[0] / "fa_kernels").exists()


def test_containment_refuses_names_that_leave_their_folder(tmp_path: Path) -> None:  # item 8
    for bad in ["../x.whl", "a/b.whl", "/etc/passwd", "..", ".hidden.whl", "a\\b.whl", "a\x00.whl", "", 3, None]:
        with pytest.raises(UnsafePath):
            safe_filename(bad)
    with pytest.raises(UnsafePath):
        within(tmp_path, "../escaped")
    (tmp_path / "link").symlink_to("/etc")
    with pytest.raises(UnsafePath):
        within(tmp_path, "link/passwd")
    assert within(tmp_path, "ok.whl") == tmp_path.resolve() / "ok.whl"


# -- 3: smoke output -----------------------------------------------------------------------------------


@pytest.mark.parametrize("stdout", [
    "{not json\n",
    '{"passed": true}\n',
    '{"passed": true, "device": "cpu", "fa_kernels": "1", "backends": [], "cases": []}\n',
    '{"passed": true, "device": "cpu", "fa_kernels": "1", "backends": [], "cases": [{"op": 1}]}\n',
    '{"passed": "yes", "device": "cpu", "fa_kernels": "1", "backends": [], "cases": [1]}\n',
    "[1, 2]\n", "", "\x00\xff{{{{\n",
])
def test_garbage_smoke_output_is_no_result(stdout: str) -> None:  # item 3
    assert smoke.parse_result(stdout) is None


def test_a_valid_smoke_result_is_found_after_noise() -> None:  # item 3
    data = smoke.parse_result("{noise\n" + wheelcraft.result("0.1.0") + "\ntrailing text\n")
    assert data is not None and data["fa_kernels"] == "0.1.0" and data["cases"][0]["passed"]


def test_smoke_timeout_from_flag_env_and_default(monkeypatch: pytest.MonkeyPatch) -> None:  # item 11
    monkeypatch.delenv("FA_DIST_SMOKE_TIMEOUT", raising=False)
    assert smoke.timeout_from(None) == smoke.DEFAULT_TIMEOUT_S and smoke.timeout_from(5) == 5
    monkeypatch.setenv("FA_DIST_SMOKE_TIMEOUT", "42")
    assert smoke.timeout_from(None) == 42
    monkeypatch.setenv("FA_DIST_SMOKE_TIMEOUT", "soon")
    with pytest.raises(ConfigError, match="not a number"):
        smoke.timeout_from(None)


# -- 6: the network policy -----------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "allowed"), [
    ("https://example.com/i/", True),
    ("HTTPS://example.com/i/", True),
    ("file:///srv/index/", True),
    ("http://127.0.0.1:8000/", True),
    ("http://127.1.2.3/", True),
    ("http://[::1]:8000/", True),
    ("http://[::ffff:127.0.0.1]/", True),
    ("http://example.com/", False),
    ("HTTP://example.com/", False),
    ("hTtP://example.com/", False),
    ("http://127.evil.example/", False),
    ("http://127.0.0.1.nip.io/", False),
    ("http://10.0.0.1/", False),
    ("ftp://127.0.0.1/", False),
    ("ftp://example.com/", False),
    ("gopher://x/", False),
    ("data:text/plain,hi", False),
    ("/just/a/path", False),
])
def test_network_policy(url: str, allowed: bool) -> None:  # item 6
    if allowed:
        net.check(url)
    else:
        with pytest.raises(net.PolicyRefused):
            net.check(url)


def test_insecure_http_flag_allows_plain_http_but_not_other_schemes() -> None:  # item 6
    net.check("http://example.com/", allow_insecure_http=True)
    with pytest.raises(net.PolicyRefused):
        net.check("ftp://example.com/", allow_insecure_http=True)


def test_gather_checks_the_scheme_case_insensitively(tmp_path: Path) -> None:  # item 6
    with pytest.raises(ConfigError, match="plain http to a non-local host"):
        install.gather([], [], ["HTTP://example.com/idx/"], offline=False)


# -- 7, 8, 9: manifests --------------------------------------------------------------------------------


def entry(**fields: object) -> dict[str, object]:
    return {"filename": "fa_kernels-0.1.0-py3-none-any.whl", "sha256": SHA, "archs": [], **fields}


@pytest.mark.parametrize("sha", [None, "", "0" * 63, "g" * 64, 5, SHA.upper()])
def test_an_entry_without_a_valid_sha256_is_refused(sha: object) -> None:  # item 7
    (cand,) = index_manifest.candidates({"wheels": [entry(sha256=sha)]}, base="https://x/", source="x")
    assert cand.sha256 is None and cand.problem and "--allow-unverified" in cand.problem
    verdict = resolve.resolve(H100(), [cand]).trace[0]
    assert not verdict.accepted and "no valid sha256" in verdict.reason
    with pytest.raises(FaDistError, match="no valid sha256"):
        install.fetch(cand)
    (allowed,) = index_manifest.candidates({"wheels": [entry(sha256=sha)]}, base="https://x/", source="x",
                                           allow_unverified=True)
    assert allowed.problem is None


def test_local_manifest_entry_with_empty_sha256_is_refused(tmp_path: Path) -> None:  # item 7
    wheel = wheelcraft.craft(tmp_path, "0.1.0", wheelcraft.passing_smoke("0.1.0"))
    (tmp_path / "manifest.json").write_text(json.dumps({"version": 1, "wheels": [{
        "filename": wheel.name, "sha256": "", "size": 1, "name": "fa-kernels", "version": "0.1.0",
        "variant": None, "archs": [], "python": "py3", "platform": "any", "recipe": "triton",
        "source_digest": "", "built_at": ""}]}))
    (cand,) = install.local_candidates(tmp_path, "wheelhouse")
    assert cand.problem and "no valid sha256" in cand.problem
    (ok,) = install.local_candidates(tmp_path, "wheelhouse", allow_unverified=True)
    assert ok.problem is None


@pytest.mark.parametrize("name", [
    "fa_kernels-0.1.0-py3-none-any.q/../../../../escaped/PWNED.whl",
    "../fa_kernels-0.1.0-py3-none-any.whl",
    "/tmp/fa_kernels-0.1.0-py3-none-any.whl",
])
def test_manifest_file_names_cannot_leave_the_cache(name: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:  # item 8
    monkeypatch.setenv("FA_DIST_CACHE_DIR", str(tmp_path / "cache"))
    (cand,) = index_manifest.candidates({"wheels": [entry(filename=name)]}, base="https://x/", source="x")
    assert cand.problem and not resolve.resolve(H100(), [cand]).trace[0].accepted
    raw = resolve.Candidate(filename=name, location="https://x/" + name, sha256=SHA)
    with pytest.raises(UnsafePath):
        install.fetch(raw)
    assert not (tmp_path / "escaped").exists() and tree(tmp_path) <= {"cache", "cache/wheels"}


def test_index_build_refuses_names_that_leave_the_wheelhouse(tmp_path: Path) -> None:  # item 8
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    wheels.mkdir()
    (tmp_path / "secret.whl").write_bytes(b"secret")
    (wheels / "manifest.json").write_text(json.dumps({"version": 1, "wheels": [{
        "filename": "../secret.whl", "sha256": SHA, "size": 6, "name": "fa-kernels", "version": "0.1.0",
        "variant": None, "archs": [], "python": "py3", "platform": "any", "recipe": "triton",
        "source_digest": "", "built_at": ""}]}))
    with pytest.raises(UnsafePath):
        index.build(wheels, site)
    assert not site.exists()


def test_index_check_does_not_follow_links_out_of_the_site(tmp_path: Path) -> None:  # item 8
    site = tmp_path / "site"
    (site / "simple").mkdir(parents=True)
    (tmp_path / "secret.whl").write_bytes(b"x")
    (site / "simple" / "index.html").write_text(
        '<a href="../../secret.whl#sha256=00">s</a><a href="/etc/passwd">p</a><a href="a\x00b">n</a>')
    problems = index.check(site)
    assert sum("leaves the site" in p.what for p in problems) == 3


@pytest.mark.parametrize("data", [
    None, [], {"wheels": None}, {"wheels": "x"}, {"wheels": [None]}, {"wheels": [{}]},
    {"wheels": [{"filename": 3}]}, {"wheels": [entry(archs="sm_90")]}, {"wheels": [entry(archs=[1])]},
    {"wheels": [entry(extra=[])]}, {"wheels": [entry(extra={"ptx": 9})]}, {"wheels": [entry(size="big")]},
    {"wheels": [entry(size=-1)]}, {"wheels": [entry(archs=["sm_9000x"], filename=COMPILED)]},
])
def test_ill_typed_manifests_are_errors_or_rejections(data: object) -> None:  # item 9
    try:
        cands = index_manifest.candidates(data, base="https://x/", source="x")
    except ConfigError:
        return
    for verdict in resolve.resolve(H100(), cands).trace:
        assert not verdict.accepted and verdict.reason


def test_an_oddly_named_wheel_is_rejected_and_the_rest_still_resolve() -> None:  # item 9
    good = "fa_kernels-0.1.0+cu130torch2.11cxx11abitrue-cp312-cp312-linux_x86_64.whl"
    odd = "fa_kernels-0.1.0+mybuild-cp312-cp312-linux_x86_64.whl"
    res = resolve.resolve(H100(), [resolve.Candidate(filename=n, location=n, sha256=None, archs=("sm_90a",))
                                   for n in (odd, good)])
    assert res.choice is not None and res.choice.filename == good
    assert "not a build variant" in res.trace[0].reason and not res.trace[0].accepted


# -- 9: env snapshots ----------------------------------------------------------------------------------


def snapshot(**python: object) -> dict[str, object]:
    data = json.loads((FIXTURES / "envs" / "h100-torch2.11-cu130.json").read_text())
    data["python"].update(python)
    return data


@pytest.mark.parametrize(("content", "message"), [
    (b"\xff\xfe\x00binary", "is not JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "is not JSON"),
    (b'{"schema": 1, "x": ' + b"9" * 5000 + b"}", "is not JSON"),
    (json.dumps(snapshot(glibc="musl")).encode(), "glibc"),
    (json.dumps(snapshot(version="three")).encode(), "python.version"),
    (json.dumps(snapshot(version=3)).encode(), "expected str"),
])
def test_bad_env_files_are_config_errors(tmp_path: Path, content: bytes, message: str) -> None:  # item 9
    path = tmp_path / "env.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        Environment.load(path)


# -- 10: matrix.yaml -----------------------------------------------------------------------------------

BASE = (ROOT / "matrix.yaml").read_text()


def _base_with(old: str, new: str) -> str:
    """matrix.yaml with one change; the change must apply, or the case would test the good file."""
    assert old in BASE, f"matrix.yaml no longer contains {old!r}"
    return BASE.replace(old, new, 1)


BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
    for p, c in zip("abcdefgh", "bcdefghi", strict=True))


@pytest.mark.parametrize(("text", "message"), [
    (BOMB, "alias bomb"),
    ("a: &a [*a]\n", "recursive alias"),
    (b"\xff\xfe\xfd", "not UTF-8"),
    (_base_with('python: ["3.10", "3.11", "3.12", "3.13"]\nplatforms', "python: [3.10]\nplatforms"),
     "quote versions"),
    (_base_with('  "2.11":\n', "  2.10:\n"), "must be a quoted string"),
    (_base_with("cxx11_abi: [true]", 'cxx11_abi: ["false"]'), "list of true/false"),
    (_base_with("ptx: sm_120", "ptx: sm_999"), "is not one of this toolkit's archs"),
    (_base_with("    platforms: [manylinux_x86_64]\n", "    platforms: [windows_amd64]\n"),
     "'windows_amd64' is not one of"),
    ("[" * 5000 + "]" * 5000, "nested too deeply"),
])
def test_hostile_matrix_files_are_config_errors(tmp_path: Path, text: str | bytes, message: str) -> None:  # item 10
    path = tmp_path / "matrix.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ConfigError, match=message):
        matrix.load(path)


def test_both_abis_give_distinct_cell_ids(tmp_path: Path) -> None:  # item 10
    path = tmp_path / "matrix.yaml"
    per_torch = _base_with("  runtimes: [cuda, rocm]\n", "  runtimes: []\n")  # ABIs split torch cells only
    path.write_text(per_torch.replace("cxx11_abi: [true]", "cxx11_abi: [true, false]", 1))
    cells = matrix.expand(matrix.load(path)).cells
    ids = [c.id for c in cells]
    old_abi = [i for i in ids if "cxx11abiFALSE" in i]
    assert len(ids) == len(set(ids)) and len(old_abi) * 2 == len(ids) > 0


# -- 11: wheel metadata, file modes ---------------------------------------------------------------------


def test_wheel_whose_metadata_version_differs_from_its_name_is_refused(tmp_path: Path) -> None:  # item 11
    good = wheelcraft.craft(tmp_path / "a", "0.2.0", "")
    wheelcheck.check(good, good.name)
    bad = wheelcraft.craft(tmp_path / "b", "0.2.0", "", meta_version="0.1.0")
    with pytest.raises(FaDistError, match=r"contains fa-kernels 0\.1\.0"):
        wheelcheck.check(bad, bad.name)
    (tmp_path / "junk.whl").write_bytes(b"not a zip")
    with pytest.raises(FaDistError, match="not a readable wheel"):
        wheelcheck.check(tmp_path / "junk.whl", "fa_kernels-0.2.0-py3-none-any.whl")


def test_the_wheelhouse_manifest_gets_a_umask_mode(tmp_path: Path) -> None:  # item 11
    old = os.umask(0o022)
    try:
        wheelhouse.add(tmp_path, wheelhouse.WheelEntry(
            filename="fa_kernels-0.1.0-py3-none-any.whl", sha256=SHA, size=1, name="fa-kernels",
            version="0.1.0", variant=None, archs=(), python="py3", platform="any", recipe="triton",
            source_digest="", built_at=""))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "manifest.json").stat().st_mode) == 0o644
