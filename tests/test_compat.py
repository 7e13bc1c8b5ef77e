"""The flash-attn compat's naming, wheel, decisions and doctor findings (pure, no processes)."""

from __future__ import annotations

import base64
import hashlib
import json
import zipfile
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging.utils import parse_wheel_filename

from fa_dist import containment, output
from fa_dist.act import compat_install
from fa_dist.act import record as install_record
from fa_dist.decide import checks, compat
from fa_dist.decide.checks import Severity
from fa_dist.errors import ConfigError
from fa_dist.facts import detect
from fa_dist.model import compat as compat_id
from fa_dist.model.environment import Environment, ImportStatus, PackageInfo

from .envs import CPU, H100, mutate

TEMPLATES = Path(compat.__file__).parents[1] / compat.TEMPLATES / "flash_attn"


def compat_pkg(made_for: str = "0.1.0", **kw: object) -> PackageInfo:
    fields: dict = {"name": "flash-attn", "version": f"2.8.3+fakernels.{made_for}", "location": "/site",
                    "import_status": ImportStatus.OK,
                    "build_info": {"provider": compat_id.PROVIDER, "api": "2.8.3", "fa_kernels": made_for}}
    return PackageInfo(**{**fields, **kw})


def kernels_pkg(version: str = "0.1.0") -> PackageInfo:
    return PackageInfo(name="fa-kernels", version=version, location="/site", import_status=ImportStatus.OK)


UPSTREAM = PackageInfo(name="flash-attn", version="2.7.4.post1", location="/usr/lib/site",
                       import_status=ImportStatus.OK)


# -- naming ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kernels", ["0.1.0", "0.1.0+cu130torch2.11cxx11abitrue"])
def test_version_names_the_api_and_fa_kernels_and_satisfies_what_libraries_require(kernels: str) -> None:
    version = compat_id.version_for(kernels)
    assert version == "2.8.3+fakernels.0.1.0" and compat_id.is_compat_version(version)
    for spec in (">=2.3.3", ">=2.1.0,<3", "==2.8.3", "~=2.8"):
        assert SpecifierSet(spec).contains(version), spec
    assert not SpecifierSet("==2.7.4.post1").contains(version)
    assert not compat_id.is_compat_version("2.8.3") and not compat_id.is_compat_version("2.8.3+cu12torch2.6cxx11abiFALSE")


def test_a_bad_fa_kernels_version_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="'nope' is not a version"):
        compat_id.version_for("nope")


# -- the wheel ---------------------------------------------------------------------------------

def test_wheel_is_byte_identical_complete_and_its_record_is_true(tmp_path: Path) -> None:
    first = compat_install.write_wheel("0.1.0+cu130torch2.11cxx11abitrue", tmp_path / "a")
    second = compat_install.write_wheel("0.1.0", tmp_path / "b")
    assert first.read_bytes() == second.read_bytes()
    assert first.stat().st_mode & 0o777 == 0o666 & ~containment.umask()  # not mkstemp's 0600
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no temporary file left
    name, version, _, tags = parse_wheel_filename(first.name)
    assert (name, str(version), {str(t) for t in tags}) == ("flash-attn", "2.8.3+fakernels.0.1.0", {"py3-none-any"})
    archive = zipfile.ZipFile(first)
    info = "flash_attn-2.8.3+fakernels.0.1.0.dist-info"
    record = archive.read(f"{info}/RECORD").decode().splitlines()
    assert sorted(line.split(",")[0] for line in record) == sorted(archive.namelist())
    for line in record:
        path, digest, size = line.split(",")
        if path.endswith("RECORD"):
            continue
        data = archive.read(path)
        assert digest == "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        assert int(size) == len(data)
    templates = {f"flash_attn/{p.relative_to(TEMPLATES)}" for p in TEMPLATES.rglob("*.py")}
    assert templates <= set(archive.namelist())
    metadata = archive.read(f"{info}/METADATA").decode()
    assert "Name: flash-attn\n" in metadata and "Version: 2.8.3+fakernels.0.1.0\n" in metadata
    assert "Requires-Dist: fa-kernels==0.1.0\n" in metadata
    assert archive.read(f"{info}/top_level.txt") == b"flash_attn\n"
    assert json.loads(archive.read(compat_id.MARKER))["provider"] == compat_id.PROVIDER
    assert '__version__ = "2.8.3+fakernels.0.1.0"' in archive.read("flash_attn/_version.py").decode()


def test_every_template_is_package_data_of_fa_dist() -> None:
    """An installed fa-dist (not only a checkout) must carry every template file."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    globs = tomllib.loads((Path(compat.__file__).parents[2] / "pyproject.toml").read_text())[
        "tool"]["setuptools"]["package-data"]["fa_dist"]
    base = TEMPLATES.parent.parent
    shipped = {p for g in globs for p in base.glob(g)}
    assert set(TEMPLATES.rglob("*.py")) <= shipped


# -- decisions ---------------------------------------------------------------------------------

def test_a_real_flash_attn_is_refused_by_name_before_anything_changes() -> None:
    with pytest.raises(ConfigError) as refused:
        compat.refuse_over_upstream(mutate(H100(), packages=(UPSTREAM,)))
    assert "flash-attn 2.7.4.post1 at /usr/lib/site" in refused.value.message
    assert "fa-dist doctor" in refused.value.message and "uninstall -y flash-attn" in (refused.value.fix or "")
    compat.refuse_over_upstream(mutate(H100(), packages=(compat_pkg(), kernels_pkg())))  # ours: replaced
    compat.refuse_over_upstream(CPU())


def test_uninstall_tells_the_compat_from_a_real_flash_attn_by_its_marker(tmp_path: Path) -> None:
    assert not compat_install._has_marker(str(tmp_path)) and not compat_install._has_marker(None)
    (tmp_path / compat_id.MARKER).parent.mkdir()
    (tmp_path / compat_id.MARKER).write_bytes(compat.package_files("0.1.0")[compat_id.MARKER])
    assert compat_install._has_marker(str(tmp_path))
    (tmp_path / compat_id.MARKER).write_text('{"provider": "someone else"}')
    assert not compat_install._has_marker(str(tmp_path))


def test_the_probe_imports_the_compat_by_its_own_module_and_upstream_by_its_compiled_one() -> None:
    assert detect._probe_args("flash-attn", "2.8.3+fakernels.0.1.0") == (
        "flash-attn", compat_id.MARKER, *compat_id.PROBE_MODULES)
    assert detect._probe_args("flash-attn", "2.7.4.post1") == ("flash-attn", compat_id.MARKER, "flash_attn_2_cuda")


# -- doctor ------------------------------------------------------------------------------------

def compat_findings(*packages: PackageInfo) -> list[checks.Finding]:
    return [f for f in checks.run_checks(mutate(H100(), packages=packages))
            if f.id in ("flash-attn-compat", "package-flash-attn")]


def test_doctor_names_the_compat_as_what_provides_flash_attn() -> None:
    (found,) = compat_findings(compat_pkg(), kernels_pkg("0.1.0+cu130torch2.11cxx11abitrue"))
    assert found.severity is Severity.OK and "compat 2.8.3+fakernels.0.1.0 over fa-kernels 0.1.0" in found.title
    rows = dict(output.facts(mutate(H100(), packages=(compat_pkg(),))))
    assert "provides flash_attn: fa-dist's compat over fa-kernels (made for 0.1.0)" in rows["flash-attn"]
    rows = dict(output.facts(mutate(H100(), packages=(UPSTREAM,))))
    assert "provides flash_attn: upstream flash-attn" in rows["flash-attn"]


@pytest.mark.parametrize(("packages", "severity", "says"), [
    ((compat_pkg(),), Severity.ERROR, "installed without fa-kernels"),
    ((compat_pkg("0.1.0"), kernels_pkg("0.2.0")), Severity.WARNING, "made for fa-kernels 0.1.0, 0.2.0 is installed"),
    ((compat_pkg(import_status=ImportStatus.BROKEN, import_error="No module named 'flash_attn._fa_kernels'"),
      kernels_pkg()), Severity.ERROR, "does not import"),
])
def test_doctor_flags_a_compat_that_no_longer_fits(packages: tuple[PackageInfo, ...], severity: Severity, says: str) -> None:
    (found,) = compat_findings(*packages)
    assert found.severity is severity and says in found.title
    assert "fa-dist install --flash-attn-compat" in (found.fix or "")


def test_doctor_treats_a_real_flash_attn_as_before() -> None:
    (found,) = compat_findings(UPSTREAM)
    assert found.id == "package-flash-attn" and found.severity is Severity.OK


# -- the record --------------------------------------------------------------------------------

def test_the_record_keeps_the_compat_across_a_new_fa_kernels_install_and_drops_it_on_removal(tmp_path: Path) -> None:
    env = mutate(CPU(), python__prefix=str(tmp_path))
    assert compat_install.write_record(str(tmp_path), None) and not (tmp_path / install_record.RECORD_NAME).exists()
    entry = {"wheel": "flash_attn-2.8.3+fakernels.0.1.0-py3-none-any.whl", "sha256": "ab" * 32,
             "smoke": {"passed": True, "device": "cpu"}}
    compat_install.write_record(str(tmp_path), entry)
    from fa_dist.decide.resolve import Candidate

    cand = Candidate(filename="fa_kernels-0.1.0-py3-none-any.whl", location="/w/x.whl", sha256="cd" * 32,
                     archs=(), ptx=None, source="wheelhouse")
    install_record.write_record(env, cand, "cd" * 32, None)
    record = install_record.read_record(str(tmp_path))
    assert record is not None and record["sha256"] == "cd" * 32 and record[install_record.COMPAT_KEY] == entry
    assert "sha256 abababababab..., smoke passed on cpu" in compat_install.summary(entry)
    compat_install.write_record(str(tmp_path), None)
    record = install_record.read_record(str(tmp_path))
    assert record is not None and install_record.COMPAT_KEY not in record and record["sha256"] == "cd" * 32


# -- the install command's plan ----------------------------------------------------------------

def plan(env: Environment, wheelhouse: Path) -> str:
    from fa_dist.options import InstallOptions
    from fa_dist.pipelines import install as install_pipeline

    options = InstallOptions(wheelhouses=(wheelhouse,), offline=True, dry_run=True, flash_attn_compat=True)
    outcome = install_pipeline.run(install_pipeline.plan(env, options))
    return str(output.install_outcome_json(outcome, as_json=True)["plan"])


def test_the_dry_run_plans_the_compat_beside_fa_kernels_and_refuses_over_a_real_flash_attn(tmp_path: Path) -> None:
    assert "then the flash-attn compat 2.8.3+fakernels.0.1.0 beside it" in plan(H100(), tmp_path)
    with pytest.raises(ConfigError, match=r"a real flash-attn is installed: flash-attn 2\.7\.4\.post1"):
        plan(mutate(H100(), packages=(UPSTREAM,)), tmp_path)
    assert not list(tmp_path.iterdir())  # refused before anything was built


def test_the_compat_entry_is_written_with_fa_kernels_record_inside_the_transaction(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The entry ``then`` (the compat step) returns goes into the record act/install.py writes, under
    the lock and before the rollback guard ends; nothing writes it afterwards."""
    from fa_dist.act import install as act_install
    from fa_dist.act import transaction
    from fa_dist.decide.resolve import Candidate, Resolution

    env = mutate(CPU(), python__prefix=str(tmp_path))
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.setattr(transaction, "locate", lambda python, prefix: transaction.Target(
        python=python, prefix=Path(prefix), sites=(site,)))
    wheel = tmp_path / "fa_kernels-0.1.0-py3-none-any.whl"
    monkeypatch.setattr(act_install, "fetch", lambda cand, **kw: wheel)
    monkeypatch.setattr(act_install.wheelcheck, "check", lambda path, name: None)
    monkeypatch.setattr(act_install, "_install_and_check", lambda *args, **kwargs: None)
    cand = Candidate(filename=wheel.name, location=str(wheel), sha256="cd" * 32, archs=(), ptx=None,
                     source="wheelhouse")
    entry = {"wheel": "flash_attn-2.8.3+fakernels.0.1.0-py3-none-any.whl", "sha256": "ab" * 32}
    locked = []

    def then() -> dict[str, object]:
        locked.append((tmp_path / transaction.LOCK_NAME).exists())
        assert install_record.read_record(str(tmp_path)) is None  # not written before the compat ran
        return entry

    act_install.install(env, Resolution(choice=cand, trace=()), log=lambda line: None, then=then)
    record = install_record.read_record(str(tmp_path))
    assert locked == [True] and record is not None
    assert record["sha256"] == "cd" * 32 and record[install_record.COMPAT_KEY] == entry
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".fa-dist-install.json")] == []


def test_uninstall_holds_the_install_lock_while_it_removes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import contextlib
    from collections.abc import Iterator

    from fa_dist import subproc
    from fa_dist.act import transaction

    installed = {"fa-kernels": {"version": "0.1.0", "location": None}}
    monkeypatch.setattr(compat_install, "_installed", lambda python: (str(tmp_path), installed))
    monkeypatch.setattr(transaction, "locate", lambda python, prefix: transaction.Target(
        python=python, prefix=Path(prefix), sites=()))
    events: list[str] = []

    @contextlib.contextmanager
    def locked(target: transaction.Target, log: object) -> Iterator[None]:
        events.append(f"lock {target.prefix}")
        yield
        events.append("unlock")

    def pip(argv: list[str], timeout: float) -> subproc.Completed:
        events.append(" ".join(argv[1:]))
        return subproc.Completed(tuple(argv), 0, "", "")

    monkeypatch.setattr(transaction, "locked", locked)
    monkeypatch.setattr(compat_install.subproc, "run", pip)
    assert compat_install.uninstall("py", compat_only=False, log=lambda line: None) == ["fa-kernels"]
    assert events == [f"lock {tmp_path}", "-m pip uninstall -y fa-kernels", "unlock"]
