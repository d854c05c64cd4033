/* Echo load: CONNS connections, one MSG-byte message in flight on each; counts round trips for SECONDS and
 * records every RTT. One thread, level-triggered epoll.   echo_load PORT CONNS MSG SECONDS
 * -> "messages N per_second X p50_us Y p99_us Z"                                                         */
#include "common.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static int cmp(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: %s PORT CONNS MSG SECONDS\n", argv[0]); return 2; }
    int port = atoi(argv[1]), conns = atoi(argv[2]), msg = atoi(argv[3]);
    uint64_t limit = (uint64_t)atol(argv[4]) * 1000000000ull;
    raise_fd_limit();
    int ep = epoll_create1(0), one = 1;
    int *fds = calloc((size_t)conns, sizeof(int));
    size_t *got = calloc((size_t)conns, sizeof(size_t));
    uint64_t *sent_at = calloc((size_t)conns, sizeof(uint64_t));
    size_t cap = 1 << 24, count = 0;
    uint32_t *rtt = malloc(cap * sizeof(uint32_t));
    char out[65536], in[65536];
    memset(out, 'x', sizeof out);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    for (int i = 0; i < conns; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(fds[i], (struct sockaddr *)&sa, sizeof sa)) { perror("connect"); return 1; }
        setsockopt(fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)i };
        epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
    }
    uint64_t start = now_ns();
    for (int i = 0; i < conns; i++) { sent_at[i] = now_ns(); if (write(fds[i], out, (size_t)msg) != msg) return 1; }
    struct epoll_event events[1024];
    while (now_ns() - start < limit) {
        int n = epoll_wait(ep, events, 1024, 100);
        for (int e = 0; e < n; e++) {
            int i = (int)events[e].data.u32;
            ssize_t r = read(fds[i], in, sizeof in);
            if (r <= 0) { fprintf(stderr, "connection %d ended\n", i); return 1; }
            got[i] += (size_t)r;
            if (got[i] >= (size_t)msg) {
                uint64_t t = now_ns();
                if (count < cap) rtt[count] = (uint32_t)((t - sent_at[i]) / 1000);
                count++;
                got[i] = 0;
                sent_at[i] = t;
                if (write(fds[i], out, (size_t)msg) != msg) return 1;
            }
        }
    }
    double seconds = (double)(now_ns() - start) / 1e9;
    size_t kept = count < cap ? count : cap;
    qsort(rtt, kept, sizeof *rtt, cmp);
    printf("messages %zu per_second %.0f p50_us %u p99_us %u\n", count, (double)count / seconds, rtt[kept / 2], rtt[kept * 99 / 100]);
    return 0;
}
