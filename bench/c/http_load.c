/* HTTP keep-alive load: CONNS connections, one GET in flight on each, for SECONDS; lighter than wrk (which
 * saturates near 80k req/s on one core here), so the fastest servers show their ceiling.
 *   http_load PORT CONNS SECONDS PATH   ->   "requests N per_second X p50_us Y p99_us Z bytes B p999_us W"  */
#include "common.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

struct conn { int fd; size_t have; long need; uint64_t sent_at; char buf[1 << 16]; };

static int cmp(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: %s PORT CONNS SECONDS PATH\n", argv[0]); return 2; }
    int port = atoi(argv[1]), conns = atoi(argv[2]), one = 1;
    uint64_t limit = (uint64_t)atol(argv[3]) * 1000000000ull;
    char request[512];
    int request_length = snprintf(request, sizeof request, "GET %s HTTP/1.1\r\nHost: bench\r\n\r\n", argv[4]);
    raise_fd_limit();
    int ep = epoll_create1(0);
    struct conn *c = calloc((size_t)conns, sizeof *c);
    size_t cap = 1 << 24, count = 0;
    uint64_t bytes = 0;
    uint32_t *rtt = malloc(cap * sizeof(uint32_t));
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    for (int i = 0; i < conns; i++) {
        c[i].fd = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(c[i].fd, (struct sockaddr *)&sa, sizeof sa)) { perror("connect"); return 1; }
        setsockopt(c[i].fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)i };
        epoll_ctl(ep, EPOLL_CTL_ADD, c[i].fd, &ev);
        c[i].need = -1;
        c[i].sent_at = now_ns();
        if (write(c[i].fd, request, (size_t)request_length) != request_length) return 1;
    }
    uint64_t start = now_ns();
    struct epoll_event events[1024];
    while (now_ns() - start < limit) {
        int n = epoll_wait(ep, events, 1024, 100);
        for (int e = 0; e < n; e++) {
            struct conn *k = &c[events[e].data.u32];
            ssize_t r = read(k->fd, k->buf + (k->need < 0 ? k->have : 0), k->need < 0 ? sizeof k->buf - k->have - 1 : sizeof k->buf);
            if (r <= 0) { fprintf(stderr, "connection ended\n"); return 1; }
            bytes += (uint64_t)r;
            if (k->need < 0) {
                k->have += (size_t)r;
                k->buf[k->have] = 0;
                char *end = strstr(k->buf, "\r\n\r\n");
                if (!end) continue;
                char *cl = strcasestr(k->buf, "Content-Length:");
                long body = cl ? strtol(cl + 15, NULL, 10) : 0;
                k->need = (long)(end + 4 - k->buf) + body - (long)k->have; /* body bytes still to come */
            } else {
                k->need -= r;
            }
            if (k->need <= 0) {
                uint64_t t = now_ns();
                if (count < cap) rtt[count] = (uint32_t)((t - k->sent_at) / 1000);
                count++;
                k->have = 0;
                k->need = -1;
                k->sent_at = t;
                if (write(k->fd, request, (size_t)request_length) != request_length) return 1;
            }
        }
    }
    double seconds = (double)(now_ns() - start) / 1e9;
    size_t kept = count < cap ? count : cap;
    qsort(rtt, kept, sizeof *rtt, cmp);
    printf("requests %zu per_second %.0f p50_us %u p99_us %u bytes %llu p999_us %u\n", count, (double)count / seconds,
           rtt[kept / 2], rtt[kept * 99 / 100], (unsigned long long)bytes, rtt[kept * 999 / 1000]);
    return 0;
}
