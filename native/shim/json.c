/* Strict JSON for the shim: parse-and-index in place, decode strings on demand, write minified. */
#include "json.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64

struct parser {
  struct jdoc *d;
  const unsigned char *s;
  size_t len, pos;
  const char *why;
};

static int fail(struct parser *p, const char *why) {
  if (!p->why) p->why = why;
  return -1;
}

static void skip_ws(struct parser *p) {
  while (p->pos < p->len) {
    unsigned char c = p->s[p->pos];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return;
    p->pos++;
  }
}

static int push(struct parser *p, enum jtype t) {
  struct jdoc *d = p->d;
  if (d->n == d->cap) {
    int cap = d->cap ? d->cap * 2 : 64;
    struct jval *v = realloc(d->v, (size_t)cap * sizeof *v);
    if (!v) return fail(p, "out of memory");
    d->v = v;
    d->cap = cap;
  }
  d->v[d->n] = (struct jval){.type = t, .start = p->pos};
  return d->n++;
}

static int hex4(const unsigned char *s, unsigned *out) {
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    unsigned char c = s[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= c - '0';
    else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
    else return -1;
  }
  *out = v;
  return 0;
}

size_t json_utf8_len(const unsigned char *s, size_t left) {
  unsigned char c = s[0];
  size_t n;
  uint32_t cp;
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) n = 2, cp = c & 0x1f;
  else if (c >= 0xe0 && c <= 0xef) n = 3, cp = c & 0x0f;
  else if (c >= 0xf0 && c <= 0xf4) n = 4, cp = c & 0x07;
  else return 0;
  if (n > left) return 0;
  for (size_t i = 1; i < n; i++) {
    if ((s[i] & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (s[i] & 0x3f);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff))) return 0; /* overlong, too big */
  if (cp >= 0xd800 && cp <= 0xdfff) return 0;                                          /* surrogates */
  return n;
}

int json_valid_utf8(const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p;) {
    size_t n = json_utf8_len(p, strnlen((const char *)p, 4));
    if (!n) return 0;
    p += n;
  }
  return 1;
}

static int parse_string(struct parser *p) {
  int i = push(p, J_STRING);
  if (i < 0) return -1;
  p->pos++; /* the opening quote */
  while (p->pos < p->len) {
    unsigned char c = p->s[p->pos];
    if (c == '"') {
      p->pos++;
      p->d->v[i].end = p->pos;
      p->d->v[i].next = p->d->n;
      return i;
    }
    if (c < 0x20) return fail(p, "control character in a string");
    if (c == '\\') {
      if (p->pos + 1 >= p->len) break;
      unsigned char e = p->s[p->pos + 1];
      unsigned u;
      if (e == 'u') {
        if (p->pos + 6 > p->len || hex4(p->s + p->pos + 2, &u)) return fail(p, "bad \\u escape in a string");
        /* The one rule both sides keep: a C string cannot hold NUL, so no string may contain one. */
        if (u == 0) return fail(p, "\\u0000 in a string");
        p->pos += 6;
      } else if (strchr("\"\\/bfnrt", e) && e) {
        p->pos += 2;
      } else {
        return fail(p, "bad escape in a string");
      }
      continue;
    }
    size_t n = json_utf8_len(p->s + p->pos, p->len - p->pos);
    if (!n) return fail(p, "invalid UTF-8 in a string");
    p->pos += n;
  }
  return fail(p, "unterminated string");
}

static int digits(struct parser *p) {
  size_t from = p->pos;
  while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') p->pos++;
  return p->pos > from;
}

static int parse_number(struct parser *p) {
  int i = push(p, J_NUMBER);
  if (i < 0) return -1;
  int integer = 1;
  if (p->s[p->pos] == '-') p->pos++;
  if (p->pos < p->len && p->s[p->pos] == '0') p->pos++;
  else if (!digits(p)) return fail(p, "malformed number");
  if (p->pos < p->len && p->s[p->pos] == '.') {
    p->pos++;
    integer = 0;
    if (!digits(p)) return fail(p, "malformed number");
  }
  if (p->pos < p->len && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
    p->pos++;
    integer = 0;
    if (p->pos < p->len && (p->s[p->pos] == '+' || p->s[p->pos] == '-')) p->pos++;
    if (!digits(p)) return fail(p, "malformed number");
  }
  struct jval *v = &p->d->v[i];
  v->end = p->pos;
  v->integer = integer;
  v->next = p->d->n;
  return i;
}

static int parse_literal(struct parser *p, const char *word, enum jtype t) {
  size_t n = strlen(word);
  if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n)) return fail(p, "unexpected character");
  int i = push(p, t);
  if (i < 0) return -1;
  p->pos += n;
  p->d->v[i].end = p->pos;
  p->d->v[i].next = p->d->n;
  return i;
}

static int parse_value(struct parser *p, int depth);

/* An array or object: `close` ends it; objects have "key": value members. */
static int parse_container(struct parser *p, int depth, enum jtype t) {
  if (depth >= MAX_DEPTH) return fail(p, "nested too deeply");
  int i = push(p, t);
  if (i < 0) return -1;
  char close = t == J_OBJECT ? '}' : ']';
  int count = 0;
  p->pos++;
  skip_ws(p);
  if (p->pos < p->len && p->s[p->pos] == close) {
    p->pos++;
  } else {
    for (;;) {
      skip_ws(p);
      if (t == J_OBJECT) {
        if (p->pos >= p->len || p->s[p->pos] != '"') return fail(p, "expected a member name");
        if (parse_string(p) < 0) return -1;
        skip_ws(p);
        if (p->pos >= p->len || p->s[p->pos] != ':') return fail(p, "expected ':' after a member name");
        p->pos++;
      }
      if (parse_value(p, depth + 1) < 0) return -1;
      count++;
      skip_ws(p);
      if (p->pos >= p->len) return fail(p, "unexpected end of input");
      if (p->s[p->pos] == ',') {
        p->pos++;
        continue;
      }
      if (p->s[p->pos] != close) return fail(p, t == J_OBJECT ? "expected ',' or '}'" : "expected ',' or ']'");
      p->pos++;
      break;
    }
  }
  struct jval *v = &p->d->v[i];
  v->end = p->pos;
  v->count = count;
  v->next = p->d->n;
  return i;
}

static int parse_value(struct parser *p, int depth) {
  skip_ws(p);
  if (p->pos >= p->len) return fail(p, "unexpected end of input");
  switch (p->s[p->pos]) {
    case '{': return parse_container(p, depth, J_OBJECT);
    case '[': return parse_container(p, depth, J_ARRAY);
    case '"': return parse_string(p);
    case 't': return parse_literal(p, "true", J_TRUE);
    case 'f': return parse_literal(p, "false", J_FALSE);
    case 'n': return parse_literal(p, "null", J_NULL);
    default:
      if (p->s[p->pos] == '-' || (p->s[p->pos] >= '0' && p->s[p->pos] <= '9')) return parse_number(p);
      return fail(p, "unexpected character");
  }
}

int json_parse(struct jdoc *d, const char *text, size_t len, const char **why) {
  *d = (struct jdoc){.text = text, .len = len};
  struct parser p = {.d = d, .s = (const unsigned char *)text, .len = len};
  if (parse_value(&p, 0) >= 0) {
    skip_ws(&p);
    if (p.pos == len) return 0;
    fail(&p, "data after the JSON value");
  }
  *why = p.why;
  json_free(d);
  return -1;
}

void json_free(struct jdoc *d) {
  free(d->v);
  d->v = NULL;
  d->n = d->cap = 0;
}

/* Decodes string value v into out (room for its span's length + 1 bytes); returns the length. */
static size_t decode(const struct jdoc *d, int v, char *out) {
  const unsigned char *s = (const unsigned char *)d->text;
  size_t i = d->v[v].start + 1, end = d->v[v].end - 1, n = 0;
  while (i < end) {
    if (s[i] != '\\') {
      out[n++] = (char)s[i++];
      continue;
    }
    unsigned char e = s[i + 1];
    i += 2;
    if (e != 'u') {
      static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
      out[n++] = to[strchr(from, e) - from];
      continue;
    }
    unsigned cp, lo;
    hex4(s + i, &cp);
    i += 4;
    if (cp >= 0xd800 && cp <= 0xdbff && i + 6 <= end && s[i] == '\\' && s[i + 1] == 'u' && !hex4(s + i + 2, &lo) &&
        lo >= 0xdc00 && lo <= 0xdfff) {
      cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
      i += 6;
    } else if (cp >= 0xd800 && cp <= 0xdfff) {
      cp = 0xfffd; /* a lone surrogate: the replacement character */
    }
    /* Each \uXXXX (6 bytes, or 12 for a pair) decodes to at most 4 bytes: out never overtakes. */
    if (cp < 0x80) {
      out[n++] = (char)cp;
    } else if (cp < 0x800) {
      out[n++] = (char)(0xc0 | cp >> 6);
      out[n++] = (char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      out[n++] = (char)(0xe0 | cp >> 12);
      out[n++] = (char)(0x80 | ((cp >> 6) & 0x3f));
      out[n++] = (char)(0x80 | (cp & 0x3f));
    } else {
      out[n++] = (char)(0xf0 | cp >> 18);
      out[n++] = (char)(0x80 | ((cp >> 12) & 0x3f));
      out[n++] = (char)(0x80 | ((cp >> 6) & 0x3f));
      out[n++] = (char)(0x80 | (cp & 0x3f));
    }
  }
  out[n] = 0;
  return n;
}

char *json_string(const struct jdoc *d, int v) {
  if (v < 0 || d->v[v].type != J_STRING) return NULL;
  char *out = malloc(d->v[v].end - d->v[v].start + 1);
  if (out) decode(d, v, out);
  return out;
}

int json_string_is(const struct jdoc *d, int v, const char *key) {
  size_t a = d->v[v].start + 1, b = d->v[v].end - 1, klen = strlen(key);
  if (!memchr(d->text + a, '\\', b - a)) return b - a == klen && !memcmp(d->text + a, key, klen);
  char *s = json_string(d, v);
  int same = s && !strcmp(s, key);
  free(s);
  return same;
}

int json_get(const struct jdoc *d, int object, const char *key) {
  if (object < 0 || d->v[object].type != J_OBJECT) return -1;
  int found = -1;
  for (int m = 0, k = object + 1; m < d->v[object].count; m++) {
    int val = k + 1;
    if (json_string_is(d, k, key)) found = val;
    k = d->v[val].next;
  }
  return found;
}

int json_index(const struct jdoc *d, int array, int i) {
  if (array < 0 || d->v[array].type != J_ARRAY || i < 0 || i >= d->v[array].count) return -1;
  int e = array + 1;
  while (i-- > 0) e = d->v[e].next;
  return e;
}

double json_number(const struct jdoc *d, int v) {
  char buf[64];
  size_t n = d->v[v].end - d->v[v].start;
  if (n >= sizeof buf) n = sizeof buf - 1; /* longer literals only lose digits beyond a double's precision */
  memcpy(buf, d->text + d->v[v].start, n);
  buf[n] = 0;
  return strtod(buf, NULL);
}

void jbuf_raw(struct jbuf *b, const char *s, size_t n) {
  if (b->failed) return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) cap *= 2;
    char *data = realloc(b->data, cap);
    if (!data) {
      b->failed = 1;
      return;
    }
    b->data = data;
    b->cap = cap;
  }
  memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = 0;
}

void jbuf_str(struct jbuf *b, const char *s) { jbuf_raw(b, s, strlen(s)); }

void jbuf_quote(struct jbuf *b, const char *s) {
  jbuf_raw(b, "\"", 1);
  for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
    char esc[8];
    const char *rep = NULL;
    switch (*c) {
      case '"': rep = "\\\""; break;
      case '\\': rep = "\\\\"; break;
      case '\n': rep = "\\n"; break;
      case '\r': rep = "\\r"; break;
      case '\t': rep = "\\t"; break;
      case '\b': rep = "\\b"; break;
      case '\f': rep = "\\f"; break;
      default:
        if (*c < 0x20) {
          static const char hex[] = "0123456789abcdef";
          memcpy(esc, "\\u00", 4);
          esc[4] = hex[*c >> 4];
          esc[5] = hex[*c & 15];
          esc[6] = 0;
          rep = esc;
        }
    }
    size_t n = rep ? 0 : json_utf8_len(c, strnlen((const char *)c, 4));
    if (rep) jbuf_str(b, rep);
    else if (n) jbuf_raw(b, (const char *)c, n), c += n - 1;
    else jbuf_str(b, "\\ufffd"); /* a byte that is no UTF-8 (a cut character, say): the replacement */
  }
  jbuf_raw(b, "\"", 1);
}

void jbuf_value(struct jbuf *b, const struct jdoc *d, int v) {
  const char *s = d->text;
  size_t i = d->v[v].start, end = d->v[v].end, run = i;
  int in_string = 0;
  for (; i < end; i++) {
    char c = s[i];
    if (in_string) {
      if (c == '\\') i++;
      else if (c == '"') in_string = 0;
    } else if (c == '"') {
      in_string = 1;
    } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      jbuf_raw(b, s + run, i - run);
      run = i + 1;
    }
  }
  jbuf_raw(b, s + run, end - run);
}
