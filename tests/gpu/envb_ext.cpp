// A tiny torch operator library, built against one torch and loaded beside another (issue 17: the ABI case).
#include <torch/library.h>
#include <ATen/ATen.h>

at::Tensor scale_add(const at::Tensor& x, const at::Tensor& y, double alpha) {
  TORCH_CHECK(x.sizes() == y.sizes(), "shape mismatch: ", x.sizes(), " vs ", y.sizes());
  auto out = at::empty_like(x);
  out.copy_(at::add(x, y, alpha));
  return at::matmul(out, out.transpose(0, 1));
}

TORCH_LIBRARY(envb_abi, m) { m.def("scale_add(Tensor x, Tensor y, float alpha) -> Tensor"); }
TORCH_LIBRARY_IMPL(envb_abi, CompositeExplicitAutograd, m) { m.impl("scale_add", &scale_add); }
