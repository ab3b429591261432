// A model whose linalg op reads an output made by tensor.empty (here a matmul
// accumulating into uninitialized memory) is refused by the drivers that
// compile or run a model: exit 2, one line naming the op and where. An op
// that only writes into a tensor.empty (this file's @ok) is fine.
// RUN: %expect-exit 2 tasdc compile %S/Inputs/uninitialized-output.mlir | FileCheck %s
// RUN: %expect-exit 2 tasdc simulate %S/Inputs/uninitialized-output.mlir --target stc | FileCheck %s
// RUN: tasdc compile %s --config 2:4 | FileCheck %s --check-prefix=OK
// CHECK: tasdc: error: {{.*}}uninitialized-output.mlir:4:8: 'linalg.matmul' reads its output operand, a tensor.empty (uninitialized values); initialize it first (e.g. linalg.fill with 0 for a sum)
// OK: tasdc compile {{.*}}uninitialized-output.mlir  config=2:4
// OK: matmul_0 linalg.matmul

#map = affine_map<(d0, d1) -> (d0, d1)>
func.func @ok(%x: tensor<2x8xf32>) -> tensor<2x4xf32> {
  %w = arith.constant dense<1.0> : tensor<8x4xf32>
  %e = tensor.empty() : tensor<2x8xf32>
  %r = linalg.generic {indexing_maps = [#map, #map], iterator_types = ["parallel", "parallel"]}
      ins(%x : tensor<2x8xf32>) outs(%e : tensor<2x8xf32>) {
  ^bb0(%a: f32, %o: f32):
    %z = arith.constant 0.0 : f32
    %m = arith.maximumf %a, %z : f32
    linalg.yield %m : f32
  } -> tensor<2x8xf32>
  %zero = arith.constant 0.0 : f32
  %e2 = tensor.empty() : tensor<2x4xf32>
  %i = linalg.fill ins(%zero : f32) outs(%e2 : tensor<2x4xf32>) -> tensor<2x4xf32>
  %y = linalg.matmul ins(%r, %w : tensor<2x8xf32>, tensor<8x4xf32>) outs(%i : tensor<2x4xf32>) -> tensor<2x4xf32>
  return %y : tensor<2x4xf32>
}
