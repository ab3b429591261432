// tasd-cpu-to-llvm computes bfloat16 arithmetic and math in f32 and rounds
// with integer arithmetic (round to nearest even: add 0x7FFF + the kept lsb,
// shift right 16), so no bf16 fadd/fmul or fptrunc to bf16 reaches LLVM, which
// would lower them to compiler-rt's __truncsfbf2 on a CPU without bf16
// instructions (a JIT "Symbols not found"). f32 modules are left as they were.
// Numbers: test/python/test_half_precision.py.
// RUN: tasdc-opt %s --split-input-file -p tasd-cpu-to-llvm | FileCheck %s
// RUN: tasdc-opt %s --split-input-file -p 'tasd-cpu-to-llvm{expand-bf16=false}' | FileCheck %s --check-prefix=OFF

// CHECK-LABEL: llvm.func @tasd_nest(
// CHECK-NOT: fptrunc
// CHECK: llvm.mlir.constant(32767 : i32)
// CHECK: llvm.bitcast %{{.*}} : bf16 to i16
// CHECK: llvm.shl
// CHECK: llvm.bitcast %{{.*}} : i32 to f32
// CHECK: llvm.fadd %{{.*}}, %{{.*}} : f32
// CHECK-NEXT: llvm.intr.exp(%{{.*}}) : (f32) -> f32
// CHECK: llvm.bitcast %{{.*}} : f32 to i32
// CHECK: llvm.lshr
// CHECK: llvm.trunc %{{.*}} : i32 to i16
// CHECK: llvm.bitcast %{{.*}} : i16 to bf16
// CHECK-NOT: fptrunc
// CHECK-NOT: : bf16{{$}}
// CHECK-LABEL: llvm.func internal @add_exp(
// OFF-LABEL: llvm.func @tasd_nest(
// OFF: llvm.fadd %{{.*}}, %{{.*}} : bf16
#map = affine_map<(d0, d1) -> (d0, d1)>
func.func @add_exp(%x: tensor<4x8xbf16>, %y: tensor<4x8xbf16>) -> tensor<4x8xbf16> {
  %0 = tensor.empty() : tensor<4x8xbf16>
  %1 = linalg.generic {indexing_maps = [#map, #map, #map], iterator_types = ["parallel", "parallel"]}
      ins(%x, %y : tensor<4x8xbf16>, tensor<4x8xbf16>) outs(%0 : tensor<4x8xbf16>) {
  ^bb0(%a: bf16, %b: bf16, %out: bf16):
    %s = arith.addf %a, %b : bf16
    %e = math.exp %s : bf16
    linalg.yield %e : bf16
  } -> tensor<4x8xbf16>
  return %1 : tensor<4x8xbf16>
}

// -----

// An f32 module keeps llvm.intr.maximum (arith-expand is not run on it).
// CHECK-LABEL: llvm.func @tasd_nest(
// CHECK: llvm.intr.maximum
// CHECK-LABEL: llvm.func internal @relu(
#map = affine_map<(d0, d1) -> (d0, d1)>
func.func @relu(%x: tensor<4x8xf32>) -> tensor<4x8xf32> {
  %c0 = arith.constant 0.0 : f32
  %0 = tensor.empty() : tensor<4x8xf32>
  %1 = linalg.generic {indexing_maps = [#map, #map], iterator_types = ["parallel", "parallel"]}
      ins(%x : tensor<4x8xf32>) outs(%0 : tensor<4x8xf32>) {
  ^bb0(%a: f32, %out: f32):
    %m = arith.maximumf %a, %c0 : f32
    linalg.yield %m : f32
  } -> tensor<4x8xf32>
  return %1 : tensor<4x8xf32>
}
