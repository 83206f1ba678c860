/* Inline C for the shared-memory ring: acquire/release atomics, futex wait/wake, CPU relax,
 * and a few process-identity helpers that must run without the GIL.
 *
 * Everything here is header-only and static inline so Cython's generated C can call it with
 * `nogil` and the compiler can fold it into the hot loops.  GCC/Clang __atomic builtins give the
 * C11 memory model on every target we build for; on x86-64 an acquire load and a release store
 * are plain MOVs, so the fast path costs no fence at all.
 */
#ifndef ALPHAPULSE_ATOMICS_H
#define ALPHAPULSE_ATOMICS_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#endif

/* ---- loads and stores ------------------------------------------------------------------- */

static inline uint64_t ap_load_acquire_u64(const volatile uint64_t *p) {
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}
static inline uint64_t ap_load_relaxed_u64(const volatile uint64_t *p) {
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}
static inline void ap_store_release_u64(volatile uint64_t *p, uint64_t v) {
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}
static inline void ap_store_relaxed_u64(volatile uint64_t *p, uint64_t v) {
    __atomic_store_n(p, v, __ATOMIC_RELAXED);
}
static inline uint32_t ap_load_acquire_u32(const volatile uint32_t *p) {
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}
static inline void ap_store_release_u32(volatile uint32_t *p, uint32_t v) {
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}
static inline int32_t ap_load_acquire_i32(const volatile int32_t *p) {
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}
static inline void ap_store_release_i32(volatile int32_t *p, int32_t v) {
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}
/* Compare-and-swap used to claim the single reader slot.  Returns 1 on success. */
static inline int ap_cas_i32(volatile int32_t *p, int32_t expected, int32_t desired) {
    return __atomic_compare_exchange_n(p, &expected, desired, 0,
                                       __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

/* The sleep/wake handshake is Dekker's pattern: the writer stores head then loads the reader's
 * "sleeping" flag; the reader stores the flag then loads head.  Without a full barrier between
 * each side's store and load, x86 may reorder the load before the store and both sides miss each
 * other (a lost wake-up).  A seq_cst store (XCHG on x86) supplies that barrier in one instruction. */
static inline void ap_store_seqcst_u64(volatile uint64_t *p, uint64_t v) {
    __atomic_store_n(p, v, __ATOMIC_SEQ_CST);
}
static inline void ap_store_seqcst_u32(volatile uint32_t *p, uint32_t v) {
    __atomic_store_n(p, v, __ATOMIC_SEQ_CST);
}
static inline uint32_t ap_load_seqcst_u32(const volatile uint32_t *p) {
    return __atomic_load_n(p, __ATOMIC_SEQ_CST);
}
static inline uint64_t ap_load_seqcst_u64(const volatile uint64_t *p) {
    return __atomic_load_n(p, __ATOMIC_SEQ_CST);
}

/* Publish a new head and report whether the reader asked to be woken.
 *
 * The default is a plain release store (a MOV on x86) followed by a load of the flag: no fence,
 * so the writer never stalls draining its store buffer while the reader holds the data lines.
 * The price is the classic store->load reordering window: the writer may read "not sleeping"
 * just as the reader, having seen the old head, goes to sleep.  The kernel re-reads the futex
 * word when the reader enters FUTEX_WAIT, by which time the store has drained in practice; and
 * the reader's first sleep slice is short (AP_FIRST_SLICE_NS), which bounds the cost of a lost
 * wake-up even in theory.  Build with -DAP_PUBLISH_SEQCST for the fenced (XCHG) variant. */
static inline int ap_publish_head(volatile uint64_t *head, uint64_t v, const volatile uint32_t *sleeping) {
#if defined(AP_PUBLISH_SEQCST)
    __atomic_store_n(head, v, __ATOMIC_SEQ_CST);
    return __atomic_load_n(sleeping, __ATOMIC_SEQ_CST) != 0;
#else
    __atomic_store_n(head, v, __ATOMIC_RELEASE);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);      /* keep the load after the store in the code */
    return __atomic_load_n(sleeping, __ATOMIC_RELAXED) != 0;
#endif
}

static inline void ap_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#else
    __asm__ __volatile__("" ::: "memory");
#endif
}

/* ---- futex on the low 32 bits of the 64-bit head word ---------------------------------- */

/* The reader sleeps on the half of `head` that changes on every publication.  On a big-endian
 * machine that half lives 4 bytes further on. */
static inline volatile uint32_t *ap_futex_word(volatile uint64_t *head) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return (volatile uint32_t *)head + 1;
#else
    return (volatile uint32_t *)head;
#endif
}

/* Sleep while *word == expected, at most timeout_ns.  Shared (not PRIVATE) futex: the word
 * lives in a file mapping shared between processes.  Returns 0 on wake/mismatch/timeout. */
static inline int ap_futex_wait(volatile uint32_t *word, uint32_t expected, int64_t timeout_ns) {
#if defined(__linux__)
    struct timespec ts;
    if (timeout_ns < 0) timeout_ns = 0;
    ts.tv_sec = (time_t)(timeout_ns / 1000000000LL);
    ts.tv_nsec = (long)(timeout_ns % 1000000000LL);
    long rc = syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT, expected, &ts, NULL, 0);
    return rc == 0 ? 0 : errno;
#else
    struct timespec ts = {0, 200000};
    (void)word; (void)expected; (void)timeout_ns;
    nanosleep(&ts, NULL);
    return 0;
#endif
}

static inline void ap_futex_wake(volatile uint32_t *word) {
#if defined(__linux__)
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, 0x7fffffff, NULL, NULL, 0);
#else
    (void)word;
#endif
}

/* ---- clocks ------------------------------------------------------------------------------ */

static inline int64_t ap_monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* The coarse clock is a vDSO read of a jiffy-resolution value: a few ns, good enough to
 * rate-limit liveness checks on the empty-read path. */
static inline int64_t ap_coarse_ns(void) {
    struct timespec ts;
#if defined(CLOCK_MONOTONIC_COARSE)
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
#else
    clock_gettime(CLOCK_MONOTONIC, &ts);
#endif
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ---- process identity ------------------------------------------------------------------- */

#define AP_START_UNKNOWN UINT64_MAX

/* Start time of `pid` in clock ticks since boot (field 22 of /proc/<pid>/stat), or 0 when the
 * process does not exist or is a zombie / dead (state Z, X, x): a killed writer whose parent has
 * not reaped it yet must count as gone.  AP_START_UNKNOWN when /proc refuses to tell (hidepid):
 * then only kill(pid, 0) decides.  Field 2 (comm) may hold spaces and parentheses, so parsing
 * starts after the LAST ')'. */
static inline uint64_t ap_process_start(int32_t pid) {
    char path[64];
    char buf[1024];
    if (pid <= 0) return 0;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return (errno == EACCES || errno == EPERM) ? AP_START_UNKNOWN : 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (p == NULL || p[1] != ' ') return 0;
    p += 2;                           /* now at field 3: state */
    char state = *p;
    if (state == 'Z' || state == 'X' || state == 'x') return 0;
    int field = 3;
    while (*p && field < 22) {
        if (*p == ' ') field++;
        p++;
    }
    if (field != 22) return 0;
    uint64_t v = 0;
    while (*p >= '0' && *p <= '9') { v = v * 10 + (uint64_t)(*p - '0'); p++; }
    if (v == 0) v = 1;                /* 0 is our "absent" value; a real start of 0 becomes 1 */
    return v == AP_START_UNKNOWN ? v - 1 : v;
}

/* Is (pid, start) still the same live process?  start == 0 means "unknown": only the pid is
 * checked.  A recycled pid has another start time and counts as dead. */
static inline int ap_process_alive(int32_t pid, uint64_t start) {
    if (pid <= 0) return 0;
    if (kill((pid_t)pid, 0) != 0 && errno == ESRCH) return 0;
    uint64_t now = ap_process_start(pid);
    if (now == 0) return 0;
    return start == 0 || now == AP_START_UNKNOWN || now == start;
}

#endif /* ALPHAPULSE_ATOMICS_H */
