"""qrange / choose_qparams: ranges per dtype, zero extension, symmetric zero points, degenerates."""
import numpy as np
import pytest

from needle_qc.quantize import choose_qparams, qrange


@pytest.mark.parametrize("dtype,symmetric,expected", [
    ("uint8", False, (0, 255)), ("uint8", True, (0, 255)), ("int8", False, (-128, 127)),
    ("int8", True, (-127, 127)), ("int4", False, (-8, 7)), ("int4", True, (-7, 7)),
    ("uint4", False, (0, 15)), ("int16", False, (-32768, 32767)), (np.int8, False, (-128, 127)),
])
def test_qrange(dtype, symmetric, expected):
    assert qrange(dtype, symmetric) == expected


def test_qrange_narrow_override_and_errors():
    assert qrange("int8", symmetric=True, narrow=False) == (-128, 127)
    assert qrange("int8", narrow=True) == (-127, 127)
    with pytest.raises(ValueError, match=r"dtype='int3' is not a quantized dtype; valid: \["):
        qrange("int3")


def test_asymmetric_formula_and_zero_extension():
    s, z = choose_qparams(0.5, 3.0, "uint8")  # extended to [0, 3]
    assert s == np.float32(np.float32(3.0) / np.float32(255)) and z == 0
    s, z = choose_qparams(-1.0, 2.0, "uint8")
    assert s == np.float32(np.float32(3.0) / np.float32(255))
    assert z == np.rint(np.float32(0) - np.float32(np.float32(-1.0) / s)) == 85
    s, z = choose_qparams(-3.0, -1.0, "int8")  # extended to [-3, 0]
    assert z == 127 and s.dtype == np.float32


def test_symmetric_zero_points():
    assert choose_qparams(-1.0, 2.0, "int8", symmetric=True) == (np.float32(2.0 / 127), 0)
    assert choose_qparams(-1.0, 2.0, "uint8", symmetric=True)[1] == 128
    assert choose_qparams(-1.0, 2.0, "uint4", symmetric=True)[1] == 8
    assert choose_qparams(-1.0, 7.0, "int4", symmetric=True)[0] == np.float32(1.0)


def test_degenerate_ranges_give_scale_one_zp_zero():
    for sym in (False, True):
        s, z = choose_qparams(0.0, 0.0, "uint8", sym)
        assert (s, z) == (1.0, 0)
        s, z = choose_qparams(0.0, 1e-44, "int8", sym)  # scale would be subnormal
        assert (s, z) == (1.0, 0)


def test_per_channel_arrays():
    rmin = np.array([-1.0, 0.0, 2.0, 0.0], np.float32)
    rmax = np.array([1.0, 0.0, 5.0, 0.0], np.float32)
    s, z = choose_qparams(rmin, rmax, "int8", symmetric=True)
    assert s.shape == (4,) and z.dtype == np.int8
    np.testing.assert_array_equal(s, np.array([1 / 127, 1.0, 5 / 127, 1.0], np.float32))
    for i in range(4):
        si, zi = choose_qparams(rmin[i], rmax[i], "int8", symmetric=True)
        assert si == s[i] and zi == z[i]


def test_bad_ranges():
    with pytest.raises(ValueError, match="must be finite"):
        choose_qparams(np.nan, 1.0)
    with pytest.raises(ValueError, match="shape"):
        choose_qparams(np.zeros(2), np.zeros(3))
    with pytest.raises(ValueError, match="overflows"):
        choose_qparams(-3e38, 3e38)
