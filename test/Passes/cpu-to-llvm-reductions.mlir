// tasd-cpu-to-llvm on a softmax row sum: exp is expanded (no llvm.intr.exp,
// which LLVM turns into a libm expf call per element; tasd-cpu-expand-exp) and the reduction's fadd keeps fastmath<reassoc> down
// to the LLVM dialect (tasd-cpu-reassociate-reductions), so LLVM may
// vectorize the loop; with both options off the old path remains
// (llvm.intr.exp, a plain fadd). The first outlined nest is the fill. Numbers: test/python/test_reductions.py.
// RUN: tasdc-opt %s -p tasd-cpu-to-llvm | FileCheck %s
// RUN: tasdc-opt %s -p 'tasd-cpu-to-llvm{expand-exp=false reassociate=false}' | FileCheck %s --check-prefix=OFF

// CHECK-LABEL: llvm.func @tasd_nest_0(
// CHECK-NOT: llvm.intr.exp
// CHECK: llvm.intr.floor
// CHECK: llvm.fadd %{{.*}}, %{{.*}} {fastmathFlags = #llvm.fastmath<reassoc>} : f32
// CHECK-NOT: llvm.intr.exp
// CHECK-LABEL: llvm.func internal @row_sum_exp(
// OFF-LABEL: llvm.func @tasd_nest_0(
// OFF-NOT: reassoc
// OFF: llvm.intr.exp
// OFF-NEXT: llvm.fadd %{{.*}}, %{{.*}} : f32
// OFF-NOT: reassoc
// OFF-LABEL: llvm.func internal @row_sum_exp(
func.func @row_sum_exp(%x: tensor<4x8xf32>) -> tensor<4xf32> {
  %zero = arith.constant 0.0 : f32
  %0 = tensor.empty() : tensor<4xf32>
  %1 = linalg.fill ins(%zero : f32) outs(%0 : tensor<4xf32>) -> tensor<4xf32>
  %2 = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0)>], iterator_types = ["parallel", "reduction"]}
      ins(%x : tensor<4x8xf32>) outs(%1 : tensor<4xf32>) {
  ^bb0(%a: f32, %acc: f32):
    %e = math.exp %a : f32
    %s = arith.addf %e, %acc : f32
    linalg.yield %s : f32
  } -> tensor<4xf32>
  return %2 : tensor<4xf32>
}
