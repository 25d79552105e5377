/* meshcni: the CNI plug-in the container runtime execs for every pod, chained after the primary
 * CNI. It passes excluded namespaces through and forwards everything else to the node agent over
 * its unix socket, printing the agent's answer. A pod never starts uncaptured (ADD fails with
 * "try again later" when the agent cannot be reached); teardown never wedges (DEL succeeds). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "forward.h"
#include "index.h"
#include "skel.h"

#define DEFAULT_SOCKET "/var/run/meshcni/cni.sock"
#define DEFAULT_TIMEOUT_S 5
#define MAX_TIMEOUT_S 300
#define SUN_PATH_MAX 107 /* sizeof sockaddr_un.sun_path, less the NUL */

/* The meshcni keys of the network configuration. */
struct shim_conf {
  const char *socket_path;
  long timeout_ms;
  json_object *exclude; /* array of strings, or NULL */
  const char *pod_index; /* the agent's pod index, read only when the agent is unreachable */
};

static int bad_key(const struct cni_call *call, const char *key, json_object *v, const char *want) {
  char msg[320];
  snprintf(msg, sizeof msg, "%s %.160s must be %s", key, json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN), want);
  return cni_error(call->version, CNI_ERR_INVALID_CONFIG, msg, "");
}

static int read_socket_path(const struct cni_call *call, struct shim_conf *sc) {
  json_object *v;
  if (!json_object_object_get_ex(call->conf, "socketPath", &v)) return 0;
  const char *s = json_object_get_string(v);
  if (!json_object_is_type(v, json_type_string) || s[0] != '/' || strlen(s) > SUN_PATH_MAX)
    return bad_key(call, "socketPath", v, "an absolute path of at most 107 bytes");
  sc->socket_path = s;
  return 0;
}

static int read_pod_index(const struct cni_call *call, struct shim_conf *sc) {
  json_object *v;
  if (!json_object_object_get_ex(call->conf, "podIndexPath", &v)) return 0;
  const char *s = json_object_get_string(v);
  if (!json_object_is_type(v, json_type_string) || s[0] != '/' || strlen(s) > 4096)
    return bad_key(call, "podIndexPath", v, "an absolute path");
  sc->pod_index = s;
  return 0;
}

static int read_timeout(const struct cni_call *call, struct shim_conf *sc) {
  json_object *v;
  if (!json_object_object_get_ex(call->conf, "timeoutSeconds", &v)) return 0;
  int numeric = json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double);
  double t = numeric ? json_object_get_double(v) : 0;
  if (!numeric || !(t > 0 && t <= MAX_TIMEOUT_S)) return bad_key(call, "timeoutSeconds", v, "a number above 0 and at most 300");
  sc->timeout_ms = (long)(t * 1000);
  if (sc->timeout_ms == 0) sc->timeout_ms = 1;
  return 0;
}

static int read_exclude(const struct cni_call *call, struct shim_conf *sc) {
  json_object *v;
  if (!json_object_object_get_ex(call->conf, "excludeNamespaces", &v)) return 0;
  int ok = json_object_is_type(v, json_type_array);
  for (size_t i = 0; ok && i < json_object_array_length(v); i++)
    ok = json_object_is_type(json_object_array_get_idx(v, i), json_type_string);
  if (!ok) return bad_key(call, "excludeNamespaces", v, "an array of strings");
  sc->exclude = v;
  return 0;
}

static int read_shim_conf(const struct cni_call *call, struct shim_conf *sc) {
  *sc = (struct shim_conf){.socket_path = DEFAULT_SOCKET, .timeout_ms = DEFAULT_TIMEOUT_S * 1000L, .pod_index = INDEX_DEFAULT_PATH};
  int rc = read_socket_path(call, sc);
  if (!rc) rc = read_pod_index(call, sc);
  if (!rc) rc = read_timeout(call, sc);
  if (!rc) rc = read_exclude(call, sc);
  return rc;
}

/* Whether the pod's namespace (K8S_POD_NAMESPACE in CNI_ARGS) is one the config excludes. */
static int namespace_excluded(const struct cni_call *call, const struct shim_conf *sc) {
  char ns[256];
  if (!sc->exclude || !cni_arg(call->env.args, "K8S_POD_NAMESPACE", ns, sizeof ns)) return 0;
  for (size_t i = 0; i < json_object_array_length(sc->exclude); i++)
    if (!strcmp(json_object_get_string(json_object_array_get_idx(sc->exclude, i)), ns)) return 1;
  return 0;
}

/* A chained plug-in with nothing to do hands the previous result on, in the config's version. */
static int echo_prev_result(const struct cni_call *call) {
  json_object *prev;
  if (!json_object_object_get_ex(call->conf, "prevResult", &prev) || json_object_is_type(prev, json_type_null))
    prev = NULL;
  else if (!json_object_is_type(prev, json_type_object))
    return bad_key(call, "prevResult", prev, "an object");
  json_object *out = prev ? json_object_get(prev) : json_object_new_object();
  if (!out) return cni_error(call->version, CNI_ERR_INTERNAL, "out of memory", "");
  json_object_object_add(out, "cniVersion", json_object_new_string(call->version));
  int rc = cni_print_json(out);
  json_object_put(out);
  return rc;
}

/* ADD and CHECK of a pod the agent's index records as not captured need nothing from the agent. */
static int index_passes(const struct cni_call *call, const struct shim_conf *sc, const char *why) {
  char verdict[400], line[800];
  if (strcmp(call->env.command, "ADD") && strcmp(call->env.command, "CHECK")) return 0;
  int pass = index_lookup(sc->pod_index, call, verdict, sizeof verdict) == INDEX_NOT_CAPTURED;
  int n = snprintf(line, sizeof line, "meshcni: %s of %.64s %s without the agent (%.200s): %s\n", call->env.command,
                   call->env.container_id, pass ? "passed" : "refused", why, verdict);
  (void)cni_write_all(STDERR_FILENO, line, n < (int)sizeof line ? (size_t)n : sizeof line - 1);
  return pass;
}

/* The agent was not there (or not sane): what each command does about it. */
static int agent_unavailable(const struct cni_call *call, const struct shim_conf *sc, enum agent_outcome o, const char *why) {
  const char *cmd = call->env.command;
  if (o != AGENT_BAD_ANSWER && index_passes(call, sc, why)) return strcmp(cmd, "ADD") ? 0 : echo_prev_result(call);
  if (!strcmp(cmd, "DEL")) { /* teardown must never wedge on us; leave a trace on stderr */
    char line[400];
    int n = snprintf(line, sizeof line, "meshcni: DEL of %.64s done without the agent: %s\n", call->env.container_id, why);
    (void)cni_write_all(STDERR_FILENO, line, n < (int)sizeof line ? (size_t)n : sizeof line - 1);
    return 0;
  }
  if (!strcmp(cmd, "STATUS")) return cni_error(call->version, CNI_ERR_NOT_AVAILABLE, "meshcni agent is not available", why);
  if (o == AGENT_BAD_ANSWER) return cni_error(call->version, CNI_ERR_INTERNAL, "meshcni agent gave an unusable answer", why);
  return cni_error(call->version, CNI_ERR_TRY_AGAIN_LATER, "meshcni agent is unreachable; try again later", why);
}

/* A non-2xx body is printed as it is when it is a CNI error; anything else is wrapped in one. */
static int relay_failure(const struct cni_call *call, const struct agent_reply *r) {
  json_object *e = json_tokener_parse(r->body), *code, *msg;
  int is_cni_error = e && json_object_is_type(e, json_type_object) && json_object_object_get_ex(e, "code", &code) &&
                     json_object_is_type(code, json_type_int) && json_object_object_get_ex(e, "msg", &msg) &&
                     json_object_is_type(msg, json_type_string);
  int rc = is_cni_error ? (cni_print_json(e), 1) : 0;
  json_object_put(e);
  if (rc) return rc;
  char text[64], details[320];
  snprintf(text, sizeof text, "meshcni agent answered HTTP %d", r->status);
  snprintf(details, sizeof details, "%.300s", r->body);
  return cni_error(call->version, CNI_ERR_INTERNAL, text, details);
}

/* 1 when the whole body is one JSON object (trailing whitespace allowed), else 0. */
static int is_json_object(const char *body, size_t len) {
  if (len > INT_MAX) return 0;
  json_tokener *tok = json_tokener_new();
  if (!tok) return 0;
  json_object *o = json_tokener_parse_ex(tok, body, (int)len);
  size_t used = json_tokener_get_error(tok) == json_tokener_success ? json_tokener_get_parse_end(tok) : 0;
  int ok = o && json_object_is_type(o, json_type_object) && used > 0;
  while (ok && used < len) ok = body[used] == ' ' || body[used] == '\n' || body[used] == '\r' || body[used] == '\t' ? (used++, 1) : 0;
  json_object_put(o);
  json_tokener_free(tok);
  return ok;
}

static int relay(const struct cni_call *call, const struct agent_reply *r) {
  if (r->status < 200 || r->status > 299) return relay_failure(call, r);
  if (r->body_len == 0) return 0;
  /* A success the runtime cannot parse is no success: report it instead of printing it. */
  if (!is_json_object(r->body, r->body_len)) {
    char details[320];
    snprintf(details, sizeof details, "HTTP %d, body: %.300s", r->status, r->body);
    return cni_error(call->version, CNI_ERR_INTERNAL, "agent answered non-JSON", details);
  }
  if (cni_write_all(STDOUT_FILENO, r->body, r->body_len)) return 1;
  return r->body[r->body_len - 1] == '\n' ? 0 : (cni_write_all(STDOUT_FILENO, "\n", 1) ? 1 : 0);
}

/* The request body: the CNI_* environment and the configuration as parsed. */
static json_object *request(const struct cni_call *call) {
  json_object *o = json_object_new_object();
  if (!o) return NULL;
  json_object_object_add(o, "command", json_object_new_string(call->env.command));
  json_object_object_add(o, "containerId", json_object_new_string(call->env.container_id));
  json_object_object_add(o, "netns", json_object_new_string(call->env.netns));
  json_object_object_add(o, "ifName", json_object_new_string(call->env.ifname));
  json_object_object_add(o, "args", json_object_new_string(call->env.args));
  json_object_object_add(o, "path", json_object_new_string(call->env.path));
  json_object_object_add(o, "config", json_object_get(call->conf));
  return o;
}

static int forward(const struct cni_call *call, const struct shim_conf *sc) {
  json_object *req = request(call);
  size_t len = 0;
  int flags = JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE;
  const char *body = req ? json_object_to_json_string_length(req, flags, &len) : NULL;
  if (!body) {
    json_object_put(req);
    return cni_error(call->version, CNI_ERR_INTERNAL, "out of memory building the request", "");
  }
  struct agent_reply reply = {0};
  enum agent_outcome o = agent_post(sc->socket_path, body, len, sc->timeout_ms, &reply);
  json_object_put(req);
  int rc = o == AGENT_OK ? relay(call, &reply) : agent_unavailable(call, sc, o, reply.why);
  free(reply.body);
  return rc;
}

static int cmd_add(const struct cni_call *call) {
  struct shim_conf sc;
  int rc = read_shim_conf(call, &sc);
  if (rc) return rc;
  return namespace_excluded(call, &sc) ? echo_prev_result(call) : forward(call, &sc);
}

/* Nothing was set up for an excluded pod, so there is nothing to check. */
static int cmd_check(const struct cni_call *call) {
  struct shim_conf sc;
  int rc = read_shim_conf(call, &sc);
  if (rc) return rc;
  return namespace_excluded(call, &sc) ? 0 : forward(call, &sc);
}

/* DEL, STATUS and GC always go to the agent: DEL lets it forget a pod even when the exclusion list
 * changed since ADD. */
static int cmd_forward(const struct cni_call *call) {
  struct shim_conf sc;
  int rc = read_shim_conf(call, &sc);
  return rc ? rc : forward(call, &sc);
}

int main(void) {
  static const struct cni_plugin meshcni = {
      .add = cmd_add, .del = cmd_forward, .check = cmd_check, .status = cmd_forward, .gc = cmd_forward};
  return cni_main(&meshcni);
}
