// meshcni native addon: the only code that crosses into the kernel (placeholder, being written).
#include <napi.h>

static Napi::Object Init(Napi::Env env, Napi::Object exports) { return exports; }

NODE_API_MODULE(meshcni, Init)
