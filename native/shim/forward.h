/* Forwarding a CNI call to the meshcni agent: HTTP/1.1 POST over a unix socket, with a deadline. */
#ifndef MESHCNI_FORWARD_H
#define MESHCNI_FORWARD_H

#include <stddef.h>

#define MESHCNI_MAX_RESPONSE (4 << 20)

struct agent_reply {
  int status;   /* HTTP status */
  char *body;   /* NUL-terminated, malloc'd */
  size_t body_len;
};

/* Outcome of talking to the agent. On AGENT_UNREACHABLE / AGENT_TIMEOUT / AGENT_PROTOCOL `why`
 * holds a sentence for the error message. */
enum agent_result { AGENT_OK, AGENT_UNREACHABLE, AGENT_TIMEOUT, AGENT_PROTOCOL };

enum agent_result agent_post(const char *socket_path, const char *body, size_t body_len, long timeout_ms,
                             struct agent_reply *reply, char *why, size_t why_len);

#endif
