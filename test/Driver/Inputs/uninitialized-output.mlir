func.func @main(%x: tensor<2x4xf16>) -> tensor<2x4xf16> {
  %w = arith.constant dense<1.0> : tensor<4x4xf16>
  %0 = tensor.empty() : tensor<2x4xf16>
  %1 = linalg.matmul ins(%x, %w : tensor<2x4xf16>, tensor<4x4xf16>) outs(%0 : tensor<2x4xf16>) -> tensor<2x4xf16>
  return %1 : tensor<2x4xf16>
}
