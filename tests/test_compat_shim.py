"""The flash-attn compat's flash_attn package, imported in-process from its built wheel: against the
fa_kernels of this checkout, against stand-ins for the fa_kernels names other work adds
(flash_attn_with_kvcache, bert_padding, rotary, s_aux), and without any fa_kernels."""

from __future__ import annotations

import importlib
import inspect
import sys
import types
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fa_dist.act import compat_install
from fa_dist.model import compat as compat_id

torch = pytest.importorskip("torch")
fa_kernels = pytest.importorskip("fa_kernels")

MODULES = ("flash_attn", "flash_attn.flash_attn_interface", "flash_attn.bert_padding", "flash_attn.layers.rotary",
           "flash_attn.ops.rms_norm", "flash_attn.ops.triton.layer_norm")
# flash_attn 2.8.3's parameters, in order (what callers pass positionally, and what transformers inspects)
KVCACHE = ["q", "k_cache", "v_cache", "k", "v", "rotary_cos", "rotary_sin", "cache_seqlens", "cache_batch_idx",
           "cache_leftpad", "block_table", "softmax_scale", "causal", "window_size", "softcap", "rotary_interleaved",
           "alibi_slopes", "num_splits", "return_softmax_lse"]


def forget_flash_attn() -> None:
    for name in [m for m in sys.modules if m == "flash_attn" or m.startswith("flash_attn.")]:
        del sys.modules[name]


@pytest.fixture
def flash_attn(tmp_path: Path) -> Iterator[Any]:
    """The compat's flash_attn (and its dist-info), importable for one test, fresh each time."""
    wheel = compat_install.write_wheel(fa_kernels.__version__, tmp_path / "wheel")
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    sys.path.insert(0, str(tmp_path / "site"))
    forget_flash_attn()
    try:
        yield importlib.import_module("flash_attn")
    finally:
        forget_flash_attn()
        sys.path.remove(str(tmp_path / "site"))


def test_every_module_imports_and_hands_out_fa_kernels_own_functions(flash_attn: Any) -> None:
    for name in MODULES:
        importlib.import_module(name)
    from flash_attn import flash_attn_func, flash_attn_varlen_func
    from flash_attn.ops.rms_norm import DropoutAddRMSNorm
    from flash_attn.ops.triton.layer_norm import RMSNorm, layer_norm_fn, rms_norm_fn

    assert flash_attn_func is fa_kernels.flash_attn_func and flash_attn_varlen_func is fa_kernels.flash_attn_varlen_func
    assert (rms_norm_fn, layer_norm_fn, RMSNorm, DropoutAddRMSNorm) == (
        fa_kernels.norm.rms_norm_fn, fa_kernels.norm.layer_norm_fn, fa_kernels.norm.RMSNorm,
        fa_kernels.norm.DropoutAddRMSNorm)
    assert flash_attn.__version__ == compat_id.version_for(fa_kernels.__version__)
    assert "flash_attn_with_kvcache" in dir(flash_attn) and not hasattr(flash_attn, "flash_attn_3_func")


def test_what_fa_kernels_lacks_has_flash_attns_signature_and_names_the_missing_piece(flash_attn: Any) -> None:
    if hasattr(fa_kernels, "flash_attn_with_kvcache"):
        pytest.skip("this fa_kernels has flash_attn_with_kvcache: see the stand-in tests")
    from flash_attn import flash_attn_with_kvcache
    from flash_attn.bert_padding import pad_input, unpad_input
    from flash_attn.layers.rotary import RotaryEmbedding, apply_rotary_emb, apply_rotary_emb_func

    assert list(inspect.signature(flash_attn_with_kvcache).parameters) == KVCACHE
    assert list(inspect.signature(unpad_input).parameters) == ["hidden_states", "attention_mask", "unused_mask"]
    with pytest.raises(NotImplementedError, match=r"fa-kernels .* has no fa_kernels\.flash_attn_with_kvcache"):
        flash_attn_with_kvcache(None, None, None)
    with pytest.raises(NotImplementedError, match=r"has no fa_kernels\.bert_padding\.pad_input"):
        pad_input(None, None, 1, 1)
    with pytest.raises(NotImplementedError, match=r"has no fa_kernels\.rotary\.RotaryEmbedding"):
        RotaryEmbedding(64)
    assert list(inspect.signature(RotaryEmbedding).parameters)[:2] == ["dim", "base"]
    assert apply_rotary_emb_func is apply_rotary_emb


def test_names_fa_kernels_gains_are_handed_out_in_place_of_the_stand_ins(
        flash_attn: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def kvcache(q, k_cache, v_cache, k=None, v=None, cache_seqlens=None, block_table=None):  # type: ignore[no-untyped-def]
        return "kvcache"

    def varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0,  # type: ignore[no-untyped-def]
               softmax_scale=None, causal=False, s_aux=None, block_table=None):
        return "varlen"

    padding = types.ModuleType("fa_kernels.bert_padding")
    padding.pad_input = lambda hidden_states, indices, batch, seqlen: "pad"  # type: ignore[attr-defined]
    rotary = types.ModuleType("fa_kernels.rotary")
    rotary.RotaryEmbedding = type("RotaryEmbedding", (), {})  # type: ignore[attr-defined]
    monkeypatch.setattr(fa_kernels, "flash_attn_with_kvcache", kvcache, raising=False)
    monkeypatch.setattr(fa_kernels, "flash_attn_varlen_func", varlen)
    monkeypatch.setitem(sys.modules, "fa_kernels.bert_padding", padding)
    monkeypatch.setitem(sys.modules, "fa_kernels.rotary", rotary)
    from flash_attn import flash_attn_varlen_func, flash_attn_with_kvcache
    from flash_attn.bert_padding import pad_input, unpad_input
    from flash_attn.layers.rotary import RotaryEmbedding

    assert (flash_attn_with_kvcache, flash_attn_varlen_func, RotaryEmbedding) == (kvcache, varlen, rotary.RotaryEmbedding)
    assert pad_input(None, None, 1, 1) == "pad"
    # transformers passes s_aux (attention sinks) only when the varlen function's signature has it
    assert "s_aux" in inspect.signature(flash_attn_varlen_func).parameters
    with pytest.raises(NotImplementedError, match=r"has no fa_kernels\.bert_padding\.unpad_input"):
        unpad_input(None, None)  # the new module lacks this one name: still a stand-in


def test_without_fa_kernels_imports_still_work_and_the_first_use_says_how_to_fix_it(
        flash_attn: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fa_kernels", None)  # import fa_kernels -> ImportError
    for name in MODULES:
        importlib.import_module(name)
    with pytest.raises(ImportError, match=r"compat layer over fa-kernels, and fa_kernels cannot be imported.*"
                                          r"fix: fa-dist install --flash-attn-compat"):
        from flash_attn import flash_attn_func  # noqa: F401


def test_transformers_sees_the_kwargs_it_passes(flash_attn: Any) -> None:
    """What transformers 5.x inspects in flash_attn_varlen_func before passing a keyword."""
    from flash_attn import flash_attn_func, flash_attn_varlen_func

    params = inspect.signature(flash_attn_varlen_func).parameters
    for name in ("cu_seqlens_q", "cu_seqlens_k", "max_seqlen_q", "max_seqlen_k", "dropout_p", "softmax_scale",
                 "causal", "window_size", "softcap", "deterministic", "block_table"):
        assert name in params, name
    assert "window_size" in inspect.signature(flash_attn_func).parameters


def qkv(total: int, h: int, d: int = 32) -> torch.Tensor:
    return torch.randn(total, 3, h, d, dtype=torch.float16)


def test_varlen_packed_adapters_match_the_fixed_length_function(flash_attn: Any) -> None:
    from flash_attn import (
        flash_attn_func,
        flash_attn_varlen_kvpacked_func,
        flash_attn_varlen_qkvpacked_func,
    )

    torch.manual_seed(0)
    lengths = [5, 9]
    cu = torch.tensor([0, 5, 14], dtype=torch.int32)
    packed = qkv(14, 2)
    out = flash_attn_varlen_qkvpacked_func(packed, cu, 9, causal=True)
    out_kv = flash_attn_varlen_kvpacked_func(packed[:, 0], packed[:, 1:], cu, cu, 9, 9, causal=True)
    for b, (start, n) in enumerate(zip([0, 5], lengths, strict=True)):
        one = packed[start:start + n][None]
        ref = flash_attn_func(one[:, :, 0], one[:, :, 1], one[:, :, 2], causal=True)[0]
        torch.testing.assert_close(out[start:start + n], ref, atol=2e-3, rtol=2e-3, msg=f"sequence {b}")
    torch.testing.assert_close(out_kv, out)


def test_dropout_add_rms_norm_keeps_flash_attns_positional_signature_and_returns(flash_attn: Any) -> None:
    from flash_attn.ops.rms_norm import dropout_add_rms_norm, rms_norm

    torch.manual_seed(0)
    x0, residual = torch.randn(4, 64), torch.randn(4, 64)
    weight = torch.rand(64) + 0.5
    z, x, keep = dropout_add_rms_norm(x0, residual, weight, None, 0.0, 1e-5, prenorm=True, return_dropout_mask=True)
    ref_x = x0 + residual
    torch.testing.assert_close(x, ref_x)
    torch.testing.assert_close(z, ref_x * torch.rsqrt(ref_x.pow(2).mean(-1, keepdim=True) + 1e-5) * weight)
    assert keep.dtype == torch.bool and bool(keep.all())
    z2, keep2 = dropout_add_rms_norm(x0, None, weight, None, 0.5, 1e-5, return_dropout_mask=True)
    assert not bool(keep2.all())  # p=0.5 dropped something, and the mask says what:
    kept = x0 * keep2 / 0.5
    torch.testing.assert_close(z2, kept * torch.rsqrt(kept.pow(2).mean(-1, keepdim=True) + 1e-5) * weight)
    torch.testing.assert_close(rms_norm(x0, weight, 1e-5), dropout_add_rms_norm(x0, None, weight, None, 0.0, 1e-5))
    with pytest.raises(NotImplementedError, match="layerscale"):
        dropout_add_rms_norm(x0, None, weight, None, 0.0, 1e-5, layerscale=weight)
