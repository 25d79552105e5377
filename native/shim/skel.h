/* The CNI skeleton: environment, stdin, version negotiation and error JSON. Knows nothing of the
 * agent; forward.c does the talking. */
#ifndef MESHCNI_SKEL_H
#define MESHCNI_SKEL_H

#include <json-c/json.h>

/* CNI error codes (spec: "Error"). */
enum {
  CNI_ERR_INCOMPATIBLE_VERSION = 1,
  CNI_ERR_INVALID_ENV = 4,
  CNI_ERR_IO = 5,
  CNI_ERR_DECODE = 6,
  CNI_ERR_INVALID_CONFIG = 7,
  CNI_ERR_TRY_AGAIN_LATER = 11,
  CNI_ERR_NOT_AVAILABLE = 50,
  CNI_ERR_INTERNAL = 999,
};

#define MESHCNI_MAX_STDIN (1 << 20)

struct cni_env {
  const char *command;
  const char *container_id;
  const char *netns;
  const char *ifname;
  const char *args;
  const char *path;
};

/* Everything the runtime gave us, validated. `conf` owns the parsed stdin object. */
struct cni_call {
  struct cni_env env;
  json_object *conf;
  const char *version;
};

/* Prints CNI error JSON on stdout and returns the exit code (1). */
int cni_error(const char *version, int code, const char *msg, const char *details);

/* Fills env from CNI_* variables; returns 0 or prints the error and returns its exit code. */
int cni_read_env(struct cni_env *env);

/* Reads and parses stdin into call->conf, checks cniVersion; 0 or an exit code (error printed). */
int cni_read_config(struct cni_call *call);

/* VERSION's answer. */
int cni_print_version(void);

/* Value of KEY in CNI_ARGS ("A=1;B=2"), copied into buf; returns buf or NULL. */
const char *cni_arg(const char *args, const char *key, char *buf, size_t len);

/* Prints prevResult in the configured version (or a bare result); returns 0. */
int cni_echo_prev_result(const struct cni_call *call);

#endif
