/*
 * vatrun-bench-sysloop: cost of one system call inside the sandbox, in ns. Built by
 * scripts/bench.sh:
 *     gcc -O2 -static -o bin/vatrun-bench-sysloop bench/csrc/sysloop.c
 *
 * Usage: vatrun-bench-sysloop [ITERATIONS [ROUNDS]]
 * For each loop it prints "NAME NS" on stdout: the best round's mean cost of one call. Loops:
 *   getppid  syscall(SYS_getppid): no arguments, allowed by every profile (the kernel's seccomp
 *            action cache can skip the BPF program for it);
 *   read     read(0, buf, 1) on /dev/null (returns 0): the same, on the fd path;
 *   ioctl    ioctl(0, TCGETS) on /dev/null (ENOTTY): the xsnap profile allows ioctl only for
 *            some request numbers, so its BPF program runs on every call.
 * stdin must be /dev/null. Timing uses clock_gettime(CLOCK_MONOTONIC) (vDSO, no system call).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void loop_getppid(long n)
{
	for (long i = 0; i < n; i++)
		syscall(SYS_getppid);
}

static void loop_read(long n)
{
	char c;
	for (long i = 0; i < n; i++) {
		ssize_t r = read(0, &c, 1);
		(void)r;
	}
}

static void loop_ioctl(long n)
{
	struct termios t;
	for (long i = 0; i < n; i++)
		ioctl(0, TCGETS, &t);
}

static double best(void (*loop)(long), long n, int rounds)
{
	double min = 0;
	loop(n / 10); /* warm up */
	for (int r = 0; r < rounds; r++) {
		double t0 = now_ns();
		loop(n);
		double ns = (now_ns() - t0) / (double)n;
		if (r == 0 || ns < min)
			min = ns;
	}
	return min;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 200000;
	int rounds = argc > 2 ? atoi(argv[2]) : 5;
	if (n <= 0 || rounds <= 0) {
		fprintf(stderr, "usage: vatrun-bench-sysloop [ITERATIONS [ROUNDS]]\n");
		return 1;
	}
	printf("getppid %.2f\n", best(loop_getppid, n, rounds));
	printf("read %.2f\n", best(loop_read, n, rounds));
	printf("ioctl %.2f\n", best(loop_ioctl, n, rounds));
	return 0;
}
