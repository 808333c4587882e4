// cuda_output.cu: parsing of the output-stage arguments and the shared GEMM runner.
#include "quant/bind/cuda_bind.cuh"

namespace needle_qc {
namespace cuda {

OutputArgs parse_requant(const py::handle& bias, const py::handle& multiplier, int y_zp,
                         int qmin, int qmax, const std::string& out_dtype, size_t N) {
  OutputArgs o;
  Epilogue& e = o.e;
  e.kind = OutKind::requant;
  e.out_s8 = check_requant_range(out_dtype, y_zp, qmin, qmax);
  o.dtype = e.out_s8 ? py::dtype::of<int8_t>() : py::dtype::of<uint8_t>();
  e.y_zp = y_zp;
  e.qmin = qmin;
  e.qmax = qmax;
  auto mult = as_finite_vector(multiplier, "multiplier", N);
  o.multiplier = upload(mult);
  e.multiplier = o.multiplier.as<float>();
  e.multiplier_per_col = mult.shape(0) > 1;
  if (!bias.is_none()) {
    o.bias = upload(as_exact_vector<int32_t>(bias, "bias", N, "N"));
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
  auto s = as_finite_vector(scale, "scale", N);
  o.scale = upload(s);
  e.scale = o.scale.as<float>();
  e.scale_per_col = s.shape(0) > 1;
  if (!bias.is_none()) {
    o.bias = upload(as_exact_vector<float>(bias, "bias", N, "N"));
    e.bias_f32 = o.bias.as<float>();
  }
  if (!row_scale.is_none()) {
    auto r = as_exact_vector<float>(row_scale, "row_scale", M, "M");
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
