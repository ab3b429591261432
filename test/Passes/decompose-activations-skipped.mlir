// Negative cases: too-small activations stay dense with a remark; config=dense without per-layer
// choices changes nothing; bad options are one-line errors.
// RUN: tasdc-opt %s -p 'tasd-decompose-activations{config=2:4 min-size=100}' --split-input-file --verify-diagnostics | FileCheck %s
// RUN: tasdc-opt %s -p 'tasd-decompose-activations{config=dense}' | FileCheck %s --check-prefix=DENSE
// RUN: %expect-exit 2 tasdc-opt %s -p 'tasd-decompose-activations{config=5:4}' | FileCheck %s --check-prefix=CONFIG
// RUN: %expect-exit 2 tasdc-opt %s -p 'tasd-decompose-activations{both-operands=maybe}' | FileCheck %s --check-prefix=BOOL

// DENSE-LABEL: func.func @small
// DENSE-NOT: tasd.decompose_activation
// CONFIG: tasdc-opt: error: pass 'tasd-decompose-activations': invalid N:M pattern '5:4': N must be <= M
// BOOL: tasdc-opt: error: option 'both-operands' of pass 'tasd-decompose-activations' expects bool, got 'maybe'

// CHECK-LABEL: func.func @small
// CHECK-NOT: tasd.decompose_activation
func.func @small(%x: tensor<2x8xf32>) -> tensor<2x4xf32> {
  %w = arith.constant dense<[[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0], [9.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0],
                             [8.0, 9.0, 1.0, 2.0], [3.0, 4.0, 5.0, 6.0], [7.0, 8.0, 9.0, 1.0], [2.0, 3.0, 4.0, 5.0]]> : tensor<8x4xf32>
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<2x4xf32>
  %init = linalg.fill ins(%zero : f32) outs(%e : tensor<2x4xf32>) -> tensor<2x4xf32>
  // expected-remark @+1 {{matmul_0: activation left dense: 16 elements < min-size 100}}
  %y = linalg.matmul ins(%x, %w : tensor<2x8xf32>, tensor<8x4xf32>) outs(%init : tensor<2x4xf32>) -> tensor<2x4xf32>
  return %y : tensor<2x4xf32>
}

// -----

// A convolution input with 1 channel cannot hold aligned 4-blocks of channels.
// CHECK-LABEL: func.func @one_channel
// CHECK-NOT: tasd.decompose_activation
func.func @one_channel(%x: tensor<1x1x12x12xf32>) -> tensor<1x8x10x10xf32> {
  %w = arith.constant dense<[[[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]], [[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]],
                             [[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]], [[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]],
                             [[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]], [[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]],
                             [[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]], [[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.1]]]]> : tensor<8x1x3x3xf32>
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<1x8x10x10xf32>
  %init = linalg.fill ins(%zero : f32) outs(%e : tensor<1x8x10x10xf32>) -> tensor<1x8x10x10xf32>
  // expected-remark @+1 {{conv2d_0: activation left dense: 1 input channels are not a multiple of M=4}}
  %y = linalg.conv_2d_nchw_fchw {dilations = dense<1> : vector<2xi64>, strides = dense<1> : vector<2xi64>}
         ins(%x, %w : tensor<1x1x12x12xf32>, tensor<8x1x3x3xf32>) outs(%init : tensor<1x8x10x10xf32>) -> tensor<1x8x10x10xf32>
  return %y : tensor<1x8x10x10xf32>
}
