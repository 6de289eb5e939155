{
  "targets": [
    {
      "target_name": "tap",
      "sources": ["native/tap.c"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-Werror"],
      "conditions": [["OS!='linux'", {"type": "none", "sources": []}]]
    }
  ]
}
