/* pingpong.c: the hardware floor for a cross-thread round trip: two pthreads hand one counter
** back and forth through a C11 atomic. Modes: spin (both spin on the line), park (spin up to
** SPIN iterations, then sleep on a futex the peer wakes). Pinned (cpu 0 and 1) or not.
** Usage: pingpong spin|park [pin] ; prints RESULT lines like the other benches (ns per round trip). */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define SPIN 2000
static _Alignas(64) atomic_int turn;     /* odd: the peer's move, even: main's */
static _Alignas(64) atomic_int sleepers; /* how many wait in the futex */
static int park, pin;
static long n;

static void pin_to(int cpu) {
  cpu_set_t s;
  CPU_ZERO(&s);
  CPU_SET(cpu, &s);
  pthread_setaffinity_np(pthread_self(), sizeof s, &s);
}

static void wait_for(int want) {   /* until turn == want */
  for (int i = 0; !park || i < SPIN; i++)
    if (atomic_load_explicit(&turn, memory_order_acquire) == want) return;
  atomic_fetch_add(&sleepers, 1);
  for (int v; (v = atomic_load(&turn)) != want;)
    syscall(SYS_futex, &turn, FUTEX_WAIT_PRIVATE, v, NULL, NULL, 0);
  atomic_fetch_sub(&sleepers, 1);
}

static void move(int v) {
  atomic_store_explicit(&turn, v, memory_order_seq_cst);
  if (park && atomic_load(&sleepers)) syscall(SYS_futex, &turn, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void *peer(void *arg) {
  if (pin) pin_to(1);
  for (long i = 0; i < n; i++) {
    wait_for((int)(2 * i + 1));
    move((int)(2 * i + 2));
  }
  return arg;
}

int main(int argc, char **argv) {
  struct timespec t0, t1;
  pthread_t t;
  const char *q = getenv("BENCH_QUICK");
  park = argc > 1 && strcmp(argv[1], "park") == 0;
  pin = argc > 2 && strcmp(argv[2], "pin") == 0;
  n = (q && *q && strcmp(q, "0")) ? 200000 : 2000000;
  if (pin) pin_to(0);
  pthread_create(&t, NULL, peer, NULL);
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (long i = 0; i < n; i++) {
    move((int)(2 * i + 1));
    wait_for((int)(2 * i + 2));
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  pthread_join(t, NULL);
  printf("RESULT floor-%s%s %.1f ns/op\n", park ? "park" : "spin", pin ? "-pinned" : "",
         ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / n);
  return 0;
}
