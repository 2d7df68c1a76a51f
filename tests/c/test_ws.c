/* test_ws.c: the WebSocket protocol (ws.c) and permessage-deflate
 * (ws_deflate.c) from C alone: the negotiation and the bounded inflate as
 * units, then our server and our client talking over loopback the way
 * another core protocol would carry its packets (binary messages, the
 * "mqtt" subprotocol). */
#include <zlib.h>

#include "internal.h"
#include "test.h"

#define WAIT_MS 5000

/* ---- negotiation ------------------------------------------------------------ */

static bool negotiate(const char *offers, struct cm__ws_pmd *p, char *resp) {
  return cm__ws_pmd_negotiate(cm_str_c(offers), p, resp, 160);
}

static void test_negotiate(void) {
  struct cm__ws_pmd p;
  char resp[160];
  ASSERT(negotiate("permessage-deflate", &p, resp));
  ASSERT(strcmp(resp, "Sec-WebSocket-Extensions: permessage-deflate\r\n") == 0);
  ASSERT(negotiate("permessage-deflate; client_max_window_bits", &p, resp));
  ASSERT(p.client_bits == 15 && !p.client_bits_given);
  ASSERT(negotiate(" permessage-deflate ; server_no_context_takeover ; server_max_window_bits=\"10\"", &p,
                   resp));
  ASSERT(p.server_no_context && p.server_bits == 10);
  ASSERT(strstr(resp, "server_no_context_takeover") != NULL);
  ASSERT(strstr(resp, "server_max_window_bits=10") != NULL);
  /* declined: unknown, repeated, bad values, 8 bits for us (zlib) */
  ASSERT(!negotiate("permessage-deflate; foo", &p, resp));
  ASSERT(!negotiate("permessage-deflate; client_no_context_takeover; client_no_context_takeover", &p, resp));
  ASSERT(!negotiate("permessage-deflate; server_max_window_bits", &p, resp));
  ASSERT(!negotiate("permessage-deflate; server_max_window_bits=7", &p, resp));
  ASSERT(!negotiate("permessage-deflate; server_max_window_bits=010", &p, resp));
  ASSERT(!negotiate("permessage-deflate; server_max_window_bits=8", &p, resp));
  ASSERT(!negotiate("x-webkit-deflate-frame", &p, resp));
  /* the first acceptable offer wins */
  ASSERT(negotiate("permessage-deflate; bad, permessage-deflate; client_no_context_takeover", &p, resp));
  ASSERT(p.client_no_context);
}

static void test_client_accepts_response(void) {
  struct cm__ws_pmd p;
  ASSERT_EQ(cm__ws_pmd_accept(cm_str_c("permessage-deflate"), &p), 1);
  ASSERT_EQ(cm__ws_pmd_accept(cm_str_c("permessage-deflate; client_max_window_bits=12"), &p), 1);
  ASSERT(p.client_bits == 12);
  ASSERT_EQ(cm__ws_pmd_accept(cm_str_c("permessage-deflate; client_max_window_bits=8"), &p), -1);
  ASSERT_EQ(cm__ws_pmd_accept(cm_str_c("permessage-deflate; client_max_window_bits"), &p), -1);
  ASSERT_EQ(cm__ws_pmd_accept(cm_str_c("permessage-deflate, permessage-deflate"), &p), -1);
  ASSERT_EQ(cm__ws_pmd_accept(cm_str_c("other-extension"), &p), -1);
}

/* ---- compression ---------------------------------------------------------------- */

static void test_deflate_inflate_round_trip_and_bound(void) {
  struct cm__ws_pmd p;
  memset(&p, 0, sizeof(p));
  p.server_bits = p.client_bits = 15;
  struct cm__ws_z *tx = cm__ws_z_new(&p, true), *rx = cm__ws_z_new(&p, false);
  ASSERT(tx != NULL && rx != NULL);
  struct cm_iobuf z, out;
  cm_iobuf_init(&z, 0);
  cm_iobuf_init(&out, 0);
  static char big[1 << 20];
  memset(big, 'q', sizeof(big));
  for (int round = 0; round < 3; round++) { /* context carried over */
    cm_iobuf_consume(&z, z.len);
    cm_iobuf_consume(&out, out.len);
    long n = cm__ws_z_deflate(tx, big, sizeof(big), &z);
    ASSERT(n > 0 && (size_t) n == z.len && n < 4096);
    ASSERT_EQ(cm__ws_z_inflate(rx, cm_str_n(cm_iobuf_data(&z), z.len), &out, sizeof(big)), 0);
    ASSERT(out.len == sizeof(big) && memcmp(cm_iobuf_data(&out), big, sizeof(big)) == 0);
  }
  /* The same bytes with a limit one short: a bomb, stopped at the bound. */
  cm_iobuf_consume(&z, z.len);
  cm_iobuf_consume(&out, out.len);
  ASSERT(cm__ws_z_deflate(tx, big, sizeof(big), &z) > 0);
  ASSERT_EQ(cm__ws_z_inflate(rx, cm_str_n(cm_iobuf_data(&z), z.len), &out, sizeof(big) - 1),
            CM__WS_Z_TOO_BIG);
  ASSERT(out.size <= 2 * sizeof(big));
  cm_iobuf_consume(&out, out.len);
  ASSERT_EQ(cm__ws_z_inflate(rx, cm_str_n("\xff\xff\xff", 3), &out, 1000), CM__WS_Z_CORRUPT);
  cm_iobuf_free(&z);
  cm_iobuf_free(&out);
  cm__ws_z_free(tx);
  cm__ws_z_free(rx);
}

/* ---- loopback: our server, our client ---------------------------------------------- */

struct peer {
  int opened, msgs, ctls, errors;
  bool closed;
  uint8_t last_flags;
  char last[256];
  size_t last_len;
  char proto[32]; /* Sec-WebSocket-Protocol seen in WS_OPEN */
};

static void record(struct peer *p, int ev, void *ev_data) {
  if (ev == CM_EV_WS_MSG || ev == CM_EV_WS_CTL) {
    struct cm_ws_msg *m = ev_data;
    p->last_flags = m->flags;
    p->last_len = m->data.len < sizeof(p->last) ? m->data.len : sizeof(p->last);
    if (p->last_len > 0) memcpy(p->last, m->data.buf, p->last_len);
    if (ev == CM_EV_WS_MSG) p->msgs++;
    else
      p->ctls++;
  } else if (ev == CM_EV_ERROR) {
    p->errors++;
  } else if (ev == CM_EV_CLOSE) {
    p->closed = true;
  }
}

static void copy_header(char *dst, size_t size, const struct cm_http_msg *hm, const char *name) {
  const struct cm_str *v = cm_http_header(hm, name);
  size_t n = v != NULL ? (v->len < size - 1 ? v->len : size - 1) : 0;
  if (n > 0) memcpy(dst, v->buf, n);
  dst[n] = '\0';
}

static struct peer srv;
static void server_fn(struct cm_conn *c, int ev, void *ev_data) {
  if (ev == CM_EV_HTTP_MSG) {
    static const char h[] = "Sec-WebSocket-Protocol: mqtt\r\n";
    ASSERT(cm_ws_upgrade(c, ev_data, h, sizeof(h) - 1, NULL));
    ASSERT(c->is_websocket && c->pfn == cm_ws_handler);
  } else if (ev == CM_EV_WS_OPEN) {
    srv.opened++;
  } else if (ev == CM_EV_WS_MSG) {
    struct cm_ws_msg *m = ev_data;
    ASSERT(cm_ws_send(c, m->data.buf, m->data.len, m->flags & 0x0f)); /* echo */
  }
  record(&srv, ev, ev_data);
}

static struct peer cli;
static void client_fn(struct cm_conn *c, int ev, void *ev_data) {
  (void) c;
  if (ev == CM_EV_WS_OPEN) {
    cli.opened++;
    copy_header(cli.proto, sizeof(cli.proto), ev_data, "Sec-WebSocket-Protocol");
  }
  record(&cli, ev, ev_data);
}

static bool until(struct cm_mgr *mgr, const int *counter, int want) {
  for (int i = 0; i < WAIT_MS / 10 && *counter < want; i++) cm_mgr_poll(mgr, 10);
  return *counter >= want;
}

static void loopback(bool deflate) {
  struct cm_mgr mgr;
  memset(&srv, 0, sizeof(srv));
  memset(&cli, 0, sizeof(cli));
  ASSERT_EQ(cm_mgr_init(&mgr), 0);
  struct cm_conn *lsn = cm_http_listen(&mgr, "http://127.0.0.1:0", server_fn, NULL);
  ASSERT(lsn != NULL);
  struct cm_ws_opts lo = {1 << 20, !deflate};
  ASSERT(cm_ws_listen_opts(lsn, &lo));
  char url[64];
  snprintf(url, sizeof(url), "ws://127.0.0.1:%u/mqtt", lsn->loc.port);
  struct cm_conn *c = cm_ws_connect(&mgr, url, "Sec-WebSocket-Protocol: mqtt\r\n", NULL, client_fn, NULL);
  ASSERT(c != NULL);
  ASSERT(!cm_ws_send(c, "too early", 9, CM_WS_OP_TEXT)); /* before the 101 */
  ASSERT(until(&mgr, &cli.opened, 1));
  ASSERT(strcmp(cli.proto, "mqtt") == 0 && srv.opened == 1);
  /* An MQTT CONNECT-like packet, binary, and a long text: echoed. */
  static const char pkt[] = "\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00";
  ASSERT(cm_ws_send(c, pkt, sizeof(pkt) - 1, CM_WS_OP_BINARY));
  ASSERT(until(&mgr, &cli.msgs, 1));
  ASSERT(cli.last_flags == 0x82 && cli.last_len == sizeof(pkt) - 1 &&
         memcmp(cli.last, pkt, cli.last_len) == 0);
  static char text[100000];
  memset(text, 'w', sizeof(text));
  ASSERT(cm_ws_send(c, text, sizeof(text), CM_WS_OP_TEXT));
  ASSERT(until(&mgr, &cli.msgs, 2));
  ASSERT(cli.last_flags == 0x81 && cli.last_len == sizeof(cli.last));
  /* Over the server's limit: it fails the connection with 1009. */
  static char huge[(1 << 20) + 1];
  ASSERT(cm_ws_send(c, huge, sizeof(huge), CM_WS_OP_BINARY));
  ASSERT(until(&mgr, &srv.errors, 1));
  ASSERT(until(&mgr, &cli.ctls, 1));
  ASSERT(cli.last_flags == 0x88 && cli.last_len >= 2 && (uint8_t) cli.last[0] == 0x03 &&
         (uint8_t) cli.last[1] == 0xf1); /* 1009 */
  for (int i = 0; i < WAIT_MS / 10 && !cli.closed; i++) cm_mgr_poll(&mgr, 10);
  ASSERT(cli.closed && cli.errors == 0);
  cm_mgr_free(&mgr);
}

static void test_loopback_plain(void) { loopback(false); }
static void test_loopback_deflate(void) { loopback(true); }

static void test_close_handshake_from_client(void) {
  struct cm_mgr mgr;
  memset(&srv, 0, sizeof(srv));
  memset(&cli, 0, sizeof(cli));
  ASSERT_EQ(cm_mgr_init(&mgr), 0);
  struct cm_conn *lsn = cm_http_listen(&mgr, "http://127.0.0.1:0", server_fn, NULL);
  char url[64];
  snprintf(url, sizeof(url), "ws://127.0.0.1:%u/", lsn->loc.port);
  struct cm_conn *c = cm_ws_connect(&mgr, url, NULL, NULL, client_fn, NULL);
  ASSERT(until(&mgr, &cli.opened, 1));
  ASSERT(cm_ws_close(c, 4000, cm_str_c("done")));
  ASSERT(!cm_ws_send(c, "after", 5, CM_WS_OP_TEXT)); /* nothing after a close */
  ASSERT(until(&mgr, &srv.ctls, 1));
  ASSERT(srv.last_flags == 0x88 && srv.last_len == 6 && memcmp(srv.last + 2, "done", 4) == 0);
  for (int i = 0; i < WAIT_MS / 10 && !(cli.closed && srv.closed); i++) cm_mgr_poll(&mgr, 10);
  ASSERT(cli.closed && srv.closed && cli.errors == 0 && srv.errors == 0);
  ASSERT(cli.ctls == 1 && cli.last_flags == 0x88); /* the server's echo */
  cm_mgr_free(&mgr);
}

int main(void) {
  RUN(test_negotiate);
  RUN(test_client_accepts_response);
  RUN(test_deflate_inflate_round_trip_and_bound);
  RUN(test_loopback_plain);
  RUN(test_loopback_deflate);
  RUN(test_close_handshake_from_client);
  return cm_test_done();
}
