"""matrix.yaml, `fa-dist matrix`, the wheels workflow and cibuildwheel's view of the same cells."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fa_dist import matrix, recipes
from fa_dist.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "wheels.yml"


def committed() -> dict:  # type: ignore[type-arg]
    return matrix.load(ROOT / "matrix.yaml")


def test_committed_matrix_expands_with_reasons() -> None:
    data = committed()
    matrix.check_against_recipes(data, {n: r.archs for n, r in recipes.load_all().items()})
    exp = matrix.expand(data)
    assert len(exp.cells) == 48 and exp.pure_triton_wheel
    assert exp.pruned == {"no cuda 12.6 build of torch for manylinux_aarch64": 8,
                          "no rocm 6.4 build of torch for manylinux_aarch64": 8}
    ids = [c.id for c in exp.cells]
    assert len(set(ids)) == len(ids)
    cell = next(c for c in exp.cells if c.id == "cp312-manylinux_x86_64-cu130-torch2.11")
    assert cell.variant == "cu130torch2.11cxx11abiTRUE" and cell.archs.endswith("12.0+PTX")
    assert cell.build_args == "--recipe cuda --arch sm_80,sm_86,sm_89,sm_90,sm_100,sm_120 --ptx sm_120"


def test_only_slices() -> None:
    exp = matrix.expand(committed(), matrix.parse_only("torch=2.11,cuda=13.0"))
    assert {c.runtime for c in exp.cells} == {"cu130"} and {c.torch for c in exp.cells} == {"2.11"}
    assert len(exp.cells) == 8  # 4 Pythons x 2 platforms
    with pytest.raises(ConfigError, match="expected key=value"):
        matrix.parse_only("gpu=h100")


BASE = (ROOT / "matrix.yaml").read_text()


@pytest.mark.parametrize(("edit", "message"), [
    (lambda t: t.replace("platforms: [manylinux_x86_64, manylinux_aarch64]\nmanylinux_image",
                         "platfroms: [manylinux_x86_64]\nmanylinux_image"), ":7: platfroms: unknown key (did you mean 'platforms'?)"),
    (lambda t: t.replace("archs: [sm_80, sm_86, sm_89, sm_90]", "archs: [sm_80, sm_120]"), "nvcc 12.6 cannot build sm_120"),
    (lambda t: t.replace('cuda: ["12.6", "12.8", "13.0"]\n    rocm: ["6.4"]\n  "2.11"', 'cuda: ["12.4"]\n    rocm: ["6.4"]\n  "2.11"'),
     "CUDA 12.4 has no entry under cuda:"),
    (lambda t: t.replace("version: 1", "version: 2"), "version: expected 1"),
    (lambda t: t.replace("pure_triton_wheel: true", "pure_triton_wheel: yes please"), "expected a bool"),
])
def test_validation_names_line_key_and_expectation(tmp_path: Path, edit, message: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "matrix.yaml"
    path.write_text(edit(BASE))
    with pytest.raises(ConfigError) as err:
        matrix.load(path)
    assert message in err.value.message and str(path) in err.value.message


def fa_dist(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fa_dist", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}, cwd=cwd)


@pytest.mark.integration
def test_matrix_reads_the_current_folder_or_file_and_names_the_fix(tmp_path: Path) -> None:
    missing = fa_dist("matrix", cwd=tmp_path)
    assert missing.returncode == 2
    assert f"no matrix file at {tmp_path / 'matrix.yaml'}" in missing.stderr
    assert "fix: run fa-dist matrix in the folder that holds matrix.yaml" in missing.stderr
    given = fa_dist("matrix", "--file", str(ROOT / "matrix.yaml"), "--format", "github", cwd=tmp_path)
    assert given.returncode == 0 and len(json.loads(given.stdout)["include"]) == 48


@pytest.mark.integration
def test_github_json_has_every_key_the_workflow_reads() -> None:
    done = fa_dist("matrix", "--format", "github")
    assert done.returncode == 0, done.stderr
    cells = json.loads(done.stdout)["include"]
    assert len(cells) == 48
    used = set(re.findall(r"\$\{\{\s*matrix\.(\w+)\s*\}\}", WORKFLOW.read_text()))
    assert used and all(used <= set(c) for c in cells), used - set(cells[0])
    table = fa_dist("matrix", "--only", "torch=2.10,python=3.13")
    assert "6 compiled wheels + 1 pure-Triton wheel = 7 wheels" in table.stdout


def test_workflow_parses_and_references_only_what_exists() -> None:
    flow = yaml.safe_load(WORKFLOW.read_text())
    assert set(flow["jobs"]) == {"matrix", "compiled", "pure", "index"}
    assert flow["jobs"]["index"]["needs"] == ["compiled", "pure"]
    text = WORKFLOW.read_text() + (ROOT / "kernels" / "pyproject.toml").read_text()
    for script in set(re.findall(r"tools/ci/[\w.]+", text)):
        assert (ROOT / script).is_file(), script
    from fa_dist.cli import cli

    for command in set(re.findall(r"fa-dist (\w+)", WORKFLOW.read_text())):
        assert command in cli.commands, command


@pytest.mark.integration
def test_cibuildwheel_identifiers_match_the_matrix() -> None:
    cells = matrix.expand(committed()).cells
    for arch in ("x86_64", "aarch64"):
        wanted = sorted({c.cibw_build for c in cells if c.cibw_archs == arch})
        done = subprocess.run([sys.executable, "-m", "cibuildwheel", "--print-build-identifiers", "--platform",
                               "linux", "--archs", arch], cwd=ROOT / "kernels", capture_output=True, text=True,
                              timeout=120, env={**os.environ, "CIBW_BUILD": " ".join(wanted)})
        assert done.returncode == 0, done.stderr[-2000:]
        assert sorted(done.stdout.split()) == wanted
