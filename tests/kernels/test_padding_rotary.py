"""fa_kernels.bert_padding and fa_kernels.rotary (flash_attn's helper modules), in plain PyTorch."""

from __future__ import annotations

import pytest
import torch

from fa_kernels import reference
from fa_kernels.bert_padding import index_first_axis, index_put_first_axis, pad_input, unpad_input
from fa_kernels.rotary import (
    RotaryEmbedding,
    apply_rotary_emb,
    apply_rotary_emb_kv_,
    apply_rotary_emb_qkv_,
)


def left_and_right_padded_mask() -> torch.Tensor:
    mask = torch.ones(3, 7, dtype=torch.int64)
    mask[0, :3] = 0   # left padding
    mask[1, 5:] = 0   # right padding
    return mask


def test_unpad_then_pad_round_trips_and_passes_gradients():
    mask = left_and_right_padded_mask()
    x = torch.randn(3, 7, 2, 4, dtype=torch.float64, requires_grad=True)
    packed, indices, cu, max_len, used = unpad_input(x, mask)
    assert packed.shape == (4 + 5 + 7, 2, 4)
    assert cu.dtype == torch.int32 and cu.tolist() == [0, 4, 9, 16]
    assert max_len == 7 and used.tolist() == [4, 5, 7]
    assert torch.equal(packed, x.detach().reshape(21, 2, 4)[mask.flatten().bool()])
    back = pad_input(packed, indices, 3, 7)
    assert torch.equal(back, x.detach() * mask[..., None, None])
    (grad,) = torch.autograd.grad(back.sum(), x)
    assert torch.equal(grad, mask[..., None, None].expand_as(x).to(grad.dtype))


def test_unused_mask_is_packed_but_not_counted_as_used():
    mask = left_and_right_padded_mask()
    unused = torch.zeros_like(mask)
    unused[1, 5] = 1  # a token kept in the pack (e.g. a prefix cached elsewhere) but not "used"
    packed, _indices, cu, _max_len, used = unpad_input(torch.randn(3, 7, 8), mask, unused)
    assert packed.shape[0] == 17 and cu.tolist() == [0, 4, 10, 17] and used.tolist() == [4, 5, 7]


@pytest.mark.parametrize("index_dtype", [torch.int64, torch.int32])  # transformers' generate passes int32
def test_index_put_first_axis_inverts_index_first_axis(index_dtype):
    x = torch.randn(10, 3)
    idx = torch.tensor([7, 2, 5], dtype=index_dtype)
    rows = index_first_axis(x, idx)
    assert torch.equal(rows, x[idx])
    scattered = index_put_first_axis(rows, idx, 10)
    others = torch.ones(10, dtype=torch.bool)
    others[idx] = False
    assert torch.equal(scattered[idx], x[idx]) and not scattered[others].any()


# -- rotary ------------------------------------------------------------------------------------------

def complex_rotation(x, cos, sin, positions, interleaved):
    """Independent definition: each pair is a complex number multiplied by e^(i * angle)."""
    half = cos.shape[1]
    angle = torch.atan2(sin.double(), cos.double())[positions][..., None, :]
    rot = x[..., :2 * half].double()
    pairs = rot.unflatten(-1, (half, 2)) if interleaved else rot.unflatten(-1, (2, half)).transpose(-1, -2)
    turned = torch.view_as_real(torch.view_as_complex(pairs.contiguous()) * torch.polar(torch.ones_like(angle), angle))
    turned = turned.flatten(-2) if interleaved else turned.transpose(-1, -2).flatten(-2)
    return torch.cat((turned, x[..., 2 * half:].double()), dim=-1)


def tables(seqlen: int, half: int) -> tuple[torch.Tensor, torch.Tensor]:
    angle = torch.rand(seqlen, half, dtype=torch.float64) * 6.28
    return angle.cos(), angle.sin()


@pytest.mark.parametrize("interleaved", [False, True])
def test_apply_rotary_emb_is_a_rotation_of_each_pair(interleaved):
    torch.manual_seed(0)
    x = torch.randn(2, 5, 3, 16, dtype=torch.float64)
    cos, sin = tables(12, 6)  # rotary_dim 12 of 16
    offsets = torch.tensor([0, 4])
    pos = torch.arange(5)[None] + offsets[:, None]
    want = complex_rotation(x, cos, sin, pos, interleaved)
    got = apply_rotary_emb(x, cos, sin, interleaved=interleaved, seqlen_offsets=offsets)
    assert torch.allclose(got, want, atol=1e-12)
    assert torch.allclose(reference.rotary(x, cos, sin, pos, interleaved=interleaved).double(), want)
    shifted = apply_rotary_emb(x, cos, sin, interleaved=interleaved, seqlen_offsets=3)
    assert torch.allclose(shifted, complex_rotation(x, cos, sin, torch.arange(3, 8), interleaved), atol=1e-12)


def test_varlen_positions_restart_per_sequence_and_inplace_writes_x():
    cos, sin = tables(20, 8)
    x = torch.randn(9, 2, 16, dtype=torch.float64)
    cu = torch.tensor([0, 4, 9], dtype=torch.int32)
    got = apply_rotary_emb(x.clone(), cos, sin, seqlen_offsets=torch.tensor([2, 0]), cu_seqlens=cu, max_seqlen=5)
    first = apply_rotary_emb(x[None, :4], cos, sin, seqlen_offsets=2)[0]
    second = apply_rotary_emb(x[None, 4:], cos, sin)[0]
    assert torch.allclose(got, torch.cat((first, second)))
    y = x.clone()
    assert apply_rotary_emb(y, cos, sin, inplace=True, cu_seqlens=cu, seqlen_offsets=torch.tensor([2, 0])) is y
    assert torch.allclose(y, got)


def test_positions_past_the_table_stay_unrotated_and_the_gradient_rotates_back():
    cos, sin = tables(4, 4)
    x = torch.randn(1, 6, 1, 8, dtype=torch.float64, requires_grad=True)
    out = apply_rotary_emb(x, cos, sin)
    assert torch.equal(out[:, 4:], x[:, 4:])
    g = torch.randn_like(out)
    (dx,) = torch.autograd.grad(out, x, g)
    assert torch.allclose(dx, apply_rotary_emb(g, cos, -sin))  # a rotation's adjoint is its inverse


def test_rotary_embedding_rotates_q_and_k_in_place():
    torch.manual_seed(1)
    rope = RotaryEmbedding(8, interleaved=True)
    qkv = torch.randn(2, 6, 3, 2, 16)
    want_q = apply_rotary_emb(qkv[:, :, 0], *_tables(rope, 9), interleaved=True, seqlen_offsets=3)
    want_k = apply_rotary_emb(qkv[:, :, 1], *_tables(rope, 9), interleaved=True, seqlen_offsets=3)
    v = qkv[:, :, 2].clone()
    assert rope(qkv, seqlen_offset=3) is qkv
    assert torch.allclose(qkv[:, :, 0], want_q, atol=1e-6) and torch.allclose(qkv[:, :, 1], want_k, atol=1e-6)
    assert torch.equal(qkv[:, :, 2], v)
    gqa = torch.randn(2, 6, 4 + 2 * 1, 16)
    want = apply_rotary_emb(gqa[:, :, 4:5], *_tables(rope, 6), interleaved=True)
    rope(gqa, num_heads_q=4)
    assert torch.allclose(gqa[:, :, 4:5], want, atol=1e-6)
    q, kv = torch.randn(2, 6, 2, 16), torch.randn(2, 6, 2, 2, 16)
    want_k = apply_rotary_emb(kv[:, :, 0], *_tables(rope, 6), interleaved=True)
    rope(q, kv)
    assert torch.allclose(kv[:, :, 0], want_k, atol=1e-6)


def _tables(rope: RotaryEmbedding, seqlen: int) -> tuple[torch.Tensor, torch.Tensor]:
    t = torch.arange(seqlen, dtype=torch.float32)
    freqs = torch.outer(t, 1.0 / 10000.0 ** (torch.arange(0, rope.dim, 2, dtype=torch.float32) / rope.dim))
    return freqs.cos(), freqs.sin()


def test_xpos_scales_q_up_and_k_down():
    rope = RotaryEmbedding(8, scale_base=512)
    rope._update_cos_sin_cache(10, device=torch.device("cpu"), dtype=torch.float32)
    assert rope._cos_k_cached is not None and rope._cos_cached is not None
    cos, _sin = _tables(rope, 10)
    # cos_q * cos_k = cos^2: the scales cancel in q . k, leaving relative-position decay
    assert torch.allclose(rope._cos_cached * rope._cos_k_cached, cos * cos, atol=1e-6)
    kv = torch.randn(1, 10, 2, 1, 16)
    k = kv[:, :, 0].clone()
    apply_rotary_emb_kv_(kv, rope._cos_k_cached, rope._sin_k_cached)
    assert torch.allclose(kv[:, :, 0], apply_rotary_emb(k, rope._cos_k_cached, rope._sin_k_cached))
    qkv = torch.randn(1, 10, 3, 1, 16)
    q = qkv[:, :, 0].clone()
    apply_rotary_emb_qkv_(qkv, rope._cos_cached, rope._sin_cached, rope._cos_k_cached, rope._sin_k_cached)
    assert torch.allclose(qkv[:, :, 0], apply_rotary_emb(q, rope._cos_cached, rope._sin_cached))


@pytest.mark.gpu
def test_gpu_padding_and_rotary_match_the_cpu():
    mask = left_and_right_padded_mask()
    x = torch.randn(3, 7, 4, 64, dtype=torch.bfloat16)
    packed, indices, cu, max_len, _used = unpad_input(x.cuda(), mask.cuda())
    assert cu.tolist() == [0, 4, 9, 16] and max_len == 7
    assert torch.equal(pad_input(packed, indices, 3, 7).cpu(), x * mask[..., None, None])
    cos, sin = tables(40, 32)
    offsets = torch.tensor([3, 0, 9], dtype=torch.int32)
    for interleaved in (False, True):
        got = apply_rotary_emb(x.cuda(), cos.float().cuda(), sin.float().cuda(), interleaved=interleaved,
                               seqlen_offsets=offsets.cuda())
        want = apply_rotary_emb(x, cos.float(), sin.float(), interleaved=interleaved, seqlen_offsets=offsets)
        assert torch.allclose(got.cpu().float(), want.float(), atol=1e-2)
