// tasd-conv1d-as-conv2d: linalg.conv_1d_ncw_fcw on static tensors becomes
// linalg.conv_2d_nchw_fchw over a unit height: input, filter and output
// expanded [N, C, W] -> [N, C, 1, W], strides and dilations [1, s] / [1, d],
// the result collapsed back. Dynamic shapes are left alone.
// RUN: tasdc-opt %s --split-input-file -p tasd-conv1d-as-conv2d | FileCheck %s
// RUN: %expect-exit 2 tasdc-opt %s -p 'tasd-conv1d-as-conv2d{height=2}' | FileCheck %s --check-prefix=BAD
// BAD: tasdc-opt: error: pass 'tasd-conv1d-as-conv2d' has no option 'height'

// CHECK-LABEL: func.func @strided(
// CHECK-SAME: %[[X:.*]]: tensor<2x4x16xf32>
// CHECK-DAG: %[[W:.*]] = arith.constant dense<1.000000e+00> : tensor<8x4x3xf32>
// CHECK-DAG: %[[X4:.*]] = tensor.expand_shape %[[X]] {{\[\[}}0], [1], [2, 3]] output_shape [2, 4, 1, 16] : tensor<2x4x16xf32> into tensor<2x4x1x16xf32>
// CHECK-DAG: %[[W4:.*]] = tensor.expand_shape %[[W]] {{\[\[}}0], [1], [2, 3]] output_shape [8, 4, 1, 3] : tensor<8x4x3xf32> into tensor<8x4x1x3xf32>
// CHECK-DAG: %[[O4:.*]] = tensor.expand_shape %{{.*}} {{\[\[}}0], [1], [2, 3]] output_shape [2, 8, 1, 6] : tensor<2x8x6xf32> into tensor<2x8x1x6xf32>
// CHECK: %[[C:.*]] = linalg.conv_2d_nchw_fchw {dilations = dense<[1, 2]> : tensor<2xi64>, strides = dense<[1, 2]> : tensor<2xi64>} ins(%[[X4]], %[[W4]] : tensor<2x4x1x16xf32>, tensor<8x4x1x3xf32>) outs(%[[O4]] : tensor<2x8x1x6xf32>)
// CHECK: %[[Y:.*]] = tensor.collapse_shape %[[C]] {{\[\[}}0], [1], [2, 3]] : tensor<2x8x1x6xf32> into tensor<2x8x6xf32>
// CHECK: return %[[Y]]
// CHECK-NOT: conv_1d
func.func @strided(%x: tensor<2x4x16xf32>) -> tensor<2x8x6xf32> {
  %w = arith.constant dense<1.0> : tensor<8x4x3xf32>
  %cst = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<2x8x6xf32>
  %o = linalg.fill ins(%cst : f32) outs(%e : tensor<2x8x6xf32>) -> tensor<2x8x6xf32>
  %y = linalg.conv_1d_ncw_fcw {dilations = dense<2> : tensor<1xi64>, strides = dense<2> : tensor<1xi64>} ins(%x, %w : tensor<2x4x16xf32>, tensor<8x4x3xf32>) outs(%o : tensor<2x8x6xf32>) -> tensor<2x8x6xf32>
  return %y : tensor<2x8x6xf32>
}

// -----

// Default strides and dilations (no attributes): [1, 1].
// CHECK-LABEL: func.func @defaults(
// CHECK: linalg.conv_2d_nchw_fchw {dilations = dense<1> : tensor<2xi64>, strides = dense<1> : tensor<2xi64>}
func.func @defaults(%x: tensor<1x2x8xf32>, %w: tensor<3x2x3xf32>, %o: tensor<1x3x6xf32>) -> tensor<1x3x6xf32> {
  %y = linalg.conv_1d_ncw_fcw ins(%x, %w : tensor<1x2x8xf32>, tensor<3x2x3xf32>) outs(%o : tensor<1x3x6xf32>) -> tensor<1x3x6xf32>
  return %y : tensor<1x3x6xf32>
}

// -----

// A dynamic batch: left as it is.
// CHECK-LABEL: func.func @dynamic(
// CHECK: linalg.conv_1d_ncw_fcw
// CHECK-NOT: conv_2d
func.func @dynamic(%x: tensor<?x2x8xf32>, %w: tensor<3x2x3xf32>, %o: tensor<?x3x6xf32>) -> tensor<?x3x6xf32> {
  %y = linalg.conv_1d_ncw_fcw ins(%x, %w : tensor<?x2x8xf32>, tensor<3x2x3xf32>) outs(%o : tensor<?x3x6xf32>) -> tensor<?x3x6xf32>
  return %y : tensor<?x3x6xf32>
}
