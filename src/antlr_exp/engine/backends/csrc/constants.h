// Constants shared by every kernel, in one place: the parallel grain and tile sizes, the
// numbering of the surrogate shapes (antlr_exp.engine.backends.base.SURROGATE_CODES and the
// Triton kernels use the same), and the scalars of the LIF forward and of a rule's adjoint, in
// the order the Python side passes them (base.RuleConstants).
#pragma once

#include <cstdint>

namespace lif_kernels {

constexpr int64_t kGrain = 2048;        // columns per parallel task of the time loops
constexpr int64_t kTileColumns = 4096;  // columns per tile of the fused adjoint (one step's rows in cache)
constexpr int kStepBlock = 4;           // steps of dL/dS formed at once by the fused adjoint

enum SurrogateKind : int { kExponential = 0, kFastSigmoid = 1, kTriangle = 2, kSigmoid = 3 };

// The LIF forward's scalars (beta_bias is applied by the caller to the bias term).
struct LifConstants {
  double alpha_I, alpha_V, beta_I, beta_V, theta;
};

// A rule's adjoint scalars: decays, threshold, the weights of the activation and timing parts,
// V*'s floor, the surrogate's shape and parameters, single-spike mode and beta_I * beta_V.
struct RuleConstants {
  double alpha_I, alpha_V, theta, act_w, tim_w, vstar_min;
  int64_t surrogate_kind;
  double surrogate_a, surrogate_b;
  bool single;
  double kernel_scale;
};

}  // namespace lif_kernels
