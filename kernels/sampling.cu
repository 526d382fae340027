// Fused last-position sampling: logits [B, V] (f32 or bf16) → [B, 2] u32 (token id, bits of the
// token's raw f32 logprob). One block per row. Temperature, then top-k / top-p / min-p as logit
// floors (top-k and top-p found by bisection over the order-preserving u32 image of the
// logits, 32 block reductions each), then one Philox draw over the kept tokens in id order.
// The semantics and the CPU twin: crates/augur-kernels/src/sampling.rs.
#include "block_reduce.cuh"
#include "philox.cuh"

// Order-preserving map of a float to u32 (larger float → larger key).
__device__ __forceinline__ uint32_t order_key(float x) {
  const uint32_t b = __float_as_uint(x);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

#define MAX_THREADS 1024

template <typename T>
__device__ void sample(const T *logits, uint32_t v, float temperature, uint32_t top_k,
                       float top_p, float min_p, uint32_t seed_lo, uint32_t seed_hi,
                       const uint32_t *counters, uint32_t *out) {
  __shared__ float scratch[32];
  __shared__ uint32_t count_scratch[32];
  __shared__ float chunk_mass[MAX_THREADS];
  __shared__ int chosen_thread;
  __shared__ float chosen_prefix, draw_target;
  __shared__ uint32_t best_idx[32];
  __shared__ float best_val[32];
  const size_t r = blockIdx.x;
  const T *row = logits + r * v;
  const uint32_t tid = threadIdx.x;

  float m = -INFINITY;
  for (uint32_t i = tid; i < v; i += blockDim.x) m = fmaxf(m, to_f32(row[i]));
  m = block_max(m, scratch);
  float raw = 0.0f;
  for (uint32_t i = tid; i < v; i += blockDim.x) raw += expf(to_f32(row[i]) - m);
  const float log_z = logf(block_sum(raw, scratch));

  uint32_t token;
  if (temperature == 0.0f) {
    // Greedy: the largest logit, the lowest id on ties.
    float bv = -INFINITY;
    uint32_t bi = 0xffffffffu;
    for (uint32_t i = tid; i < v; i += blockDim.x) {
      const float x = to_f32(row[i]);
      if (x > bv || (x == bv && i < bi)) bv = x, bi = i;
    }
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
      const uint32_t oi = __shfl_xor_sync(0xffffffffu, bi, o);
      if (ov > bv || (ov == bv && oi < bi)) bv = ov, bi = oi;
    }
    const int lane = tid & 31, warp = tid >> 5, warps = (blockDim.x + 31) >> 5;
    if (lane == 0) best_val[warp] = bv, best_idx[warp] = bi;
    __syncthreads();
    if (tid == 0) {
      for (int w = 1; w < warps; ++w)
        if (best_val[w] > best_val[0] || (best_val[w] == best_val[0] && best_idx[w] < best_idx[0]))
          best_val[0] = best_val[w], best_idx[0] = best_idx[w];
    }
    __syncthreads();
    token = best_idx[0];
  } else {
    const float inv_t = 1.0f / temperature;
    uint32_t floor_key = 0;
    if (top_k > 0 && top_k < v) {
      uint32_t res = 0;
      for (int bit = 31; bit >= 0; --bit) {
        const uint32_t cand = res | (1u << bit);
        uint32_t c = 0;
        for (uint32_t i = tid; i < v; i += blockDim.x) c += order_key(to_f32(row[i])) >= cand;
        if (block_count(c, count_scratch) >= top_k) res = cand;
      }
      floor_key = max(floor_key, res);
    }
    if (top_p < 1.0f) {
      float z = 0.0f;
      for (uint32_t i = tid; i < v; i += blockDim.x) z += expf((to_f32(row[i]) - m) * inv_t);
      const float target = top_p * block_sum(z, scratch);
      uint32_t res = 0;
      for (int bit = 31; bit >= 0; --bit) {
        const uint32_t cand = res | (1u << bit);
        float mass = 0.0f;
        for (uint32_t i = tid; i < v; i += blockDim.x) {
          const float x = to_f32(row[i]);
          if (order_key(x) >= cand) mass += expf((x - m) * inv_t);
        }
        if (block_sum(mass, scratch) >= target) res = cand;
      }
      floor_key = max(floor_key, res);
    }
    if (min_p > 0.0f) floor_key = max(floor_key, order_key(m + temperature * logf(min_p)));

    // Each thread owns a contiguous run of ids, so "first in id order" is a scan over runs.
    const uint32_t run = (v + blockDim.x - 1) / blockDim.x;
    const uint32_t lo = min(v, tid * run), hi = min(v, lo + run);
    float mass = 0.0f;
    for (uint32_t i = lo; i < hi; ++i) {
      const float x = to_f32(row[i]);
      if (order_key(x) >= floor_key) mass += expf((x - m) * inv_t);
    }
    chunk_mass[tid] = mass;
    __syncthreads();
    if (tid == 0) {
      float total = 0.0f;
      for (uint32_t t = 0; t < blockDim.x; ++t) total += chunk_mass[t];
      const uint4 bits = philox4x32_10(make_uint4(counters[4 * r], counters[4 * r + 1],
                                                  counters[4 * r + 2], counters[4 * r + 3]),
                                       make_uint2(seed_lo, seed_hi));
      const float target = philox_uniform(bits.x) * total;
      float prefix = 0.0f;
      int pick = -1, last = 0;
      float last_prefix = 0.0f;
      for (uint32_t t = 0; t < blockDim.x; ++t) {
        if (chunk_mass[t] > 0.0f) {
          last = t, last_prefix = prefix;
          if (target < prefix + chunk_mass[t]) {
            pick = t;
            break;
          }
        }
        prefix += chunk_mass[t];
      }
      chosen_thread = pick >= 0 ? pick : last;
      chosen_prefix = pick >= 0 ? prefix : last_prefix;
      draw_target = target;
    }
    __syncthreads();
    if ((int)tid == chosen_thread) {
      float cum = chosen_prefix;
      uint32_t pick = lo;
      for (uint32_t i = lo; i < hi; ++i) {
        const float x = to_f32(row[i]);
        if (order_key(x) < floor_key) continue;
        const float w = expf((x - m) * inv_t);
        if (w <= 0.0f) continue;
        cum += w;
        pick = i;
        if (draw_target < cum) break;
      }
      best_idx[0] = pick;
    }
    __syncthreads();
    token = best_idx[0];
  }
  if (tid == 0) {
    out[2 * r] = token;
    out[2 * r + 1] = __float_as_uint(to_f32(row[token]) - m - log_z);
  }
}

extern "C" __global__ void sample_last_f32(const float *logits, uint32_t v, float temperature,
                                           uint32_t top_k, float top_p, float min_p,
                                           uint32_t seed_lo, uint32_t seed_hi,
                                           const uint32_t *counters, uint32_t *out) {
  sample(logits, v, temperature, top_k, top_p, min_p, seed_lo, seed_hi, counters, out);
}
extern "C" __global__ void sample_last_bf16(const __nv_bfloat16 *logits, uint32_t v,
                                            float temperature, uint32_t top_k, float top_p,
                                            float min_p, uint32_t seed_lo, uint32_t seed_hi,
                                            const uint32_t *counters, uint32_t *out) {
  sample(logits, v, temperature, top_k, top_p, min_p, seed_lo, seed_hi, counters, out);
}
