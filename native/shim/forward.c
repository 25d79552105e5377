/* HTTP/1.1 over a unix socket, non-blocking with one overall deadline (connect + send + receive). */
#include "forward.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Waits for `events` on fd until the deadline; 1 ready, 0 timeout, -1 error. */
static int wait_fd(int fd, short events, long deadline) {
  for (;;) {
    long left = deadline - now_ms();
    if (left <= 0) return 0;
    struct pollfd p = {.fd = fd, .events = events};
    int n = poll(&p, 1, (int)left);
    if (n > 0) return 1;
    if (n == 0) return 0;
    if (errno != EINTR) return -1;
  }
}

static enum agent_result fail(char *why, size_t len, enum agent_result r, const char *fmt, const char *a, const char *b) {
  snprintf(why, len, fmt, a, b);
  return r;
}

static enum agent_result connect_agent(const char *path, long deadline, int *out, char *why, size_t why_len) {
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof addr.sun_path) return fail(why, why_len, AGENT_UNREACHABLE, "socket path %s is too long%s", path, "");
  strcpy(addr.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return fail(why, why_len, AGENT_UNREACHABLE, "cannot create a socket: %s%s", strerror(errno), "");
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
    if (errno != EINPROGRESS && errno != EAGAIN) {
      int e = errno;
      close(fd);
      return fail(why, why_len, AGENT_UNREACHABLE, "cannot connect to the meshcni agent at %s: %s", path, strerror(e));
    }
    int w = wait_fd(fd, POLLOUT, deadline);
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (w <= 0) {
      close(fd);
      return fail(why, why_len, AGENT_TIMEOUT, "timed out connecting to the meshcni agent at %s%s", path, "");
    }
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) {
      close(fd);
      return fail(why, why_len, AGENT_UNREACHABLE, "cannot connect to the meshcni agent at %s: %s", path, strerror(soerr ? soerr : errno));
    }
  }
  *out = fd;
  return AGENT_OK;
}

static enum agent_result send_all(int fd, const char *buf, size_t len, long deadline, char *why, size_t why_len) {
  while (len > 0) {
    ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
    if (n > 0) {
      buf += n;
      len -= (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      int w = wait_fd(fd, POLLOUT, deadline);
      if (w == 0) return fail(why, why_len, AGENT_TIMEOUT, "timed out sending the request to the meshcni agent%s%s", "", "");
      if (w < 0) return fail(why, why_len, AGENT_UNREACHABLE, "poll: %s%s", strerror(errno), "");
      continue;
    }
    return fail(why, why_len, AGENT_UNREACHABLE, "the meshcni agent closed the connection while we sent: %s%s", strerror(errno), "");
  }
  return AGENT_OK;
}

/* Parses "HTTP/1.1 200 OK\r\n...\r\n\r\n"; returns the header length or 0 if incomplete, -1 bad. */
static long parse_head(const char *buf, size_t len, int *status, long *content_length, int *chunked) {
  const char *end = memmem(buf, len, "\r\n\r\n", 4);
  if (!end) return 0;
  if (len < 12 || strncmp(buf, "HTTP/1.", 7) != 0) return -1;
  *status = atoi(buf + 9);
  *content_length = -1;
  *chunked = 0;
  for (const char *line = strstr(buf, "\r\n") + 2; line < end; line = strstr(line, "\r\n") + 2) {
    if (!strncasecmp(line, "content-length:", 15)) *content_length = strtol(line + 15, NULL, 10);
    if (!strncasecmp(line, "transfer-encoding:", 18) && strcasestr(line, "chunked") && strcasestr(line, "chunked") < strstr(line, "\r\n")) *chunked = 1;
  }
  return (long)(end - buf) + 4;
}

/* Decodes a chunked body in place (the connection is closed, so all of it is here). */
static size_t dechunk(char *buf, size_t len) {
  size_t in = 0, out = 0;
  while (in < len) {
    char *end = NULL;
    unsigned long n = strtoul(buf + in, &end, 16);
    char *crlf = memmem(buf + in, len - in, "\r\n", 2);
    if (!crlf || n == 0) break;
    in = (size_t)(crlf - buf) + 2;
    if (in + n > len) n = len - in;
    memmove(buf + out, buf + in, n);
    out += n;
    in += n + 2;
  }
  buf[out] = 0;
  return out;
}

/* Reads the response until Content-Length is satisfied (or EOF). */
static enum agent_result read_reply(int fd, long deadline, struct agent_reply *reply, char *why, size_t why_len) {
  size_t cap = 16384, len = 0;
  char *buf = malloc(cap + 1);
  long head = 0, clen = -1;
  int status = 0, chunked = 0;
  if (!buf) return fail(why, why_len, AGENT_PROTOCOL, "out of memory%s%s", "", "");
  for (;;) {
    if (head > 0 && clen >= 0 && len >= (size_t)(head + clen)) break;
    if (len == cap) {
      if (cap >= MESHCNI_MAX_RESPONSE) return free(buf), fail(why, why_len, AGENT_PROTOCOL, "the agent's answer exceeds 4 MiB%s%s", "", "");
      cap *= 2;
      char *bigger = realloc(buf, cap + 1);
      if (!bigger) return free(buf), fail(why, why_len, AGENT_PROTOCOL, "out of memory%s%s", "", "");
      buf = bigger;
    }
    ssize_t n = recv(fd, buf + len, cap - len, 0);
    if (n > 0) {
      len += (size_t)n;
      if (head == 0) {
        buf[len] = 0;
        head = parse_head(buf, len, &status, &clen, &chunked);
        if (head < 0) return free(buf), fail(why, why_len, AGENT_PROTOCOL, "the agent's answer is not HTTP%s%s", "", "");
      }
      continue;
    }
    if (n == 0) break;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      int w = wait_fd(fd, POLLIN, deadline);
      if (w == 0) return free(buf), fail(why, why_len, AGENT_TIMEOUT, "timed out waiting for the meshcni agent's answer%s%s", "", "");
      if (w < 0) return free(buf), fail(why, why_len, AGENT_UNREACHABLE, "poll: %s%s", strerror(errno), "");
      continue;
    }
    return free(buf), fail(why, why_len, AGENT_UNREACHABLE, "reading the agent's answer: %s%s", strerror(errno), "");
  }
  if (head <= 0) return free(buf), fail(why, why_len, AGENT_UNREACHABLE, "the meshcni agent closed the connection without answering%s%s", "", "");
  size_t body_len = len - (size_t)head;
  if (clen >= 0 && body_len > (size_t)clen) body_len = (size_t)clen;
  memmove(buf, buf + head, body_len);
  buf[body_len] = 0;
  if (chunked && clen < 0) body_len = dechunk(buf, body_len);
  reply->status = status;
  reply->body = buf;
  reply->body_len = body_len;
  return AGENT_OK;
}

enum agent_result agent_post(const char *socket_path, const char *body, size_t body_len, long timeout_ms,
                             struct agent_reply *reply, char *why, size_t why_len) {
  long deadline = now_ms() + timeout_ms;
  int fd = -1;
  enum agent_result r = connect_agent(socket_path, deadline, &fd, why, why_len);
  if (r != AGENT_OK) return r;
  char head[256];
  int hl = snprintf(head, sizeof head,
                    "POST /v1/cni HTTP/1.1\r\nHost: meshcni\r\nContent-Type: application/json\r\n"
                    "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                    body_len);
  r = send_all(fd, head, (size_t)hl, deadline, why, why_len);
  if (r == AGENT_OK) r = send_all(fd, body, body_len, deadline, why, why_len);
  if (r == AGENT_OK) r = read_reply(fd, deadline, reply, why, why_len);
  close(fd);
  return r;
}
