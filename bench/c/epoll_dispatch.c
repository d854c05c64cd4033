/* C reference for IoMux's "wait + dispatch" shape: N eventfds kept readable, registered level-triggered
 * with raw epoll; each iteration is one epoll_wait(timeout 0) plus a loop touching every event's data.
 * Prints: dispatch c N iterations ns_per_wait ns_per_event
 * Usage: epoll_dispatch N ITERATIONS */
#include "common.h"
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 64;
    long iterations = argc > 2 ? atol(argv[2]) : 10000;
    raise_fd_limit();
    int ep = epoll_create1(EPOLL_CLOEXEC);
    for (int i = 0; i < n; i++) {
        int fd = eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK); /* counter 1: readable until read */
        struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP, .data.u64 = (uint64_t)i };
        if (fd < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) { perror("setup"); return 1; }
    }
    struct epoll_event *events = calloc((size_t)n, sizeof *events);
    uint64_t sum = 0;
    for (long warm = 0; warm < iterations / 10 + 1; warm++) {
        int got = epoll_wait(ep, events, n, 0);
        for (int i = 0; i < got; i++) sum += events[i].data.u64 + events[i].events;
    }
    uint64_t start = now_ns();
    long seen = 0;
    for (long it = 0; it < iterations; it++) {
        int got = epoll_wait(ep, events, n, 0);
        for (int i = 0; i < got; i++) sum += events[i].data.u64 + events[i].events;
        seen += got;
    }
    uint64_t elapsed = now_ns() - start;
    if (seen != (long)n * iterations) { fprintf(stderr, "expected %ld events, saw %ld\n", (long)n * iterations, seen); return 1; }
    printf("dispatch c %d %ld %.1f %.2f %llu\n", n, iterations, (double)elapsed / iterations,
           (double)elapsed / (double)seen, (unsigned long long)(sum & 1));
    return 0;
}
