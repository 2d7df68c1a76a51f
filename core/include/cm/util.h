/* cm/util.h: small utilities: base64 (RFC 4648), CRC-32 (the zlib one),
 * glob matching with captures, a CSPRNG, and digests through OpenSSL.
 * Pure functions of their arguments (except the random ones); the caller
 * owns every buffer, nothing is kept after a call returns. */
#ifndef CM_UTIL_H
#define CM_UTIL_H

#include "base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- base64, standard alphabet (RFC 4648 section 4) ---------------------- */

/* Length of the padded encoding of n bytes: 4 * ceil(n / 3); SIZE_MAX if
 * that does not fit in a size_t. */
size_t cm_base64_encoded_len(size_t n);
/* An upper bound of the decoded length of n base64 characters: n / 4 * 3 + 2. */
size_t cm_base64_decoded_max(size_t n);
/* Encode src[0..n) into dst, padded with '='.  Writes exactly
 * cm_base64_encoded_len(n) characters and no NUL.  Returns that length, or
 * -1 (writing nothing) if dstlen is smaller. */
long cm_base64_encode(const void *src, size_t n, char *dst, size_t dstlen);
/* Decode src[0..n) into dst.  Accepts padded input ("QQ==") and unpadded
 * input ("QQ"); a last group of one character carries no whole byte and is
 * ignored ("QUJDR" -> "ABC").  Padding, if present, must complete the last
 * group of four exactly.  Returns the decoded length, or -1 for any byte
 * outside the alphabet (whitespace included), misplaced '=', or a dst
 * smaller than the result; dst may then hold partial output.  A dstlen of
 * cm_base64_decoded_max(n) is always enough. */
long cm_base64_decode(const char *src, size_t n, void *dst, size_t dstlen);

/* ---- CRC-32 -------------------------------------------------------------- */

/* CRC-32 of buf[0..len) (ISO-HDLC, polynomial 0xEDB88320 reflected), the
 * one of zlib, PNG and Python's binascii.crc32.  Start with crc 0; to
 * continue over more data, pass the previous result:
 * cm_crc32(cm_crc32(0, a, na), b, nb) == cm_crc32(0, a || b, na + nb). */
uint32_t cm_crc32(uint32_t crc, const void *buf, size_t len);

/* ---- glob matching ------------------------------------------------------- */

/* Match all of `s` against `pattern`, where '?' matches any one byte, '*'
 * any run of bytes without '/', '#' any run of bytes (also '/'), and every
 * other byte itself.  Wildcards match as little as possible, first to last:
 * of all ways to match, the one whose first wildcard is shortest, then whose
 * second is shortest, and so on.
 * On a match, caps[k] (k < ncaps) is set to what the k-th wildcard of the
 * pattern matched, a slice into `s` ({NULL, 0} when empty); slots beyond
 * the pattern's wildcards are set to {NULL, 0}.  Without a match every slot
 * is {NULL, 0}.  `caps` may be NULL when ncaps is 0.
 * Cost: O(len(s) * len(pattern) * (ncaps + 1)) time, with no backtracking;
 * O(len(pattern) * (ncaps + 1)) words of memory, on the stack for small
 * patterns, else from malloc: false is also returned if that fails. */
bool cm_match(struct cm_str s, struct cm_str pattern, struct cm_str *caps, size_t ncaps);
/* Number of wildcards ('?', '*', '#') in `pattern`: how many captures a
 * match yields. */
size_t cm_match_count(struct cm_str pattern);

/* ---- randomness ---------------------------------------------------------- */

/* Fill buf[0..len) from the kernel's CSPRNG (getrandom(2)).  Returns false
 * if it cannot (the buffer is then not random). */
bool cm_random(void *buf, size_t len);
/* Fill buf[0..len) with characters from [0-9A-Za-z], each uniformly
 * distributed (no modulo bias), and no NUL.  Returns false as cm_random. */
bool cm_random_str(char *buf, size_t len);

/* ---- digests (OpenSSL EVP) ----------------------------------------------- */

#define CM_MD5_LEN 16
#define CM_SHA1_LEN 20
#define CM_SHA256_LEN 32

/* Digest of data[0..len) into out, which has room for CM_<NAME>_LEN bytes.
 * Returns false if OpenSSL refuses (e.g. MD5 in a FIPS-only configuration). */
bool cm_md5(const void *data, size_t len, uint8_t *out);
bool cm_sha1(const void *data, size_t len, uint8_t *out);
bool cm_sha256(const void *data, size_t len, uint8_t *out);
/* HMAC-SHA256 (RFC 2104, RFC 4231) of data with key, into out[32]. */
bool cm_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len, uint8_t *out);

#ifdef __cplusplus
}
#endif
#endif /* CM_UTIL_H */
