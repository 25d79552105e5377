{
  "targets": [
    {
      "target_name": "meshcni",
      "sources": [
        "native/addon/addon.cc", "native/addon/netns.cc", "native/addon/nlsock.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Werror", "-fexceptions"],
      "conditions": [["OS!='linux'", {"type": "none"}]]
    }
  ]
}
