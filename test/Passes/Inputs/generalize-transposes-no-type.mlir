func.func @f(%x: tensor<8x4x2xf32>) -> tensor<4x8x2xf32> {
  %e = tensor.empty() : tensor<4x8x2xf32>
  %t = linalg.transpose ins(%x : tensor<8x4x2xf32>) outs(%e : tensor<4x8x2xf32>) permutation = [1, 0, 2]
  return %t
}
