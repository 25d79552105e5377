/* The CNI skeleton: environment, stdin, version negotiation and error JSON. */
#include "skel.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const SUPPORTED[] = {"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"};
#define NSUPPORTED (sizeof SUPPORTED / sizeof SUPPORTED[0])

static void print_json(json_object *o) {
  const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
  fputs(s, stdout);
  fputc('\n', stdout);
  fflush(stdout);
}

int cni_error(const char *version, int code, const char *msg, const char *details) {
  json_object *o = json_object_new_object();
  json_object_object_add(o, "cniVersion", json_object_new_string(version ? version : "1.1.0"));
  json_object_object_add(o, "code", json_object_new_int(code));
  json_object_object_add(o, "msg", json_object_new_string(msg));
  if (details && details[0]) json_object_object_add(o, "details", json_object_new_string(details));
  print_json(o);
  json_object_put(o);
  return 1;
}

int cni_print_version(void) {
  json_object *o = json_object_new_object();
  json_object *list = json_object_new_array();
  for (size_t i = 0; i < NSUPPORTED; i++) json_object_array_add(list, json_object_new_string(SUPPORTED[i]));
  json_object_object_add(o, "cniVersion", json_object_new_string("1.1.0"));
  json_object_object_add(o, "supportedVersions", list);
  print_json(o);
  json_object_put(o);
  return 0;
}

static const char *env_or_empty(const char *name) {
  const char *v = getenv(name);
  return v ? v : "";
}

int cni_read_env(struct cni_env *env) {
  env->command = env_or_empty("CNI_COMMAND");
  env->container_id = env_or_empty("CNI_CONTAINERID");
  env->netns = env_or_empty("CNI_NETNS");
  env->ifname = env_or_empty("CNI_IFNAME");
  env->args = env_or_empty("CNI_ARGS");
  env->path = env_or_empty("CNI_PATH");
  const char *c = env->command;
  if (!c[0]) return cni_error(NULL, CNI_ERR_INVALID_ENV, "CNI_COMMAND is not set", "");
  int known = !strcmp(c, "ADD") || !strcmp(c, "DEL") || !strcmp(c, "CHECK") || !strcmp(c, "VERSION") ||
              !strcmp(c, "STATUS") || !strcmp(c, "GC");
  if (!known) {
    char msg[256];
    snprintf(msg, sizeof msg, "CNI_COMMAND '%.64s' is not one of ADD, DEL, CHECK, VERSION, STATUS, GC", c);
    return cni_error(NULL, CNI_ERR_INVALID_ENV, msg, "");
  }
  int per_container = !strcmp(c, "ADD") || !strcmp(c, "DEL") || !strcmp(c, "CHECK");
  if (per_container && !env->container_id[0]) return cni_error(NULL, CNI_ERR_INVALID_ENV, "CNI_CONTAINERID is not set", "");
  if (per_container && !env->ifname[0]) return cni_error(NULL, CNI_ERR_INVALID_ENV, "CNI_IFNAME is not set", "");
  if ((!strcmp(c, "ADD") || !strcmp(c, "CHECK")) && !env->netns[0]) return cni_error(NULL, CNI_ERR_INVALID_ENV, "CNI_NETNS is not set", "");
  return 0;
}

/* Reads all of stdin (bounded); returns a NUL-terminated buffer or NULL with *err set. */
static char *read_stdin(size_t *len, const char **err) {
  size_t cap = 8192, n = 0;
  char *buf = malloc(cap);
  if (!buf) return *err = "out of memory", NULL;
  for (;;) {
    if (n + 1 >= cap) {
      cap *= 2;
      char *bigger = realloc(buf, cap);
      if (!bigger) return free(buf), *err = "out of memory", NULL;
      buf = bigger;
    }
    ssize_t r = read(STDIN_FILENO, buf + n, cap - n - 1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return free(buf), *err = "cannot read the network configuration from stdin", NULL;
    if (r == 0) break;
    n += (size_t)r;
    if (n > MESHCNI_MAX_STDIN) {
      free(buf);
      return *err = "network configuration on stdin exceeds 1 MiB", NULL;
    }
  }
  buf[n] = 0;
  *len = n;
  return buf;
}

int cni_read_config(struct cni_call *call) {
  size_t len = 0;
  const char *err = NULL;
  char *text = read_stdin(&len, &err);
  if (!text) return cni_error(NULL, CNI_ERR_IO, err, "");
  json_tokener *tok = json_tokener_new();
  json_object *conf = json_tokener_parse_ex(tok, text, (int)len);
  enum json_tokener_error jerr = json_tokener_get_error(tok);
  json_tokener_free(tok);
  free(text);
  if (jerr != json_tokener_success || !conf || !json_object_is_type(conf, json_type_object)) {
    if (conf) json_object_put(conf);
    return cni_error(NULL, CNI_ERR_DECODE, "network configuration on stdin is not a JSON object",
                     jerr != json_tokener_success ? json_tokener_error_desc(jerr) : "");
  }
  json_object *v = NULL;
  if (!json_object_object_get_ex(conf, "cniVersion", &v) || !json_object_is_type(v, json_type_string)) {
    json_object_put(conf);
    return cni_error(NULL, CNI_ERR_DECODE, "network configuration has no cniVersion string", "");
  }
  const char *version = json_object_get_string(v);
  int ok = 0;
  for (size_t i = 0; i < NSUPPORTED; i++) ok |= !strcmp(version, SUPPORTED[i]);
  if (!ok) {
    char msg[160];
    snprintf(msg, sizeof msg, "cniVersion '%.32s' is not supported", version);
    int rc = cni_error("1.1.0", CNI_ERR_INCOMPATIBLE_VERSION, msg, "supported: 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0");
    json_object_put(conf);
    return rc;
  }
  call->conf = conf;
  call->version = version;
  return 0;
}

const char *cni_arg(const char *args, const char *key, char *buf, size_t len) {
  size_t klen = strlen(key);
  for (const char *p = args; p && *p;) {
    const char *end = strchr(p, ';');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    if (n > klen && !strncmp(p, key, klen) && p[klen] == '=') {
      size_t vlen = n - klen - 1;
      if (vlen >= len) vlen = len - 1;
      memcpy(buf, p + klen + 1, vlen);
      buf[vlen] = 0;
      return buf;
    }
    p = end ? end + 1 : NULL;
  }
  return NULL;
}

int cni_echo_prev_result(const struct cni_call *call) {
  json_object *prev = NULL;
  json_object *out;
  if (json_object_object_get_ex(call->conf, "prevResult", &prev) && json_object_is_type(prev, json_type_object)) {
    out = json_object_get(prev);
  } else {
    out = json_object_new_object();
  }
  json_object_object_add(out, "cniVersion", json_object_new_string(call->version));
  print_json(out);
  json_object_put(out);
  return 0;
}
