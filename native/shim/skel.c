/* The CNI skeleton: environment, stdin, version negotiation, error JSON and exit codes. */
#include "skel.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Oldest first: a version's index orders it, which the CHECK/STATUS/GC gates rely on. */
static const char *const SUPPORTED[] = {"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"};
#define N_SUPPORTED (sizeof SUPPORTED / sizeof SUPPORTED[0])
#define SUPPORTED_LIST "0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"

int cni_write_all(int fd, const char *buf, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, buf, len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -1;
    buf += n;
    len -= (size_t)n;
  }
  return 0;
}

int cni_print_json(const struct jbuf *b) {
  if (b->failed || !b->data || cni_write_all(STDOUT_FILENO, b->data, b->len) || cni_write_all(STDOUT_FILENO, "\n", 1)) return 1;
  return 0;
}

int cni_error(const char *version, int code, const char *msg, const char *details) {
  struct jbuf b = {0};
  char num[16];
  snprintf(num, sizeof num, "%d", code);
  jbuf_str(&b, "{\"cniVersion\":");
  jbuf_quote(&b, version ? version : CNI_LATEST_VERSION);
  jbuf_str(&b, ",\"code\":");
  jbuf_str(&b, num);
  jbuf_str(&b, ",\"msg\":");
  jbuf_quote(&b, msg);
  if (details && details[0]) {
    jbuf_str(&b, ",\"details\":");
    jbuf_quote(&b, details);
  }
  jbuf_str(&b, "}");
  cni_print_json(&b);
  free(b.data);
  return 1;
}

static int print_version(void) {
  static const char answer[] = "{\"cniVersion\":\"" CNI_LATEST_VERSION "\",\"supportedVersions\":"
                               "[\"0.3.0\",\"0.3.1\",\"0.4.0\",\"1.0.0\",\"1.1.0\"]}\n";
  return cni_write_all(STDOUT_FILENO, answer, sizeof answer - 1) ? 1 : 0;
}

static const char *env_or_empty(const char *name) {
  const char *v = getenv(name);
  return v ? v : "";
}

/* Container IDs and network names: [a-zA-Z0-9][a-zA-Z0-9_.-]*, as libcni requires. */
static int valid_id(const char *s) {
  static const char tail[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-";
  if (!s[0] || !strchr(tail, s[0]) || s[0] == '_' || s[0] == '.' || s[0] == '-') return 0;
  return strspn(s, tail) == strlen(s);
}

/* Interface names: at most 15 bytes, not "." or "..", no '/', ':' or whitespace. */
static int valid_ifname(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 15 || !strcmp(s, ".") || !strcmp(s, "..")) return 0;
  return strcspn(s, "/: \t\n\r\v\f") == n;
}

/* Which variables each command needs, as libcni's skeleton decides it. */
static int check_required(const struct cni_env *e) {
  const char *c = e->command;
  int per_container = !strcmp(c, "ADD") || !strcmp(c, "CHECK") || !strcmp(c, "DEL");
  int needs_netns = strcmp(c, "ADD") == 0 || strcmp(c, "CHECK") == 0;
  char missing[128] = "";
  if (per_container && !e->container_id[0]) strcat(missing, ", CNI_CONTAINERID");
  if (needs_netns && !e->netns[0]) strcat(missing, ", CNI_NETNS");
  if (per_container && !e->ifname[0]) strcat(missing, ", CNI_IFNAME");
  if (per_container && !e->path[0]) strcat(missing, ", CNI_PATH");
  if (missing[0]) {
    char msg[192];
    snprintf(msg, sizeof msg, "required environment variables missing for %s: %s", c, missing + 2);
    return cni_error(NULL, CNI_ERR_INVALID_ENV, msg, "");
  }
  return 0;
}

/* CNI_ARGS as both sides read it: ';'-separated KEY=VALUE elements (empty ones skipped), each key at
 * most once, so that the first and the last of two cannot name different pods. NULL or the problem. */
static const char *args_problem(const char *args, char *msg, size_t len) {
  for (const char *p = args; *p;) {
    size_t n = strcspn(p, ";");
    const char *eq = memchr(p, '=', n);
    if (n && (!eq || eq == p))
      return snprintf(msg, len, "CNI_ARGS element '%.*s' is not KEY=VALUE", (int)(n > 64 ? 64 : n), p), msg;
    for (const char *q = args; n && q < p;) { /* earlier elements: CNI_ARGS is short, this stays cheap */
      size_t m = strcspn(q, ";");
      if (m > (size_t)(eq - p) && q[eq - p] == '=' && !strncmp(q, p, (size_t)(eq - p)))
        return snprintf(msg, len, "CNI_ARGS names key '%.*s' more than once", (int)(eq - p > 64 ? 64 : eq - p), p), msg;
      q += m + (q[m] == ';');
    }
    p += n + (p[n] == ';');
  }
  return NULL;
}

static int check_values(const struct cni_env *e) {
  char msg[192];
  const char *names[] = {"CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH"};
  const char *values[] = {e->container_id, e->netns, e->ifname, e->args, e->path};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    if (json_valid_utf8(values[i])) continue; /* the agent decodes strictly: it must see what we saw */
    snprintf(msg, sizeof msg, "%s is not valid UTF-8", names[i]);
    return cni_error(NULL, CNI_ERR_INVALID_ENV, msg, "");
  }
  if (args_problem(e->args, msg, sizeof msg)) return cni_error(NULL, CNI_ERR_INVALID_ENV, msg, "");
  if (e->container_id[0] && !valid_id(e->container_id)) {
    snprintf(msg, sizeof msg, "CNI_CONTAINERID '%.64s' is not [a-zA-Z0-9][a-zA-Z0-9_.-]*", e->container_id);
    return cni_error(NULL, CNI_ERR_INVALID_ENV, msg, "");
  }
  if (e->ifname[0] && !valid_ifname(e->ifname)) {
    snprintf(msg, sizeof msg, "CNI_IFNAME '%.64s' is not a valid interface name", e->ifname);
    return cni_error(NULL, CNI_ERR_INVALID_ENV, msg, "at most 15 bytes, no '/', ':' or whitespace");
  }
  return 0;
}

static int read_env(struct cni_env *e) {
  e->command = env_or_empty("CNI_COMMAND");
  e->container_id = env_or_empty("CNI_CONTAINERID");
  e->netns = env_or_empty("CNI_NETNS");
  e->ifname = env_or_empty("CNI_IFNAME");
  e->args = env_or_empty("CNI_ARGS");
  e->path = env_or_empty("CNI_PATH");
  const char *c = e->command;
  if (!c[0]) return cni_error(NULL, CNI_ERR_INVALID_ENV, "CNI_COMMAND is not set", "");
  if (strcmp(c, "ADD") && strcmp(c, "DEL") && strcmp(c, "CHECK") && strcmp(c, "VERSION") && strcmp(c, "STATUS") &&
      strcmp(c, "GC")) {
    char msg[160];
    snprintf(msg, sizeof msg, "CNI_COMMAND '%.64s' is not ADD, DEL, CHECK, VERSION, STATUS or GC", c);
    return cni_error(NULL, CNI_ERR_INVALID_ENV, msg, "");
  }
  if (!strcmp(c, "VERSION")) return 0;
  int rc = check_required(e);
  return rc ? rc : check_values(e);
}

/* Reads all of stdin, at most CNI_MAX_STDIN bytes; NUL-terminated buffer or NULL (error printed
 * into *rc). */
static char *read_stdin(size_t *len, int *rc) {
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  while (buf) {
    if (n + 1 == cap) {
      char *bigger = cap > CNI_MAX_STDIN ? NULL : realloc(buf, cap * 2);
      if (!bigger) break;
      buf = bigger;
      cap *= 2;
    }
    ssize_t r = read(STDIN_FILENO, buf + n, cap - n - 1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      free(buf);
      *rc = cni_error(NULL, CNI_ERR_IO, "cannot read the network configuration from stdin", strerror(errno));
      return NULL;
    }
    if (r == 0) {
      buf[n] = 0;
      *len = n;
      return buf;
    }
    n += (size_t)r;
    if (n > CNI_MAX_STDIN) {
      free(buf);
      *rc = cni_error(NULL, CNI_ERR_INVALID_CONFIG, "network configuration on stdin is larger than 1 MiB", "");
      return NULL;
    }
  }
  free(buf);
  *rc = cni_error(NULL, CNI_ERR_INTERNAL, "out of memory reading stdin", "");
  return NULL;
}

/* Strict JSON, one object, nothing after it but whitespace; 0, or the exit code of the error printed. */
static int parse_object(struct jdoc *d, const char *text, size_t len) {
  const char *why = NULL;
  if (len == 0) {
    why = "stdin is empty";
  } else if (json_parse(d, text, len, &why) == 0 && d->v[0].type != J_OBJECT) {
    why = "not a JSON object";
    json_free(d);
  }
  if (!why) return 0;
  return cni_error(NULL, CNI_ERR_DECODE, "network configuration on stdin is not a valid JSON object", why);
}

static int version_index(const char *v) {
  for (size_t i = 0; i < N_SUPPORTED; i++)
    if (!strcmp(v, SUPPORTED[i])) return (int)i;
  return -1;
}

/* cniVersion is one we speak, the network has a name, and the command exists in that version.
 * On success call->version is the supported version's name. */
static int check_config(struct cni_call *call) {
  char msg[160];
  int v = json_get(&call->doc, call->conf, "cniVersion");
  if (v < 0)
    return cni_error(NULL, CNI_ERR_INCOMPATIBLE_VERSION, "network configuration has no cniVersion", "supported: " SUPPORTED_LIST);
  if (call->doc.v[v].type != J_STRING)
    return cni_error(NULL, CNI_ERR_DECODE, "network configuration's cniVersion is not a string", "");
  char *given = json_string(&call->doc, v);
  if (!given) return cni_error(NULL, CNI_ERR_INTERNAL, "out of memory reading cniVersion", "");
  int idx = version_index(given);
  if (idx < 0) snprintf(msg, sizeof msg, "cniVersion '%.32s' is not supported", given);
  free(given);
  if (idx < 0) return cni_error(NULL, CNI_ERR_INCOMPATIBLE_VERSION, msg, "supported: " SUPPORTED_LIST);
  const char *cmd = call->env.command;
  int min = 0;
  if (!strcmp(cmd, "CHECK")) min = version_index("0.4.0");
  if (!strcmp(cmd, "STATUS") || !strcmp(cmd, "GC")) min = version_index("1.1.0");
  if (idx < min) {
    snprintf(msg, sizeof msg, "cniVersion %s does not have %s (needs %s or later)", SUPPORTED[idx], cmd, SUPPORTED[min]);
    return cni_error(SUPPORTED[idx], CNI_ERR_INCOMPATIBLE_VERSION, msg, "");
  }
  int name = json_get(&call->doc, call->conf, "name");
  if (name < 0 || call->doc.v[name].type != J_STRING || call->doc.v[name].end - call->doc.v[name].start <= 2)
    return cni_error(SUPPORTED[idx], CNI_ERR_INVALID_CONFIG, "network configuration has no name", "");
  call->version = SUPPORTED[idx];
  return 0;
}

static int dispatch(const struct cni_plugin *p, const struct cni_call *call) {
  const char *c = call->env.command;
  cni_handler h = !strcmp(c, "ADD") ? p->add : !strcmp(c, "DEL") ? p->del : !strcmp(c, "CHECK") ? p->check
                : !strcmp(c, "STATUS") ? p->status : p->gc;
  return h(call);
}

int cni_main(const struct cni_plugin *plugin) {
  struct cni_call call = {0};
  int rc = read_env(&call.env);
  if (rc) return rc;
  if (!strcmp(call.env.command, "VERSION")) return print_version(); /* stdin is not needed */
  size_t len = 0;
  char *text = read_stdin(&len, &rc);
  if (!text) return rc;
  if (!(rc = parse_object(&call.doc, text, len))) {
    call.conf = 0;
    if (!(rc = check_config(&call))) rc = dispatch(plugin, &call);
    json_free(&call.doc);
  }
  free(text);
  return rc;
}

const char *cni_arg(const char *args, const char *key, char *buf, size_t len) {
  size_t klen = strlen(key);
  for (const char *p = args; *p;) {
    size_t n = strcspn(p, ";");
    if (n > klen && !strncmp(p, key, klen) && p[klen] == '=') {
      size_t vlen = n - klen - 1;
      if (vlen >= len) return NULL;
      memcpy(buf, p + klen + 1, vlen);
      buf[vlen] = 0;
      return buf;
    }
    p += n + (p[n] == ';');
  }
  return NULL;
}
