// Each weight with a non-dense tasd.config gets the exact sum of its series'
// terms as its stored value, in the stored layout; the ops stay as they are.
// RUN: tasdc-opt %s --split-input-file -p 'tasd-approximate-weights' | FileCheck %s

// nn.Linear's form: the stored [out, in] weight is transposed to [K, N];
// 1:4 along K keeps 4 of column [1 2 3 4] and 8 of [5 6 7 8], written back
// as rows of the stored weight.
// CHECK-LABEL: func.func @linear
// CHECK-NOT: tasd.series
// CHECK: %[[W:.*]] = arith.constant dense_resource<tasd_approx_0> : tensor<2x4xf32>
// CHECK: linalg.transpose ins(%[[W]] : tensor<2x4xf32>)
// CHECK: linalg.matmul {tasd.config = "1:4"}
// CHECK: tasd_approx_0: "0x040000000000000000000000000000000000804000000000000000000000000000000041"
func.func @linear(%x: tensor<3x4xf32>) -> tensor<3x2xf32> {
  %w = arith.constant dense<[[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]> : tensor<2x4xf32>
  %e0 = tensor.empty() : tensor<4x2xf32>
  %wt = linalg.transpose ins(%w : tensor<2x4xf32>) outs(%e0 : tensor<4x2xf32>) permutation = [1, 0]
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<3x2xf32>
  %init = linalg.fill ins(%zero : f32) outs(%e : tensor<3x2xf32>) -> tensor<3x2xf32>
  %y = linalg.matmul {tasd.config = "1:4"} ins(%x, %wt : tensor<3x4xf32>, tensor<4x2xf32>) outs(%init : tensor<3x2xf32>) -> tensor<3x2xf32>
  return %y : tensor<3x2xf32>
}

// -----

// A convolution filter [F, C, KH, KW] is reduced over C*KH*KW: 2:4 keeps the
// two largest magnitudes of each filter (3 and -4; 7 and 8). The dense
// layer's filter (the splat) is untouched.
// CHECK-LABEL: func.func @conv
// CHECK: arith.constant dense_resource<tasd_approx_0> : tensor<2x1x2x2xf32>
// CHECK: arith.constant dense<1.000000e+00> : tensor<1x2x2x2xf32>
// CHECK: tasd_approx_0: "0x04000000000000000000000000004040000080C000000000000000000000E04000000041"
func.func @conv(%x: tensor<1x1x3x3xf32>) -> tensor<1x1x1x1xf32> {
  %f = arith.constant dense<[[[[1.0, -2.0], [3.0, -4.0]]], [[[5.0, 6.0], [7.0, 8.0]]]]> : tensor<2x1x2x2xf32>
  %g = arith.constant dense<1.0> : tensor<1x2x2x2xf32>
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<1x2x2x2xf32>
  %init = linalg.fill ins(%zero : f32) outs(%e : tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32>
  %y = linalg.conv_2d_nchw_fchw {dilations = dense<1> : vector<2xi64>, strides = dense<1> : vector<2xi64>, tasd.config = "2:4"} ins(%x, %f : tensor<1x1x3x3xf32>, tensor<2x1x2x2xf32>) outs(%init : tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32>
  %e2 = tensor.empty() : tensor<1x1x1x1xf32>
  %init2 = linalg.fill ins(%zero : f32) outs(%e2 : tensor<1x1x1x1xf32>) -> tensor<1x1x1x1xf32>
  %z = linalg.conv_2d_nchw_fchw {dilations = dense<1> : vector<2xi64>, strides = dense<1> : vector<2xi64>, tasd.config = "dense"} ins(%y, %g : tensor<1x2x2x2xf32>, tensor<1x2x2x2xf32>) outs(%init2 : tensor<1x1x1x1xf32>) -> tensor<1x1x1x1xf32>
  return %z : tensor<1x1x1x1xf32>
}
