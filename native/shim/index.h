/* The agent's node-local pod index (written by src/agent/pod-index.ts), read only when the agent
 * cannot be reached: a pod recorded there as not captured may start without it. */
#ifndef MESHCNI_INDEX_H
#define MESHCNI_INDEX_H

#include <stddef.h>

#include "skel.h"

#define INDEX_DEFAULT_PATH "/var/run/meshcni/pod-index"
/* Bounds the agent honours too (src/agent/pod-index.ts): keep them in step. */
#define INDEX_MAX_PODS 10000
#define INDEX_MAX_BYTES (4 * 1024 * 1024)

/* What the index says about one pod. Anything but INDEX_NOT_CAPTURED means: fail closed. */
enum index_verdict { INDEX_NOT_CAPTURED, INDEX_CAPTURED, INDEX_UNKNOWN, INDEX_UNUSABLE };

/* Looks the pod (K8S_POD_NAMESPACE, K8S_POD_NAME, K8S_POD_UID of CNI_ARGS; all three must match) up
 * in the index at `path`. `why` gets a sentence for the operator in every case. */
enum index_verdict index_lookup(const char *path, const struct cni_call *call, char *why, size_t why_len);

/* The agent's mark that meshcni was once ready on this node: `<index path>` + this suffix, a
 * root-only regular file holding exactly INDEX_READY_MAGIC (src/agent/pod-index.ts writes it). */
#define INDEX_READY_SUFFIX ".ready"
#define INDEX_READY_MAGIC "meshcni-ready 1\n"

/* 1 when the index at `path` is whole and well-formed (it may list no pods); else 0 and `why`. */
int index_usable(const char *path, char *why, size_t why_len);

/* 1 when the ready marker next to the index is there and sane; else 0 and `why`. */
int index_ready_marked(const char *index_path, char *why, size_t why_len);

#endif
