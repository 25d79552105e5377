/* meshcni: the CNI plug-in the container runtime execs for every pod. It validates the call,
 * answers VERSION itself, passes excluded namespaces through, and forwards everything else to the
 * node agent over its unix socket, printing the agent's answer. A pod never starts uncaptured:
 * ADD fails with "try again later" when the agent cannot be reached; DEL never fails for that. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "skel.h"

#define DEFAULT_SOCKET "/var/run/meshcni/cni.sock"
#define DEFAULT_TIMEOUT_S 5

struct shim_conf {
  const char *socket_path;
  long timeout_ms;
};

static int read_shim_conf(const struct cni_call *call, struct shim_conf *sc) {
  json_object *v = NULL;
  sc->socket_path = DEFAULT_SOCKET;
  sc->timeout_ms = DEFAULT_TIMEOUT_S * 1000L;
  if (json_object_object_get_ex(call->conf, "socketPath", &v)) {
    if (!json_object_is_type(v, json_type_string) || json_object_get_string(v)[0] != '/')
      return cni_error(call->version, CNI_ERR_INVALID_CONFIG, "socketPath must be an absolute path", "");
    sc->socket_path = json_object_get_string(v);
  }
  if (json_object_object_get_ex(call->conf, "timeoutSeconds", &v)) {
    double t = json_object_get_double(v);
    if (!(json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)) || t <= 0 || t > 300)
      return cni_error(call->version, CNI_ERR_INVALID_CONFIG, "timeoutSeconds must be a number from 0 to 300", "");
    sc->timeout_ms = (long)(t * 1000);
  }
  return 0;
}

/* Whether the pod's namespace (K8S_POD_NAMESPACE) is in the config's excludeNamespaces. */
static int namespace_excluded(const struct cni_call *call) {
  char ns[256];
  json_object *list = NULL;
  if (!cni_arg(call->env.args, "K8S_POD_NAMESPACE", ns, sizeof ns)) return 0;
  if (!json_object_object_get_ex(call->conf, "excludeNamespaces", &list) || !json_object_is_type(list, json_type_array)) return 0;
  for (size_t i = 0; i < json_object_array_length(list); i++) {
    json_object *e = json_object_array_get_idx(list, i);
    if (json_object_is_type(e, json_type_string) && !strcmp(json_object_get_string(e), ns)) return 1;
  }
  return 0;
}

static char *request_body(const struct cni_call *call) {
  json_object *o = json_object_new_object();
  json_object_object_add(o, "command", json_object_new_string(call->env.command));
  json_object_object_add(o, "containerId", json_object_new_string(call->env.container_id));
  json_object_object_add(o, "netns", json_object_new_string(call->env.netns));
  json_object_object_add(o, "ifName", json_object_new_string(call->env.ifname));
  json_object_object_add(o, "args", json_object_new_string(call->env.args));
  json_object_object_add(o, "path", json_object_new_string(call->env.path));
  json_object_object_add(o, "config", json_object_get(call->conf));
  char *s = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
  json_object_put(o);
  return s;
}

/* The agent could not be reached: what each command does about it. */
static int agent_unavailable(const struct cni_call *call, const char *why) {
  const char *cmd = call->env.command;
  if (!strcmp(cmd, "DEL")) return 0; /* teardown must never wedge on us */
  if (!strcmp(cmd, "STATUS")) return cni_error(call->version, CNI_ERR_NOT_AVAILABLE, "meshcni agent is not ready", why);
  return cni_error(call->version, CNI_ERR_TRY_AGAIN_LATER, "meshcni agent is unreachable; try again later", why);
}

/* Prints the agent's answer: a result (2xx) or its CNI error JSON (anything else). */
static int relay(const struct cni_call *call, const struct agent_reply *r) {
  if (r->status >= 200 && r->status < 300) {
    if (r->body_len > 0) {
      fwrite(r->body, 1, r->body_len, stdout);
      if (r->body[r->body_len - 1] != '\n') fputc('\n', stdout);
    }
    return 0;
  }
  json_object *err = json_tokener_parse(r->body);
  int is_cni_error = err && json_object_is_type(err, json_type_object) && json_object_object_get_ex(err, "code", NULL);
  if (err) json_object_put(err);
  if (!is_cni_error) {
    char msg[96];
    snprintf(msg, sizeof msg, "meshcni agent answered HTTP %d", r->status);
    return cni_error(call->version, CNI_ERR_INTERNAL, msg, r->body);
  }
  fwrite(r->body, 1, r->body_len, stdout);
  fputc('\n', stdout);
  return 1;
}

int main(void) {
  struct cni_call call = {0};
  int rc = cni_read_env(&call.env);
  if (rc) return rc;
  if (!strcmp(call.env.command, "VERSION")) return cni_print_version();
  if ((rc = cni_read_config(&call))) return rc;
  struct shim_conf sc;
  if ((rc = read_shim_conf(&call, &sc))) return rc;
  const char *cmd = call.env.command;
  int per_pod = !strcmp(cmd, "ADD") || !strcmp(cmd, "CHECK") || !strcmp(cmd, "DEL");
  if (per_pod && namespace_excluded(&call)) return !strcmp(cmd, "ADD") ? cni_echo_prev_result(&call) : 0;

  char *body = request_body(&call);
  struct agent_reply reply = {0};
  char why[512] = "";
  enum agent_result r = agent_post(sc.socket_path, body, strlen(body), sc.timeout_ms, &reply, why, sizeof why);
  free(body);
  if (r == AGENT_PROTOCOL) rc = cni_error(call.version, CNI_ERR_INTERNAL, "bad answer from the meshcni agent", why);
  else if (r != AGENT_OK) rc = agent_unavailable(&call, why);
  else rc = relay(&call, &reply);
  free(reply.body);
  json_object_put(call.conf);
  return rc;
}
