/*
 * vatrun-bench-true: the smallest static worker, for spawn latency ("/bin/true" without libc
 * start-up work worth measuring). Built by scripts/bench.sh:
 *     gcc -O2 -static -o bin/vatrun-bench-true bench/csrc/true.c
 */
#include <unistd.h>

int main(void)
{
	_exit(0);
}
