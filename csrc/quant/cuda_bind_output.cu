// cuda_bind_output.cu: parsing of the output-stage arguments and the shared GEMM runner.
#include "cuda_bind.cuh"

namespace needle_qc {
namespace cuda {

OutputArgs parse_requant(const py::handle& bias, const py::handle& multiplier, int y_zp,
                         int qmin, int qmax, const std::string& out_dtype, size_t N) {
  OutputArgs o;
  Epilogue& e = o.e;
  e.kind = OutKind::requant;
  e.out_s8 = parse_int8_dtype(out_dtype, "out_dtype");
  o.dtype = e.out_s8 ? py::dtype::of<int8_t>() : py::dtype::of<uint8_t>();
  const int lo = e.out_s8 ? -128 : 0, hi = e.out_s8 ? 127 : 255;
  if (qmin < lo || qmax > hi || qmin > qmax)
    bad_arg("qmin/qmax", "[" + std::to_string(qmin) + ", " + std::to_string(qmax) +
                             "] is not a range inside [" + std::to_string(lo) + ", " +
                             std::to_string(hi) + "]");
  if (y_zp < lo || y_zp > hi) bad_arg("y_zero_point", std::to_string(y_zp) + " out of range");
  e.y_zp = y_zp;
  e.qmin = qmin;
  e.qmax = qmax;
  auto mult = as_vector<float>(multiplier, "multiplier", N);
  require_finite(mult.data(), mult.shape(0), "multiplier");
  o.multiplier = upload(mult);
  e.multiplier = o.multiplier.as<float>();
  e.multiplier_per_col = mult.shape(0) > 1;
  if (!bias.is_none()) {
    auto b = as_array<int32_t>(bias, "bias", 1);
    if (static_cast<size_t>(b.shape(0)) != N)
      bad_arg("bias", "expected length N = " + std::to_string(N));
    o.bias = upload(b);
    e.bias_i32 = o.bias.as<int32_t>();
  }
  return o;
}

OutputArgs parse_float_out(const py::handle& scale, const py::handle& bias, bool relu,
                           const py::handle& row_scale, size_t M, size_t N) {
  OutputArgs o;
  Epilogue& e = o.e;
  e.kind = OutKind::f32;
  o.dtype = py::dtype::of<float>();
  e.relu = relu;
  auto s = as_vector<float>(scale, "scale", N);
  require_finite(s.data(), s.shape(0), "scale");
  o.scale = upload(s);
  e.scale = o.scale.as<float>();
  e.scale_per_col = s.shape(0) > 1;
  if (!bias.is_none()) {
    auto b = as_array<float>(bias, "bias", 1);
    if (static_cast<size_t>(b.shape(0)) != N)
      bad_arg("bias", "expected length N = " + std::to_string(N));
    o.bias = upload(b);
    e.bias_f32 = o.bias.as<float>();
  }
  if (!row_scale.is_none()) {
    auto r = as_array<float>(row_scale, "row_scale", 1);
    if (static_cast<size_t>(r.shape(0)) != M)
      bad_arg("row_scale", "expected length M = " + std::to_string(M));
    require_finite(r.data(), M, "row_scale");
    o.row_scale = upload(r);
    e.row_scale = o.row_scale.as<float>();
  }
  return o;
}

void run_gemm_s8(const DeviceBuffer& a_rows, size_t M, const PackedWeightS8& w,
                 const std::vector<int32_t>& a_zp_signed, OutputArgs& o, void* out) {
  Epilogue& e = o.e;
  e.K = static_cast<int32_t>(w.K);  // the CPU's K * za * zw wraps the same way (uint32)
  o.a_zp = to_device(a_zp_signed.data(), a_zp_signed.size() * sizeof(int32_t));
  e.a_zp = o.a_zp.as<int32_t>();
  e.a_zp_per_row = a_zp_signed.size() > 1;
  e.colsum = w.colsum.as<int32_t>();
  e.w_zp = w.zero_point.as<int32_t>();
  e.rowsum = nullptr;
  if (!w.zero_point_is_zero) {
    o.rowsum = DeviceBuffer(M * sizeof(int32_t));
    launch_rowsums(a_rows.as<int8_t>(), M, w.K4, o.rowsum.as<int32_t>());
    e.rowsum = o.rowsum.as<int32_t>();
  }
  launch_gemm_s8(a_rows.as<int8_t>(), M, w, e, out);
}

}  // namespace cuda
}  // namespace needle_qc
