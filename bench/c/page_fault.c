/* What one page fault costs on this machine: the first write to each page of a fresh anonymous mapping, the kind of
 * fault that dominates a process's start (bench/startup-phases.sh prints it beside its phases; a few hundred
 * nanoseconds is usual on bare metal, a virtual machine can charge far more).
 *   page_fault [PAGES] [ROUNDS]   (default 213 pages, the .bss a Native AOT proxy rehydrates; 5 rounds)
 * Prints the median microseconds per fault over the rounds, each on a new mapping. */
#include "common.h"
#include <sys/mman.h>
#include <unistd.h>

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    size_t pages = argc > 1 ? (size_t)atol(argv[1]) : 213;
    int rounds = argc > 2 ? atoi(argv[2]) : 5;
    if (pages == 0 || rounds <= 0 || rounds > 100) { fprintf(stderr, "usage: %s [PAGES] [ROUNDS<=100]\n", argv[0]); return 2; }
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    double per[100];
    for (int r = 0; r < rounds; r++) {
        volatile char *p = mmap(NULL, pages * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) { perror("mmap"); return 1; }
        uint64_t start = now_ns();
        for (size_t i = 0; i < pages; i++)
            p[i * page] = 1;
        per[r] = (double)(now_ns() - start) / 1e3 / (double)pages;
        munmap((void *)p, pages * page);
    }
    qsort(per, (size_t)rounds, sizeof per[0], by_value);
    printf("%.2f us per first-touch page fault (median of %d rounds of %zu pages; min %.2f, max %.2f)\n",
           per[rounds / 2], rounds, pages, per[0], per[rounds - 1]);
    return 0;
}
