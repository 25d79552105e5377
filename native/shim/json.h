/* The JSON the shim needs, and no more: a strict validating parser that indexes one document in
 * place (values are spans of the input, strings decoded on demand), and writers for JSON strings
 * and minified copies of parsed values. Written for the shim so it links against no JSON library:
 * with nothing but libc it builds as a small static binary (musl) that starts in a fraction of the
 * time a static glibc one needs. */
#ifndef MESHCNI_JSON_H
#define MESHCNI_JSON_H

#include <stddef.h>

enum jtype { J_NULL, J_FALSE, J_TRUE, J_NUMBER, J_STRING, J_ARRAY, J_OBJECT };

/* One value of the document. Object members are stored as key (a string) then value. */
struct jval {
  enum jtype type;
  size_t start, end; /* the value's bytes in the text: [start, end) */
  int count;         /* array elements, object members */
  int next;          /* index of the first value after this one's subtree */
  int integer;       /* numbers: no fraction, no exponent */
};

struct jdoc {
  const char *text;
  size_t len;
  struct jval *v;
  int n, cap;
};

/* Parses `text` as exactly one JSON value (whitespace around it allowed), strictly: RFC 8259
 * grammar, valid UTF-8, no \u0000 in any string (the agent refuses it too), nesting at most 64
 * deep. 0 on success; -1 with *why set to a short reason. The text must outlive the document. */
int json_parse(struct jdoc *d, const char *text, size_t len, const char **why);
void json_free(struct jdoc *d);

/* The value of the last member named `key` (as duplicates resolve in JavaScript), or -1. */
int json_get(const struct jdoc *d, int object, const char *key);
/* The i-th element of an array (0-based), or -1. */
int json_index(const struct jdoc *d, int array, int i);
/* A string value decoded into a malloc'd NUL-terminated buffer (NULL when out of memory or not a
 * string); the parser refuses \u0000, so the C string is the whole value. */
char *json_string(const struct jdoc *d, int v);
/* Whether string value v, decoded, equals the NUL-terminated `s` (without allocating when v has no
 * escapes). */
int json_string_is(const struct jdoc *d, int v, const char *s);
/* A number value as a double (strtod of its span). */
double json_number(const struct jdoc *d, int v);

/* A growing output buffer; on allocation failure `failed` is set and further writes do nothing. */
struct jbuf {
  char *data;
  size_t len, cap;
  int failed;
};

void jbuf_raw(struct jbuf *b, const char *s, size_t n);
void jbuf_str(struct jbuf *b, const char *s); /* raw, NUL-terminated */
/* Length of the valid UTF-8 sequence at s (at most `left` bytes), or 0 if it is not one. */
size_t json_utf8_len(const unsigned char *s, size_t left);
/* Whether the NUL-terminated s is valid UTF-8 throughout. */
int json_valid_utf8(const char *s);
/* `s` as a JSON string literal, quoted and escaped; a byte that starts no valid UTF-8 sequence (a
 * character cut by a %.Ns, say) becomes U+FFFD, so the output is always valid UTF-8 and JSON. */
void jbuf_quote(struct jbuf *b, const char *s);
/* Value `v` of the document, copied without the whitespace between tokens. */
void jbuf_value(struct jbuf *b, const struct jdoc *d, int v);

#endif
