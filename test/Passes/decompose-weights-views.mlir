// Weights seen through views: transposes, broadcasts, reshapes and arith.extf.
// RUN: tasdc-opt %s -p 'tasd-decompose-weights{config=2:4}' --split-input-file | FileCheck %s

// A constant broadcast over the batch of a batch_matmul (HF attention output
// projection, LSTM input weights): one tasd.matmul series over the folded batch.
// CHECK-LABEL: func.func @broadcast_batch_matmul
// CHECK: %[[X:.*]] = tensor.collapse_shape %arg0 {{\[\[}}0, 1], [2]] : tensor<2x3x4xf32> into tensor<6x4xf32>
// CHECK: "tasd.sparse_weight"({{.*}}) {axis = 0 : i64, m = 4 : i64, n = 2 : i64, padding = 0 : i64} : (tensor<2x2xf32>, tensor<2x2xi8>) -> tensor<4x2xf32>
// CHECK: "tasd.matmul"(%[[X]], {{.*}}) {sparse_operand = 1 : i64} : (tensor<6x4xf32>, tensor<4x2xf32>) -> tensor<6x2xf32>
// CHECK: %[[S:.*]] = "tasd.series"({{.*}}) {{{.*}}} : (tensor<6x2xf32>) -> tensor<6x2xf32>
// CHECK: tensor.expand_shape %[[S]] {{\[\[}}0, 1], [2]] output_shape [2, 3, 2] : tensor<6x2xf32> into tensor<2x3x2xf32>
// CHECK-NOT: linalg.batch_matmul
// CHECK-NOT: linalg.generic
#in = affine_map<(d0, d1, d2) -> (d1, d2)>
#out = affine_map<(d0, d1, d2) -> (d0, d1, d2)>
func.func @broadcast_batch_matmul(%x: tensor<2x3x4xf32>) -> tensor<2x3x2xf32> {
  %w = arith.constant dense<[[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]> : tensor<2x4xf32>
  %et = tensor.empty() : tensor<4x2xf32>
  %wt = linalg.transpose ins(%w : tensor<2x4xf32>) outs(%et : tensor<4x2xf32>) permutation = [1, 0]
  %eb = tensor.empty() : tensor<2x4x2xf32>
  %wb = linalg.generic {indexing_maps = [#in, #out], iterator_types = ["parallel", "parallel", "parallel"]}
      ins(%wt : tensor<4x2xf32>) outs(%eb : tensor<2x4x2xf32>) {
  ^bb0(%in: f32, %o: f32):
    linalg.yield %in : f32
  } -> tensor<2x4x2xf32>
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<2x3x2xf32>
  %init = linalg.fill ins(%zero : f32) outs(%e : tensor<2x3x2xf32>) -> tensor<2x3x2xf32>
  %y = linalg.batch_matmul ins(%x, %wb : tensor<2x3x4xf32>, tensor<2x4x2xf32>) outs(%init : tensor<2x3x2xf32>) -> tensor<2x3x2xf32>
  return %y : tensor<2x3x2xf32>
}

// -----

// A weight broadcast on the left (W[M, K] · X[b]): the same one series, with
// the activation transposed to [K, B, N] and collapsed to [K, B*N], and the
// [M, B*N] result expanded and transposed back to [B, M, N].
// CHECK-LABEL: func.func @left_broadcast
// CHECK: %[[T:.*]] = linalg.transpose ins(%arg0 : tensor<2x4x3xf32>) outs(%{{.*}} : tensor<4x2x3xf32>) permutation = [1, 0, 2]
// CHECK: %[[X:.*]] = tensor.collapse_shape %[[T]] {{\[\[}}0], [1, 2]] : tensor<4x2x3xf32> into tensor<4x6xf32>
// CHECK: "tasd.sparse_weight"({{.*}}) {axis = 1 : i64, m = 4 : i64, n = 2 : i64, padding = 0 : i64} : (tensor<2x2xf32>, tensor<2x2xi8>) -> tensor<2x4xf32>
// CHECK: "tasd.matmul"({{.*}}, %[[X]]) {sparse_operand = 0 : i64} : (tensor<2x4xf32>, tensor<4x6xf32>) -> tensor<2x6xf32>
// CHECK: %[[S:.*]] = "tasd.series"({{.*}}) {{{.*}}folded_batch = 2 : i64{{.*}}} : (tensor<2x6xf32>) -> tensor<2x6xf32>
// CHECK: %[[E:.*]] = tensor.expand_shape %[[S]] {{\[\[}}0], [1, 2]] output_shape [2, 2, 3] : tensor<2x6xf32> into tensor<2x2x3xf32>
// CHECK: %[[R:.*]] = linalg.transpose ins(%[[E]] : tensor<2x2x3xf32>) outs(%{{.*}} : tensor<2x2x3xf32>) permutation = [1, 0, 2]
// CHECK: return %[[R]]
// CHECK-NOT: linalg.batch_matmul
// CHECK-NOT: linalg.broadcast
func.func @left_broadcast(%x: tensor<2x4x3xf32>) -> tensor<2x2x3xf32> {
  %w = arith.constant dense<[[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]> : tensor<2x4xf32>
  %eb = tensor.empty() : tensor<2x2x4xf32>
  %wb = linalg.broadcast ins(%w : tensor<2x4xf32>) outs(%eb : tensor<2x2x4xf32>) dimensions = [0]
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<2x2x3xf32>
  %init = linalg.fill ins(%zero : f32) outs(%e : tensor<2x2x3xf32>) -> tensor<2x2x3xf32>
  %y = linalg.batch_matmul ins(%wb, %x : tensor<2x2x4xf32>, tensor<2x4x3xf32>) outs(%init : tensor<2x2x3xf32>) -> tensor<2x2x3xf32>
  return %y : tensor<2x2x3xf32>
}

// -----

// linalg.broadcast works the same way.
// CHECK-LABEL: func.func @linalg_broadcast
// CHECK: tensor.collapse_shape %arg0
// CHECK: "tasd.matmul"
// CHECK: tensor.expand_shape
// CHECK-NOT: linalg.broadcast
func.func @linalg_broadcast(%x: tensor<2x3x4xf32>) -> tensor<2x3x2xf32> {
  %w = arith.constant dense<[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]]> : tensor<4x2xf32>
  %eb = tensor.empty() : tensor<2x4x2xf32>
  %wb = linalg.broadcast ins(%w : tensor<4x2xf32>) outs(%eb : tensor<2x4x2xf32>) dimensions = [0]
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<2x3x2xf32>
  %init = linalg.fill ins(%zero : f32) outs(%e : tensor<2x3x2xf32>) -> tensor<2x3x2xf32>
  %y = linalg.batch_matmul ins(%x, %wb : tensor<2x3x4xf32>, tensor<2x4x2xf32>) outs(%init : tensor<2x3x2xf32>) -> tensor<2x3x2xf32>
  return %y : tensor<2x3x2xf32>
}

// -----

// An f16 weight widened by arith.extf (torch-mlir's half-precision nn.Linear):
// the stored values are decomposed, the contraction stays f32 as in the model.
// CHECK-LABEL: func.func @f16_weight
// CHECK: "tasd.sparse_weight"({{.*}}) {{{.*}}} : (tensor<2x2xf32>, tensor<2x2xi8>) -> tensor<4x2xf32>
// CHECK: "tasd.matmul"(%arg0, {{.*}}) {sparse_operand = 1 : i64} : (tensor<3x4xf32>, tensor<4x2xf32>) -> tensor<3x2xf32>
// CHECK-NOT: arith.extf
// CHECK: tasd.stats = {{.*}}weight_dtype = "f16"
#id = affine_map<(d0, d1) -> (d0, d1)>
func.func @f16_weight(%x: tensor<3x4xf32>) -> tensor<3x2xf32> {
  %w = arith.constant dense<[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]]> : tensor<4x2xf16>
  %ew = tensor.empty() : tensor<4x2xf32>
  %wf = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]}
      ins(%w : tensor<4x2xf16>) outs(%ew : tensor<4x2xf32>) {
  ^bb0(%in: f16, %o: f32):
    %v = arith.extf %in : f16 to f32
    linalg.yield %v : f32
  } -> tensor<4x2xf32>
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<3x2xf32>
  %init = linalg.fill ins(%zero : f32) outs(%e : tensor<3x2xf32>) -> tensor<3x2xf32>
  %y = linalg.matmul ins(%x, %wf : tensor<3x4xf32>, tensor<4x2xf32>) outs(%init : tensor<3x2xf32>) -> tensor<3x2xf32>
  return %y : tensor<3x2xf32>
}

// -----

// A weight reshaped by collapse/expand, used by two matmuls (an RNN's hidden
// weight at two time steps): decomposed once, both series use the same blobs.
// CHECK-LABEL: func.func @shared_weight
// CHECK: %[[V:.*]] = arith.constant dense_resource<[[VALUES:matmul_0_t0_2of4_values]]>
// CHECK: "tasd.series"
// CHECK: arith.constant dense_resource<[[VALUES]]>
// CHECK: "tasd.series"
// CHECK-NOT: matmul_1_t0
func.func @shared_weight(%x: tensor<3x4xf32>) -> tensor<3x2xf32> {
  %w = arith.constant dense<[[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]]> : tensor<1x8xf32>
  %wc = tensor.collapse_shape %w [[0, 1]] : tensor<1x8xf32> into tensor<8xf32>
  %we = tensor.expand_shape %wc [[0, 1]] output_shape [4, 2] : tensor<8xf32> into tensor<4x2xf32>
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<3x2xf32>
  %init = linalg.fill ins(%zero : f32) outs(%e : tensor<3x2xf32>) -> tensor<3x2xf32>
  %y0 = linalg.matmul ins(%x, %we : tensor<3x4xf32>, tensor<4x2xf32>) outs(%init : tensor<3x2xf32>) -> tensor<3x2xf32>
  %y1 = linalg.matmul ins(%x, %we : tensor<3x4xf32>, tensor<4x2xf32>) outs(%y0 : tensor<3x2xf32>) -> tensor<3x2xf32>
  return %y1 : tensor<3x2xf32>
}
