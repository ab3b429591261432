// tasd-cpu-fuse-kernel-epilogues: the per-output-channel affine chain and
// clamp after a runtime kernel call (torch-mlir's BatchNorm + ReLU6 after an
// N:M convolution) become the declaration's tasd.epilogue
// [scale..., shift..., lo, hi]; the chain is erased and its users read the
// call's result. A convolution's residual add (a run-time tensor defined
// before the call) between the map and the clamp becomes the call's third
// operand (tasd.residual). Left alone: a Linear's residual add, a residual
// defined after the call, a clamp followed by an affine op (the first op is
// fused, the rest stays), a weight on the left (channels are not dim 1), a
// per-element operand, a result with two users, and max-chain bounds the ops
// fused; residual=false leaves every residual add.
// RUN: tasdc-opt %s --split-input-file -p tasd-cpu-fuse-kernel-epilogues | FileCheck %s
// RUN: tasdc-opt %s --split-input-file -p 'tasd-cpu-fuse-kernel-epilogues{residual=false}' | FileCheck %s --check-prefix=NORES
// RUN: tasdc-opt %s --split-input-file -p 'tasd-cpu-fuse-kernel-epilogues{max-chain=1}' | FileCheck %s --check-prefix=ONE
// RUN: %expect-exit 2 tasdc-opt %s -p 'tasd-cpu-fuse-kernel-epilogues{max-chain=0}' | FileCheck %s --check-prefix=BAD
// RUN: %expect-exit 2 tasdc-opt %s -p 'tasd-cpu-fuse-kernel-epilogues{residual=maybe}' | FileCheck %s --check-prefix=BADRES
// BADRES: tasdc-opt: error: option 'residual' of pass 'tasd-cpu-fuse-kernel-epilogues' expects bool, got 'maybe'
// BAD: tasdc-opt: error: pass 'tasd-cpu-fuse-kernel-epilogues': max-chain must be >= 1, got 0

#id = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
#ch = affine_map<(d0, d1, d2, d3) -> (d1, 0, 0)>
!dyn = memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>
// BatchNorm (x - mean) * 0.5 * gamma + beta, then ReLU6 as torch-mlir writes it:
// mean [1, 2], gamma [4, 6], beta [0.5, 1]: scale [2, 3], shift [-1.5, -5].
// CHECK-LABEL: func.func private @tasd_kernel_0
// CHECK-SAME: tasd.epilogue = dense<[2.000000e+00, 3.000000e+00, -1.500000e+00, -5.000000e+00, 0.000000e+00, 6.000000e+00]> : tensor<6xf32>
// CHECK-LABEL: func.func @bn_relu6(
// CHECK: call @tasd_kernel_0
// CHECK-NEXT: %[[R:.*]] = bufferization.to_tensor
// CHECK-NOT: linalg.generic
// CHECK: return %[[R]]
// ONE-LABEL: func.func private @tasd_kernel_0
// ONE-SAME: tasd.epilogue = dense<[1.000000e+00, 1.000000e+00, -1.000000e+00, -2.000000e+00, 0xFF800000, 0x7F800000]> : tensor<6xf32>
// ONE-LABEL: func.func @bn_relu6(
// ONE-COUNT-3: linalg.generic
module {
  func.func private @tasd_kernel_0(!dyn, !dyn) attributes {llvm.emit_c_interface, tasd.kernel = {kind = "conv2d", sparse_operand = 1 : i64}}
  func.func @bn_relu6(%x: tensor<1x4x3x3xf32>) -> tensor<1x2x3x3xf32> {
    %zero = arith.constant 0.0 : f32
    %six = arith.constant 6.0 : f32
    %half = arith.constant 0.5 : f32
    %mean = arith.constant dense<[[[1.0]], [[2.0]]]> : tensor<2x1x1xf32>
    %gamma = arith.constant dense<[[[4.0]], [[6.0]]]> : tensor<2x1x1xf32>
    %beta = arith.constant dense<[[[0.5]], [[1.0]]]> : tensor<2x1x1xf32>
    %b = bufferization.to_buffer %x read_only : tensor<1x4x3x3xf32> to memref<1x4x3x3xf32, strided<[?, ?, ?, ?], offset: ?>>
    %bx = memref.cast %b : memref<1x4x3x3xf32, strided<[?, ?, ?, ?], offset: ?>> to !dyn
    %y = memref.alloc() {alignment = 64 : i64} : memref<1x2x3x3xf32>
    %by = memref.cast %y : memref<1x2x3x3xf32> to !dyn
    call @tasd_kernel_0(%bx, %by) : (!dyn, !dyn) -> ()
    %r = bufferization.to_tensor %y restrict writable : memref<1x2x3x3xf32> to tensor<1x2x3x3xf32>
    %e = tensor.empty() : tensor<1x2x3x3xf32>
    %1 = linalg.generic {indexing_maps = [#id, #ch, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%r, %mean : tensor<1x2x3x3xf32>, tensor<2x1x1xf32>) outs(%e : tensor<1x2x3x3xf32>) {
    ^bb0(%in: f32, %m: f32, %out: f32):
      %s = arith.subf %in, %m : f32
      linalg.yield %s : f32
    } -> tensor<1x2x3x3xf32>
    %2 = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%1 : tensor<1x2x3x3xf32>) outs(%e : tensor<1x2x3x3xf32>) {
    ^bb0(%in: f32, %out: f32):
      %s = arith.mulf %in, %half : f32
      linalg.yield %s : f32
    } -> tensor<1x2x3x3xf32>
    %3 = linalg.generic {indexing_maps = [#ch, #id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%gamma, %2 : tensor<2x1x1xf32>, tensor<1x2x3x3xf32>) outs(%e : tensor<1x2x3x3xf32>) {
    ^bb0(%g: f32, %in: f32, %out: f32):
      %s = arith.mulf %g, %in : f32
      %t = arith.addf %s, %g : f32
      %u = arith.subf %t, %g : f32
      linalg.yield %u : f32
    } -> tensor<1x2x3x3xf32>
    %4 = linalg.generic {indexing_maps = [#id, #ch, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%3, %beta : tensor<1x2x3x3xf32>, tensor<2x1x1xf32>) outs(%e : tensor<1x2x3x3xf32>) {
    ^bb0(%in: f32, %bb: f32, %out: f32):
      %s = arith.addf %in, %bb : f32
      %c1 = arith.cmpf ogt, %s, %zero : f32
      %m1 = arith.select %c1, %s, %zero : f32
      %c2 = arith.cmpf olt, %six, %m1 : f32
      %m2 = arith.select %c2, %six, %m1 : f32
      linalg.yield %m2 : f32
    } -> tensor<1x2x3x3xf32>
    return %4 : tensor<1x2x3x3xf32>
  }
}

// -----

#id = affine_map<(d0, d1) -> (d0, d1)>
#col = affine_map<(d0, d1) -> (d1)>
!dyn = memref<?x?xf32, strided<[?, ?], offset: ?>>
// A Linear (weight on the right: Y[T, O]) with bias and ReLU (maximumf); then a
// residual add of the input, which stays.
// CHECK-LABEL: func.func private @tasd_kernel_0
// CHECK-SAME: tasd.epilogue = dense<[1.000000e+00, 1.000000e+00, 1.000000e+00, 2.500000e-01, -1.000000e+00, 3.000000e+00, 0.000000e+00, 0x7F800000]> : tensor<8xf32>
// CHECK-LABEL: func.func @linear_relu_residual(
// CHECK: %[[R:.*]] = bufferization.to_tensor
// CHECK: %[[S:.*]] = linalg.generic {{.*}} ins(%[[R]], %{{.*}} : tensor<2x3xf32>, tensor<2x3xf32>)
// CHECK: arith.addf
// CHECK-NOT: linalg.generic
// CHECK: return %[[S]]
module {
  func.func private @tasd_kernel_0(!dyn, !dyn) attributes {llvm.emit_c_interface, tasd.kernel = {kind = "matmul", sparse_operand = 1 : i64}}
  func.func @linear_relu_residual(%x: tensor<2x3xf32>) -> tensor<2x3xf32> {
    %zero = arith.constant 0.0 : f32
    %bias = arith.constant dense<[0.25, -1.0, 3.0]> : tensor<3xf32>
    %b = bufferization.to_buffer %x read_only : tensor<2x3xf32> to memref<2x3xf32, strided<[?, ?], offset: ?>>
    %bx = memref.cast %b : memref<2x3xf32, strided<[?, ?], offset: ?>> to !dyn
    %y = memref.alloc() {alignment = 64 : i64} : memref<2x3xf32>
    %by = memref.cast %y : memref<2x3xf32> to !dyn
    call @tasd_kernel_0(%bx, %by) : (!dyn, !dyn) -> ()
    %r = bufferization.to_tensor %y restrict writable : memref<2x3xf32> to tensor<2x3xf32>
    %e = tensor.empty() : tensor<2x3xf32>
    %1 = linalg.generic {indexing_maps = [#id, #col, #id], iterator_types = ["parallel", "parallel"]} ins(%r, %bias : tensor<2x3xf32>, tensor<3xf32>) outs(%e : tensor<2x3xf32>) {
    ^bb0(%in: f32, %c: f32, %out: f32):
      %s = arith.addf %in, %c : f32
      %m = arith.maximumf %s, %zero : f32
      linalg.yield %m : f32
    } -> tensor<2x3xf32>
    %2 = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel"]} ins(%1, %x : tensor<2x3xf32>, tensor<2x3xf32>) outs(%e : tensor<2x3xf32>) {
    ^bb0(%in: f32, %in2: f32, %out: f32):
      %s = arith.addf %in, %in2 : f32
      linalg.yield %s : f32
    } -> tensor<2x3xf32>
    return %2 : tensor<2x3xf32>
  }
}

// -----

#id = affine_map<(d0, d1) -> (d0, d1)>
#row = affine_map<(d0, d1) -> (d0)>
!dyn = memref<?x?xf32, strided<[?, ?], offset: ?>>
// Left alone: the weight on the left (Y[O, T]: the channel is dim 0), and, for the
// second kernel, a per-element operand; a clamp then a scale: only the clamp
// (max-chain aside) would be one map, so the generic holding both stays.
// CHECK-LABEL: func.func private @tasd_kernel_0
// CHECK-NOT: tasd.epilogue
// CHECK-LABEL: func.func private @tasd_kernel_1
// CHECK-NOT: tasd.epilogue
// CHECK-LABEL: func.func private @tasd_kernel_2
// CHECK-NOT: tasd.epilogue
// CHECK-LABEL: func.func @left_alone(
// CHECK-COUNT-3: linalg.generic
module {
  func.func private @tasd_kernel_0(!dyn, !dyn) attributes {tasd.kernel = {kind = "matmul", sparse_operand = 0 : i64}}
  func.func private @tasd_kernel_1(!dyn, !dyn) attributes {tasd.kernel = {kind = "matmul", sparse_operand = 1 : i64}}
  func.func private @tasd_kernel_2(!dyn, !dyn) attributes {tasd.kernel = {kind = "matmul", sparse_operand = 1 : i64}}
  func.func @left_alone(%x: tensor<2x2xf32>) -> (tensor<2x2xf32>, tensor<2x2xf32>, tensor<2x2xf32>) {
    %zero = arith.constant 0.0 : f32
    %two = arith.constant 2.0 : f32
    %bias = arith.constant dense<[1.0, 2.0]> : tensor<2xf32>
    %full = arith.constant dense<[[1.0, 2.0], [3.0, 4.0]]> : tensor<2x2xf32>
    %b = bufferization.to_buffer %x read_only : tensor<2x2xf32> to memref<2x2xf32, strided<[?, ?], offset: ?>>
    %bx = memref.cast %b : memref<2x2xf32, strided<[?, ?], offset: ?>> to !dyn
    %e = tensor.empty() : tensor<2x2xf32>
    %y0 = memref.alloc() : memref<2x2xf32>
    %c0 = memref.cast %y0 : memref<2x2xf32> to !dyn
    call @tasd_kernel_0(%bx, %c0) : (!dyn, !dyn) -> ()
    %r0 = bufferization.to_tensor %y0 restrict writable : memref<2x2xf32> to tensor<2x2xf32>
    %1 = linalg.generic {indexing_maps = [#id, #row, #id], iterator_types = ["parallel", "parallel"]} ins(%r0, %bias : tensor<2x2xf32>, tensor<2xf32>) outs(%e : tensor<2x2xf32>) {
    ^bb0(%in: f32, %c: f32, %out: f32):
      %s = arith.addf %in, %c : f32
      linalg.yield %s : f32
    } -> tensor<2x2xf32>
    %y1 = memref.alloc() : memref<2x2xf32>
    %c1 = memref.cast %y1 : memref<2x2xf32> to !dyn
    call @tasd_kernel_1(%bx, %c1) : (!dyn, !dyn) -> ()
    %r1 = bufferization.to_tensor %y1 restrict writable : memref<2x2xf32> to tensor<2x2xf32>
    %2 = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel"]} ins(%r1, %full : tensor<2x2xf32>, tensor<2x2xf32>) outs(%e : tensor<2x2xf32>) {
    ^bb0(%in: f32, %c: f32, %out: f32):
      %s = arith.mulf %in, %c : f32
      linalg.yield %s : f32
    } -> tensor<2x2xf32>
    %y2 = memref.alloc() : memref<2x2xf32>
    %c2 = memref.cast %y2 : memref<2x2xf32> to !dyn
    call @tasd_kernel_2(%bx, %c2) : (!dyn, !dyn) -> ()
    %r2 = bufferization.to_tensor %y2 restrict writable : memref<2x2xf32> to tensor<2x2xf32>
    %3 = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]} ins(%r2 : tensor<2x2xf32>) outs(%e : tensor<2x2xf32>) {
    ^bb0(%in: f32, %out: f32):
      %m = arith.maximumf %in, %zero : f32
      %s = arith.mulf %m, %two : f32
      linalg.yield %s : f32
    } -> tensor<2x2xf32>
    return %1, %2, %3 : tensor<2x2xf32>, tensor<2x2xf32>, tensor<2x2xf32>
  }
}

// -----

#id = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
#ch = affine_map<(d0, d1, d2, d3) -> (d1)>
!dyn = memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>
// ResNet's relu(bn(conv(x)) + x): the bias (shift [0.5, -1]) and the shortcut %x go
// into the call, the ReLU after the add is the clamp [0, inf).
// CHECK-LABEL: func.func private @tasd_kernel_0
// CHECK-SAME: (memref<{{[^)]*}}>, memref<{{[^)]*}}>, memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>)
// CHECK-SAME: tasd.epilogue = dense<[1.000000e+00, 1.000000e+00, 5.000000e-01, -1.000000e+00, 0.000000e+00, 0x7F800000]> : tensor<6xf32>
// CHECK-SAME: tasd.residual
// CHECK-LABEL: func.func @basic_block(
// CHECK-SAME: %[[X:.*]]: tensor<1x2x3x3xf32>
// CHECK: memref.alloc
// CHECK: %[[RB:.*]] = bufferization.to_buffer %[[X]] read_only : tensor<1x2x3x3xf32> to memref<1x2x3x3xf32, strided<[?, ?, ?, ?], offset: ?>>
// CHECK: %[[RC:.*]] = memref.cast %[[RB]]
// CHECK: call @tasd_kernel_0(%{{.*}}, %{{.*}}, %[[RC]])
// CHECK-NEXT: %[[R:.*]] = bufferization.to_tensor
// CHECK-NOT: linalg.generic
// CHECK: return %[[R]]
// NORES-LABEL: func.func private @tasd_kernel_0
// NORES-NOT: tasd.residual
// NORES: tasd.epilogue = dense<[1.000000e+00, 1.000000e+00, 5.000000e-01, -1.000000e+00, 0xFF800000, 0x7F800000]>
// NORES-LABEL: func.func @basic_block(
// NORES: call @tasd_kernel_0(%{{[^,]*}}, %{{[^,]*}}) :
// NORES-COUNT-2: linalg.generic
module {
  func.func private @tasd_kernel_0(!dyn, !dyn) attributes {llvm.emit_c_interface, tasd.kernel = {kind = "conv2d", sparse_operand = 1 : i64}}
  func.func @basic_block(%x: tensor<1x2x3x3xf32>) -> tensor<1x2x3x3xf32> {
    %zero = arith.constant 0.0 : f32
    %bias = arith.constant dense<[0.5, -1.0]> : tensor<2xf32>
    %b = bufferization.to_buffer %x read_only : tensor<1x2x3x3xf32> to memref<1x2x3x3xf32, strided<[?, ?, ?, ?], offset: ?>>
    %bx = memref.cast %b : memref<1x2x3x3xf32, strided<[?, ?, ?, ?], offset: ?>> to !dyn
    %y = memref.alloc() {alignment = 64 : i64} : memref<1x2x3x3xf32>
    %by = memref.cast %y : memref<1x2x3x3xf32> to !dyn
    call @tasd_kernel_0(%bx, %by) : (!dyn, !dyn) -> ()
    %r = bufferization.to_tensor %y restrict writable : memref<1x2x3x3xf32> to tensor<1x2x3x3xf32>
    %e = tensor.empty() : tensor<1x2x3x3xf32>
    %1 = linalg.generic {indexing_maps = [#id, #ch, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%r, %bias : tensor<1x2x3x3xf32>, tensor<2xf32>) outs(%e : tensor<1x2x3x3xf32>) {
    ^bb0(%in: f32, %c: f32, %out: f32):
      %s = arith.addf %in, %c : f32
      linalg.yield %s : f32
    } -> tensor<1x2x3x3xf32>
    %2 = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%x, %1 : tensor<1x2x3x3xf32>, tensor<1x2x3x3xf32>) outs(%e : tensor<1x2x3x3xf32>) {
    ^bb0(%in: f32, %in2: f32, %out: f32):
      %s = arith.addf %in, %in2 : f32
      linalg.yield %s : f32
    } -> tensor<1x2x3x3xf32>
    %3 = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%2 : tensor<1x2x3x3xf32>) outs(%e : tensor<1x2x3x3xf32>) {
    ^bb0(%in: f32, %out: f32):
      %c = arith.cmpf ugt, %in, %zero : f32
      %s = arith.select %c, %in, %zero : f32
      linalg.yield %s : f32
    } -> tensor<1x2x3x3xf32>
    return %3 : tensor<1x2x3x3xf32>
  }
}

// -----

#id = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
!dyn = memref<?x?x?x?xf32, strided<[?, ?, ?, ?], offset: ?>>
// The addend is computed after the call (it cannot be the call's operand), and a
// residual after a clamp is not one clamp: neither add is fused; the clamp before
// the second add is.
// CHECK-LABEL: func.func private @tasd_kernel_0
// CHECK-NOT: tasd.epilogue
// CHECK-NOT: tasd.residual
// CHECK-LABEL: func.func private @tasd_kernel_1
// CHECK-NOT: tasd.residual
// CHECK-SAME: tasd.epilogue = dense<[1.000000e+00, 1.000000e+00, 0.000000e+00, 0.000000e+00, 0.000000e+00, 0x7F800000]>
// CHECK-LABEL: func.func @left_alone(
// CHECK: call @tasd_kernel_0(%{{[^,]*}}, %{{[^,]*}}) :
// CHECK-COUNT-2: linalg.generic
// CHECK: call @tasd_kernel_1(%{{[^,]*}}, %{{[^,]*}}) :
// CHECK: linalg.generic
// CHECK-NOT: linalg.generic
// CHECK: return
module {
  func.func private @tasd_kernel_0(!dyn, !dyn) attributes {llvm.emit_c_interface, tasd.kernel = {kind = "conv2d", sparse_operand = 1 : i64}}
  func.func private @tasd_kernel_1(!dyn, !dyn) attributes {llvm.emit_c_interface, tasd.kernel = {kind = "conv2d", sparse_operand = 1 : i64}}
  func.func @left_alone(%x: tensor<1x2x3x3xf32>) -> (tensor<1x2x3x3xf32>, tensor<1x2x3x3xf32>) {
    %zero = arith.constant 0.0 : f32
    %b = bufferization.to_buffer %x read_only : tensor<1x2x3x3xf32> to memref<1x2x3x3xf32, strided<[?, ?, ?, ?], offset: ?>>
    %bx = memref.cast %b : memref<1x2x3x3xf32, strided<[?, ?, ?, ?], offset: ?>> to !dyn
    %e = tensor.empty() : tensor<1x2x3x3xf32>
    %y = memref.alloc() {alignment = 64 : i64} : memref<1x2x3x3xf32>
    %by = memref.cast %y : memref<1x2x3x3xf32> to !dyn
    call @tasd_kernel_0(%bx, %by) : (!dyn, !dyn) -> ()
    %r = bufferization.to_tensor %y restrict writable : memref<1x2x3x3xf32> to tensor<1x2x3x3xf32>
    %later = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%x : tensor<1x2x3x3xf32>) outs(%e : tensor<1x2x3x3xf32>) {
    ^bb0(%in: f32, %out: f32):
      %s = arith.mulf %in, %in : f32
      linalg.yield %s : f32
    } -> tensor<1x2x3x3xf32>
    %1 = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%r, %later : tensor<1x2x3x3xf32>, tensor<1x2x3x3xf32>) outs(%e : tensor<1x2x3x3xf32>) {
    ^bb0(%in: f32, %in2: f32, %out: f32):
      %s = arith.addf %in, %in2 : f32
      %c = arith.cmpf ugt, %s, %zero : f32
      %m = arith.select %c, %s, %zero : f32
      linalg.yield %m : f32
    } -> tensor<1x2x3x3xf32>
    %y1 = memref.alloc() {alignment = 64 : i64} : memref<1x2x3x3xf32>
    %by1 = memref.cast %y1 : memref<1x2x3x3xf32> to !dyn
    call @tasd_kernel_1(%bx, %by1) : (!dyn, !dyn) -> ()
    %r1 = bufferization.to_tensor %y1 restrict writable : memref<1x2x3x3xf32> to tensor<1x2x3x3xf32>
    %2 = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%r1 : tensor<1x2x3x3xf32>) outs(%e : tensor<1x2x3x3xf32>) {
    ^bb0(%in: f32, %out: f32):
      %m = arith.maximumf %in, %zero : f32
      linalg.yield %m : f32
    } -> tensor<1x2x3x3xf32>
    %3 = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%2, %x : tensor<1x2x3x3xf32>, tensor<1x2x3x3xf32>) outs(%e : tensor<1x2x3x3xf32>) {
    ^bb0(%in: f32, %in2: f32, %out: f32):
      %s = arith.addf %in, %in2 : f32
      linalg.yield %s : f32
    } -> tensor<1x2x3x3xf32>
    return %1, %3 : tensor<1x2x3x3xf32>, tensor<1x2x3x3xf32>
  }
}
