/* A tiny stand-in for an xsnap-like C worker, run under the built-in filters by bpf_test.go:
   allocates, reads the clock, installs a signal handler, sleeps briefly, and then either exits
   with 7 or calls abort() (argv[1] == "abort"). */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void on_usr1(int sig) { (void)sig; }

int main(int argc, char **argv) {
	size_t n = 16u << 20;
	char *p = malloc(n);
	if (p == NULL) return 2;
	memset(p, 1, n);
	p = realloc(p, 2 * n);
	if (p == NULL) return 3;
	free(p);
	struct timespec ts;
	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) return 4;
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;
	if (sigaction(SIGUSR1, &sa, NULL) != 0) return 5;
	/* No raise(SIGUSR1): the built-in allowlists let a worker signal itself only with SIGABRT
	   (abort()), as xsnap does; anything else would let it choose its death's classification. */
	struct timespec d = {0, 1000000};
	nanosleep(&d, NULL);
	if (getppid() <= 0) return 8;
	if (argc > 1 && strcmp(argv[1], "abort") == 0) abort();
	return 7;
}
