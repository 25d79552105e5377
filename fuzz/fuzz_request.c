/* The request builder (main.c) on any CNI_* values and configuration. The input is the six values
 * and the configuration text separated by NUL bytes. The request is always one JSON object whose
 * fields decode to the values given, whatever bytes they hold (invalid UTF-8 becomes U+FFFD). */
#define main shim_main
#include "../native/shim/main.c"
#undef main

#include <stdint.h>

static void check(int ok) {
  if (!ok) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *copy = malloc(size + 1);
  if (!copy) return 0;
  memcpy(copy, data, size);
  copy[size] = '\0';
  char *part[7] = {0};
  char *p = copy;
  for (int i = 0; i < 6; i++) {
    char *z = memchr(p, '\0', (size_t)(copy + size - p));
    if (!z || z == copy + size) return free(copy), 0;
    part[i] = p;
    p = z + 1;
  }
  part[6] = p;
  struct cni_call call = {.env = {part[0], part[1], part[2], part[3], part[4], part[5]}};
  const char *why;
  if (json_parse(&call.doc, part[6], (size_t)(copy + size - part[6]), &why)) return free(copy), 0;
  if (call.doc.v[0].type == J_OBJECT) {
    struct jbuf b = {0};
    request(&call, &b);
    struct jdoc out;
    check(b.failed || (json_parse(&out, b.data, b.len, &why) == 0 && out.v[0].type == J_OBJECT && out.v[0].count == 7));
    static const char *keys[] = {"command", "containerId", "netns", "ifName", "args", "path"};
    for (int i = 0; !b.failed && i < 6; i++) {
      char *s = json_string(&out, json_get(&out, 0, keys[i]));
      check(s != NULL);
      if (json_valid_utf8(part[i])) check(!strcmp(s, part[i]));
      free(s);
    }
    if (!b.failed) json_free(&out);
    free(b.data);
  }
  json_free(&call.doc);
  free(copy);
  return 0;
}
