// Fused token log-probability + entropy from logits [N, V] (f32 or bf16) and target ids [N],
// with its backward. One block per row; an online logsumexp that also carries Σ e^(x−m)·x, so a
// row is read once forward and twice backward, and no [N, V] log-softmax is ever written.
// The CPU twin and the formulas: crates/augur-kernels/src/logprob.rs.
#include "block_reduce.cuh"

struct RowStats {
  float m, s, t;  // running max, Σ e^(x−m), Σ e^(x−m)·x
};

__device__ __forceinline__ void push(RowStats &a, float x) {
  if (x == -INFINITY) return;  // a masked token weighs nothing
  if (x > a.m) {
    const float r = expf(a.m - x);
    a.s *= r;
    a.t *= r;
    a.m = x;
  }
  const float e = expf(x - a.m);
  a.s += e;
  a.t += e * x;
}

__device__ __forceinline__ RowStats merge(RowStats a, RowStats b) {
  const float m = fmaxf(a.m, b.m);
  if (m == -INFINITY) return a;
  const float ra = a.s > 0.0f ? expf(a.m - m) : 0.0f, rb = b.s > 0.0f ? expf(b.m - m) : 0.0f;
  return RowStats{m, a.s * ra + b.s * rb, a.t * ra + b.t * rb};
}

// (lse, E_p[x]) of `row`, known to every thread of the block.
template <typename T>
__device__ float2 row_stats(const T *row, uint32_t v) {
  __shared__ RowStats partial[32];
  RowStats a{-INFINITY, 0.0f, 0.0f};
  for (uint32_t i = threadIdx.x; i < v; i += blockDim.x) push(a, to_f32(row[i]));
  for (int o = 16; o > 0; o >>= 1) {
    RowStats b{__shfl_xor_sync(0xffffffffu, a.m, o), __shfl_xor_sync(0xffffffffu, a.s, o),
               __shfl_xor_sync(0xffffffffu, a.t, o)};
    a = merge(a, b);
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  __syncthreads();
  if (lane == 0) partial[warp] = a;
  __syncthreads();
  RowStats total{-INFINITY, 0.0f, 0.0f};
  for (int w = 0; w < warps; ++w) total = merge(total, partial[w]);
  return make_float2(total.m + logf(total.s), total.t / total.s);
}

template <typename T>
__device__ void fwd(const T *logits, const uint32_t *targets, float *out, uint32_t v) {
  const size_t r = blockIdx.x;
  const T *row = logits + r * v;
  const float2 st = row_stats(row, v);
  if (threadIdx.x == 0) {
    out[2 * r] = to_f32(row[targets[r]]) - st.x;
    out[2 * r + 1] = st.x - st.y;
  }
}

// dx = g_lp·(onehot(y) − p) − g_H·p·(x − E_p[x]), written in the logits' dtype.
template <typename T>
__device__ void bwd(const T *logits, const uint32_t *targets, const float *grad, T *dlogits,
                    uint32_t v) {
  const size_t r = blockIdx.x;
  const T *row = logits + r * v;
  const float2 st = row_stats(row, v);
  const float g_lp = grad[2 * r], g_h = grad[2 * r + 1];
  const uint32_t y = targets[r];
  for (uint32_t i = threadIdx.x; i < v; i += blockDim.x) {
    const float x = to_f32(row[i]);
    const float p = expf(x - st.x);
    float d = p == 0.0f ? 0.0f : -p * (g_lp + g_h * (x - st.y));
    if (i == y) d += g_lp;
    from_f32(d, dlogits + r * v + i);
  }
}

extern "C" __global__ void logprob_entropy_fwd_f32(const float *logits, const uint32_t *targets,
                                                   float *out, uint32_t v) {
  fwd(logits, targets, out, v);
}
extern "C" __global__ void logprob_entropy_fwd_bf16(const __nv_bfloat16 *logits,
                                                    const uint32_t *targets, float *out,
                                                    uint32_t v) {
  fwd(logits, targets, out, v);
}
extern "C" __global__ void logprob_entropy_bwd_f32(const float *logits, const uint32_t *targets,
                                                   const float *grad, float *dlogits, uint32_t v) {
  bwd(logits, targets, grad, dlogits, v);
}
extern "C" __global__ void logprob_entropy_bwd_bf16(const __nv_bfloat16 *logits,
                                                    const uint32_t *targets, const float *grad,
                                                    __nv_bfloat16 *dlogits, uint32_t v) {
  bwd(logits, targets, grad, dlogits, v);
}
