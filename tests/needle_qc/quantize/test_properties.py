"""Property tests (hypothesis): round trips and error bounds that must hold for any input."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from needle_qc.quantize import choose_qparams, pack_int4, unpack_int4
from needle_qc.quantize import reference as ref

finite32 = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False, width=32)


@settings(max_examples=200, deadline=None)
@given(st.tuples(finite32, finite32), st.sampled_from(["uint8", "int8", "int4", "uint4"]),
       st.booleans())
def test_zero_is_exact_and_in_range_values_round_trip(bounds, dtype, symmetric):
    """Real 0 maps to the zero point exactly; values in range come back within s/2 (+1 ulp)."""
    rmin, rmax = min(bounds), max(bounds)
    s, z = choose_qparams(rmin, rmax, dtype, symmetric)
    kwargs = {"output_dtype": dtype}
    q0 = ref.quantize_linear(np.zeros(1, np.float32), s, np.asarray(z), **kwargs)
    assert ref.dequantize_linear(q0, s, np.asarray(z))[0] == 0
    x = np.linspace(min(rmin, 0), max(rmax, 0), 101, dtype=np.float32)
    if symmetric and dtype in ("int8", "int4") and s != 1:
        x = x[np.abs(x) <= 127 * s if dtype == "int8" else np.abs(x) <= 7 * s]
    q = ref.quantize_linear(x, s, np.asarray(z), **kwargs)
    back = ref.dequantize_linear(q, s, np.asarray(z))
    if s != 1:  # degenerate ranges only promise exact zero
        tol = s / 2 + np.abs(x) * 2e-7 + 1e-30
        assert np.all(np.abs(back - x) <= tol)


@settings(max_examples=100, deadline=None)
@given(hnp.arrays(np.int8, hnp.array_shapes(min_dims=1, max_dims=3, max_side=7),
                  elements=st.integers(-8, 7)), st.integers(-3, 2))
def test_int4_pack_round_trip(q, axis):
    axis = axis % q.ndim
    packed = pack_int4(q, axis=axis)
    assert packed.shape[axis] == (q.shape[axis] + 1) // 2
    np.testing.assert_array_equal(unpack_int4(packed, q.shape[axis], axis=axis), q)


@settings(max_examples=100, deadline=None)
@given(hnp.arrays(np.float32, st.integers(1, 40), elements=finite32))
def test_dynamic_quantize_covers_zero_and_range(x):
    y, s, z = ref.dynamic_quantize_linear(x)
    back = ref.dequantize_linear(y, s, z)
    assert ref.dequantize_linear(z.reshape(1), s, z)[0] == 0
    if s != 1:
        assert np.all(np.abs(back - x) <= s / 2 * 1.001 + np.abs(x) * 2e-7)
