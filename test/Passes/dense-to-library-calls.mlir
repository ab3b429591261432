// tasd-cpu-dense-to-library-calls: dense f32 contractions with static shapes
// become calls of the runtime's library entries (destination-passing form);
// a zero-filled init (also reshaped) is dropped, any other init is added on
// tensors after the call. Other element types, dynamic shapes,
// transposed indexing maps and contractions under min-flops are left alone.
// RUN: tasdc-opt %s --split-input-file -p tasd-cpu-dense-to-library-calls | FileCheck %s
// RUN: tasdc-opt %s --split-input-file -p 'tasd-cpu-dense-to-library-calls{min-flops=1000}' | FileCheck %s --check-prefix=MIN
// RUN: tasdc-opt %s --split-input-file -p 'tasd-cpu-dense-to-library-calls{epilogues=false}' | FileCheck %s --check-prefix=OFF
// RUN: %expect-exit 2 tasdc-opt %s -p 'tasd-cpu-dense-to-library-calls{min-flops=-1}' | FileCheck %s --check-prefix=BAD
// RUN: %expect-exit 2 tasdc-opt %s -p 'tasd-cpu-dense-to-library-calls{flops=1}' | FileCheck %s --check-prefix=BADOPT
// BAD: tasdc-opt: error: pass 'tasd-cpu-dense-to-library-calls': min-flops must be >= 0, got -1
// BADOPT: tasdc-opt: error: pass 'tasd-cpu-dense-to-library-calls' has no option 'flops'

// CHECK-DAG: func.func private @tasd_dense_matmul(memref<?x?xf32, strided<[?, ?], offset: ?>>, memref<?x?xf32, strided<[?, ?], offset: ?>>, memref<?x?xf32, strided<[?, ?], offset: ?>>) attributes {llvm.emit_c_interface}
// CHECK-LABEL: func.func @matmul_zero_init(
// CHECK-SAME: %[[A:.*]]: tensor<4x8xf32>, %[[B:.*]]: tensor<8x16xf32>
// CHECK-NOT: linalg.fill
// CHECK-DAG: %[[AB:.*]] = bufferization.to_buffer %[[A]] read_only
// CHECK-DAG: %[[BB:.*]] = bufferization.to_buffer %[[B]] read_only
// CHECK-DAG: %[[Y:.*]] = memref.alloc() {alignment = 64 : i64} : memref<4x16xf32>
// CHECK-DAG: %[[YC:.*]] = memref.cast %[[Y]]
// CHECK: call @tasd_dense_matmul(%{{.*}}, %{{.*}}, %[[YC]])
// CHECK: %[[R:.*]] = bufferization.to_tensor %[[Y]] restrict writable
// CHECK-NOT: linalg.matmul
// CHECK-NOT: arith.addf
// CHECK: return %[[R]]
// MIN-LABEL: func.func @matmul_zero_init(
// MIN: linalg.matmul
func.func @matmul_zero_init(%a: tensor<4x8xf32>, %b: tensor<8x16xf32>) -> tensor<4x16xf32> {
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<4x16xf32>
  %init = linalg.fill ins(%zero : f32) outs(%e : tensor<4x16xf32>) -> tensor<4x16xf32>
  %y = linalg.matmul ins(%a, %b : tensor<4x8xf32>, tensor<8x16xf32>) outs(%init : tensor<4x16xf32>) -> tensor<4x16xf32>
  return %y : tensor<4x16xf32>
}

// -----

// An init that is not +0.0 (here a running sum) is added after the call.
// CHECK-LABEL: func.func @batch_matmul_accumulate(
// CHECK-SAME: %[[C:[^:]*]]: tensor<2x3x5xf32>)
// CHECK-NOT: bufferization.to_buffer %[[C]]
// CHECK: call @tasd_dense_batch_matmul(%{{.*}}, %{{.*}}, %{{.*}})
// CHECK: %[[R:.*]] = bufferization.to_tensor
// CHECK: %[[S:.*]] = arith.addf %[[R]], %[[C]] : tensor<2x3x5xf32>
// CHECK-NOT: linalg.batch_matmul
// CHECK: return %[[S]]
func.func @batch_matmul_accumulate(%a: tensor<2x3x8xf32>, %b: tensor<2x8x5xf32>, %c: tensor<2x3x5xf32>) -> tensor<2x3x5xf32> {
  %y = linalg.batch_matmul ins(%a, %b : tensor<2x3x8xf32>, tensor<2x8x5xf32>) outs(%c : tensor<2x3x5xf32>) -> tensor<2x3x5xf32>
  return %y : tensor<2x3x5xf32>
}

// -----

// Convolutions pass strides and dilations; a grouped one is collapsed to NCHW
// (groups first), a depthwise one has its own entry; -0.0 is not a zero init.
// The depthwise entry declares its batch operands (X, Y) for tasd-cpu-tile-batch; the
// sgemm convolution does not (per image it runs slower on two threads).
// CHECK-DAG: func.func private @tasd_dense_depthwise_conv2d({{.*}}) attributes {llvm.emit_c_interface, tasd.batch_operands = array<i64: 0, 2>}
// CHECK-DAG: func.func private @tasd_dense_conv2d({{.*}}) attributes {llvm.emit_c_interface}{{$}}
// CHECK-LABEL: func.func @convs(
// CHECK: %[[MZ:.*]] = linalg.fill ins(%cst{{.*}} : f32) outs(%{{.*}} : tensor<1x4x4x4xf32>)
// CHECK: call @tasd_dense_conv2d(%{{.*}}, %{{.*}}, %{{.*}}, %c1_i64{{[_0-9]*}}, %c2_i64{{[_0-9]*}}, %c2_i64{{[_0-9]*}}, %c1_i64{{[_0-9]*}}, %c1_i64{{[_0-9]*}}, %c0_i64{{[_0-9]*}}, %c0_i64{{[_0-9]*}})
// CHECK: arith.addf %{{.*}}, %[[MZ]] : tensor<1x4x4x4xf32>
// CHECK: tensor.collapse_shape %{{.*}} {{\[\[}}0], [1, 2], [3], [4]] : tensor<1x2x3x9x9xf32> into tensor<1x6x9x9xf32>
// CHECK: tensor.collapse_shape %{{.*}} {{\[\[}}0, 1], [2], [3], [4]] : tensor<2x4x3x3x3xf32> into tensor<8x3x3x3xf32>
// CHECK: call @tasd_dense_conv2d(%{{.*}}, %{{.*}}, %{{.*}}, %c2_i64{{[_0-9]*}}, %c1_i64{{[_0-9]*}}, %c1_i64{{[_0-9]*}}, %c1_i64{{[_0-9]*}}, %c1_i64{{[_0-9]*}}, %c0_i64{{[_0-9]*}}, %c0_i64{{[_0-9]*}})
// CHECK: tensor.expand_shape %{{.*}} {{\[\[}}0], [1, 2], [3], [4]] output_shape [1, 2, 4, 7, 7] : tensor<1x8x7x7xf32> into tensor<1x2x4x7x7xf32>
// CHECK: call @tasd_dense_depthwise_conv2d(%{{.*}}, %{{.*}}, %{{.*}}, %c1_i64{{[_0-9]*}}, %c1_i64{{[_0-9]*}}, %c2_i64{{[_0-9]*}}, %c2_i64{{[_0-9]*}}, %c0_i64{{[_0-9]*}}, %c0_i64{{[_0-9]*}})
// CHECK-NOT: linalg.conv
// CHECK-NOT: linalg.depthwise
func.func @convs(%x: tensor<1x3x9x9xf32>, %w: tensor<4x3x3x3xf32>, %xg: tensor<1x2x3x9x9xf32>, %wg: tensor<2x4x3x3x3xf32>, %wd: tensor<3x3x3xf32>)
    -> (tensor<1x4x4x4xf32>, tensor<1x2x4x7x7xf32>, tensor<1x3x5x5xf32>) {
  %zero = arith.constant 0.0 : f32
  %mzero = arith.constant -0.0 : f32
  %e = tensor.empty() : tensor<1x4x4x4xf32>
  %i = linalg.fill ins(%mzero : f32) outs(%e : tensor<1x4x4x4xf32>) -> tensor<1x4x4x4xf32>
  %y = linalg.conv_2d_nchw_fchw {dilations = dense<1> : vector<2xi64>, strides = dense<2> : vector<2xi64>} ins(%x, %w : tensor<1x3x9x9xf32>, tensor<4x3x3x3xf32>) outs(%i : tensor<1x4x4x4xf32>) -> tensor<1x4x4x4xf32>
  %eg = tensor.empty() : tensor<1x2x4x7x7xf32>
  %ig = linalg.fill ins(%zero : f32) outs(%eg : tensor<1x2x4x7x7xf32>) -> tensor<1x2x4x7x7xf32>
  %yg = linalg.conv_2d_ngchw_gfchw {dilations = dense<1> : vector<2xi64>, strides = dense<1> : vector<2xi64>} ins(%xg, %wg : tensor<1x2x3x9x9xf32>, tensor<2x4x3x3x3xf32>) outs(%ig : tensor<1x2x4x7x7xf32>) -> tensor<1x2x4x7x7xf32>
  %ed = tensor.empty() : tensor<1x3x5x5xf32>
  %id = linalg.fill ins(%zero : f32) outs(%ed : tensor<1x3x5x5xf32>) -> tensor<1x3x5x5xf32>
  %yd = linalg.depthwise_conv_2d_nchw_chw {dilations = dense<2> : vector<2xi64>, strides = dense<1> : vector<2xi64>} ins(%x, %wd : tensor<1x3x9x9xf32>, tensor<3x3x3xf32>) outs(%id : tensor<1x3x5x5xf32>) -> tensor<1x3x5x5xf32>
  return %y, %yg, %yd : tensor<1x4x4x4xf32>, tensor<1x2x4x7x7xf32>, tensor<1x3x5x5xf32>
}

// -----

// A zero fill seen through a reshape (tasd-cpu-fold-batch-broadcasts collapses the init) is dropped too.
// CHECK-LABEL: func.func @reshaped_zero_init(
// CHECK-NOT: linalg.fill
// CHECK: call @tasd_dense_matmul(
// CHECK-NOT: arith.addf
// CHECK: tensor.expand_shape
func.func @reshaped_zero_init(%a: tensor<2x3x8xf32>, %w: tensor<8x5xf32>) -> tensor<2x3x5xf32> {
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<2x3x5xf32>
  %i = linalg.fill ins(%zero : f32) outs(%e : tensor<2x3x5xf32>) -> tensor<2x3x5xf32>
  %a2 = tensor.collapse_shape %a [[0, 1], [2]] : tensor<2x3x8xf32> into tensor<6x8xf32>
  %i2 = tensor.collapse_shape %i [[0, 1], [2]] : tensor<2x3x5xf32> into tensor<6x5xf32>
  %y = linalg.matmul ins(%a2, %w : tensor<6x8xf32>, tensor<8x5xf32>) outs(%i2 : tensor<6x5xf32>) -> tensor<6x5xf32>
  %r = tensor.expand_shape %y [[0, 1], [2]] output_shape [2, 3, 5] : tensor<6x5xf32> into tensor<2x3x5xf32>
  return %r : tensor<2x3x5xf32>
}

// -----

// Left to the code generator: f16, a dynamic shape, a transposed operand map.
// CHECK-LABEL: func.func @unchanged(
// CHECK-NOT: call
// CHECK: linalg.matmul ins(%{{.*}}, %{{.*}} : tensor<4x8xf16>, tensor<8x16xf16>)
// CHECK: linalg.matmul ins(%{{.*}}, %{{.*}} : tensor<?x8xf32>, tensor<8x16xf32>)
// CHECK: linalg.matmul indexing_maps
// CHECK-NOT: call
func.func @unchanged(%a: tensor<4x8xf16>, %b: tensor<8x16xf16>, %c: tensor<4x16xf16>, %d: tensor<?x8xf32>, %e: tensor<8x16xf32>, %f: tensor<?x16xf32>,
                     %t: tensor<16x8xf32>, %g: tensor<4x8xf32>, %h: tensor<4x16xf32>) -> (tensor<4x16xf16>, tensor<?x16xf32>, tensor<4x16xf32>) {
  %y = linalg.matmul ins(%a, %b : tensor<4x8xf16>, tensor<8x16xf16>) outs(%c : tensor<4x16xf16>) -> tensor<4x16xf16>
  %z = linalg.matmul ins(%d, %e : tensor<?x8xf32>, tensor<8x16xf32>) outs(%f : tensor<?x16xf32>) -> tensor<?x16xf32>
  %w = linalg.matmul indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d2)>, affine_map<(d0, d1, d2) -> (d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1)>]
         ins(%g, %t : tensor<4x8xf32>, tensor<16x8xf32>) outs(%h : tensor<4x16xf32>) -> tensor<4x16xf32>
  return %y, %z, %w : tensor<4x16xf16>, tensor<?x16xf32>, tensor<4x16xf32>
}

// -----

// A zero tensor.pad on H and W (asymmetric too) is read through: the entry gets
// the unpadded input and the top/left padding, the padded copy is gone (also
// for -0.0). A pad with another value or on the channels stays (passed padded).
// CHECK-LABEL: func.func @padding(
// CHECK-SAME: %[[X:[^:]*]]: tensor<1x3x9x9xf32>
// CHECK: %[[XB:.*]] = bufferization.to_buffer %[[X]] read_only
// CHECK: %[[XC:.*]] = memref.cast %[[XB]]
// CHECK: call @tasd_dense_conv2d(%[[XC]], %{{.*}}, %{{.*}}, %c1_i64{{[_0-9]*}}, %c1_i64{{[_0-9]*}}, %c1_i64{{[_0-9]*}}, %c1_i64{{[_0-9]*}}, %c1_i64{{[_0-9]*}}, %c2_i64{{[_0-9]*}}, %c1_i64{{[_0-9]*}})
// CHECK: call @tasd_dense_depthwise_conv2d(%{{.*}}, %{{.*}}, %{{.*}}, %c2_i64{{[_0-9]*}}, %c2_i64{{[_0-9]*}}, %c1_i64{{[_0-9]*}}, %c1_i64{{[_0-9]*}}, %c1_i64{{[_0-9]*}}, %c0_i64{{[_0-9]*}})
// CHECK: %[[P1:.*]] = tensor.pad %[[X]] low[0, 0, 1, 1] high[0, 0, 1, 1]
// CHECK: tensor.yield %cst
// CHECK: %[[P1B:.*]] = bufferization.to_buffer %[[P1]]
// CHECK: %[[P1C:.*]] = memref.cast %[[P1B]]
// CHECK: call @tasd_dense_conv2d(%[[P1C]], {{.*}}, %c0_i64{{[_0-9]*}}, %c0_i64{{[_0-9]*}})
// CHECK: tensor.pad %[[X]] low[0, 1, 1, 1] high[0, 0, 1, 1]
// CHECK: call @tasd_dense_conv2d(
// CHECK: call @tasd_dense_conv2d(%{{.*}}, %c1_i64{{[_0-9]*}}, %c1_i64{{[_0-9]*}})
// CHECK-NOT: tensor.pad
// CHECK-NOT: linalg.conv
func.func @padding(%x: tensor<1x3x9x9xf32>, %w: tensor<4x3x3x3xf32>, %w4: tensor<4x4x3x3xf32>, %wd: tensor<3x3x3xf32>)
    -> (tensor<1x4x8x9xf32>, tensor<1x3x5x4xf32>, tensor<1x4x9x9xf32>, tensor<1x4x9x9xf32>, tensor<1x4x9x9xf32>) {
  %zero = arith.constant 0.0 : f32
  %one = arith.constant 1.0 : f32
  %mzero = arith.constant -0.0 : f32
  %p = tensor.pad %x low[0, 0, 2, 1] high[0, 0, 0, 1] {
  ^bb0(%a: index, %b: index, %c: index, %d: index):
    tensor.yield %zero : f32
  } : tensor<1x3x9x9xf32> to tensor<1x3x11x11xf32>
  %e = tensor.empty() : tensor<1x4x8x9xf32>
  %i = linalg.fill ins(%zero : f32) outs(%e : tensor<1x4x8x9xf32>) -> tensor<1x4x8x9xf32>
  %y = linalg.conv_2d_nchw_fchw {dilations = dense<1> : vector<2xi64>, strides = dense<1> : vector<2xi64>} ins(%p, %w : tensor<1x3x11x11xf32>, tensor<4x3x3x3xf32>) outs(%i : tensor<1x4x8x9xf32>) -> tensor<1x4x8x9xf32>
  %pd = tensor.pad %x low[0, 0, 1, 0] high[0, 0, 1, 0] {
  ^bb0(%a: index, %b: index, %c: index, %d: index):
    tensor.yield %zero : f32
  } : tensor<1x3x9x9xf32> to tensor<1x3x11x9xf32>
  %ed = tensor.empty() : tensor<1x3x5x4xf32>
  %id = linalg.fill ins(%zero : f32) outs(%ed : tensor<1x3x5x4xf32>) -> tensor<1x3x5x4xf32>
  %yd = linalg.depthwise_conv_2d_nchw_chw {dilations = dense<1> : vector<2xi64>, strides = dense<2> : vector<2xi64>} ins(%pd, %wd : tensor<1x3x11x9xf32>, tensor<3x3x3xf32>) outs(%id : tensor<1x3x5x4xf32>) -> tensor<1x3x5x4xf32>
  %p1 = tensor.pad %x low[0, 0, 1, 1] high[0, 0, 1, 1] {
  ^bb0(%a: index, %b: index, %c: index, %d: index):
    tensor.yield %one : f32
  } : tensor<1x3x9x9xf32> to tensor<1x3x11x11xf32>
  %e9 = tensor.empty() : tensor<1x4x9x9xf32>
  %i9 = linalg.fill ins(%zero : f32) outs(%e9 : tensor<1x4x9x9xf32>) -> tensor<1x4x9x9xf32>
  %y1 = linalg.conv_2d_nchw_fchw {dilations = dense<1> : vector<2xi64>, strides = dense<1> : vector<2xi64>} ins(%p1, %w : tensor<1x3x11x11xf32>, tensor<4x3x3x3xf32>) outs(%i9 : tensor<1x4x9x9xf32>) -> tensor<1x4x9x9xf32>
  %pc = tensor.pad %x low[0, 1, 1, 1] high[0, 0, 1, 1] {
  ^bb0(%a: index, %b: index, %c: index, %d: index):
    tensor.yield %zero : f32
  } : tensor<1x3x9x9xf32> to tensor<1x4x11x11xf32>
  %y2 = linalg.conv_2d_nchw_fchw {dilations = dense<1> : vector<2xi64>, strides = dense<1> : vector<2xi64>} ins(%pc, %w4 : tensor<1x4x11x11xf32>, tensor<4x4x3x3xf32>) outs(%i9 : tensor<1x4x9x9xf32>) -> tensor<1x4x9x9xf32>
  %pm = tensor.pad %x low[0, 0, 1, 1] high[0, 0, 1, 1] {
  ^bb0(%a: index, %b: index, %c: index, %d: index):
    tensor.yield %mzero : f32
  } : tensor<1x3x9x9xf32> to tensor<1x3x11x11xf32>
  %y3 = linalg.conv_2d_nchw_fchw {dilations = dense<1> : vector<2xi64>, strides = dense<1> : vector<2xi64>} ins(%pm, %w : tensor<1x3x11x11xf32>, tensor<4x3x3x3xf32>) outs(%i9 : tensor<1x4x9x9xf32>) -> tensor<1x4x9x9xf32>
  return %y, %yd, %y1, %y2, %y3 : tensor<1x4x8x9xf32>, tensor<1x3x5x4xf32>, tensor<1x4x9x9xf32>, tensor<1x4x9x9xf32>, tensor<1x4x9x9xf32>
}

// -----

#id = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
// A depthwise convolution with a broadcast bias init (a folded BatchNorm) and
// ReLU6 after it calls the epilogue entry with the bias and the bounds; the
// broadcast and the clamp are erased. A zero init with ReLU passes zeros and
// [0, +inf]. A scale after the clamp is not a clamp: the second depthwise keeps
// its plain entry and the ops after it.
// CHECK-LABEL: func.func @depthwise_epilogues(
// CHECK-SAME: %[[B:[a-z0-9]*]]: tensor<3xf32>
// CHECK: %[[BB:.*]] = bufferization.to_buffer %[[B]] read_only
// CHECK: %[[BC:.*]] = memref.cast %[[BB]]
// CHECK: call @tasd_dense_depthwise_conv2d_epilogue(%{{.*}}, %{{.*}}, %{{.*}}, %[[BC]], %c1_i64{{[_0-9]*}}, %c1_i64{{[_0-9]*}}, %c1_i64{{[_0-9]*}}, %c1_i64{{[_0-9]*}}, %c0_i64{{[_0-9]*}}, %c0_i64{{[_0-9]*}}, %cst{{[_0-9]*}}, %cst{{[_0-9]*}})
// CHECK: %[[R1:.*]] = bufferization.to_tensor
// CHECK: arith.constant dense<0.000000e+00> : tensor<3xf32>
// CHECK: call @tasd_dense_depthwise_conv2d_epilogue(
// CHECK: %[[R2:.*]] = bufferization.to_tensor
// CHECK: call @tasd_dense_depthwise_conv2d(
// CHECK: linalg.generic
// CHECK: arith.maximumf
// CHECK: arith.mulf
// CHECK-NOT: linalg.broadcast
// CHECK: return %[[R1]], %[[R2]],
func.func @depthwise_epilogues(%x: tensor<1x3x7x7xf32>, %wd: tensor<3x3x3xf32>, %b: tensor<3xf32>)
    -> (tensor<1x3x5x5xf32>, tensor<1x3x5x5xf32>, tensor<1x3x5x5xf32>) {
  %zero = arith.constant 0.0 : f32
  %six = arith.constant 6.0 : f32
  %two = arith.constant 2.0 : f32
  %e = tensor.empty() : tensor<1x3x5x5xf32>
  %bi = linalg.broadcast ins(%b : tensor<3xf32>) outs(%e : tensor<1x3x5x5xf32>) dimensions = [0, 2, 3]
  %y = linalg.depthwise_conv_2d_nchw_chw {dilations = dense<1> : vector<2xi64>, strides = dense<1> : vector<2xi64>} ins(%x, %wd : tensor<1x3x7x7xf32>, tensor<3x3x3xf32>) outs(%bi : tensor<1x3x5x5xf32>) -> tensor<1x3x5x5xf32>
  %r1 = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%y : tensor<1x3x5x5xf32>) outs(%e : tensor<1x3x5x5xf32>) {
  ^bb0(%in: f32, %out: f32):
    %c1 = arith.cmpf ogt, %in, %zero : f32
    %m1 = arith.select %c1, %in, %zero : f32
    %c2 = arith.cmpf olt, %six, %m1 : f32
    %m2 = arith.select %c2, %six, %m1 : f32
    linalg.yield %m2 : f32
  } -> tensor<1x3x5x5xf32>
  %z = linalg.fill ins(%zero : f32) outs(%e : tensor<1x3x5x5xf32>) -> tensor<1x3x5x5xf32>
  %y2 = linalg.depthwise_conv_2d_nchw_chw {dilations = dense<1> : vector<2xi64>, strides = dense<1> : vector<2xi64>} ins(%x, %wd : tensor<1x3x7x7xf32>, tensor<3x3x3xf32>) outs(%z : tensor<1x3x5x5xf32>) -> tensor<1x3x5x5xf32>
  %r2 = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%y2 : tensor<1x3x5x5xf32>) outs(%e : tensor<1x3x5x5xf32>) {
  ^bb0(%in: f32, %out: f32):
    %m = arith.maximumf %in, %zero : f32
    linalg.yield %m : f32
  } -> tensor<1x3x5x5xf32>
  %y3 = linalg.depthwise_conv_2d_nchw_chw {dilations = dense<1> : vector<2xi64>, strides = dense<1> : vector<2xi64>} ins(%x, %wd : tensor<1x3x7x7xf32>, tensor<3x3x3xf32>) outs(%z : tensor<1x3x5x5xf32>) -> tensor<1x3x5x5xf32>
  %r3 = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%y3 : tensor<1x3x5x5xf32>) outs(%e : tensor<1x3x5x5xf32>) {
  ^bb0(%in: f32, %out: f32):
    %m = arith.maximumf %in, %zero : f32
    %s = arith.mulf %m, %two : f32
    linalg.yield %s : f32
  } -> tensor<1x3x5x5xf32>
  return %r1, %r2, %r3 : tensor<1x3x5x5xf32>, tensor<1x3x5x5xf32>, tensor<1x3x5x5xf32>
}

// -----

#id = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>
// A convolution with a broadcast bias init and ReLU after it calls
// tasd_dense_conv2d_epilogue with the bias and the bounds [0, +inf] (groups, the
// strides, dilations and padding as for the plain entry); the second adds a
// residual (a function argument, so defined before it) after the bias:
// tasd_dense_conv2d_residual with the bias, the residual and bounds [-inf, +inf],
// and the add is gone. A residual computed after the convolution (the third)
// stops the chain: the bias alone goes in and the add stays. With
// epilogues=false all keep the plain entry and the adds.
// CHECK-LABEL: func.func @conv_epilogues(
// CHECK-SAME: %[[B:[a-z0-9]*]]: tensor<4xf32>, %[[RES:[a-z0-9]*]]: tensor<1x4x5x5xf32>
// CHECK: %[[BB:.*]] = bufferization.to_buffer %[[B]] read_only
// CHECK: %[[BC:.*]] = memref.cast %[[BB]]
// CHECK: %[[LO1:.*]] = arith.constant 0.000000e+00 : f32
// CHECK: %[[HI1:.*]] = arith.constant 0x7F800000 : f32
// CHECK: call @tasd_dense_conv2d_epilogue(%{{.*}}, %{{.*}}, %{{.*}}, %[[BC]], %c1_i64{{[_0-9]*}}, %c1_i64{{[_0-9]*}}, %c1_i64{{[_0-9]*}}, %c1_i64{{[_0-9]*}}, %c1_i64{{[_0-9]*}}, %c0_i64{{[_0-9]*}}, %c0_i64{{[_0-9]*}}, %[[LO1]], %[[HI1]])
// CHECK: %[[R1:.*]] = bufferization.to_tensor
// CHECK: %[[RB:.*]] = bufferization.to_buffer %[[RES]] read_only
// CHECK: %[[RC:.*]] = memref.cast %[[RB]]
// CHECK: %[[LO2:.*]] = arith.constant 0xFF800000 : f32
// CHECK: %[[HI2:.*]] = arith.constant 0x7F800000 : f32
// CHECK: call @tasd_dense_conv2d_residual(%{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %[[RC]], %c1_i64{{[_0-9]*}}, %c1_i64{{[_0-9]*}}, %c1_i64{{[_0-9]*}}, %c1_i64{{[_0-9]*}}, %c1_i64{{[_0-9]*}}, %c0_i64{{[_0-9]*}}, %c0_i64{{[_0-9]*}}, %[[LO2]], %[[HI2]])
// CHECK: %[[R2:.*]] = bufferization.to_tensor
// CHECK: call @tasd_dense_conv2d_epilogue(
// CHECK: %[[R4:.*]] = bufferization.to_tensor
// CHECK-NOT: linalg.broadcast
// CHECK: %[[LATE:.*]] = linalg.generic
// CHECK: arith.mulf
// CHECK: %[[R3:.*]] = linalg.generic {{.*}} ins(%[[R4]], %[[LATE]] :
// CHECK: arith.addf
// CHECK-NOT: linalg.generic
// CHECK: return %[[R1]], %[[R2]], %[[R3]] :
// OFF-LABEL: func.func @conv_epilogues(
// OFF-NOT: _epilogue
// OFF-NOT: _residual
// OFF: call @tasd_dense_conv2d(
// OFF: arith.addf %{{.*}}, %{{.*}} : tensor<1x4x5x5xf32>
// OFF: arith.maximumf
// OFF: call @tasd_dense_conv2d(
// OFF: arith.addf %{{.*}}, %{{.*}} : tensor<1x4x5x5xf32>
func.func @conv_epilogues(%x: tensor<1x3x7x7xf32>, %w: tensor<4x3x3x3xf32>, %b: tensor<4xf32>, %res: tensor<1x4x5x5xf32>)
    -> (tensor<1x4x5x5xf32>, tensor<1x4x5x5xf32>, tensor<1x4x5x5xf32>) {
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<1x4x5x5xf32>
  %bi = linalg.broadcast ins(%b : tensor<4xf32>) outs(%e : tensor<1x4x5x5xf32>) dimensions = [0, 2, 3]
  %y = linalg.conv_2d_nchw_fchw {dilations = dense<1> : vector<2xi64>, strides = dense<1> : vector<2xi64>} ins(%x, %w : tensor<1x3x7x7xf32>, tensor<4x3x3x3xf32>) outs(%bi : tensor<1x4x5x5xf32>) -> tensor<1x4x5x5xf32>
  %r1 = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%y : tensor<1x4x5x5xf32>) outs(%e : tensor<1x4x5x5xf32>) {
  ^bb0(%in: f32, %out: f32):
    %m = arith.maximumf %in, %zero : f32
    linalg.yield %m : f32
  } -> tensor<1x4x5x5xf32>
  %y2 = linalg.conv_2d_nchw_fchw {dilations = dense<1> : vector<2xi64>, strides = dense<1> : vector<2xi64>} ins(%x, %w : tensor<1x3x7x7xf32>, tensor<4x3x3x3xf32>) outs(%bi : tensor<1x4x5x5xf32>) -> tensor<1x4x5x5xf32>
  %r2 = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%y2, %res : tensor<1x4x5x5xf32>, tensor<1x4x5x5xf32>) outs(%e : tensor<1x4x5x5xf32>) {
  ^bb0(%in: f32, %in2: f32, %out: f32):
    %a = arith.addf %in, %in2 : f32
    linalg.yield %a : f32
  } -> tensor<1x4x5x5xf32>
  %y3 = linalg.conv_2d_nchw_fchw {dilations = dense<1> : vector<2xi64>, strides = dense<1> : vector<2xi64>} ins(%x, %w : tensor<1x3x7x7xf32>, tensor<4x3x3x3xf32>) outs(%bi : tensor<1x4x5x5xf32>) -> tensor<1x4x5x5xf32>
  %late = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%res : tensor<1x4x5x5xf32>) outs(%e : tensor<1x4x5x5xf32>) {
  ^bb0(%in: f32, %out: f32):
    %s = arith.mulf %in, %in : f32
    linalg.yield %s : f32
  } -> tensor<1x4x5x5xf32>
  %r3 = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel", "parallel", "parallel"]} ins(%y3, %late : tensor<1x4x5x5xf32>, tensor<1x4x5x5xf32>) outs(%e : tensor<1x4x5x5xf32>) {
  ^bb0(%in: f32, %in2: f32, %out: f32):
    %a = arith.addf %in, %in2 : f32
    linalg.yield %a : f32
  } -> tensor<1x4x5x5xf32>
  return %r1, %r2, %r3 : tensor<1x4x5x5xf32>, tensor<1x4x5x5xf32>, tensor<1x4x5x5xf32>
}
