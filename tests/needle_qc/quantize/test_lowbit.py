"""int4 packing order, weight quantization records and fp16/bf16 casts."""
import numpy as np
import pytest

from needle_qc.quantize import (
    bf16_to_float32,
    cast_bf16,
    cast_fp16,
    pack_int4,
    quantize_weight,
    unpack_int4,
)


def test_pack_int4_low_nibble_first_and_odd_padding():
    q = np.array([1, -2, 7, -8, 3], np.int8)
    packed = pack_int4(q)
    # byte 0 = 1 | (0xE << 4), byte 1 = 7 | (0x8 << 4), byte 2 = 3 | (pad 0 << 4)
    np.testing.assert_array_equal(packed, np.array([0xE1, 0x87, 0x03], np.uint8))
    np.testing.assert_array_equal(unpack_int4(packed, 5), q)


def test_pack_uint4_and_axis_roundtrip():
    rng = np.random.default_rng(0)
    u = rng.integers(0, 16, (3, 7, 4)).astype(np.uint8)
    p = pack_int4(u, axis=1)
    assert p.shape == (3, 4, 4)
    np.testing.assert_array_equal(unpack_int4(p, 7, axis=1, signed=False), u)
    s = rng.integers(-8, 8, (5, 6)).astype(np.int8)
    np.testing.assert_array_equal(unpack_int4(pack_int4(s, axis=0), 5, axis=0), s)


def test_pack_int4_errors():
    with pytest.raises(ValueError, match=r"values must lie in \[-8, 7\]"):
        pack_int4(np.array([8], np.int8))
    with pytest.raises(ValueError, match="int8 .int4. or uint8"):
        pack_int4(np.array([1], np.int32))
    with pytest.raises(ValueError, match="length=5 does not match 2 bytes"):
        unpack_int4(np.zeros(2, np.uint8), 5)


def test_quantize_weight_per_channel_int8_symmetric():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((64, 8)).astype(np.float32)
    w[:, 3] = 0.0  # an all-zero output channel: degenerate -> scale 1
    qw = quantize_weight(w)
    assert qw.granularity == "per_channel" and qw.axis == 1 and qw.scale.shape == (8,)
    assert qw.q.dtype == np.int8 and qw.q.min() >= -127
    np.testing.assert_array_equal(qw.scale[:3], np.abs(w[:, :3]).max(axis=0) / np.float32(127))
    assert qw.scale[3] == 1.0
    err = np.abs(qw.dequantize() - w).max(axis=0)
    assert np.all(err <= qw.scale / 2 + 1e-7)
    assert qw.nbytes_data == 64 * 8 and qw.nbytes_meta == 8 * 4
    assert qw.bits_per_weight == pytest.approx(8 + 32 / 64)


def test_quantize_weight_int4_groups():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((70, 6)).astype(np.float32)
    qw = quantize_weight(w, "int4", group_size=32)
    assert qw.granularity == "per_group" and qw.axis == 0 and qw.scale.shape == (3, 6)
    assert qw.q.min() >= -7 and qw.q.max() <= 7
    np.testing.assert_array_equal(qw.scale[2], np.abs(w[64:]).max(axis=0) / np.float32(7))
    assert np.all(np.abs(qw.dequantize() - w) <= np.repeat(qw.scale, 32, 0)[:70] / 2 + 1e-6)
    assert qw.nbytes_data == 70 * 3  # 6 int4 per row -> 3 bytes
    np.testing.assert_array_equal(unpack_int4(qw.packed(axis=0), 70, axis=0), qw.q)
    with pytest.raises(ValueError, match="not 4-bit"):
        quantize_weight(w).packed()
    assert qw.bits_per_weight == pytest.approx(4 + 32 * 18 / 420)
    asym = quantize_weight(w, "uint4", symmetric=False, group_size=32)
    assert asym.nbytes_meta == 18 * 4 + 9  # 18 fp32 scales + 18 uint4 zero points
    assert np.all(np.abs(asym.dequantize() - w) <= np.repeat(asym.scale, 32, 0)[:70] / 2 + 1e-6)


def test_quantize_weight_per_tensor_and_errors():
    w = np.linspace(-1, 3, 12, dtype=np.float32).reshape(3, 4)
    qw = quantize_weight(w, "uint8", "per_tensor", symmetric=False)
    assert qw.scale.shape == () and qw.zp.dtype == np.uint8
    with pytest.raises(ValueError, match="granularity='per_row'; valid"):
        quantize_weight(w, granularity="per_row")
    with pytest.raises(ValueError, match="dtype='fp16'"):
        quantize_weight(w, "fp16")
    with pytest.raises(ValueError, match="1 NaN/Inf"):
        quantize_weight(np.array([[np.nan]], np.float32))


def test_cast_fp16_counts_overflow_and_underflow():
    w = np.array([1.0, 65504.0, 65519.0, 65520.0, -1e6, 1e-8, 3e-5, 2.0**-25, 0.0], np.float32)
    h, stats = cast_fp16(w)
    assert h.dtype == np.float16
    assert np.isinf(h[3]) and np.isinf(h[4]) and h[2] == 65504
    assert stats == {"overflow": 2, "clipped_to_max": 1, "flushed_to_zero": 2, "subnormal": 1}


def test_cast_bf16_round_to_nearest_even():
    bits = np.array([0x3F800000, 0x3F808000, 0x3F818000, 0x3F80FFFF, 0x7F7FFFFF, 0x7FC00001,
                     0x00000001], np.uint32)
    w = bits.view(np.float32)
    b, stats = cast_bf16(w)
    assert b.dtype == np.uint16
    # 1.0; tie -> even (0x3F80); tie -> even (0x3F82); above tie rounds up; max -> inf; NaN quiet
    np.testing.assert_array_equal(b[:5], [0x3F80, 0x3F80, 0x3F82, 0x3F81, 0x7F80])
    assert np.isnan(bf16_to_float32(b[5:6]))[0]
    assert stats["overflow"] == 1 and stats["flushed_to_zero"] == 1
    with pytest.raises(ValueError, match="must be uint16"):
        bf16_to_float32(np.zeros(2, np.int16))


def test_casts_agree_with_torch():
    """Random bit patterns (incl. ties, subnormals, huge values): same bits as torch's casts."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    bits = rng.integers(0, 2**32, 20000, dtype=np.uint64).astype(np.uint32)
    bits[:1000] = (bits[:1000] & 0xFFFF0000) | 0x8000  # exact bf16 ties
    w = bits.view(np.float32)
    w = w[~np.isnan(w)]
    b, _ = cast_bf16(w)
    expect = torch.from_numpy(w).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(b, expect)
    h, _ = cast_fp16(w)
    np.testing.assert_array_equal(h.view(np.uint16),
                                  torch.from_numpy(w).to(torch.float16).numpy().view(np.uint16))
