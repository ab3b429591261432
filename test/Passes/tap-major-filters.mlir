// tasd-cpu-tap-major-filters: the constant filter of a KxK convolution with >= 16
// channels (stride <= 2) is rearranged for the implicit GEMM (stacked column taps:
// [KH, F, C, KW]) and transposed back through a marked transpose, which
// tasd-cpu-dense-to-library-calls turns into a memref.transpose view (no copy).
// A 3x3 stride-1 one with >= 64 2x2 output tiles (Winograd's) is stored per tap,
// [KH, KW, F, C].
// A 3-channel stem, a 1x1 convolution, a filter that is an argument and a
// filter with two users are left alone.
// RUN: tasdc-opt %s --split-input-file -p tasd-cpu-tap-major-filters | FileCheck %s
// RUN: tasdc-opt %s --split-input-file -p tasd-cpu-tap-major-filters,tasd-cpu-dense-to-library-calls | FileCheck %s --check-prefix=CALL

// CHECK-LABEL: func.func @conv3x3(
// CHECK: %[[W:.*]] = arith.constant dense<{{.*}}> : tensor<8x16x3x3xf32>
// CHECK: %[[T:.*]] = linalg.transpose ins(%[[W]] : tensor<8x16x3x3xf32>) outs(%{{.*}} : tensor<3x8x16x3xf32>) permutation = [2, 0, 1, 3]
// CHECK: %[[B:.*]] = linalg.transpose ins(%[[T]] : tensor<3x8x16x3xf32>) outs(%{{.*}} : tensor<8x16x3x3xf32>) permutation = [1, 2, 0, 3]  {tasd.tap_major_view}
// CHECK: linalg.conv_2d_nchw_fchw {{.*}} ins(%{{.*}}, %[[B]] :
// CALL-LABEL: func.func @conv3x3(
// CALL: %[[T:.*]] = linalg.transpose ins(%{{.*}} : tensor<8x16x3x3xf32>) outs(%{{.*}} : tensor<3x8x16x3xf32>) permutation = [2, 0, 1, 3]
// CALL: %[[TB:.*]] = bufferization.to_buffer %[[T]] read_only
// CALL: %[[V:.*]] = memref.transpose %[[TB]] (d0, d1, d2, d3) -> (d1, d2, d0, d3) : memref<3x8x16x3xf32, strided<[?, ?, ?, ?], offset: ?>> to memref<8x16x3x3xf32, strided<[?, ?, ?, ?], offset: ?>>
// CALL: %[[VC:.*]] = memref.cast %[[V]]
// CALL: call @tasd_dense_conv2d(%{{.*}}, %[[VC]], %{{.*}}
// CALL-NOT: linalg.transpose
// CALL-NOT: linalg.conv_2d_nchw_fchw
func.func @conv3x3(%x: tensor<1x16x6x6xf32>) -> tensor<1x8x4x4xf32> {
  %w = arith.constant dense<0.5> : tensor<8x16x3x3xf32>
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<1x8x4x4xf32>
  %i = linalg.fill ins(%zero : f32) outs(%e : tensor<1x8x4x4xf32>) -> tensor<1x8x4x4xf32>
  %y = linalg.conv_2d_nchw_fchw {dilations = dense<1> : vector<2xi64>, strides = dense<1> : vector<2xi64>} ins(%x, %w : tensor<1x16x6x6xf32>, tensor<8x16x3x3xf32>) outs(%i : tensor<1x8x4x4xf32>) -> tensor<1x8x4x4xf32>
  return %y : tensor<1x8x4x4xf32>
}

// -----

// CHECK-LABEL: func.func @winograd(
// CHECK: %[[W:.*]] = arith.constant dense<{{.*}}> : tensor<8x16x3x3xf32>
// CHECK: %[[T:.*]] = linalg.transpose ins(%[[W]] : tensor<8x16x3x3xf32>) outs(%{{.*}} : tensor<3x3x8x16xf32>) permutation = [2, 3, 0, 1]
// CHECK: %[[B:.*]] = linalg.transpose ins(%[[T]] : tensor<3x3x8x16xf32>) outs(%{{.*}} : tensor<8x16x3x3xf32>) permutation = [2, 3, 0, 1]  {tasd.tap_major_view}
// CHECK: linalg.conv_2d_nchw_fchw {{.*}} ins(%{{.*}}, %[[B]] :
// CALL-LABEL: func.func @winograd(
// CALL: memref.transpose %{{.*}} (d0, d1, d2, d3) -> (d2, d3, d0, d1) : memref<3x3x8x16xf32, strided<[?, ?, ?, ?], offset: ?>> to memref<8x16x3x3xf32, strided<[?, ?, ?, ?], offset: ?>>
// CALL: call @tasd_dense_conv2d(
func.func @winograd(%x: tensor<2x16x16x16xf32>) -> tensor<2x8x14x14xf32> {
  %w = arith.constant dense<0.5> : tensor<8x16x3x3xf32>
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<2x8x14x14xf32>
  %i = linalg.fill ins(%zero : f32) outs(%e : tensor<2x8x14x14xf32>) -> tensor<2x8x14x14xf32>
  %y = linalg.conv_2d_nchw_fchw {dilations = dense<1> : vector<2xi64>, strides = dense<1> : vector<2xi64>} ins(%x, %w : tensor<2x16x16x16xf32>, tensor<8x16x3x3xf32>) outs(%i : tensor<2x8x14x14xf32>) -> tensor<2x8x14x14xf32>
  return %y : tensor<2x8x14x14xf32>
}

// -----

// CHECK-LABEL: func.func @left_alone(
// CHECK-NOT: linalg.transpose
// CHECK: return
func.func @left_alone(%x: tensor<1x16x6x6xf32>, %x3: tensor<1x3x6x6xf32>, %wa: tensor<8x16x3x3xf32>) -> (tensor<1x8x4x4xf32>, tensor<1x8x4x4xf32>, tensor<1x8x6x6xf32>, tensor<1x8x4x4xf32>, tensor<1x8x4x4xf32>) {
  %stem = arith.constant dense<0.5> : tensor<8x3x3x3xf32>
  %one = arith.constant dense<0.5> : tensor<8x16x1x1xf32>
  %shared = arith.constant dense<0.25> : tensor<8x16x3x3xf32>
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<1x8x4x4xf32>
  %i = linalg.fill ins(%zero : f32) outs(%e : tensor<1x8x4x4xf32>) -> tensor<1x8x4x4xf32>
  %e6 = tensor.empty() : tensor<1x8x6x6xf32>
  %i6 = linalg.fill ins(%zero : f32) outs(%e6 : tensor<1x8x6x6xf32>) -> tensor<1x8x6x6xf32>
  %y0 = linalg.conv_2d_nchw_fchw {dilations = dense<1> : vector<2xi64>, strides = dense<1> : vector<2xi64>} ins(%x3, %stem : tensor<1x3x6x6xf32>, tensor<8x3x3x3xf32>) outs(%i : tensor<1x8x4x4xf32>) -> tensor<1x8x4x4xf32>
  %y1 = linalg.conv_2d_nchw_fchw {dilations = dense<1> : vector<2xi64>, strides = dense<1> : vector<2xi64>} ins(%x, %wa : tensor<1x16x6x6xf32>, tensor<8x16x3x3xf32>) outs(%i : tensor<1x8x4x4xf32>) -> tensor<1x8x4x4xf32>
  %y2 = linalg.conv_2d_nchw_fchw {dilations = dense<1> : vector<2xi64>, strides = dense<1> : vector<2xi64>} ins(%x, %one : tensor<1x16x6x6xf32>, tensor<8x16x1x1xf32>) outs(%i6 : tensor<1x8x6x6xf32>) -> tensor<1x8x6x6xf32>
  %y3 = linalg.conv_2d_nchw_fchw {dilations = dense<1> : vector<2xi64>, strides = dense<1> : vector<2xi64>} ins(%x, %shared : tensor<1x16x6x6xf32>, tensor<8x16x3x3xf32>) outs(%i : tensor<1x8x4x4xf32>) -> tensor<1x8x4x4xf32>
  %y4 = linalg.conv_2d_nchw_fchw {dilations = dense<1> : vector<2xi64>, strides = dense<1> : vector<2xi64>} ins(%x, %shared : tensor<1x16x6x6xf32>, tensor<8x16x3x3xf32>) outs(%i : tensor<1x8x4x4xf32>) -> tensor<1x8x4x4xf32>
  return %y0, %y1, %y2, %y3, %y4 : tensor<1x8x4x4xf32>, tensor<1x8x4x4xf32>, tensor<1x8x6x6xf32>, tensor<1x8x4x4xf32>, tensor<1x8x4x4xf32>
}
