// tasd-cpu-to-llvm on torch-mlir's TMTensor ops (torch.cumsum lowers to
// tm_tensor.scan): bufferized by torch-mlir's tm-tensor-bufferize, lowered to
// loops by tm-tensor-to-loops, then to LLVM like the rest; a module without
// them runs the plain pipeline. The tm_tensor dialect parses in tasdc-opt.
// RUN: tasdc-opt %s -p tasd-cpu-to-llvm | FileCheck %s

// The scan's loop nest is outlined like any other: its add is in a tasd_nest.
// CHECK-NOT: tm_tensor
// CHECK: llvm.func @tasd_nest_1(
// CHECK: llvm.fadd
// CHECK: llvm.func internal @main(
// CHECK-NOT: tm_tensor
// CHECK: llvm.func @_mlir_ciface_main(
func.func @main(%arg0: tensor<2x8xf32>) -> tensor<2x8xf32> {
  %cst = arith.constant 0.000000e+00 : f32
  %0 = tensor.empty() : tensor<2x8xf32>
  %1 = linalg.fill ins(%cst : f32) outs(%0 : tensor<2x8xf32>) -> tensor<2x8xf32>
  %2 = tensor.empty() : tensor<2xf32>
  %3 = linalg.fill ins(%cst : f32) outs(%2 : tensor<2xf32>) -> tensor<2xf32>
  %4:2 = tm_tensor.scan dimension(1) inclusive(true) ins(%arg0 : tensor<2x8xf32>) outs(%1, %3 : tensor<2x8xf32>, tensor<2xf32>) {
  ^bb0(%arg1: f32, %arg2: f32):
    %5 = arith.addf %arg1, %arg2 : f32
    tm_tensor.yield %5 : f32
  } -> tensor<2x8xf32>, tensor<2xf32>
  return %4#0 : tensor<2x8xf32>
}
