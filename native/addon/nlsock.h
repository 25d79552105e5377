// A netlink socket that sends a whole batch and collects every ACK, or runs a dump to its end.
#pragma once

#include <stdint.h>

#include <string>
#include <vector>

#include "netns.h"

namespace meshcni {

/** The kernel's answer to one message of a batch that carried NLM_F_ACK (or that failed). */
struct MessageError {
  uint32_t seq = 0;
  int err = 0;            // positive errno
  std::string extack;     // NLMSGERR_ATTR_MSG, when the kernel sent one
};

struct TransactResult {
  uint32_t messages = 0;  // messages in the batch
  uint32_t acked = 0;     // successful ACKs received
  uint32_t firstSeq = 0;  // seq of the first message in the batch
  std::vector<MessageError> errors;
};

/**
 * Connects the socket to the kernel (so only the kernel can answer on it), sizes the buffers where a
 * batch of `batchBytes` (0: a dump) needs it, and asks for capped, extended ACKs. False with `e` set.
 */
bool PrepareNetlinkSocket(int sock, size_t batchBytes, SysError *e);

/**
 * Sends `batch` (one or more netlink messages) in one sendmsg and reads until every message that
 * asked for an ACK has been answered, an error arrives for a message that did not ask (the batch
 * as a whole was refused), or `timeoutMs` passes. Kernel errors land in `out->errors`.
 */
bool Transact(int sock, const uint8_t *batch, size_t size, int timeoutMs, TransactResult *out, SysError *e);

/**
 * Sends one dump request and appends every reply message with the request's seq up to NLMSG_DONE to
 * `out`, which may not grow beyond `maxBytes` (E2BIG: the dump is refused, not read to its end).
 * Sets `*interrupted` when the kernel flagged NLM_F_DUMP_INTR (the caller retries).
 */
bool Dump(int sock, const std::vector<uint8_t> &request, int timeoutMs, size_t maxBytes, std::vector<uint8_t> *out,
          bool *interrupted, SysError *e);

}  // namespace meshcni
