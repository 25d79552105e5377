// Network namespaces by path. Everything here is a thin, checked wrapper over one or two syscalls.
#include "netns.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <mutex>
#include <linux/netlink.h>
#include <linux/magic.h>
#include <linux/nsfs.h>

namespace meshcni {

std::string ErrnoName(int err) {
  const char *name = strerrorname_np(err);
  return name ? std::string(name) : "E" + std::to_string(err);
}

bool Fail(SysError *e, const std::string &what, const std::string &path) {
  int err = errno;
  e->err = err;
  e->code = ErrnoName(err);
  e->message = what + " " + path + ": " + strerror(err);
  return false;
}

static void Refuse(SysError *e, int err, const char *code, const std::string &message) {
  e->err = err;
  e->code = code;
  e->message = message;
}

int OpenNetns(const std::string &path, NsIdentity *id, SysError *e) {
  if (path.empty() || path[0] != '/') {
    Refuse(e, EINVAL, "EINVAL", "network namespace path must be absolute, got '" + path + "'");
    return -1;
  }
  // O_PATH first: it names the file without opening it for I/O, so a device node, FIFO or socket
  // given as CNI_NETNS is never really opened (no driver open(), no writer woken on a FIFO).
  int pathFd = open(path.c_str(), O_PATH | O_CLOEXEC);
  if (pathFd < 0) {
    Fail(e, "cannot open network namespace", path);
    return -1;
  }
  // Only files of the nsfs pseudo file system are namespaces; checked before the file is opened
  // for real and before any ioctl is sent to a file of some other driver.
  struct statfs fs;
  if (fstatfs(pathFd, &fs) != 0) {
    Fail(e, "cannot statfs network namespace", path);
    close(pathFd);
    return -1;
  }
  if (fs.f_type != NSFS_MAGIC) {
    Refuse(e, EINVAL, "ENOTNETNS", path + " is not a network namespace (not an nsfs file)");
    close(pathFd);
    return -1;
  }
  // The same inode, opened for real through the O_PATH descriptor (not the path again, which could
  // have been replaced meanwhile).
  std::string self = "/proc/self/fd/" + std::to_string(pathFd);
  int fd = open(self.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) Fail(e, "cannot open network namespace", path);
  close(pathFd);
  if (fd < 0) return -1;
  struct stat st;
  if (fstat(fd, &st) != 0) {
    Fail(e, "cannot stat network namespace", path);
    close(fd);
    return -1;
  }
  // NS_GET_NSTYPE answers only for nsfs files: anything else (a regular file, /dev/null, a mount
  // point whose namespace was never bind-mounted) is refused here instead of failing in setns().
  int type = ioctl(fd, NS_GET_NSTYPE);
  if (type != CLONE_NEWNET) {
    Refuse(e, EINVAL, "ENOTNETNS", path + " is not a network namespace");
    close(fd);
    return -1;
  }
  id->dev = st.st_dev;
  id->ino = st.st_ino;
  return fd;
}

bool NetnsIdentityOf(const std::string &path, NsIdentity *id, SysError *e) {
  int fd = OpenNetns(path, id, e);
  if (fd < 0) return false;
  close(fd);
  return true;
}

namespace {
struct HostNetns {
  NsIdentity self, init;
  bool haveSelf = false, haveInit = false;
  SysError selfError;
};
HostNetns gHost;
std::once_flag gHostOnce;
}  // namespace

void RecordHostNetns() {
  std::call_once(gHostOnce, [] {
    SysError ignored;
    gHost.haveSelf = NetnsIdentityOf("/proc/thread-self/ns/net", &gHost.self, &gHost.selfError);
    gHost.haveInit = NetnsIdentityOf("/proc/1/ns/net", &gHost.init, &ignored);
  });
}

int OpenPodNetns(const std::string &path, SysError *e) {
  RecordHostNetns();
  if (!gHost.haveSelf) {
    // Without knowing our own namespace nothing can be told apart from it: program nothing.
    *e = gHost.selfError;
    return -1;
  }
  NsIdentity target;
  int fd = OpenNetns(path, &target, e);
  if (fd < 0) return -1;
  if (target == gHost.self || (gHost.haveInit && target == gHost.init)) {
    Refuse(e, EPERM, "EHOSTNETNS", "refusing to program " + path + ": it is the host's own network namespace");
    close(fd);
    return -1;
  }
  return fd;
}

int NetlinkSocketIn(int nsfd, int protocol, SysError *e) {
  // This thread's own namespace, to come back to: opened once per thread (threads are only ever
  // outside it inside this function, so the first call opens the right one) and kept.
  thread_local int home = -1;
  if (home < 0) home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (home < 0) {
    Fail(e, "cannot open", "/proc/thread-self/ns/net");
    return -1;
  }
  if (setns(nsfd, CLONE_NEWNET) != 0) {
    Fail(e, "setns into", "the pod's network namespace");
    return -1;
  }
  int sock = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol);
  int socketErrno = errno;
  if (setns(home, CLONE_NEWNET) != 0) {
    // This thread now sits in a pod's namespace and cannot leave: abort rather than let the thread
    // pool run the next job (possibly for another pod, or the host) in the wrong namespace.
    fprintf(stderr, "meshcni: FATAL: cannot return a worker thread to its network namespace: %s\n", strerror(errno));
    abort();
  }
  if (sock < 0) {
    errno = socketErrno;
    Fail(e, "cannot create netlink socket in", "the pod's network namespace");
  }
  return sock;
}

}  // namespace meshcni
