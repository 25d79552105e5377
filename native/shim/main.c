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

/* The meshcni keys of the network configuration (strings decoded; free with free_shim_conf). */
struct shim_conf {
  char *socket_path;
  long timeout_ms;
  int exclude;     /* index of an array of strings in the document, or -1 */
  char *pod_index; /* the agent's pod index, read only when the agent is unreachable */
};

static void free_shim_conf(struct shim_conf *sc) {
  free(sc->socket_path);
  free(sc->pod_index);
}

static int bad_key(const struct cni_call *call, const char *key, int v, const char *want) {
  char msg[320];
  struct jbuf b = {0};
  jbuf_value(&b, &call->doc, v);
  snprintf(msg, sizeof msg, "%s %.160s must be %s", key, b.data ? b.data : "(value)", want);
  free(b.data);
  return cni_error(call->version, CNI_ERR_INVALID_CONFIG, msg, "");
}

/* An absolute path of at most `max` bytes under `key`, decoded into *out; absent keys keep *out. */
static int read_path(const struct cni_call *call, const char *key, size_t max, const char *want, char **out) {
  int v = json_get(&call->doc, call->conf, key);
  if (v < 0) return 0;
  char *s = json_string(&call->doc, v);
  if (!s || s[0] != '/' || strlen(s) > max) {
    free(s);
    return bad_key(call, key, v, want);
  }
  free(*out);
  *out = s;
  return 0;
}

static int read_timeout(const struct cni_call *call, struct shim_conf *sc) {
  int v = json_get(&call->doc, call->conf, "timeoutSeconds");
  if (v < 0) return 0;
  int numeric = call->doc.v[v].type == J_NUMBER;
  double t = numeric ? json_number(&call->doc, v) : 0;
  if (!numeric || !(t > 0 && t <= MAX_TIMEOUT_S)) return bad_key(call, "timeoutSeconds", v, "a number above 0 and at most 300");
  sc->timeout_ms = (long)(t * 1000);
  if (sc->timeout_ms == 0) sc->timeout_ms = 1;
  return 0;
}

static int read_exclude(const struct cni_call *call, struct shim_conf *sc) {
  int v = json_get(&call->doc, call->conf, "excludeNamespaces");
  if (v < 0) return 0;
  int ok = call->doc.v[v].type == J_ARRAY;
  for (int i = 0, e = v + 1; ok && i < call->doc.v[v].count; i++, e = call->doc.v[e].next) /* linear: next, not index */
    ok = call->doc.v[e].type == J_STRING;
  if (!ok) return bad_key(call, "excludeNamespaces", v, "an array of strings");
  sc->exclude = v;
  return 0;
}

static int read_shim_conf(const struct cni_call *call, struct shim_conf *sc) {
  *sc = (struct shim_conf){.socket_path = strdup(DEFAULT_SOCKET), .timeout_ms = DEFAULT_TIMEOUT_S * 1000L, .exclude = -1,
                           .pod_index = strdup(INDEX_DEFAULT_PATH)};
  if (!sc->socket_path || !sc->pod_index) return cni_error(call->version, CNI_ERR_INTERNAL, "out of memory", "");
  int rc = read_path(call, "socketPath", SUN_PATH_MAX, "an absolute path of at most 107 bytes", &sc->socket_path);
  if (!rc) rc = read_path(call, "podIndexPath", 4096, "an absolute path", &sc->pod_index);
  if (!rc) rc = read_timeout(call, sc);
  if (!rc) rc = read_exclude(call, sc);
  return rc;
}

/* Whether the pod's namespace (K8S_POD_NAMESPACE in CNI_ARGS) is one the config excludes. */
static int namespace_excluded(const struct cni_call *call, const struct shim_conf *sc) {
  char ns[256];
  if (sc->exclude < 0 || !cni_arg(call->env.args, "K8S_POD_NAMESPACE", ns, sizeof ns)) return 0;
  /* One pass over the array by each element's `next`: json_index would walk from the start each time
   * (quadratic in the list's length), and json_string_is compares without allocating. */
  int excluded = 0;
  for (int i = 0, e = sc->exclude + 1; !excluded && i < call->doc.v[sc->exclude].count; i++, e = call->doc.v[e].next)
    excluded = json_string_is(&call->doc, e, ns);
  return excluded;
}

/* A chained plug-in with nothing to do hands the previous result on, in the config's version. */
static int echo_prev_result(const struct cni_call *call) {
  int prev = json_get(&call->doc, call->conf, "prevResult");
  if (prev >= 0 && call->doc.v[prev].type == J_NULL) prev = -1;
  else if (prev >= 0 && call->doc.v[prev].type != J_OBJECT) return bad_key(call, "prevResult", prev, "an object");
  struct jbuf b = {0};
  jbuf_str(&b, "{\"cniVersion\":");
  jbuf_quote(&b, call->version);
  for (int m = 0, k = prev + 1; prev >= 0 && m < call->doc.v[prev].count; m++) {
    int v = k + 1;
    if (!json_string_is(&call->doc, k, "cniVersion")) {
      jbuf_raw(&b, ",", 1);
      jbuf_value(&b, &call->doc, k);
      jbuf_raw(&b, ":", 1);
      jbuf_value(&b, &call->doc, v);
    }
    k = call->doc.v[v].next;
  }
  jbuf_str(&b, "}");
  int rc = b.failed ? cni_error(call->version, CNI_ERR_INTERNAL, "out of memory", "") : cni_print_json(&b);
  free(b.data);
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
  if (o == AGENT_BAD_ANSWER) return cni_error(call->version, CNI_ERR_INTERNAL, "meshcni agent gave an unusable answer", why);
  return cni_error(call->version, CNI_ERR_TRY_AGAIN_LATER, "meshcni agent is unreachable; try again later", why);
}

/* A non-2xx body is printed (minified) when it is a CNI error; anything else is wrapped in one. */
static int relay_failure(const struct cni_call *call, const struct agent_reply *r) {
  struct jdoc d;
  const char *why;
  if (json_parse(&d, r->body, r->body_len, &why) == 0) {
    int code = json_get(&d, 0, "code"), msg = json_get(&d, 0, "msg");
    int is_cni_error = d.v[0].type == J_OBJECT && code >= 0 && d.v[code].type == J_NUMBER && d.v[code].integer && msg >= 0 &&
                       d.v[msg].type == J_STRING;
    struct jbuf b = {0};
    if (is_cni_error) jbuf_value(&b, &d, 0);
    int printed = is_cni_error && !b.failed;
    if (printed) cni_print_json(&b);
    free(b.data);
    json_free(&d);
    if (printed) return 1;
  }
  char text[64], details[320];
  snprintf(text, sizeof text, "meshcni agent answered HTTP %d", r->status);
  snprintf(details, sizeof details, "%.300s", r->body);
  return cni_error(call->version, CNI_ERR_INTERNAL, text, details);
}

/* 1 when the whole body is one JSON object (whitespace around it allowed), else 0. */
static int is_json_object(const char *body, size_t len) {
  struct jdoc d;
  const char *why;
  if (json_parse(&d, body, len, &why) != 0) return 0;
  int ok = d.v[0].type == J_OBJECT;
  json_free(&d);
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

/*
 * STATUS (CNI 1.1): the runtime asks every few seconds and marks the node's network NotReady while
 * any plug-in fails, which blocks every new pod and, after 300 s, evicts the node's pods. So it
 * fails (50) only while this node has never had a ready meshcni (the bootstrap gate: no pod is
 * sent here before the agent first gets ready, taint or no taint). Once the agent was ready and
 * its pod index is whole, an outage answers ready: ADD itself still fails closed (code 11) for
 * every pod that needs capture, and lets through the pods the index records as not captured.
 */
static int status_answer(const struct cni_call *call, const struct shim_conf *sc, enum agent_outcome o,
                         const struct agent_reply *r) {
  if (o == AGENT_OK && r->status >= 200 && r->status <= 299) return relay(call, r);
  char why[400], line[800];
  snprintf(why, sizeof why, "%.200s", o == AGENT_OK ? "the agent is not ready" : r->why);
  char gate[300];
  if (!index_ready_marked(sc->pod_index, gate, sizeof gate) || !index_usable(sc->pod_index, gate, sizeof gate)) {
    snprintf(line, sizeof line, "%s; %s", why, gate);
    return cni_error(call->version, CNI_ERR_NOT_AVAILABLE, "meshcni agent is not available", line);
  }
  int n = snprintf(line, sizeof line, "meshcni: STATUS ready without the agent (%s): it was ready before and the pod index is whole\n", why);
  (void)cni_write_all(STDERR_FILENO, line, n < (int)sizeof line ? (size_t)n : sizeof line - 1);
  return 0;
}

/* The request body: the CNI_* environment and the configuration as given (minified). */
static void request(const struct cni_call *call, struct jbuf *b) {
  const struct cni_env *e = &call->env;
  const char *keys[] = {"command", "containerId", "netns", "ifName", "args", "path"};
  const char *values[] = {e->command, e->container_id, e->netns, e->ifname, e->args, e->path};
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
    jbuf_str(b, i ? ",\"" : "{\"");
    jbuf_str(b, keys[i]);
    jbuf_str(b, "\":");
    jbuf_quote(b, values[i]);
  }
  jbuf_str(b, ",\"config\":");
  jbuf_value(b, &call->doc, call->conf);
  jbuf_str(b, "}");
}

static int forward(const struct cni_call *call, const struct shim_conf *sc) {
  struct jbuf req = {0};
  request(call, &req);
  if (req.failed) {
    free(req.data);
    return cni_error(call->version, CNI_ERR_INTERNAL, "out of memory building the request", "");
  }
  struct agent_reply reply = {0};
  enum agent_outcome o = agent_post(sc->socket_path, req.data, req.len, sc->timeout_ms, &reply);
  free(req.data);
  int rc = !strcmp(call->env.command, "STATUS") ? status_answer(call, sc, o, &reply)
           : o == AGENT_OK                      ? relay(call, &reply)
                                                : agent_unavailable(call, sc, o, reply.why);
  free(reply.body);
  return rc;
}

static int cmd_add(const struct cni_call *call) {
  struct shim_conf sc;
  int rc = read_shim_conf(call, &sc);
  if (!rc) rc = namespace_excluded(call, &sc) ? echo_prev_result(call) : forward(call, &sc);
  free_shim_conf(&sc);
  return rc;
}

/* Nothing was set up for an excluded pod, so there is nothing to check. */
static int cmd_check(const struct cni_call *call) {
  struct shim_conf sc;
  int rc = read_shim_conf(call, &sc);
  if (!rc) rc = namespace_excluded(call, &sc) ? 0 : forward(call, &sc);
  free_shim_conf(&sc);
  return rc;
}

/* DEL, STATUS and GC always go to the agent: DEL lets it forget a pod even when the exclusion list
 * changed since ADD. */
static int cmd_forward(const struct cni_call *call) {
  struct shim_conf sc;
  int rc = read_shim_conf(call, &sc);
  if (!rc) rc = forward(call, &sc);
  free_shim_conf(&sc);
  return rc;
}

int main(void) {
  static const struct cni_plugin meshcni = {
      .add = cmd_add, .del = cmd_forward, .check = cmd_check, .status = cmd_forward, .gc = cmd_forward};
  return cni_main(&meshcni);
}
