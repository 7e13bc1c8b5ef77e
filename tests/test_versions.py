from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fa_dist.errors import ParseError
from fa_dist.model.versions import Arch, ArchFamily, CudaVersion

cuda_versions = st.builds(CudaVersion, st.integers(0, 99), st.integers(0, 9))
nvidia_archs = st.builds(Arch, st.just(ArchFamily.NVIDIA), st.integers(1, 20), st.integers(0, 9),
                         st.sampled_from(["", "a", "f"]))


@given(cuda_versions)
def test_cuda_version_round_trips_through_text_and_tag(v: CudaVersion) -> None:
    assert CudaVersion.parse(str(v)) == v
    if v.major >= 10:
        assert CudaVersion.parse(v.tag) == v


@given(nvidia_archs)
def test_nvidia_arch_round_trips(a: Arch) -> None:
    assert Arch.parse(str(a)) == a
    assert Arch.parse(a.capability) == a


@pytest.mark.parametrize(("text", "expected"), [
    ("13.0", CudaVersion(13, 0)), ("12.8.93", CudaVersion(12, 8)), ("cu130", CudaVersion(13, 0)),
    ("13000", CudaVersion(13, 0)), ("12090", CudaVersion(12, 9)), (" 11.8 ", CudaVersion(11, 8)),
])
def test_cuda_version_accepts_every_form_tools_print(text: str, expected: CudaVersion) -> None:
    assert CudaVersion.parse(text) == expected


@pytest.mark.parametrize("text", ["", "13", "thirteen", "1.2.3.x", "cu"])
def test_cuda_version_rejects_garbage_with_a_parse_error(text: str) -> None:
    with pytest.raises(ParseError, match="not a CUDA version"):
        CudaVersion.parse(text)


@pytest.mark.parametrize(("text", "canonical"), [
    ("sm_90a", "sm_90a"), ("sm90", "sm_90"), ("compute_80", "sm_80"), ("9.0", "sm_90"),
    ("9.0a", "sm_90a"), ("10.0f", "sm_100f"), ("12.1", "sm_121"), ("8.6+PTX", "sm_86"),
    ("gfx942", "gfx942"), ("gfx90a:sramecc+:xnack-", "gfx90a"), ("GFX1100", "gfx1100"),
])
def test_arch_parses_torch_nvcc_and_rocm_spellings(text: str, canonical: str) -> None:
    assert str(Arch.parse(text)) == canonical


def test_arch_order_follows_compute_capability() -> None:
    ordered = ["sm_75", "sm_80", "sm_86", "sm_89", "sm_90", "sm_100", "sm_120"]
    assert sorted(Arch.parse(a) for a in reversed(ordered)) == [Arch.parse(a) for a in ordered]
    assert Arch.parse("sm_90a").base == Arch.parse("sm_90")


def test_amd_arch_keeps_its_name_and_family() -> None:
    a = Arch.parse("gfx90a")
    assert (a.family, a.major, a.minor, str(a)) == (ArchFamily.AMD, 9, 0, "gfx90a")
    assert not a.is_nvidia


@pytest.mark.parametrize("text", ["sm_", "gfx", "ampere", "9"])
def test_arch_rejects_garbage(text: str) -> None:
    with pytest.raises(ParseError):
        Arch.parse(text)
