// Elementwise and scalar operations for every dtype (fp16/bf16 computed in fp32).
#pragma once

#include "ndarray/cpu/array.h"

namespace needle {
namespace cpu {

enum class BinOp { kAdd, kMul, kDiv, kMax, kEq, kGe, kPow };
enum class UnOp { kLog, kExp, kTanh };

void ewise_binary(BinOp op, const char* name, const Array& a, const Array& b, Array& out);
void scalar_binary(BinOp op, const char* name, const Array& a, double val, Array& out);
void ewise_unary(UnOp op, const char* name, const Array& a, Array& out);
void fill(Array& out, double val);

}  // namespace cpu
}  // namespace needle
