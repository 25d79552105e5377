/* Forwarding to the meshcni agent: HTTP/1.1 over a non-blocking unix socket. One deadline covers
 * connect, send and receive; every wait is a poll with the time that is left. */
#include "forward.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Milliseconds on the monotonic clock, or -1. */
static long now_ms(void) {
  struct timespec ts;
  if (clock_gettime(CLOCK_MONOTONIC, &ts)) return -1;
  return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static enum agent_outcome fail(struct agent_reply *r, enum agent_outcome o, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->why, sizeof r->why, fmt, ap);
  va_end(ap);
  return o;
}

/* Waits until fd is ready for `events` or the deadline passes: 1 ready, 0 deadline, -1 error. */
static int wait_fd(int fd, short events, long deadline) {
  for (;;) {
    long now = now_ms();
    if (now < 0) return -1;
    long left = deadline - now;
    if (left <= 0) return 0;
    struct pollfd p = {.fd = fd, .events = events};
    int n = poll(fd >= 0 ? &p : NULL, fd >= 0 ? 1 : 0, left > INT_MAX ? INT_MAX : (int)left);
    if (n > 0) return 1;
    if (n < 0 && errno != EINTR) return -1;
  }
}

/* The socket file must be a socket owned by root, not a symlink: anything else was not put there by
 * the agent (ENOENT is left to connect, which names it as before). */
static int socket_file_unexpected(const char *path, struct agent_reply *r) {
  struct stat st;
  if (lstat(path, &st)) return 0;
  if (S_ISSOCK(st.st_mode) && st.st_uid == 0) return 0;
  fail(r, AGENT_DOWN, "refusing %.128s: not a socket owned by root (mode %o, owner uid %u)", path,
       (unsigned)st.st_mode, (unsigned)st.st_uid);
  return 1;
}

/* Whoever listens on the connected socket must be root: a non-root user who bound a free socket path
 * must not answer for the agent. The kernel records the listener's credentials at listen(). */
static enum agent_outcome peer_is_root(int fd, const char *path, int *fd_out, struct agent_reply *r) {
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) || len != sizeof cred) {
    int err = errno;
    (void)close(fd); /* never used: nothing to report */
    return fail(r, AGENT_DOWN, "cannot read the credentials of the listener on %.128s: %s", path, strerror(err));
  }
  if (cred.uid != 0) {
    (void)close(fd); /* never used: nothing to report */
    return fail(r, AGENT_DOWN, "refusing the listener on %.128s: it runs as uid %u (pid %d), not root", path,
                (unsigned)cred.uid, (int)cred.pid);
  }
  *fd_out = fd;
  return AGENT_OK;
}

/* A non-blocking connect; EAGAIN means the agent's backlog is full, so we retry until the deadline. */
static enum agent_outcome connect_agent(const char *path, long deadline, int *fd_out, struct agent_reply *r) {
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof addr.sun_path) return fail(r, AGENT_DOWN, "socket path %.128s is too long", path);
  memcpy(addr.sun_path, path, strlen(path) + 1);
  if (socket_file_unexpected(path, r)) return AGENT_DOWN;
  for (;;) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return fail(r, AGENT_DOWN, "cannot create a unix socket: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0) return peer_is_root(fd, path, fd_out, r);
    int err = errno;
    if (err == EINPROGRESS || err == EINTR) {
      int w = wait_fd(fd, POLLOUT, deadline);
      socklen_t sl = sizeof err;
      if (w > 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &sl)) err = errno;
      if (w > 0 && err == 0) return peer_is_root(fd, path, fd_out, r);
      if (w == 0) err = ETIMEDOUT;
      if (w < 0) err = errno;
    }
    (void)close(fd); /* a socket that never connected: its close has nothing to report */
    if (err == ETIMEDOUT) return fail(r, AGENT_TIMEOUT, "timed out connecting to the meshcni agent at %.128s", path);
    if (err != EAGAIN) return fail(r, AGENT_DOWN, "cannot connect to the meshcni agent at %.128s: %s", path, strerror(err));
    if (wait_fd(-1, 0, deadline < now_ms() + 10 ? deadline : now_ms() + 10) < 0)
      return fail(r, AGENT_DOWN, "poll: %s", strerror(errno));
    if (now_ms() >= deadline)
      return fail(r, AGENT_TIMEOUT, "timed out connecting to the meshcni agent at %.128s (backlog full)", path);
  }
}

/* Sends the head and the body as one message where the socket takes it whole: each separate send
 * wakes the agent once more (and, on a busy node, switches CPUs once more) for half a request. */
static enum agent_outcome send_all(int fd, const char *head, size_t head_len, const char *body, size_t body_len, long deadline,
                                   struct agent_reply *r) {
  struct iovec iov[2] = {{(void *)head, head_len}, {(void *)body, body_len}};
  struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};
  while (iov[0].iov_len + iov[1].iov_len > 0) {
    ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (n >= 0) {
      for (int i = 0; i < 2; i++) {
        size_t take = (size_t)n < iov[i].iov_len ? (size_t)n : iov[i].iov_len;
        iov[i].iov_base = (char *)iov[i].iov_base + take;
        iov[i].iov_len -= take;
        n -= (ssize_t)take;
      }
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      return fail(r, AGENT_DOWN, "sending to the meshcni agent: %s", strerror(errno));
    int w = wait_fd(fd, POLLOUT, deadline);
    if (w == 0) return fail(r, AGENT_TIMEOUT, "timed out sending to the meshcni agent");
    if (w < 0) return fail(r, AGENT_DOWN, "poll: %s", strerror(errno));
  }
  return AGENT_OK;
}

/* What the response head says about the body. */
struct head {
  size_t len;       /* bytes up to and including the blank line; 0 while incomplete */
  int status;
  long content_length; /* -1: none */
  int chunked;
};

static int header_is(const char *line, size_t n, const char *name) {
  size_t k = strlen(name);
  return n > k && line[k] == ':' && !strncasecmp(line, name, k);
}

/* Header value without surrounding blanks, as [*v, *v + *vn). */
static void header_value(const char *line, size_t n, const char **v, size_t *vn) {
  const char *s = memchr(line, ':', n) + 1, *e = line + n;
  while (s < e && (*s == ' ' || *s == '\t')) s++;
  while (e > s && (e[-1] == ' ' || e[-1] == '\t')) e--;
  *v = s;
  *vn = (size_t)(e - s);
}

/* One header line; -1 if its value is unusable. */
static int parse_header(const char *line, size_t n, struct head *h) {
  const char *v;
  size_t vn;
  if (header_is(line, n, "content-length")) {
    header_value(line, n, &v, &vn);
    if (vn == 0 || vn > 9 || strspn(v, "0123456789") < vn) return -1;
    h->content_length = strtol(v, NULL, 10);
  } else if (header_is(line, n, "transfer-encoding")) {
    header_value(line, n, &v, &vn);
    h->chunked = vn >= 7 && !strncasecmp(v + vn - 7, "chunked", 7);
  }
  return 0;
}

/* Parses the status line and headers once "\r\n\r\n" has arrived: 1 done, 0 need more, -1 bad. */
static int parse_head(const char *buf, size_t len, struct head *h) {
  const char *end = memmem(buf, len, "\r\n\r\n", 4);
  if (!end) return 0;
  if (strncmp(buf, "HTTP/1.", 7) || (buf[7] != '0' && buf[7] != '1') || buf[8] != ' ') return -1;
  if (strspn(buf + 9, "0123456789") != 3 || (buf[12] != ' ' && buf[12] != '\r')) return -1;
  h->status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
  h->content_length = -1;
  h->chunked = 0;
  for (const char *line = (const char *)memmem(buf, len, "\r\n", 2) + 2; line < end;) {
    const char *eol = memmem(line, (size_t)(end + 2 - line), "\r\n", 2);
    if (parse_header(line, (size_t)(eol - line), h)) return -1;
    line = eol + 2;
  }
  h->len = (size_t)(end - buf) + 4;
  return 1;
}

/* Walks a chunked body; with `out`, also copies the data there (out may alias in: it only trails).
 * 1 complete (*out_len set), 0 need more, -1 malformed. */
static int dechunk(const char *in, size_t n, char *out, size_t *out_len) {
  size_t i = 0, o = 0;
  for (;;) {
    const char *eol = memmem(in + i, n - i, "\r\n", 2);
    if (!eol) return 0;
    size_t digits = strspn(in + i, "0123456789abcdefABCDEF");
    if (digits == 0 || digits > 7 || (in[i + digits] != '\r' && in[i + digits] != ';')) return -1;
    size_t size = strtoul(in + i, NULL, 16);
    i = (size_t)(eol - in) + 2;
    if (size == 0) break;
    if (n - i < size + 2) return 0;
    if (in[i + size] != '\r' || in[i + size + 1] != '\n') return -1;
    if (out) memmove(out + o, in + i, size);
    o += size;
    i += size + 2;
  }
  for (;;) { /* trailers, then the blank line */
    const char *eol = memmem(in + i, n - i, "\r\n", 2);
    if (!eol) return 0;
    if (eol == in + i) break;
    i = (size_t)(eol - in) + 2;
  }
  *out_len = o;
  return 1;
}

/* Whether the answer in buf is whole: 1 yes, 0 not yet, -1 malformed. Fills h on the way. */
static int answer_complete(char *buf, size_t len, struct head *h) {
  if (!h->len) {
    int p = parse_head(buf, len, h);
    if (p <= 0) return p;
  }
  size_t got = len - h->len, body_len;
  if (h->chunked) return dechunk(buf + h->len, got, NULL, &body_len);
  if (h->content_length >= 0) return got >= (size_t)h->content_length;
  return 0; /* read to EOF */
}

/* Moves the body to the front of buf and hands buf to the reply. */
static enum agent_outcome take_body(char *buf, size_t len, const struct head *h, struct agent_reply *r) {
  size_t body_len = len - h->len;
  if (h->chunked) dechunk(buf + h->len, body_len, buf, &body_len);
  else {
    if (h->content_length >= 0 && body_len > (size_t)h->content_length) body_len = (size_t)h->content_length;
    memmove(buf, buf + h->len, body_len);
  }
  buf[body_len] = 0;
  r->status = h->status;
  r->body = buf;
  r->body_len = body_len;
  return AGENT_OK;
}

/* Why reading stopped at EOF without a whole answer. */
static enum agent_outcome cut_short(const struct head *h, struct agent_reply *r) {
  if (!h->len) return fail(r, AGENT_DOWN, "the meshcni agent closed the connection without answering");
  return fail(r, AGENT_BAD_ANSWER, "the meshcni agent's answer (HTTP %d) was cut short", h->status);
}

/* Receives into *buf, growing it up to the bound: >0 bytes, 0 EOF, -1 (outcome in *o). */
static ssize_t receive(int fd, char **buf, size_t *cap, size_t len, long deadline, struct agent_reply *r,
                       enum agent_outcome *o) {
  if (len == *cap) {
    char *bigger = *cap >= AGENT_MAX_RESPONSE ? NULL : realloc(*buf, *cap * 2 + 1);
    if (!bigger) {
      *o = fail(r, AGENT_BAD_ANSWER, "the meshcni agent's answer is larger than %d bytes", AGENT_MAX_RESPONSE);
      return -1;
    }
    *buf = bigger;
    *cap *= 2;
  }
  for (;;) {
    ssize_t n = recv(fd, *buf + len, *cap - len, 0);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      *o = fail(r, AGENT_DOWN, "reading the meshcni agent's answer: %s", strerror(errno));
      return -1;
    }
    int w = wait_fd(fd, POLLIN, deadline);
    if (w == 0) return *o = fail(r, AGENT_TIMEOUT, "timed out waiting for the meshcni agent's answer"), -1;
    if (w < 0) return *o = fail(r, AGENT_DOWN, "poll: %s", strerror(errno)), -1;
  }
}

static enum agent_outcome read_answer(int fd, long deadline, struct agent_reply *r) {
  size_t cap = 16384, len = 0;
  char *buf = malloc(cap + 1); /* +1: room for the NUL after the body */
  struct head h = {0};
  enum agent_outcome o = AGENT_OK;
  if (!buf) return fail(r, AGENT_BAD_ANSWER, "out of memory");
  for (;;) {
    ssize_t n = receive(fd, &buf, &cap, len, deadline, r, &o);
    if (n < 0) break;
    if (n == 0) {
      o = h.len && !h.chunked && h.content_length < 0 ? take_body(buf, len, &h, r) : cut_short(&h, r);
      break;
    }
    len += (size_t)n;
    buf[len] = 0;
    int c = answer_complete(buf, len, &h);
    if (c < 0) o = fail(r, AGENT_BAD_ANSWER, "the meshcni agent's answer is not valid HTTP/1.1");
    if (c > 0) o = take_body(buf, len, &h, r);
    if (c != 0) break;
  }
  if (o != AGENT_OK || r->body != buf) free(buf);
  return o;
}

/* The agent may refuse a request (too large, say) and close before we finished sending: its
 * answer is still in our receive queue and says more than EPIPE does. */
static enum agent_outcome answer_after_reset(int fd, long deadline, struct agent_reply *r) {
  char send_error[sizeof r->why];
  memcpy(send_error, r->why, sizeof send_error);
  if (read_answer(fd, deadline, r) == AGENT_OK) return AGENT_OK;
  memcpy(r->why, send_error, sizeof r->why);
  return AGENT_DOWN;
}

enum agent_outcome agent_post(const char *socket_path, const char *body, size_t body_len, long timeout_ms,
                              struct agent_reply *r) {
  long start = now_ms();
  if (start < 0) return fail(r, AGENT_DOWN, "clock_gettime: %s", strerror(errno));
  long deadline = start + timeout_ms;
  char head[192];
  int hn = snprintf(head, sizeof head,
                    "POST /v1/cni HTTP/1.1\r\nHost: meshcni\r\nContent-Type: application/json\r\n"
                    "Content-Length: %zu\r\nConnection: close\r\n\r\n", body_len);
  int fd = -1;
  enum agent_outcome o = connect_agent(socket_path, deadline, &fd, r);
  if (o != AGENT_OK) return o;
  o = send_all(fd, head, (size_t)hn, body, body_len, deadline, r);
  if (o == AGENT_OK) o = read_answer(fd, deadline, r);
  else if (o == AGENT_DOWN) o = answer_after_reset(fd, deadline, r);
  (void)close(fd); /* the answer is in hand; a failed close cannot change it */
  return o;
}
