// CPU emulation of the CUDA subset similarity.cu and sinkhorn.cu use: one block at a time, one
// std::thread per CUDA thread, __syncthreads as a pthread barrier (which ThreadSanitizer
// understands). cuda_fp16.h and cuda_bf16.h beside it give the half types.
#pragma once
#include <pthread.h>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __launch_bounds__(x)
#define __shared__ static

struct dim3 {
  unsigned x, y, z;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
inline thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;
using cudaError_t = int;
constexpr cudaError_t cudaSuccess = 0;
constexpr cudaError_t cudaErrorInvalidValue = 1;
using cudaStream_t = void*;
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline cudaError_t cudaMemsetAsync(void* p, int v, size_t n, cudaStream_t) {
  std::memset(p, v, n);
  return cudaSuccess;
}
inline pthread_barrier_t emu_barrier;
inline float emu_shfl[1024];
inline void __syncthreads() { pthread_barrier_wait(&emu_barrier); }
inline float __shfl_xor_sync(unsigned, float v, int lane) {
  // Every kernel calls this uniformly across the block, so a block barrier stands in for the warp.
  const unsigned tid = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
  emu_shfl[tid] = v;
  __syncthreads();
  const float r = emu_shfl[tid ^ unsigned(lane)];
  __syncthreads();
  return r;
}
inline long emu_launches = 0;
template <class K, class... A>
void emu_launch(K kernel, dim3 grid, dim3 block, A... args) {
  ++emu_launches;
  const unsigned threads = block.x * block.y * block.z;
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        pthread_barrier_init(&emu_barrier, nullptr, threads);
        std::vector<std::thread> pool;
        for (unsigned t = 0; t < threads; ++t)
          pool.emplace_back([=] {
            threadIdx = dim3(t % block.x, t / block.x % block.y, t / (block.x * block.y));
            blockIdx = dim3(bx, by, bz);
            blockDim = block;
            gridDim = grid;
            kernel(args...);
          });
        for (auto& th : pool) th.join();
        pthread_barrier_destroy(&emu_barrier);
      }
}
