/* C reference for libevent's test/bench.c shape on raw epoll: N socketpairs, every read end registered
 * (level-triggered, persistent); A evenly spaced pairs get one byte; each read callback reads its byte and
 * writes one byte into the next pair, until W writes have been made; a run ends when W + A reads happened.
 * Prints per run: chain c N A W microseconds ns_per_event
 * Usage: chain N ACTIVE WRITES RUNS */
#include "common.h"
#include <sys/epoll.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 100;
    int active = argc > 2 ? atoi(argv[2]) : 100;
    int writes = argc > 3 ? atoi(argv[3]) : 1000;
    int runs = argc > 4 ? atoi(argv[4]) : 25;
    raise_fd_limit();
    int (*pairs)[2] = calloc((size_t)n, sizeof *pairs);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    for (int i = 0; i < n; i++) {
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pairs[i]) != 0) { perror("socketpair"); return 1; }
        struct epoll_event ev = { .events = EPOLLIN, .data.u64 = (uint64_t)i };
        if (epoll_ctl(ep, EPOLL_CTL_ADD, pairs[i][0], &ev) != 0) { perror("epoll_ctl"); return 1; }
    }
    struct epoll_event *events = calloc(1024, sizeof *events);
    char byte = 'e';
    for (int run = -3; run < runs; run++) { /* three untimed runs, as the .NET side warms its JIT */
        int space = n / active > 0 ? n / active : 1;
        for (int a = 0; a < active; a++) write(pairs[(a * space) % n][1], &byte, 1);
        int written = 0, fired = 0, target = writes + active;
        uint64_t start = now_ns();
        while (fired < target) {
            int got = epoll_wait(ep, events, 1024, -1);
            for (int e = 0; e < got; e++) {
                int i = (int)events[e].data.u64;
                if (read(pairs[i][0], &byte, 1) != 1) continue;
                fired++;
                if (written < writes) { write(pairs[(i + 1) % n][1], &byte, 1); written++; }
            }
        }
        uint64_t elapsed = now_ns() - start;
        if (run < 0) continue;
        printf("chain c %d %d %d %.1f %.1f\n", n, active, writes, elapsed / 1000.0, (double)elapsed / target);
    }
    return 0;
}
