/* test.c: shared helpers of the C tests (see test.h). */
#include "test.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

int cm_test_passed;

int cm_test_done(void) {
  printf("%d passed, 0 failed\n", cm_test_passed);
  return 0;
}

const char *cm_test_guard(const void *data, size_t len) {
  static char *region;
  static size_t region_size;
  size_t page = (size_t) sysconf(_SC_PAGESIZE);
  size_t pages = (len + page - 1) / page + 1;
  if (region != NULL) munmap(region, region_size);
  region_size = (pages + 1) * page;
  region = mmap(NULL, region_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT(region != MAP_FAILED);
  char *guard = region + pages * page;
  ASSERT(mprotect(guard, page, PROT_NONE) == 0);
  char *dst = guard - len;
  if (len > 0) memcpy(dst, data, len);
  return dst;
}

bool cm_test_poll_until(struct cm_mgr *mgr, const volatile bool *flag, int ms) {
  uint64_t end = cm_millis() + (uint64_t) ms;
  while (!*flag && cm_millis() < end) cm_mgr_poll(mgr, 10);
  return *flag;
}

int cm_test_peer_connect(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT(fd >= 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT(connect(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0);
  ASSERT(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == 0);
  return fd;
}
