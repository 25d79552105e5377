/* Reading the pod index: the whole file or nothing. It must be a root-only regular file of at most
 * INDEX_MAX_BYTES whose last line carries the FNV-1a checksum of everything before it; a truncated,
 * torn or foreign file is unusable, never partly trusted. */
#include "index.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAGIC "meshcni-pod-index 1\n"
#define FIELD_MAX 253

static enum index_verdict say(char *why, size_t len, enum index_verdict v, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, len, fmt, ap);
  va_end(ap);
  return v;
}

static unsigned fnv1a32(const char *p, size_t n) {
  unsigned h = 0x811c9dc5u;
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 0x01000193u;
  return h;
}

/* The index's directory must be ours (or root's) and writable by nobody else, as the agent requires
 * of the directories it trusts (state.ts): otherwise anyone could swap the file. 0 fine, -1 + why. */
static int directory_trusted(const char *path, char *why, size_t why_len) {
  char dir[4097];
  const char *slash = strrchr(path, '/');
  size_t n = slash ? (size_t)(slash - path) : 0;
  if (!slash || n >= sizeof dir)
    return say(why, why_len, INDEX_UNUSABLE, "pod index path %.128s has no directory", path), -1;
  memcpy(dir, path, n);
  dir[n ? n : 1] = '\0';
  if (!n) dir[0] = '/';
  struct stat st;
  if (stat(dir, &st)) return say(why, why_len, INDEX_UNUSABLE, "cannot stat %.128s: %s", dir, strerror(errno)), -1;
  if (S_ISDIR(st.st_mode) && (st.st_uid == geteuid() || st.st_uid == 0) && !(st.st_mode & 022)) return 0;
  say(why, why_len, INDEX_UNUSABLE, "pod index directory %.128s is not root's with mode 0700 or 0755 (mode %o, uid %u)",
      dir, (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid);
  return -1;
}

/* Reads the file into a malloc'd NUL-terminated buffer after checking what it is; NULL + why. */
static char *read_index(const char *path, size_t *len, char *why, size_t why_len) {
  if (directory_trusted(path, why, why_len)) return NULL;
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return say(why, why_len, INDEX_UNUSABLE, "cannot open pod index %.128s: %s", path, strerror(errno)), NULL;
  struct stat st;
  char *buf = NULL;
  if (fstat(fd, &st)) say(why, why_len, INDEX_UNUSABLE, "cannot stat pod index %.128s: %s", path, strerror(errno));
  else if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077))
    say(why, why_len, INDEX_UNUSABLE, "pod index %.128s is not a regular file owned by us with mode 0600", path);
  else if (st.st_size <= 0 || st.st_size > INDEX_MAX_BYTES)
    say(why, why_len, INDEX_UNUSABLE, "pod index %.128s has %lld bytes (1 to %d allowed)", path, (long long)st.st_size, INDEX_MAX_BYTES);
  else if (!(buf = malloc((size_t)st.st_size + 1)))
    say(why, why_len, INDEX_UNUSABLE, "out of memory reading the pod index");
  size_t got = 0;
  while (buf && got < (size_t)st.st_size) {
    ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      say(why, why_len, INDEX_UNUSABLE, "pod index %.128s changed or failed while read: %s", path, n ? strerror(errno) : "short read");
      free(buf), buf = NULL;
    } else
      got += (size_t)n;
  }
  (void)close(fd); /* read-only: close has nothing to report */
  if (buf) buf[got] = '\0', *len = got;
  return buf;
}

static int field_ok(const char *s, size_t n) {
  if (n == 0 || n > FIELD_MAX) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-')) return 0;
  }
  return 1;
}

/* One record line "<S|C> ns name uid" (no newline, NUL-terminated in place): 1 well-formed, 0 not. */
static int parse_record(char *line, char *decision, char *f[3]) {
  if ((line[0] != 'S' && line[0] != 'C') || line[1] != ' ') return 0;
  *decision = line[0];
  char *p = line + 2;
  for (int i = 0; i < 3; i++) {
    char *end = strchr(p, i < 2 ? ' ' : '\0');
    if (!end || !field_ok(p, (size_t)(end - p))) return 0;
    *end = '\0';
    f[i] = p;
    p = end + 1;
  }
  return 1;
}

/* Checks the envelope (magic, checksum line) and returns the body's record lines; NULL if damaged. */
static char *records_of(char *buf, size_t len, long *count) {
  if (len < sizeof MAGIC || memcmp(buf, MAGIC, sizeof MAGIC - 1) || buf[len - 1] != '\n') return NULL;
  buf[len - 1] = '\0';
  char *last = strrchr(buf, '\n');
  if (!last) return NULL;
  last++;
  unsigned want;
  char hex[9];
  if (strlen(last) != 12 || strncmp(last, "end ", 4) || strspn(last + 4, "0123456789abcdef") != 8) return NULL;
  memcpy(hex, last + 4, 8), hex[8] = '\0';
  want = (unsigned)strtoul(hex, NULL, 16);
  if (fnv1a32(buf, (size_t)(last - buf)) != want) return NULL;
  last[-1] = '\0'; /* the body now ends before the checksum line */
  char *p = buf + sizeof MAGIC - 1, *end;
  if (strncmp(p, "pods ", 5)) return NULL;
  errno = 0;
  *count = strtol(p + 5, &end, 10);
  if (errno || end == p + 5 || (*end != '\n' && *end != '\0') || *count < 0 || *count > INDEX_MAX_PODS) return NULL;
  return end;
}

/* What the index text in buf (len bytes, NUL after them; changed in place) says about the pod. */
static enum index_verdict index_decide(char *buf, size_t len, const char *ns, const char *name, const char *uid) {
  long count, seen = 0;
  char *p = records_of(buf, len, &count);
  enum index_verdict v = INDEX_UNKNOWN;
  while (p && *p == '\n' && seen <= count) {
    char *line = p + 1, *nl = strchr(line, '\n'), decision, *f[3];
    if (nl) *nl = '\0';
    if (!parse_record(line, &decision, f)) p = NULL; /* a malformed record spoils the file */
    else {
      seen++;
      /* A second line for the same pod (duplicate or conflicting) spoils the file: no line wins. */
      int match = !strcmp(f[0], ns) && !strcmp(f[1], name) && !strcmp(f[2], uid);
      if (match && v != INDEX_UNKNOWN) p = NULL;
      else if (match) v = decision == 'S' ? INDEX_NOT_CAPTURED : INDEX_CAPTURED;
      if (p) p = nl ? (*nl = '\n', nl) : line + strlen(line);
    }
  }
  return !p || *p != '\0' || seen != count ? INDEX_UNUSABLE : v;
}

enum index_verdict index_lookup(const char *path, const struct cni_call *call, char *why, size_t why_len) {
  char ns[FIELD_MAX + 2], name[FIELD_MAX + 2], uid[FIELD_MAX + 2];
  const char *a = call->env.args;
  if (!cni_arg(a, "K8S_POD_NAMESPACE", ns, sizeof ns) || !cni_arg(a, "K8S_POD_NAME", name, sizeof name) ||
      !cni_arg(a, "K8S_POD_UID", uid, sizeof uid))
    return say(why, why_len, INDEX_UNKNOWN, "CNI_ARGS lacks K8S_POD_NAMESPACE, K8S_POD_NAME or K8S_POD_UID");
  size_t len;
  char *buf = read_index(path, &len, why, why_len);
  if (!buf) return INDEX_UNUSABLE;
  enum index_verdict v = index_decide(buf, len, ns, name, uid);
  free(buf);
  if (v == INDEX_UNUSABLE)
    return say(why, why_len, v, "pod index %.128s is damaged, truncated or lists a pod twice", path);
  if (v == INDEX_CAPTURED) return say(why, why_len, v, "pod index records %.63s/%.128s as captured", ns, name);
  if (v == INDEX_UNKNOWN) return say(why, why_len, v, "pod %.63s/%.128s uid %.64s is not in the pod index", ns, name, uid);
  return say(why, why_len, v, "pod index records %.63s/%.128s uid %.64s as not captured", ns, name, uid);
}

int index_usable(const char *path, char *why, size_t why_len) {
  size_t len;
  char *buf = read_index(path, &len, why, why_len);
  if (!buf) return 0;
  long count, seen = 0;
  char *p = records_of(buf, len, &count);
  while (p && *p == '\n' && seen <= count) {
    char *line = p + 1, *nl = strchr(line, '\n'), decision, *f[3];
    if (nl) *nl = '\0';
    if (!parse_record(line, &decision, f)) p = NULL;
    else {
      seen++;
      p = nl ? (*nl = '\n', nl) : line + strlen(line);
    }
  }
  int ok = p && *p == '\0' && seen == count;
  free(buf);
  if (!ok) say(why, why_len, INDEX_UNUSABLE, "pod index %.128s is damaged or truncated", path);
  return ok;
}

int index_ready_marked(const char *index_path, char *why, size_t why_len) {
  char path[4200];
  if ((size_t)snprintf(path, sizeof path, "%s%s", index_path, INDEX_READY_SUFFIX) >= sizeof path)
    return say(why, why_len, INDEX_UNUSABLE, "pod index path too long"), 0;
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return say(why, why_len, INDEX_UNUSABLE, "no ready meshcni on this node yet (%.128s: %s)", path, strerror(errno)), 0;
  struct stat st;
  char buf[sizeof INDEX_READY_MAGIC];
  ssize_t n = 0;
  int ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() && !(st.st_mode & 077);
  if (ok) n = read(fd, buf, sizeof buf - 1);
  (void)close(fd);
  ok = ok && n == (ssize_t)sizeof INDEX_READY_MAGIC - 1 && !memcmp(buf, INDEX_READY_MAGIC, sizeof INDEX_READY_MAGIC - 1);
  if (!ok) say(why, why_len, INDEX_UNUSABLE, "%.128s is not a root-only ready marker", path);
  return ok;
}
