/* The CNI skeleton: environment, stdin, version negotiation, error JSON and exit codes. It knows
 * nothing of the agent; a plug-in hands it one handler per command (see cni_main). */
#ifndef MESHCNI_SKEL_H
#define MESHCNI_SKEL_H

#include <stddef.h>
#include "json.h"

/* CNI error codes (spec, "Error"). */
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

#define CNI_MAX_STDIN (1024 * 1024)
#define CNI_LATEST_VERSION "1.1.0"

/* The CNI_* environment; absent variables are empty strings, never NULL. */
struct cni_env {
  const char *command;
  const char *container_id;
  const char *netns;
  const char *ifname;
  const char *args;
  const char *path;
};

/* One validated invocation. `doc` is the parsed stdin, `conf` its root object's index; `version`
 * is its cniVersion, decoded. */
struct cni_call {
  struct cni_env env;
  struct jdoc doc;
  int conf;
  const char *version;
};

/* A handler does the command and returns the process exit code, having printed its output (a
 * result, nothing, or an error through cni_error). */
typedef int (*cni_handler)(const struct cni_call *call);

struct cni_plugin {
  cni_handler add, del, check, status, gc;
};

/* Runs one CNI invocation: validates env and stdin, answers VERSION, dispatches the rest. */
int cni_main(const struct cni_plugin *plugin);

/* Prints `{"cniVersion","code","msg","details"}` on stdout; returns the exit code (1). */
int cni_error(const char *version, int code, const char *msg, const char *details);

/* Prints JSON text and a newline on stdout; 0, or 1 if stdout (or building the text) failed. */
int cni_print_json(const struct jbuf *b);

/* Writes all of buf to fd (partial writes, EINTR); 0 or -1 with errno set. */
int cni_write_all(int fd, const char *buf, size_t len);

/* Copies the value of KEY from CNI_ARGS ("A=1;B=2") into buf; buf, or NULL when absent or too long. */
const char *cni_arg(const char *args, const char *key, char *buf, size_t len);

#endif
