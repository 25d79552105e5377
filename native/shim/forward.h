/* Forwarding to the meshcni agent: one HTTP/1.1 POST over a unix socket, under one deadline. */
#ifndef MESHCNI_FORWARD_H
#define MESHCNI_FORWARD_H

#include <stddef.h>

#define AGENT_MAX_RESPONSE (4 * 1024 * 1024)

/* How the exchange ended. DOWN: nobody answered (no socket, refused, closed before a status line);
 * TIMEOUT: the deadline passed; BAD_ANSWER: an answer that is not usable HTTP. */
enum agent_outcome { AGENT_OK, AGENT_DOWN, AGENT_TIMEOUT, AGENT_BAD_ANSWER };

struct agent_reply {
  int status;      /* HTTP status code */
  char *body;      /* malloc'd, NUL-terminated; free it */
  size_t body_len;
  char why[256];   /* for anything but AGENT_OK: a sentence naming what failed */
};

/* POSTs `body` (JSON) to /v1/cni on the agent's socket, all of it within timeout_ms. */
enum agent_outcome agent_post(const char *socket_path, const char *body, size_t body_len, long timeout_ms,
                              struct agent_reply *reply);

#endif
