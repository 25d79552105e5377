/* The pod index reader (index.c) on any file contents, for a fixed pod. Whatever the bytes, the
 * verdict is one of the four, and an index whose envelope is damaged is never trusted. */
#include "../native/shim/index.c"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0 || size > INDEX_MAX_BYTES) return 0; /* read_index refuses these before parsing */
  char *buf = malloc(size + 1);
  if (!buf) return 0;
  memcpy(buf, data, size);
  buf[size] = '\0';
  enum index_verdict v = index_decide(buf, size, "shop", "cart-7d9", "u-1");
  if (v != INDEX_UNUSABLE && v != INDEX_UNKNOWN && v != INDEX_CAPTURED && v != INDEX_NOT_CAPTURED) abort();
  /* Trusted only with the magic line first and a last line "end <8 hex digits>\n". */
  if (v != INDEX_UNUSABLE && (size < 21 || memcmp(data, MAGIC, sizeof MAGIC - 1) || data[size - 1] != '\n')) abort();
  free(buf);
  return 0;
}
