/* The agent-answer reader (forward.c) on any bytes the agent could send before closing. An answer it
 * takes has a status of three digits and a NUL-terminated body no longer than what was sent. */
#include "../native/shim/forward.c"

#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  int sv[2];
  if (size > 65536 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) return 0;
  int big = 1 << 20;
  (void)setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
  size_t off = 0;
  while (off < size) {
    ssize_t n = write(sv[1], data + off, size - off);
    if (n <= 0) abort(); /* the buffer holds it all: a short write here is the harness's bug */
    off += (size_t)n;
  }
  (void)close(sv[1]);
  (void)fcntl(sv[0], F_SETFL, O_NONBLOCK);
  struct agent_reply r = {0};
  enum agent_outcome o = read_answer(sv[0], now_ms() + 1000, &r);
  (void)close(sv[0]);
  if (o == AGENT_OK) {
    if (r.status < 0 || r.status > 999 || !r.body || r.body_len > size || r.body[r.body_len]) abort();
  } else if (o == AGENT_TIMEOUT || !r.why[0] || r.body) {
    abort(); /* the stream ended: nothing to wait for, and a failure names itself */
  }
  free(r.body);
  return 0;
}
