// meshcni native addon: the only code that crosses into the kernel. Each blocking call runs on a
// worker thread (AsyncWorker); the TypeScript layer in src/kernel/ hides this module completely.
#include <napi.h>

#include <errno.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/netlink.h>
#include <linux/nsfs.h>

#include <string>
#include <vector>

#include "netns.h"
#include "nlsock.h"

namespace meshcni {
namespace {

constexpr int kTimeoutMs = 10000;
constexpr int kDumpRetries = 5;

Napi::Error SysErrorToJs(Napi::Env env, const SysError &e) {
  Napi::Error err = Napi::Error::New(env, e.message);
  err.Set("code", Napi::String::New(env, e.code));
  err.Set("errno", Napi::Number::New(env, e.err));
  return err;
}

/** A non-empty Buffer argument, as it is (no copy: for use before the call returns). */
Napi::Buffer<uint8_t> BufferOf(const Napi::Value &v, const char *what) {
  if (!v.IsBuffer()) throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a Buffer");
  auto b = v.As<Napi::Buffer<uint8_t>>();
  if (b.Length() == 0) throw Napi::TypeError::New(v.Env(), std::string(what) + " must not be empty");
  return b;
}

/** A non-empty Buffer argument, copied (for work that outlives the call, on a worker thread). */
std::vector<uint8_t> BytesOf(const Napi::Value &v, const char *what) {
  auto b = BufferOf(v, what);
  return std::vector<uint8_t>(b.Data(), b.Data() + b.Length());
}

std::string StringOf(const Napi::Value &v, const char *what) {
  if (!v.IsString()) throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

int ProtocolOf(const Napi::Value &v) {
  if (v.IsUndefined()) return NETLINK_NETFILTER;
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), "protocol must be a number");
  int p = v.As<Napi::Number>().Int32Value();
  if (p != NETLINK_NETFILTER && p != NETLINK_ROUTE) throw Napi::RangeError::New(v.Env(), "protocol must be NETLINK_NETFILTER or NETLINK_ROUTE");
  return p;
}

/** Opens the pod namespace and a netlink socket inside it; -1 with `e` set on failure. */
int PodSocket(const std::string &path, int protocol, size_t batchBytes, SysError *e) {
  int nsfd = OpenPodNetns(path, e);
  if (nsfd < 0) return -1;
  int sock = NetlinkSocketIn(nsfd, protocol, e);
  close(nsfd);
  if (sock >= 0 && !PrepareNetlinkSocket(sock, batchBytes, e)) {
    close(sock);
    return -1;
  }
  return sock;
}

/**
 * A job on a netlink socket inside a pod's namespace, settled as a promise. Subclasses do their
 * socket work in Run() (worker thread) and build the result in Resolve() (JS thread); opening the
 * namespace and socket, and rejecting with the system error, are shared.
 */
class PodNetlinkWorker : public Napi::AsyncWorker {
 public:
  PodNetlinkWorker(Napi::Env env, const char *name, std::string path, int protocol, size_t batchBytes)
      : Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)), path_(std::move(path)),
        protocol_(protocol), batchBytes_(batchBytes) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    int sock = PodSocket(path_, protocol_, batchBytes_, &error_);
    if (sock < 0) {
      failed_ = true;
      return;
    }
    failed_ = !Run(sock);
    close(sock);
  }

  void OnOK() override {
    if (failed_) deferred_.Reject(SysErrorToJs(Env(), error_).Value());
    else Resolve(Env(), deferred_);
  }

  void OnError(const Napi::Error &e) override { deferred_.Reject(e.Value()); }

 protected:
  /** The socket work; false with error_ set on a system failure. */
  virtual bool Run(int sock) = 0;
  /** Settles the promise after a Run() that returned true. */
  virtual void Resolve(Napi::Env env, Napi::Promise::Deferred &deferred) = 0;

  SysError error_;

 private:
  Napi::Promise::Deferred deferred_;
  std::string path_;
  int protocol_;
  size_t batchBytes_;
  bool failed_ = false;
};

/**
 * The kernel refused a message of a batch. The first error is the cause; later ones are usually its
 * consequences (ENOENT for a chain that the failed message would have created), but all are reported.
 */
Napi::Error BatchError(Napi::Env env, const TransactResult &r) {
  const MessageError &first = r.errors.front();
  uint32_t index = first.seq - r.firstSeq;
  std::string code = ErrnoName(first.err);
  std::string msg = "kernel rejected netlink message #" + std::to_string(index) + " (seq " + std::to_string(first.seq) +
                    "): " + code + " " + strerror(first.err);
  if (!first.extack.empty()) msg += " (" + first.extack + ")";
  Napi::Error err = Napi::Error::New(env, msg);
  err.Set("name", Napi::String::New(env, "NetlinkBatchError"));
  err.Set("code", Napi::String::New(env, code));
  err.Set("errno", Napi::Number::New(env, first.err));
  err.Set("index", Napi::Number::New(env, index));
  err.Set("seq", Napi::Number::New(env, first.seq));
  err.Set("extack", Napi::String::New(env, first.extack));
  Napi::Array all = Napi::Array::New(env, r.errors.size());
  for (size_t i = 0; i < r.errors.size(); i++) {
    const MessageError &m = r.errors[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("index", Napi::Number::New(env, m.seq - r.firstSeq));
    o.Set("seq", Napi::Number::New(env, m.seq));
    o.Set("errno", Napi::Number::New(env, m.err));
    o.Set("code", Napi::String::New(env, ErrnoName(m.err)));
    o.Set("extack", Napi::String::New(env, m.extack));
    all.Set(uint32_t(i), o);
  }
  err.Set("errors", all);
  return err;
}

Napi::Object TransactSummary(Napi::Env env, const TransactResult &r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("messages", Napi::Number::New(env, r.messages));
  o.Set("acked", Napi::Number::New(env, r.acked));
  return o;
}

/** applyBatch(path, buffer, protocol?) → Promise<{messages, acked}>; rejects naming the failing message. */
class ApplyWorker : public PodNetlinkWorker {
 public:
  ApplyWorker(Napi::Env env, std::string path, std::vector<uint8_t> batch, int protocol)
      : PodNetlinkWorker(env, "meshcni.applyBatch", std::move(path), protocol, batch.size()), batch_(std::move(batch)) {}

 protected:
  bool Run(int sock) override { return Transact(sock, batch_.data(), batch_.size(), kTimeoutMs, &result_, &error_); }

  void Resolve(Napi::Env env, Napi::Promise::Deferred &deferred) override {
    if (!result_.errors.empty()) deferred.Reject(BatchError(env, result_).Value());
    else deferred.Resolve(TransactSummary(env, result_));
  }

 private:
  std::vector<uint8_t> batch_;
  TransactResult result_;
};

/** dump(path, [requests], protocol?) → Promise<Buffer[]>: each request's replies, DONE excluded. */
class DumpWorker : public PodNetlinkWorker {
 public:
  DumpWorker(Napi::Env env, std::string path, std::vector<std::vector<uint8_t>> requests, int protocol, size_t maxBytes)
      : PodNetlinkWorker(env, "meshcni.dump", std::move(path), protocol, 0), requests_(std::move(requests)),
        maxBytes_(maxBytes) {}

 protected:
  bool Run(int sock) override {
    replies_.resize(requests_.size());
    size_t used = 0;  // the bound covers all the requests of one call together
    for (size_t i = 0; i < requests_.size(); i++) {
      if (!DumpWithRetry(sock, i, maxBytes_ - used)) return false;
      used += replies_[i].size();
    }
    return true;
  }

  void Resolve(Napi::Env env, Napi::Promise::Deferred &deferred) override {
    Napi::Array out = Napi::Array::New(env, replies_.size());
    for (size_t i = 0; i < replies_.size(); i++) {
      out.Set(uint32_t(i), Napi::Buffer<uint8_t>::Copy(env, replies_[i].data(), replies_[i].size()));
    }
    deferred.Resolve(out);
  }

 private:
  // A dump interrupted by a concurrent change is inconsistent: throw it away and ask again.
  bool DumpWithRetry(int sock, size_t i, size_t maxBytes) {
    for (int attempt = 0; attempt < kDumpRetries; attempt++) {
      bool interrupted = false;
      replies_[i].clear();
      if (!Dump(sock, requests_[i], kTimeoutMs, maxBytes, &replies_[i], &interrupted, &error_)) return false;
      if (!interrupted) return true;
    }
    error_ = {EAGAIN, "EAGAIN", "netlink dump kept being interrupted by concurrent changes"};
    return false;
  }

  std::vector<std::vector<uint8_t>> requests_;
  std::vector<std::vector<uint8_t>> replies_;
  size_t maxBytes_;
};

Napi::Value ApplyBatch(const Napi::CallbackInfo &info) {
  auto *w = new ApplyWorker(info.Env(), StringOf(info[0], "netns path"), BytesOf(info[1], "batch"), ProtocolOf(info[2]));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

/**
 * applyBatchInline(path, buffer, protocol?) → {messages, acked}, on the calling (JS) thread: the
 * same work as applyBatch without the two cross-thread wake-ups of the thread pool, which cost more
 * than a small commit itself. For small batches only (the caller decides): the thread blocks for
 * the kernel's commit. The thread enters the pod's namespace only around socket(); no JS runs there.
 */
Napi::Value ApplyBatchInline(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  std::string path = StringOf(info[0], "netns path");
  auto batch = BufferOf(info[1], "batch");
  int protocol = ProtocolOf(info[2]);
  SysError e;
  TransactResult r;
  int sock = PodSocket(path, protocol, batch.Length(), &e);
  if (sock < 0) throw SysErrorToJs(env, e);
  bool ok = Transact(sock, batch.Data(), batch.Length(), kTimeoutMs, &r, &e);
  close(sock);
  if (!ok) throw SysErrorToJs(env, e);
  if (!r.errors.empty()) throw BatchError(env, r);
  return TransactSummary(env, r);
}

Napi::Value DumpRequests(const Napi::CallbackInfo &info) {
  std::string path = StringOf(info[0], "netns path");
  if (!info[1].IsArray()) throw Napi::TypeError::New(info.Env(), "requests must be an array of Buffers");
  Napi::Array arr = info[1].As<Napi::Array>();
  std::vector<std::vector<uint8_t>> requests;
  for (uint32_t i = 0; i < arr.Length(); i++) requests.push_back(BytesOf(arr.Get(i), "dump request"));
  if (!info[3].IsNumber() || info[3].As<Napi::Number>().DoubleValue() < 1 ||
      info[3].As<Napi::Number>().DoubleValue() > double(1u << 30)) {
    throw Napi::RangeError::New(info.Env(), "maxBytes must be a number of bytes from 1 to 1 GiB");
  }
  size_t maxBytes = size_t(info[3].As<Napi::Number>().DoubleValue());
  auto *w = new DumpWorker(info.Env(), std::move(path), std::move(requests), ProtocolOf(info[2]), maxBytes);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

Napi::Object IdentityToJs(Napi::Env env, const NsIdentity &id) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("dev", Napi::BigInt::New(env, uint64_t(id.dev)));
  o.Set("ino", Napi::BigInt::New(env, uint64_t(id.ino)));
  return o;
}

/** netnsIdentity(path) → {dev, ino}; throws ENOENT / ENOTNETNS / EACCES naming the path. */
Napi::Value NetnsIdentity(const Napi::CallbackInfo &info) {
  NsIdentity id;
  SysError e;
  if (!NetnsIdentityOf(StringOf(info[0], "netns path"), &id, &e)) throw SysErrorToJs(info.Env(), e);
  return IdentityToJs(info.Env(), id);
}

/** checkPodNetns(path): throws unless the path is a netns other than the host's own. */
Napi::Value CheckPodNetns(const Napi::CallbackInfo &info) {
  SysError e;
  int fd = OpenPodNetns(StringOf(info[0], "netns path"), &e);
  if (fd < 0) throw SysErrorToJs(info.Env(), e);
  close(fd);
  return info.Env().Undefined();
}

/**
 * netnsOwner(path) → {dev, ino} of the user namespace that owns the network namespace at `path`
 * (NS_GET_USERNS): a netns a non-root user made with its own user namespace is told apart from a
 * pod's, which the initial user namespace owns. Throws naming the path.
 */
Napi::Value NetnsOwner(const Napi::CallbackInfo &info) {
  std::string path = StringOf(info[0], "netns path");
  NsIdentity netns, owner;
  SysError e;
  int fd = OpenNetns(path, &netns, &e);
  if (fd < 0) throw SysErrorToJs(info.Env(), e);
  int userns = ioctl(fd, NS_GET_USERNS);
  if (userns < 0) Fail(&e, "NS_GET_USERNS on", path);
  close(fd);
  if (userns < 0) throw SysErrorToJs(info.Env(), e);
  struct stat st;
  bool ok = fstat(userns, &st) == 0;
  if (!ok) Fail(&e, "cannot stat the owning user namespace of", path);
  close(userns);
  if (!ok) throw SysErrorToJs(info.Env(), e);
  owner.dev = st.st_dev;
  owner.ino = st.st_ino;
  return IdentityToJs(info.Env(), owner);
}

/** peerCredentials(fd) → {pid, uid, gid} of the process at the other end of a unix socket. */
Napi::Value PeerCredentials(const Napi::CallbackInfo &info) {
  if (!info[0].IsNumber()) throw Napi::TypeError::New(info.Env(), "fd must be a number");
  int fd = info[0].As<Napi::Number>().Int32Value();
  struct ucred cred = {};
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    SysError e;
    Fail(&e, "getsockopt(SO_PEERCRED) on fd", std::to_string(fd));
    throw SysErrorToJs(info.Env(), e);
  }
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("pid", Napi::Number::New(info.Env(), cred.pid));
  o.Set("uid", Napi::Number::New(info.Env(), cred.uid));
  o.Set("gid", Napi::Number::New(info.Env(), cred.gid));
  return o;
}

Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  // The host's namespace, read once now on a thread that is in it, before this process ever
  // enters a pod's (see RecordHostNetns).
  RecordHostNetns();
  exports.Set("applyBatch", Napi::Function::New(env, ApplyBatch, "applyBatch"));
  exports.Set("applyBatchInline", Napi::Function::New(env, ApplyBatchInline, "applyBatchInline"));
  exports.Set("dump", Napi::Function::New(env, DumpRequests, "dump"));
  exports.Set("netnsIdentity", Napi::Function::New(env, NetnsIdentity, "netnsIdentity"));
  exports.Set("checkPodNetns", Napi::Function::New(env, CheckPodNetns, "checkPodNetns"));
  exports.Set("netnsOwner", Napi::Function::New(env, NetnsOwner, "netnsOwner"));
  exports.Set("peerCredentials", Napi::Function::New(env, PeerCredentials, "peerCredentials"));
  exports.Set("NETLINK_ROUTE", Napi::Number::New(env, NETLINK_ROUTE));
  exports.Set("NETLINK_NETFILTER", Napi::Number::New(env, NETLINK_NETFILTER));
  return exports;
}

}  // namespace
}  // namespace meshcni

static Napi::Object Init(Napi::Env env, Napi::Object exports) { return meshcni::InitModule(env, exports); }

NODE_API_MODULE(meshcni, Init)
