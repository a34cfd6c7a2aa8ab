// CUDA's execution model on the CPU, for testing xpnet's fused kernels without a GPU.
//
// The kernels' CUDA source is compiled as C++ with this header in front (see
// tests/cuda_cpu.py). A launch runs the grid's blocks one after the other; the threads of
// a block are fibers (ucontext) scheduled cooperatively: each runs until it reaches
// __syncthreads() or returns, and the barrier opens once every live thread of the block
// waits at it. Threads that wait at *different* __syncthreads() calls (divergent
// barriers, undefined behaviour on a GPU) are reported as an error.
//
// The order in which blocks run, and in which the threads of a block run between two
// barriers, is forward or reverse (the `order` argument of a launch). A kernel whose
// result depends on that order has a race (a thread reading shared or global memory
// that another thread of the same phase writes) or depends on the order blocks finish:
// the test harness runs each launch both ways and requires bit-identical results.
//
// `__shared__` variables are `static` (blocks run one at a time) and are filled with a
// NaN-like byte pattern before each block, so a read before the block wrote them shows.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>
#include <ucontext.h>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __launch_bounds__(...)

struct dim3 { unsigned int x = 1, y = 1, z = 1; };
struct uint2 { unsigned int x, y; };
struct uint4 { unsigned int x, y, z, w; };
static inline uint2 make_uint2(unsigned int x, unsigned int y) { return {x, y}; }
static inline uint4 make_uint4(unsigned int x, unsigned int y, unsigned int z,
                               unsigned int w) { return {x, y, z, w}; }

// `__shared__ T a[n], b;` is rewritten by tests/cuda_cpu.py as
// `static T a[n], b; XPCPU_SHARED(a) XPCPU_SHARED(b)`: statics (one block runs at a time)
// registered on first use, poisoned (0xFF bytes: NaN, -1, true) before every block.
namespace xpcpu {
struct Shared { void* p; size_t n; };
inline std::vector<Shared>& shared_regions() { static std::vector<Shared> v; return v; }
struct SharedReg {
    SharedReg(void* p, size_t n) { memset(p, 0xFF, n); shared_regions().push_back({p, n}); }
};
}  // namespace xpcpu
#define XPCPU_SHARED(name) static xpcpu::SharedReg xpcpu_shared_##name(&name, sizeof(name));

extern dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace xpcpu { void sync(int line); }
#define __syncthreads() xpcpu::sync(__LINE__)
static inline void __threadfence() {}
static inline void __threadfence_block() {}

template <typename A> static inline A __ldcg(const A* p) { return *p; }
template <typename A> static inline A __ldg(const A* p) { return *p; }

static inline unsigned int atomicAdd(unsigned int* p, unsigned int v) {
    unsigned int old = *p; *p = old + v; return old;
}
static inline int atomicAdd(int* p, int v) { int old = *p; *p = old + v; return old; }
static inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
    unsigned long long old = *p; *p = old + v; return old;
}
static inline int atomicCAS(int* p, int cmp, int v) {
    int old = *p; if (old == cmp) *p = v; return old;
}
static inline unsigned int atomicCAS(unsigned int* p, unsigned int cmp, unsigned int v) {
    unsigned int old = *p; if (old == cmp) *p = v; return old;
}
static inline unsigned long long atomicCAS(unsigned long long* p, unsigned long long cmp,
                                           unsigned long long v) {
    unsigned long long old = *p; if (old == cmp) *p = v; return old;
}
static inline int atomicMax(int* p, int v) { int old = *p; if (v > old) *p = v; return old; }
static inline int atomicOr(int* p, int v) { int old = *p; *p = old | v; return old; }
static inline unsigned int atomicOr(unsigned int* p, unsigned int v) {
    unsigned int old = *p; *p = old | v; return old;
}
static inline int atomicExch(int* p, int v) { int old = *p; *p = v; return old; }
static inline unsigned int atomicExch(unsigned int* p, unsigned int v) {
    unsigned int old = *p; *p = v; return old;
}

static inline unsigned int __umulhi(unsigned int a, unsigned int b) {
    return (unsigned int)(((unsigned long long)a * b) >> 32);
}
static inline double __longlong_as_double(long long v) { double d; memcpy(&d, &v, 8); return d; }
static inline long long __double_as_longlong(double v) { long long d; memcpy(&d, &v, 8); return d; }
static inline float __int_as_float(int v) { float d; memcpy(&d, &v, 4); return d; }
static inline int __float_as_int(float v) { int d; memcpy(&d, &v, 4); return d; }
static inline unsigned int __float_as_uint(float v) { unsigned d; memcpy(&d, &v, 4); return d; }
static inline float __uint_as_float(unsigned v) { float d; memcpy(&d, &v, 4); return d; }

// CUDA's math: the float overloads of the C functions (device code calls tanh(float) and
// gets the float function), min/max over mixed types, rsqrt.
using std::tanh; using std::exp; using std::log; using std::sqrt; using std::fabs;
using std::abs; using std::floor; using std::ceil; using std::pow; using std::log1p;
using std::expm1; using std::isfinite; using std::isnan; using std::isinf; using std::fma;
using std::fmin; using std::fmax; using std::round; using std::trunc; using std::copysign;
using std::erf; using std::sin; using std::cos; using std::atan; using std::tan;
static inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
static inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
static inline float rsqrt(float x) { return 1.0f / std::sqrt(x); }
static inline float __fdividef(float a, float b) { return a / b; }
static inline float min(float a, float b) { return std::fmin(a, b); }
static inline float max(float a, float b) { return std::fmax(a, b); }
static inline double min(double a, double b) { return std::fmin(a, b); }
static inline double max(double a, double b) { return std::fmax(a, b); }
template <typename A, typename B,
          typename = std::enable_if_t<std::is_integral<A>::value && std::is_integral<B>::value>>
static inline auto min(A a, B b) -> decltype(a + b) { return b < a ? b : a; }
template <typename A, typename B,
          typename = std::enable_if_t<std::is_integral<A>::value && std::is_integral<B>::value>>
static inline auto max(A a, B b) -> decltype(a + b) { return b > a ? b : a; }

// ---- the runtime: blocks one after the other, threads as fibers ---------------------------
#include <functional>
dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace xpcpu {
// Fibers: on x86-64 a minimal context switch (callee-saved registers and the stack
// pointer; glibc's swapcontext makes a system call per switch); elsewhere ucontext.
#if defined(__x86_64__)
extern "C" void xpcpu_switch(void** save_sp, void* sp);
asm(R"(
    .text
    .p2align 4
    .type xpcpu_switch, @function
xpcpu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size xpcpu_switch, .-xpcpu_switch
)");
#define XPCPU_ASM_SWITCH 1
#endif

struct Fiber {
    int state; int line; unsigned int x, y, z; char* stack;
#ifdef XPCPU_ASM_SWITCH
    void* sp;
#else
    ucontext_t ctx;
#endif
};
enum { RUNNABLE = 0, WAITING = 1, DONE = 2 };
static const size_t STACK = 256 * 1024;
static Fiber* g_cur = nullptr;
static std::function<void()>* g_body = nullptr;
static std::vector<Fiber> g_fibers;
static char g_error[512];
static bool g_no_fibers = false, g_sync_without_fiber = false;
#ifdef XPCPU_ASM_SWITCH
static void* g_sched_sp = nullptr;
static void to_scheduler() { xpcpu_switch(&g_cur->sp, g_sched_sp); }
static void to_fiber(Fiber& f) { xpcpu_switch(&g_sched_sp, f.sp); }
#else
static ucontext_t g_sched;
static void to_scheduler() { swapcontext(&g_cur->ctx, &g_sched); }
static void to_fiber(Fiber& f) { swapcontext(&g_sched, &f.ctx); }
#endif

void sync(int line) {
    if (g_no_fibers) { g_sync_without_fiber = true; return; }
    g_cur->state = WAITING;
    g_cur->line = line;
    to_scheduler();
}

static void entry() {
    (*g_body)();
    g_cur->state = DONE;
#ifdef XPCPU_ASM_SWITCH
    to_scheduler();                      // never resumed
    abort();
#endif
}                                        // ucontext: back to uc_link, the scheduler

static void start(Fiber& f) {
#ifdef XPCPU_ASM_SWITCH
    // The first switch pops six registers and "returns" into entry() with the stack as
    // after a call (rsp = 8 mod 16).
    uintptr_t top = ((uintptr_t)(f.stack + STACK)) & ~(uintptr_t)15;
    void** sp = (void**)top;
    *--sp = nullptr;                     // entry's return address (it never returns)
    *--sp = (void*)&entry;
    for (int i = 0; i < 6; ++i) *--sp = nullptr;
    f.sp = sp;
#else
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = f.stack;
    f.ctx.uc_stack.ss_size = STACK;
    f.ctx.uc_link = &g_sched;
    makecontext(&f.ctx, entry, 0);
#endif
}

static bool run_block(unsigned int n, bool reverse) {
    for (auto& r : shared_regions()) memset(r.p, 0xFF, r.n);
    for (unsigned int i = 0; i < n; ++i) {
        Fiber& f = g_fibers[i];
        start(f);
        f.state = RUNNABLE;
        f.x = i % blockDim.x;
        f.y = (i / blockDim.x) % blockDim.y;
        f.z = i / (blockDim.x * blockDim.y);
    }
    for (;;) {
        for (unsigned int k = 0; k < n; ++k) {
            Fiber& f = g_fibers[reverse ? n - 1 - k : k];
            if (f.state != RUNNABLE) continue;
            threadIdx.x = f.x; threadIdx.y = f.y; threadIdx.z = f.z;
            g_cur = &f;
            to_fiber(f);
        }
        int line = -1;
        unsigned int waiting = 0;
        for (unsigned int i = 0; i < n; ++i) {
            const Fiber& f = g_fibers[i];
            if (f.state == DONE) continue;
            if (line != -1 && f.line != line) {
                snprintf(g_error, sizeof g_error,
                         "divergent __syncthreads(): threads of block (%u, %u, %u) wait at "
                         "lines %d and %d", blockIdx.x, blockIdx.y, blockIdx.z, line, f.line);
                return false;
            }
            line = f.line;
            ++waiting;
        }
        if (!waiting) return true;
        for (unsigned int i = 0; i < n; ++i)
            if (g_fibers[i].state == WAITING) g_fibers[i].state = RUNNABLE;
    }
}

template <typename... A, size_t... I>
static void call(void (*f)(A...), void** args, std::index_sequence<I...>) {
    f(*static_cast<std::remove_cv_t<A>*>(args[I])...);
}

// A block of a kernel that never reaches __syncthreads(): its threads one after the
// other, on this stack.
static void run_plain_block(unsigned int n, bool reverse) {
    for (unsigned int k = 0; k < n; ++k) {
        const unsigned int i = reverse ? n - 1 - k : k;
        threadIdx.x = i % blockDim.x;
        threadIdx.y = (i / blockDim.x) % blockDim.y;
        threadIdx.z = i / (blockDim.x * blockDim.y);
        (*g_body)();
    }
}

// dims: grid x, y, z, block x, y, z. `fibers`: 0 when the kernel has no barrier (its
// threads then run as plain calls; reaching one is an error). Returns 0, or 1 with the
// message in `err`.
template <typename... A>
static int launch(void (*f)(A...), const unsigned int* dims, void** args, int reverse,
                  int fibers, char* err, int errlen) {
    gridDim.x = dims[0]; gridDim.y = dims[1]; gridDim.z = dims[2];
    blockDim.x = dims[3]; blockDim.y = dims[4]; blockDim.z = dims[5];
    const unsigned int n = blockDim.x * blockDim.y * blockDim.z;
    while (g_fibers.size() < n) {
        Fiber f{};
        f.stack = static_cast<char*>(malloc(STACK));
        g_fibers.push_back(f);
    }
    std::function<void()> body = [&] { call(f, args, std::index_sequence_for<A...>{}); };
    g_body = &body;
    g_error[0] = 0;
    const unsigned long long total = (unsigned long long)gridDim.x * gridDim.y * gridDim.z;
    for (unsigned long long k = 0; k < total; ++k) {
        const unsigned long long b = reverse ? total - 1 - k : k;
        blockIdx.x = (unsigned int)(b % gridDim.x);
        blockIdx.y = (unsigned int)((b / gridDim.x) % gridDim.y);
        blockIdx.z = (unsigned int)(b / ((unsigned long long)gridDim.x * gridDim.y));
        if (!fibers) {
            g_no_fibers = true;
            g_sync_without_fiber = false;
            run_plain_block(n, reverse != 0);
            g_no_fibers = false;
            if (g_sync_without_fiber) {
                snprintf(err, errlen, "reached __syncthreads() but was launched without "
                         "fibers (tests/cuda_cpu.py did not see the barrier)");
                return 1;
            }
        } else if (!run_block(n, reverse != 0)) {
            snprintf(err, errlen, "%s", g_error);
            return 1;
        }
    }
    return 0;
}
}  // namespace xpcpu

#define XPCPU_EXPORT(k)                                                                    \
    extern "C" int xpcpu_launch_##k(const unsigned int* d, void** a, int r, int f,        \
                                    char* e, int n) {                                      \
        return xpcpu::launch(k, d, a, r, f, e, n);                                         \
    }
