/* util.c: base64, CRC-32, glob matching, randomness and digests (cm/util.h).
 * The matcher is the only part with an algorithm worth a note: see the
 * comment above cm_match. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <openssl/evp.h>

#include "cm/util.h"
#include "internal.h"

/* ---- base64 --------------------------------------------------------------- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t cm_base64_encoded_len(size_t n) {
  if (n / 3 >= SIZE_MAX / 4) return SIZE_MAX; /* 4 * ceil(n / 3) would wrap */
  return (n + 2) / 3 * 4;
}

size_t cm_base64_decoded_max(size_t n) { return n / 4 * 3 + 2; }

long cm_base64_encode(const void *src, size_t n, char *dst, size_t dstlen) {
  const uint8_t *p = src;
  size_t need = cm_base64_encoded_len(n), j = 0;
  if (need > dstlen || need > LONG_MAX) return -1;
  for (size_t i = 0; i < n; i += 3) {
    size_t left = n - i;
    uint32_t v = (uint32_t) p[i] << 16;
    if (left > 1) v |= (uint32_t) p[i + 1] << 8;
    if (left > 2) v |= p[i + 2];
    dst[j++] = b64[v >> 18 & 63];
    dst[j++] = b64[v >> 12 & 63];
    dst[j++] = left > 1 ? b64[v >> 6 & 63] : '=';
    dst[j++] = left > 2 ? b64[v & 63] : '=';
  }
  return (long) need;
}

/* Value of one base64 character, or -1. */
static int b64val(char ch) {
  if (ch >= 'A' && ch <= 'Z') return ch - 'A';
  if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
  if (ch >= '0' && ch <= '9') return ch - '0' + 52;
  if (ch == '+') return 62;
  if (ch == '/') return 63;
  return -1;
}

/* Decode a group of 1..4 characters into count - 1 bytes (a single
 * character holds only 6 bits: no byte).  Returns the byte count, or -1.
 * Bits below the last whole byte are ignored, as most decoders do. */
static int decode_group(const char *src, size_t count, uint8_t *out) {
  uint32_t v = 0;
  for (size_t k = 0; k < 4; k++) {
    int x = k < count ? b64val(src[k]) : 0;
    if (x < 0) return -1;
    v = v << 6 | (uint32_t) x;
  }
  for (size_t k = 0; k + 1 < count; k++) out[k] = (uint8_t) (v >> (16 - 8 * k));
  return (int) count - 1;
}

long cm_base64_decode(const char *src, size_t n, void *dst, size_t dstlen) {
  uint8_t *out = dst;
  size_t pad = 0;
  while (pad < n && src[n - 1 - pad] == '=') pad++;
  /* Padding may only complete the last group of four (RFC 4648 3.2). */
  if (pad > 2 || (pad > 0 && n % 4 != 0)) return -1;
  size_t len = n - pad, groups = len / 4, tail = len % 4;
  size_t total = groups * 3 + (tail >= 2 ? tail - 1 : 0);
  if (total > dstlen || total > LONG_MAX) return -1;
  for (size_t g = 0; g < groups; g++)
    if (decode_group(src + 4 * g, 4, out + 3 * g) < 0) return -1;
  /* SPEC 1.10: a last lone character is ignored, but must still be valid. */
  if (tail > 0 && decode_group(src + 4 * groups, tail, out + 3 * groups) < 0) return -1;
  return (long) total;
}

/* ---- CRC-32 --------------------------------------------------------------- */

/* crc_table[b] is the CRC register after shifting the byte b through it
 * eight times with the reflected polynomial 0xEDB88320.  Generated from that
 * definition (test_util.c recomputes and compares every entry). */
static const uint32_t crc_table[256] = {
    0x00000000, 0x77073096, 0xee0e612c, 0x990951ba, 0x076dc419, 0x706af48f, 0xe963a535, 0x9e6495a3,
    0x0edb8832, 0x79dcb8a4, 0xe0d5e91e, 0x97d2d988, 0x09b64c2b, 0x7eb17cbd, 0xe7b82d07, 0x90bf1d91,
    0x1db71064, 0x6ab020f2, 0xf3b97148, 0x84be41de, 0x1adad47d, 0x6ddde4eb, 0xf4d4b551, 0x83d385c7,
    0x136c9856, 0x646ba8c0, 0xfd62f97a, 0x8a65c9ec, 0x14015c4f, 0x63066cd9, 0xfa0f3d63, 0x8d080df5,
    0x3b6e20c8, 0x4c69105e, 0xd56041e4, 0xa2677172, 0x3c03e4d1, 0x4b04d447, 0xd20d85fd, 0xa50ab56b,
    0x35b5a8fa, 0x42b2986c, 0xdbbbc9d6, 0xacbcf940, 0x32d86ce3, 0x45df5c75, 0xdcd60dcf, 0xabd13d59,
    0x26d930ac, 0x51de003a, 0xc8d75180, 0xbfd06116, 0x21b4f4b5, 0x56b3c423, 0xcfba9599, 0xb8bda50f,
    0x2802b89e, 0x5f058808, 0xc60cd9b2, 0xb10be924, 0x2f6f7c87, 0x58684c11, 0xc1611dab, 0xb6662d3d,
    0x76dc4190, 0x01db7106, 0x98d220bc, 0xefd5102a, 0x71b18589, 0x06b6b51f, 0x9fbfe4a5, 0xe8b8d433,
    0x7807c9a2, 0x0f00f934, 0x9609a88e, 0xe10e9818, 0x7f6a0dbb, 0x086d3d2d, 0x91646c97, 0xe6635c01,
    0x6b6b51f4, 0x1c6c6162, 0x856530d8, 0xf262004e, 0x6c0695ed, 0x1b01a57b, 0x8208f4c1, 0xf50fc457,
    0x65b0d9c6, 0x12b7e950, 0x8bbeb8ea, 0xfcb9887c, 0x62dd1ddf, 0x15da2d49, 0x8cd37cf3, 0xfbd44c65,
    0x4db26158, 0x3ab551ce, 0xa3bc0074, 0xd4bb30e2, 0x4adfa541, 0x3dd895d7, 0xa4d1c46d, 0xd3d6f4fb,
    0x4369e96a, 0x346ed9fc, 0xad678846, 0xda60b8d0, 0x44042d73, 0x33031de5, 0xaa0a4c5f, 0xdd0d7cc9,
    0x5005713c, 0x270241aa, 0xbe0b1010, 0xc90c2086, 0x5768b525, 0x206f85b3, 0xb966d409, 0xce61e49f,
    0x5edef90e, 0x29d9c998, 0xb0d09822, 0xc7d7a8b4, 0x59b33d17, 0x2eb40d81, 0xb7bd5c3b, 0xc0ba6cad,
    0xedb88320, 0x9abfb3b6, 0x03b6e20c, 0x74b1d29a, 0xead54739, 0x9dd277af, 0x04db2615, 0x73dc1683,
    0xe3630b12, 0x94643b84, 0x0d6d6a3e, 0x7a6a5aa8, 0xe40ecf0b, 0x9309ff9d, 0x0a00ae27, 0x7d079eb1,
    0xf00f9344, 0x8708a3d2, 0x1e01f268, 0x6906c2fe, 0xf762575d, 0x806567cb, 0x196c3671, 0x6e6b06e7,
    0xfed41b76, 0x89d32be0, 0x10da7a5a, 0x67dd4acc, 0xf9b9df6f, 0x8ebeeff9, 0x17b7be43, 0x60b08ed5,
    0xd6d6a3e8, 0xa1d1937e, 0x38d8c2c4, 0x4fdff252, 0xd1bb67f1, 0xa6bc5767, 0x3fb506dd, 0x48b2364b,
    0xd80d2bda, 0xaf0a1b4c, 0x36034af6, 0x41047a60, 0xdf60efc3, 0xa867df55, 0x316e8eef, 0x4669be79,
    0xcb61b38c, 0xbc66831a, 0x256fd2a0, 0x5268e236, 0xcc0c7795, 0xbb0b4703, 0x220216b9, 0x5505262f,
    0xc5ba3bbe, 0xb2bd0b28, 0x2bb45a92, 0x5cb36a04, 0xc2d7ffa7, 0xb5d0cf31, 0x2cd99e8b, 0x5bdeae1d,
    0x9b64c2b0, 0xec63f226, 0x756aa39c, 0x026d930a, 0x9c0906a9, 0xeb0e363f, 0x72076785, 0x05005713,
    0x95bf4a82, 0xe2b87a14, 0x7bb12bae, 0x0cb61b38, 0x92d28e9b, 0xe5d5be0d, 0x7cdcefb7, 0x0bdbdf21,
    0x86d3d2d4, 0xf1d4e242, 0x68ddb3f8, 0x1fda836e, 0x81be16cd, 0xf6b9265b, 0x6fb077e1, 0x18b74777,
    0x88085ae6, 0xff0f6a70, 0x66063bca, 0x11010b5c, 0x8f659eff, 0xf862ae69, 0x616bffd3, 0x166ccf45,
    0xa00ae278, 0xd70dd2ee, 0x4e048354, 0x3903b3c2, 0xa7672661, 0xd06016f7, 0x4969474d, 0x3e6e77db,
    0xaed16a4a, 0xd9d65adc, 0x40df0b66, 0x37d83bf0, 0xa9bcae53, 0xdebb9ec5, 0x47b2cf7f, 0x30b5ffe9,
    0xbdbdf21c, 0xcabac28a, 0x53b39330, 0x24b4a3a6, 0xbad03605, 0xcdd70693, 0x54de5729, 0x23d967bf,
    0xb3667a2e, 0xc4614ab8, 0x5d681b02, 0x2a6f2b94, 0xb40bbe37, 0xc30c8ea1, 0x5a05df1b, 0x2d02ef8d,
};

uint32_t cm_crc32(uint32_t crc, const void *buf, size_t len) {
  const uint8_t *p = buf;
  /* The register is kept inverted between calls, like zlib, so a result can
   * be passed back in to continue the checksum over more data. */
  crc = ~crc;
  for (size_t i = 0; i < len; i++) crc = crc_table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

/* ---- glob matching -------------------------------------------------------- */

/* The matcher is a Pike VM (Thompson's NFA simulation with captures).  The
 * NFA state is a position j in the pattern: "p[j] is the next token"; state
 * m (= pattern length) accepts.  A wildcard '*' or '#' at j may be left
 * without consuming (to j + 1) or consume a byte and stay at j; '?' and
 * literal bytes consume one byte and go to j + 1.
 *
 * For each position in `s` the VM keeps a list of threads (a state and the
 * captures of the path that led there) in priority order, at most one per
 * state: when two paths reach a state, only the higher-priority one can win
 * from there on, since both have the same future.  Leaving a wildcard ranks
 * above staying in it, so the first thread to accept is the one a lazy
 * backtracking matcher would find, without its exponential worst case
 * (e.g. "*a*a*a*a*b" against "aaaa...").  Each step costs O(m * (k + 1))
 * for k tracked captures. */

#define NOCAP SIZE_MAX  /* "no capture ends here" */
#define SMALL_WORDS 256 /* work area on the stack before resorting to malloc */

struct tlist {
  size_t n;      /* threads in the list */
  size_t *state; /* state of each thread */
  size_t *caps;  /* 2k words per thread: start and end offset of each capture */
};

struct vm {
  struct cm_str s, p;
  size_t k;          /* captures tracked: min(ncaps, wildcards) */
  size_t pos;        /* offset in s at which threads being added stand */
  size_t gen;        /* step number; mark[j] == gen: j is in the new list */
  size_t *mark;      /* m + 1 words */
  size_t *widx;      /* m words: index of the wildcard at each position */
  struct tlist l[2]; /* current and next list */
};

static bool is_star(char ch) { return ch == '*' || ch == '#'; }
static bool is_wild(char ch) { return ch == '?' || is_star(ch); }

size_t cm_match_count(struct cm_str pattern) {
  size_t n = 0;
  for (size_t i = 0; i < pattern.len; i++) n += is_wild(pattern.buf[i]);
  return n;
}

/* Append to `l` a thread at state t, derived from a thread that entered the
 * closure at state j.  Its captures are `base` (NULL: none yet) with the
 * capture `closing` ended here, the wildcards j..t-1 passed over empty here
 * (except that the one at j keeps its start when !fresh: a star staying put),
 * and the wildcard at t, if any, starting here. */
static void append(struct vm *vm, struct tlist *l, size_t t, size_t j, const size_t *base, bool fresh,
                   size_t closing) {
  size_t *c = l->caps + l->n * 2 * vm->k;
  if (base == NULL) memset(c, 0, 2 * vm->k * sizeof(*c)); /* the first thread */
  if (base != NULL) memcpy(c, base, 2 * vm->k * sizeof(*c));
  if (closing < vm->k) c[2 * closing + 1] = vm->pos;
  /* widx grows with u, so the walk stops after at most k + 1 steps. */
  for (size_t u = j; u <= t && u < vm->p.len && vm->widx[u] < vm->k; u++) {
    if (!is_wild(vm->p.buf[u])) continue;
    if (u != j || fresh) c[2 * vm->widx[u]] = vm->pos;
    if (u < t) c[2 * vm->widx[u] + 1] = vm->pos;
  }
  l->state[l->n++] = t;
}

/* Add the thread at state j and every state it reaches without consuming:
 * the stars from j on may each be left empty.  Order, highest priority
 * first: the farthest state, then back to j.  A state already in the list
 * (taken by a higher-priority thread) ends the walk. */
static void add(struct vm *vm, struct tlist *l, size_t j, const size_t *base, bool fresh, size_t closing) {
  size_t e = j;
  while (e < vm->p.len && is_star(vm->p.buf[e]) && vm->mark[e] != vm->gen) vm->mark[e++] = vm->gen;
  if (vm->mark[e] != vm->gen) {
    vm->mark[e] = vm->gen;
    append(vm, l, e, j, base, fresh, closing);
  }
  while (e-- > j) append(vm, l, e, j, base, fresh, closing);
}

/* Advance every thread of `cur` over the byte s[i] into `next`. */
static void step(struct vm *vm, const struct tlist *cur, struct tlist *next, size_t i) {
  char ch = vm->s.buf[i];
  next->n = 0;
  vm->gen++;
  vm->pos = i + 1;
  for (size_t t = 0; t < cur->n; t++) {
    size_t j = cur->state[t];
    const size_t *c = cur->caps + t * 2 * vm->k;
    if (j == vm->p.len) continue; /* accepted too early: cannot consume */
    char tok = vm->p.buf[j];
    if (is_star(tok)) {
      if (tok == '#' || ch != '/') add(vm, next, j, c, false, NOCAP);
    } else if (tok == '?') {
      add(vm, next, j + 1, c, true, vm->widx[j]);
    } else if (tok == ch) {
      add(vm, next, j + 1, c, true, NOCAP);
    }
  }
}

static struct cm_str cap_slice(struct cm_str s, size_t a, size_t b) {
  return a == b ? cm_str_n(NULL, 0) : cm_str_n(s.buf + a, b - a);
}

/* Run the VM; on a match copy the accepting thread's captures out. */
static bool run(struct vm *vm, struct cm_str *caps) {
  struct tlist *cur = &vm->l[0], *next = &vm->l[1], *tmp;
  vm->gen = 1;
  vm->pos = 0;
  add(vm, cur, 0, NULL, true, NOCAP);
  for (size_t i = 0; i < vm->s.len && cur->n > 0; i++) {
    step(vm, cur, next, i);
    tmp = cur, cur = next, next = tmp;
  }
  for (size_t t = 0; t < cur->n; t++) {
    if (cur->state[t] != vm->p.len) continue;
    const size_t *c = cur->caps + t * 2 * vm->k;
    for (size_t w = 0; w < vm->k; w++) caps[w] = cap_slice(vm->s, c[2 * w], c[2 * w + 1]);
    return true;
  }
  return false;
}

/* Carve the VM's arrays out of the block w of (m + 1) * (4k + 4) words. */
static void layout(struct vm *vm, size_t *w) {
  size_t m1 = vm->p.len + 1;
  vm->mark = w, w += m1;
  vm->widx = w, w += m1;
  for (int i = 0; i < 2; i++) {
    vm->l[i].n = 0;
    vm->l[i].state = w, w += m1;
    vm->l[i].caps = w, w += m1 * 2 * vm->k;
  }
  memset(vm->mark, 0, m1 * sizeof(*w));
  for (size_t u = 0, n = 0; u < vm->p.len; u++) {
    vm->widx[u] = n;
    n += is_wild(vm->p.buf[u]);
  }
}

bool cm_match(struct cm_str s, struct cm_str pattern, struct cm_str *caps, size_t ncaps) {
  size_t small[SMALL_WORDS], *w = small;
  struct vm vm = {.s = s, .p = pattern};
  size_t wild = cm_match_count(pattern), per;
  bool ok = false;
  vm.k = ncaps < wild ? ncaps : wild;
  for (size_t i = 0; i < ncaps; i++) caps[i] = cm_str_n(NULL, 0);
  per = 4 * vm.k + 4; /* words per state: mark, widx, 2 x (state + 2k captures) */
  if (vm.k > SIZE_MAX / 8 || pattern.len >= SIZE_MAX / sizeof(size_t) / per) return false;
  if ((pattern.len + 1) * per > SMALL_WORDS) {
    w = malloc((pattern.len + 1) * per * sizeof(size_t));
    if (w == NULL) return false;
  }
  layout(&vm, w);
  ok = run(&vm, caps);
  if (w != small) free(w);
  return ok;
}

/* ---- randomness ----------------------------------------------------------- */

bool cm_random(void *buf, size_t len) {
  uint8_t *p = buf;
  while (len > 0) {
    /* Without GRND_NONBLOCK: blocks only until the pool is first seeded at
     * boot; large requests may return short, hence the loop. */
    ssize_t n = getrandom(p, len, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    len -= (size_t) n;
  }
  return true;
}

bool cm_random_str(char *buf, size_t len) {
  static const char alnum[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  uint8_t pool[64];
  size_t used = sizeof(pool);
  for (size_t i = 0; i < len;) {
    if (used == sizeof(pool)) {
      if (!cm_random(pool, sizeof(pool))) return false;
      used = 0;
    }
    /* Rejection sampling: 248 = 4 * 62, so bytes below it map onto the 62
     * characters evenly; "byte % 62" over all 256 would favour the first 8. */
    uint8_t b = pool[used++];
    if (b < 248) buf[i++] = alnum[b % 62];
  }
  return true;
}

/* ---- digests -------------------------------------------------------------- */

/* One-shot EVP digest; data may be NULL when len is 0. */
static bool digest(const EVP_MD *md, const void *data, size_t len, uint8_t *out) {
  static const uint8_t none;
  return md != NULL && EVP_Digest(len == 0 ? &none : data, len, out, NULL, md, NULL) == 1;
}

bool cm_md5(const void *data, size_t len, uint8_t *out) { return digest(EVP_md5(), data, len, out); }
bool cm_sha1(const void *data, size_t len, uint8_t *out) { return digest(EVP_sha1(), data, len, out); }
bool cm_sha256(const void *data, size_t len, uint8_t *out) { return digest(EVP_sha256(), data, len, out); }

bool cm_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len, uint8_t *out) {
  static const uint8_t none;
  size_t outlen = 0;
  /* EVP_Q_mac (OpenSSL 3): the one-shot MAC, with size_t lengths where the
   * older HMAC() takes an int key length. */
  if (keylen == 0) key = &none;
  if (len == 0) data = &none;
  unsigned char *r =
      EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, keylen, data, len, out, CM_SHA256_LEN, &outlen);
  return r != NULL && outlen == CM_SHA256_LEN;
}
