/* One keep-alive HTTP/1.1 connection, one request in flight, the reply read by spinning on a non-blocking
 * socket: the load generator's CPU never sleeps, so what the round trip measures is the server side (and any
 * proxy in front of it), not this VM's wake-up latency. Bounded by a request count and a time limit.
 *   http_rtt PORT REQUESTS SECONDS   ->   "requests N p50_us X p99_us Y"                                  */
#include "common.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int cmp(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Reads until one whole response (headers + Content-Length body) is in; returns 0, or -1 on EOF/error. */
static int read_response(int fd, char *buf, size_t cap) {
    size_t have = 0;
    long body = -1;
    size_t header_end = 0;
    for (;;) {
        ssize_t n = recv(fd, buf + have, cap - have, MSG_DONTWAIT);
        if (n == 0) return -1;
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) continue;
            return -1;
        }
        have += (size_t)n;
        if (body < 0) {
            buf[have < cap ? have : cap - 1] = 0;
            char *end = strstr(buf, "\r\n\r\n");
            if (!end) continue;
            header_end = (size_t)(end - buf) + 4;
            char *cl = strcasestr(buf, "Content-Length:");
            body = cl ? strtol(cl + 15, NULL, 10) : 0;
        }
        if (have >= header_end + (size_t)body) return 0;
        if (have == cap) return -1;
    }
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: %s PORT REQUESTS SECONDS\n", argv[0]); return 2; }
    int port = atoi(argv[1]);
    long requests = atol(argv[2]);
    uint64_t limit = (uint64_t)atol(argv[3]) * 1000000000ull;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) { perror("connect"); return 1; }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    static const char request[] = "GET / HTTP/1.1\r\nHost: bench\r\n\r\n";
    static char buf[1 << 16];
    uint64_t *rtt = malloc(sizeof(uint64_t) * (size_t)requests);
    uint64_t start = now_ns();
    long done = 0;
    while (done < requests && now_ns() - start < limit) {
        uint64_t t0 = now_ns();
        if (send(fd, request, sizeof request - 1, 0) != (ssize_t)(sizeof request - 1)) { perror("send"); return 1; }
        if (read_response(fd, buf, sizeof buf) != 0) { fprintf(stderr, "connection ended\n"); return 1; }
        rtt[done++] = now_ns() - t0;
    }
    qsort(rtt, (size_t)done, sizeof *rtt, cmp);
    printf("requests %ld p50_us %.1f p99_us %.1f\n", done, rtt[done / 2] / 1000.0, rtt[done * 99 / 100] / 1000.0);
    return 0;
}
