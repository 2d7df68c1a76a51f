/* mqtt_load.c: the load generator of bench/mqtt_broker_bench.py: one MQTT
 * 3.1.1 publisher and N subscribers of one topic, in one process (epoll),
 * against any broker.
 *
 *   mqtt_load PORT QOS SUBSCRIBERS MESSAGES PAYLOAD_BYTES WINDOW
 *
 * The publisher stays at most WINDOW messages ahead of the slowest
 * subscriber (and, at QoS 1, has at most WINDOW PUBLISHes unacknowledged),
 * so what is measured is how fast the broker delivers, not how much it can
 * drop or buffer.  Subscribers acknowledge each QoS 1 delivery at once.
 * Prints one JSON line: seconds from the first PUBLISH to the last
 * delivery, deliveries, deliveries per second.  Exits 1 on a timeout (60 s)
 * or a protocol surprise.  Self-contained: no cymongoose code, so the same
 * binary measures every broker. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TOPIC "bench/t"
#define BUF (1 << 20)

struct peer {
  int fd;
  char in[BUF];
  size_t inlen;
  char *out;
  size_t outlen, outcap;
  long received; /* PUBLISH packets (subscriber) */
};

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static void die(const char *why) {
  fprintf(stderr, "mqtt_load: %s (%s)\n", why, strerror(errno));
  exit(1);
}

static void out_add(struct peer *p, const void *b, size_t n) {
  if (p->outlen + n > p->outcap) {
    p->outcap = (p->outlen + n) * 2;
    p->out = realloc(p->out, p->outcap);
    if (p->out == NULL) die("out of memory");
  }
  memcpy(p->out + p->outlen, b, n);
  p->outlen += n;
}

static void out_flush(struct peer *p) {
  size_t off = 0;
  while (off < p->outlen) {
    ssize_t n = send(p->fd, p->out + off, p->outlen - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EAGAIN) break;
    if (n <= 0) die("send");
    off += (size_t) n;
  }
  memmove(p->out, p->out + off, p->outlen - off);
  p->outlen -= off;
}

/* Remaining Length (MQTT 3.1.1 section 2.2.3). */
static size_t put_len(uint8_t *b, size_t n) {
  size_t i = 0;
  do {
    b[i] = (uint8_t) (n % 128);
    n /= 128;
    if (n > 0) b[i] |= 0x80;
    i++;
  } while (n > 0);
  return i;
}

static size_t connect_packet(uint8_t *b, const char *id) {
  size_t idl = strlen(id), body = 10 + 2 + idl, n = 0;
  b[n++] = 0x10;
  n += put_len(b + n, body);
  memcpy(b + n, "\x00\x04MQTT\x04\x02\x00\x3c", 10);
  n += 10;
  b[n++] = (uint8_t) (idl >> 8);
  b[n++] = (uint8_t) idl;
  memcpy(b + n, id, idl);
  return n + idl;
}

/* One whole packet from p->in (blocking); returns its length, type in *type. */
static size_t read_packet(struct peer *p, uint8_t *type) {
  for (;;) {
    if (p->inlen >= 2) {
      size_t len = 0, mul = 1, i = 1;
      while (i < p->inlen && i < 5) {
        len += (size_t) ((uint8_t) p->in[i] & 0x7f) * mul;
        mul *= 128;
        if (!((uint8_t) p->in[i++] & 0x80)) break;
      }
      if (i <= p->inlen && ((uint8_t) p->in[i - 1] & 0x80) == 0 && p->inlen >= i + len) {
        *type = (uint8_t) p->in[0];
        return i + len;
      }
    }
    ssize_t n = recv(p->fd, p->in + p->inlen, BUF - p->inlen, 0);
    if (n <= 0) die("recv during setup");
    p->inlen += (size_t) n;
  }
}

static void consume(struct peer *p, size_t n) {
  memmove(p->in, p->in + n, p->inlen - n);
  p->inlen -= n;
}

static void open_peer(struct peer *p, int port, const char *id) {
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t) port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  p->fd = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(p->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (p->fd < 0 || connect(p->fd, (struct sockaddr *) &sa, sizeof(sa)) != 0) die("connect");
  uint8_t b[128], type;
  size_t n = connect_packet(b, id);
  out_add(p, b, n);
  out_flush(p);
  n = read_packet(p, &type);
  if (type != 0x20 || p->in[3] != 0) die("CONNACK refused");
  consume(p, n);
}

static void subscribe(struct peer *p, int qos) {
  uint8_t b[64], type;
  size_t tl = strlen(TOPIC), n = 0;
  b[n++] = 0x82;
  n += put_len(b + n, 2 + 2 + tl + 1);
  b[n++] = 0, b[n++] = 1, b[n++] = 0, b[n++] = (uint8_t) tl;
  memcpy(b + n, TOPIC, tl);
  n += tl;
  b[n++] = (uint8_t) qos;
  out_add(p, b, n);
  out_flush(p);
  n = read_packet(p, &type);
  if (type != 0x90) die("no SUBACK");
  consume(p, n);
}

/* Parse what arrived; count PUBLISHes (and PUBACK them), PUBACKs for the
 * publisher.  Returns PUBACKs seen. */
static long drain_in(struct peer *p, bool sub) {
  long acks = 0;
  size_t off = 0;
  for (;;) {
    if (p->inlen - off < 2) break;
    size_t len = 0, mul = 1, i = off + 1;
    bool done = false;
    while (i < p->inlen && i < off + 5) {
      uint8_t c = (uint8_t) p->in[i++];
      len += (size_t) (c & 0x7f) * mul;
      mul *= 128;
      if (!(c & 0x80)) {
        done = true;
        break;
      }
    }
    if (!done || p->inlen < i + len) break;
    uint8_t type = (uint8_t) p->in[off];
    if (sub && (type & 0xf0) == 0x30) {
      p->received++;
      if (type & 0x06) { /* QoS 1: PUBACK with the id after the topic */
        size_t tl = ((size_t) (uint8_t) p->in[i] << 8) | (uint8_t) p->in[i + 1];
        uint8_t ack[4] = {0x40, 2, (uint8_t) p->in[i + 2 + tl], (uint8_t) p->in[i + 3 + tl]};
        out_add(p, ack, 4);
      }
    } else if (!sub && type == 0x40) {
      acks++;
    } else {
      errno = 0;
      die("unexpected packet");
    }
    off = i + len;
  }
  consume(p, off);
  return acks;
}

int main(int argc, char **argv) {
  if (argc != 7) {
    fprintf(stderr, "usage: mqtt_load PORT QOS SUBSCRIBERS MESSAGES PAYLOAD_BYTES WINDOW\n");
    return 2;
  }
  int port = atoi(argv[1]), qos = atoi(argv[2]), nsubs = atoi(argv[3]);
  long msgs = atol(argv[4]), window = atol(argv[6]);
  size_t plen = (size_t) atol(argv[5]);
  struct peer *subs = calloc((size_t) nsubs, sizeof(*subs)), *pub = calloc(1, sizeof(*pub));
  if (subs == NULL || pub == NULL) die("out of memory");
  char id[32];
  for (int i = 0; i < nsubs; i++) {
    snprintf(id, sizeof(id), "bench-sub-%d", i);
    open_peer(&subs[i], port, id);
    subscribe(&subs[i], qos);
  }
  open_peer(pub, port, "bench-pub");
  int ep = epoll_create1(0);
  for (int i = 0; i <= nsubs; i++) {
    struct peer *p = i < nsubs ? &subs[i] : pub;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = p};
    if (fcntl(p->fd, F_SETFL, fcntl(p->fd, F_GETFL) | O_NONBLOCK) != 0) die("O_NONBLOCK");
    if (epoll_ctl(ep, EPOLL_CTL_ADD, p->fd, &ev) != 0) die("epoll_ctl");
  }
  /* One PUBLISH, its packet id patched in per message at QoS 1. */
  uint8_t *pkt = malloc(16 + sizeof(TOPIC) + plen);
  size_t tl = strlen(TOPIC), body = 2 + tl + (qos > 0 ? 2 : 0) + plen, n = 0;
  pkt[n++] = (uint8_t) (0x30 | (qos << 1));
  n += put_len(pkt + n, body);
  pkt[n++] = 0, pkt[n++] = (uint8_t) tl;
  memcpy(pkt + n, TOPIC, tl);
  n += tl;
  size_t pid_at = n;
  if (qos > 0) n += 2;
  memset(pkt + n, 'x', plen);
  n += plen;
  long sent = 0, acked = 0, total = msgs * nsubs;
  uint16_t pid = 0;
  double t0 = now(), deadline = t0 + 60;
  struct epoll_event evs[64];
  for (;;) {
    long slowest = msgs, delivered = 0;
    for (int i = 0; i < nsubs; i++) {
      if (subs[i].received < slowest) slowest = subs[i].received;
      delivered += subs[i].received;
    }
    if (delivered >= total) {
      double dt = now() - t0;
      printf("{\"seconds\": %.6f, \"delivered\": %ld, \"rate\": %.1f}\n", dt, delivered,
             (double) delivered / dt);
      return 0;
    }
    if (now() > deadline) {
      fprintf(stderr, "mqtt_load: timeout: %ld of %ld delivered, %ld sent\n", delivered, total, sent);
      return 1;
    }
    while (sent < msgs && sent - slowest < window && (qos == 0 || sent - acked < window)) {
      if (qos > 0) {
        if (++pid == 0) pid = 1;
        pkt[pid_at] = (uint8_t) (pid >> 8), pkt[pid_at + 1] = (uint8_t) pid;
      }
      out_add(pub, pkt, n);
      sent++;
    }
    out_flush(pub);
    int ne = epoll_wait(ep, evs, 64, pub->outlen > 0 ? 1 : 100);
    for (int k = 0; k < ne; k++) {
      struct peer *p = evs[k].data.ptr;
      for (;;) {
        ssize_t r = recv(p->fd, p->in + p->inlen, BUF - p->inlen, 0);
        if (r < 0 && errno == EAGAIN) break;
        if (r <= 0) die("recv");
        p->inlen += (size_t) r;
        long a = drain_in(p, p != pub);
        acked += a;
        if (p != pub && p->outlen > 0) out_flush(p);
      }
    }
  }
}
