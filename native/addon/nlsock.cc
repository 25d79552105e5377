// Netlink request/ACK bookkeeping on a socket already bound to the right namespace.
#include "nlsock.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <linux/netlink.h>

#include <set>

namespace meshcni {

namespace {

constexpr size_t kRecvBuffer = 256 * 1024;
constexpr size_t kAckBuffer = 64 * 1024;
constexpr int kMinSockBuffer = 1 << 20;
// Batches up to this size go with the socket's default buffers.
constexpr size_t kDefaultRoom = 64 * 1024;

int64_t NowMs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

void SetBuffer(int sock, int optForce, int opt, int bytes) {
  // FORCE ignores rmem_max/wmem_max (needs CAP_NET_ADMIN, which the agent has); fall back quietly:
  // the plain option still gives the default maximum, enough for ordinary batches.
  if (setsockopt(sock, SOL_SOCKET, optForce, &bytes, sizeof bytes) != 0) {
    setsockopt(sock, SOL_SOCKET, opt, &bytes, sizeof bytes);
  }
}

/** Waits until the socket is readable or the deadline passes; false with ETIMEDOUT on timeout. */
bool WaitReadable(int sock, int64_t deadline, SysError *e) {
  for (;;) {
    int64_t left = deadline - NowMs();
    if (left <= 0) {
      e->err = ETIMEDOUT;
      e->code = "ETIMEDOUT";
      e->message = "no answer from the kernel on the netlink socket in time";
      return false;
    }
    struct pollfd p = {sock, POLLIN, 0};
    int n = poll(&p, 1, int(left));
    if (n > 0) return true;
    if (n < 0 && errno != EINTR) return Fail(e, "poll", "netlink socket");
  }
}

/** Receives one datagram from the kernel into `buf`; returns its length or -1 with `e` set. */
ssize_t ReceiveOne(int sock, std::vector<uint8_t> *buf, int64_t deadline, SysError *e) {
  // The kernel handles a batch inside send(), so its answers are usually queued already: try first,
  // wait (bounded by the deadline) only when nothing is there yet.
  for (;;) {
    struct sockaddr_nl from = {};
    socklen_t fromLen = sizeof from;
    ssize_t n = recvfrom(sock, buf->data(), buf->size(), MSG_DONTWAIT | MSG_TRUNC,
                         reinterpret_cast<struct sockaddr *>(&from), &fromLen);
    // The socket is connected to the kernel, which refuses other senders; a datagram from anyone
    // else (port id not 0) is dropped all the same.
    if (n >= 0 && (fromLen != sizeof from || from.nl_family != AF_NETLINK || from.nl_pid != 0)) continue;
    if (n > ssize_t(buf->size())) {
      e->err = EMSGSIZE;
      e->code = "EMSGSIZE";
      e->message = "a netlink reply of " + std::to_string(n) + " bytes did not fit the " + std::to_string(buf->size()) +
                   "-byte receive buffer";
      return -1;
    }
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      Fail(e, "recv", "netlink socket");
      return -1;
    }
    if (!WaitReadable(sock, deadline, e)) return -1;
  }
}

std::string ExtackMessage(const struct nlmsghdr *h) {
  if (!(h->nlmsg_flags & NLM_F_ACK_TLVS)) return "";
  const auto *err = static_cast<const struct nlmsgerr *>(NLMSG_DATA(h));
  // With NETLINK_CAP_ACK the echoed request is only its header, so TLVs start right after nlmsgerr.
  size_t offset = NLMSG_HDRLEN + sizeof(struct nlmsgerr);
  if (!(h->nlmsg_flags & NLM_F_CAPPED)) {
    if (err->msg.nlmsg_len < NLMSG_HDRLEN || err->msg.nlmsg_len > h->nlmsg_len) return "";
    offset += NLMSG_ALIGN(err->msg.nlmsg_len) - NLMSG_HDRLEN;
  }
  const uint8_t *base = reinterpret_cast<const uint8_t *>(h);
  while (offset + NLA_HDRLEN <= h->nlmsg_len) {
    const auto *a = reinterpret_cast<const struct nlattr *>(base + offset);
    if (a->nla_len < NLA_HDRLEN || offset + a->nla_len > h->nlmsg_len) break;
    if ((a->nla_type & NLA_TYPE_MASK) == NLMSGERR_ATTR_MSG) {
      const char *s = reinterpret_cast<const char *>(a) + NLA_HDRLEN;
      return std::string(s, strnlen(s, a->nla_len - NLA_HDRLEN));
    }
    offset += NLA_ALIGN(a->nla_len);
  }
  return "";
}

/** Collects the seqs of the messages that asked for an ACK; counts messages and first seq. */
bool ScanBatch(const uint8_t *batch, size_t size, std::set<uint32_t> *wanted, std::set<uint32_t> *ours,
               TransactResult *out, SysError *e) {
  size_t offset = 0;
  while (offset < size) {
    if (size - offset < NLMSG_HDRLEN) break;
    const auto *h = reinterpret_cast<const struct nlmsghdr *>(batch + offset);
    if (h->nlmsg_len < NLMSG_HDRLEN || h->nlmsg_len > size - offset) break;
    if (out->messages == 0) out->firstSeq = h->nlmsg_seq;
    out->messages++;
    if (h->nlmsg_flags & NLM_F_ACK) wanted->insert(h->nlmsg_seq);
    ours->insert(h->nlmsg_seq);
    offset += NLMSG_ALIGN(h->nlmsg_len);
  }
  if (offset != size || out->messages == 0) {
    e->err = EINVAL;
    e->code = "EINVAL";
    e->message = "batch is not a sequence of well-formed netlink messages (byte " + std::to_string(offset) + ")";
    return false;
  }
  return true;
}

/** Whether `h` (already NLMSG_OK) is long enough for what its type says it carries. */
bool LongEnough(const struct nlmsghdr *h, SysError *e) {
  if (h->nlmsg_type != NLMSG_ERROR || h->nlmsg_len >= NLMSG_LENGTH(sizeof(struct nlmsgerr))) return true;
  e->err = EPROTO;
  e->code = "EPROTO";
  e->message = "the kernel sent a netlink error message of " + std::to_string(h->nlmsg_len) + " bytes, shorter than " +
               std::to_string(NLMSG_LENGTH(sizeof(struct nlmsgerr)));
  return false;
}

bool SendAll(int sock, const uint8_t *data, size_t size, SysError *e) {
  struct sockaddr_nl kernel = {};
  kernel.nl_family = AF_NETLINK;
  for (;;) {
    ssize_t n = sendto(sock, data, size, 0, reinterpret_cast<struct sockaddr *>(&kernel), sizeof kernel);
    if (n == ssize_t(size)) return true;
    if (n < 0 && errno == EINTR) continue;
    if (n >= 0) errno = EMSGSIZE;  // a datagram socket sends all or nothing; be explicit anyway
    return Fail(e, "send", "netlink batch");
  }
}

}  // namespace

bool PrepareNetlinkSocket(int sock, size_t batchBytes, SysError *e) {
  // Connected to the kernel (port id 0): the kernel then refuses unicasts from any other socket, so
  // nobody with NET_ADMIN in the pod's namespace can inject replies. connect() also binds.
  struct sockaddr_nl kernel = {};
  kernel.nl_family = AF_NETLINK;
  if (connect(sock, reinterpret_cast<struct sockaddr *>(&kernel), sizeof kernel) != 0) {
    return Fail(e, "cannot connect the netlink socket to", "the kernel");
  }
  // A refused option leaves the default. Buffers are enlarged only where
  // the defaults (about 200 KiB) may not do: dumps (batchBytes 0) and big batches; an ordinary pod's
  // batch and its ACKs fit, and each setsockopt is a syscall on every ADD.
  if (batchBytes == 0 || batchBytes > kDefaultRoom) {
    int big = int(batchBytes * 2) > kMinSockBuffer ? int(batchBytes * 2) : kMinSockBuffer;
    SetBuffer(sock, SO_SNDBUFFORCE, SO_SNDBUF, big);
    SetBuffer(sock, SO_RCVBUFFORCE, SO_RCVBUF, big);
  }
  int one = 1;
  // CAP_ACK keeps error messages small (no echoed request); EXT_ACK brings the kernel's reason.
  setsockopt(sock, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
  setsockopt(sock, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
  return true;
}

bool Transact(int sock, const uint8_t *batch, size_t size, int timeoutMs, TransactResult *out, SysError *e) {
  std::set<uint32_t> wanted, ours;
  if (!ScanBatch(batch, size, &wanted, &ours, out, e)) return false;
  if (!SendAll(sock, batch, size, e)) return false;
  int64_t deadline = NowMs() + timeoutMs;
  // ACKs and errors (capped, no echoed request) are small: a per-thread buffer, not a fresh 256 KiB
  // one, which cost an mmap, a memset and a page fault per page on every commit.
  thread_local std::vector<uint8_t> buf(kAckBuffer);
  while (!wanted.empty()) {
    ssize_t n = ReceiveOne(sock, &buf, deadline, e);
    if (n < 0) return false;
    int len = int(n);
    for (auto *h = reinterpret_cast<struct nlmsghdr *>(buf.data()); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_type != NLMSG_ERROR) continue;
      if (!LongEnough(h, e)) return false;
      // Only answers to our own messages count: a seq outside the batch is not ours.
      if (!ours.count(h->nlmsg_seq)) continue;
      const auto *err = static_cast<const struct nlmsgerr *>(NLMSG_DATA(h));
      bool asked = wanted.erase(h->nlmsg_seq) > 0;
      if (err->error == 0) {
        out->acked++;
        continue;
      }
      out->errors.push_back({h->nlmsg_seq, -err->error, ExtackMessage(h)});
      // An error for a message that never asked for an ACK (the batch begin, say) means the kernel
      // refused the batch as a whole: no further answers will come.
      if (!asked) wanted.clear();
    }
  }
  return true;
}

bool Dump(int sock, const std::vector<uint8_t> &request, int timeoutMs, size_t maxBytes, std::vector<uint8_t> *out,
          bool *interrupted, SysError *e) {
  *interrupted = false;
  if (request.size() < NLMSG_HDRLEN) {
    e->err = EINVAL;
    e->code = "EINVAL";
    e->message = "a netlink dump request must hold a message header";
    return false;
  }
  uint32_t seq = reinterpret_cast<const struct nlmsghdr *>(request.data())->nlmsg_seq;
  if (!SendAll(sock, request.data(), request.size(), e)) return false;
  int64_t deadline = NowMs() + timeoutMs;
  std::vector<uint8_t> buf(kRecvBuffer);
  for (;;) {
    ssize_t n = ReceiveOne(sock, &buf, deadline, e);
    if (n < 0) return false;
    int len = int(n);
    for (auto *h = reinterpret_cast<struct nlmsghdr *>(buf.data()); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
      if (!LongEnough(h, e)) return false;
      if (h->nlmsg_seq != seq) continue;  // not an answer to this request
      if (h->nlmsg_flags & NLM_F_DUMP_INTR) *interrupted = true;
      if (h->nlmsg_type == NLMSG_DONE) return true;
      if (h->nlmsg_type == NLMSG_ERROR) {
        const auto *err = static_cast<const struct nlmsgerr *>(NLMSG_DATA(h));
        if (err->error == 0) continue;
        errno = -err->error;
        return Fail(e, "netlink dump failed:", ExtackMessage(h));
      }
      const uint8_t *p = reinterpret_cast<const uint8_t *>(h);
      if (out->size() + NLMSG_ALIGN(h->nlmsg_len) > maxBytes) {
        e->err = E2BIG;
        e->code = "E2BIG";
        e->message = "netlink dump is larger than " + std::to_string(maxBytes) +
                     " bytes, the limit per network namespace: refusing to read it";
        return false;
      }
      out->insert(out->end(), p, p + h->nlmsg_len);
      out->resize(NLMSG_ALIGN(out->size()), 0);
    }
  }
}

}  // namespace meshcni
