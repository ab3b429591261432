module {
  func.func private @k(memref<?xf32>) attributes {tasd.batch_operands = "x"}
}
