/* The shim's JSON parser (json.c) on any bytes. For a document it accepts: every string decodes, its
 * quoted form parses back to the same string, and the minified copy parses to the same shape. */
#include "../native/shim/json.c"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check(int ok) {
  if (!ok) abort();
}

/* Quotes s, parses the literal, decodes it: it must be s again. */
static void roundtrip_string(const char *s) {
  struct jbuf b = {0};
  jbuf_quote(&b, s);
  if (b.failed) return free(b.data);
  struct jdoc d;
  const char *why;
  check(json_parse(&d, b.data, b.len, &why) == 0 && d.v[0].type == J_STRING);
  char *back = json_string(&d, 0);
  check(back && !strcmp(back, s));
  free(back);
  json_free(&d);
  free(b.data);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct jdoc d;
  const char *why = NULL;
  if (json_parse(&d, (const char *)data, size, &why) != 0) {
    check(why != NULL);
    return 0;
  }
  for (int i = 0; i < d.n; i++) {
    check(d.v[i].start < d.v[i].end && d.v[i].end <= size && d.v[i].next > i && d.v[i].next <= d.n);
    if (d.v[i].type == J_STRING) {
      char *s = json_string(&d, i);
      check(s != NULL);
      check(json_string_is(&d, i, s));
      roundtrip_string(s);
      free(s);
    }
    if (d.v[i].type == J_OBJECT && d.v[i].count > 0) (void)json_get(&d, i, "cniVersion");
    if (d.v[i].type == J_ARRAY) check(json_index(&d, i, d.v[i].count) == -1);
    if (d.v[i].type == J_NUMBER) (void)json_number(&d, i);
  }
  struct jbuf b = {0};
  jbuf_value(&b, &d, 0);
  if (!b.failed) {
    struct jdoc again;
    check(json_parse(&again, b.data, b.len, &why) == 0 && again.n == d.n);
    for (int i = 0; i < d.n; i++) check(again.v[i].type == d.v[i].type && again.v[i].count == d.v[i].count);
    json_free(&again);
  }
  free(b.data);
  json_free(&d);
  return 0;
}
