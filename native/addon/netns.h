// Network namespaces by path: open, identify, refuse the host's, and run a socket() inside one.
#pragma once

#include <sys/types.h>

#include <string>

namespace meshcni {

/** A failed system call or a refused input: errno-style name plus a sentence naming the input. */
struct SysError {
  int err = 0;           // errno value (0 for refusals that are not an errno)
  std::string code;      // "ENOENT", "ENOTNETNS", "EHOSTNETNS", ...
  std::string message;   // one clear line naming the path or call
};

struct NsIdentity {
  dev_t dev = 0;
  ino_t ino = 0;
  bool operator==(const NsIdentity &o) const { return dev == o.dev && ino == o.ino; }
};

/** The errno's symbolic name ("ENOENT"), or "E<number>" when libc has none. */
std::string ErrnoName(int err);

/** Fills `e` from errno after `what` failed on `path`; always returns false. */
bool Fail(SysError *e, const std::string &what, const std::string &path);

/** Opens `path` and checks it is a network-namespace file; returns the fd (O_CLOEXEC) or -1. */
int OpenNetns(const std::string &path, NsIdentity *id, SysError *e);

/** Identity of the namespace file at `path` (no netns check beyond what OpenNetns does). */
bool NetnsIdentityOf(const std::string &path, NsIdentity *id, SysError *e);

/**
 * Records the calling thread's namespace, and PID 1's where readable, as the host's: what
 * OpenPodNetns refuses. Done once (later calls do nothing), at load, on a thread that is in the
 * host's namespace. Read once, not per call: while one thread of this process is inside a pod's
 * namespace (an inline commit), /proc/self/ns/net would name the pod's namespace, not the host's.
 */
void RecordHostNetns();

/**
 * Opens `path` as a netns that may be programmed: not the process's own namespace, not PID 1's.
 * Returns the fd or -1 with `e` set (code EHOSTNETNS for the host's own namespace).
 */
int OpenPodNetns(const std::string &path, SysError *e);

/**
 * Creates a socket(AF_NETLINK, SOCK_RAW, protocol) that lives in the namespace `nsfd`: the calling
 * thread enters it, creates the socket and returns to its own namespace. If it cannot return, the
 * process aborts: running later work in a pod's namespace would be far worse than dying.
 */
int NetlinkSocketIn(int nsfd, int protocol, SysError *e);

}  // namespace meshcni
