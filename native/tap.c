/*
 * remusd's TAP device binding (Linux): opens /dev/net/tun, attaches or creates
 * a TAP device with TUNSETIFF (Ethernet frames, no packet-info header), reads
 * frames when the descriptor is readable through a libuv poll handle on
 * Node's own event loop (never a blocking read, never a thread), and writes
 * frames with one non-blocking write each.
 *
 * JavaScript API (see src/vswitch/tapdev.ts):
 *   open(name)            -> handle; throws an Error with .code (errno name) and .syscall
 *   info(handle)          -> { fd, name, persistent }
 *   start(handle, cb)     cb(err: string | null, frames: Buffer[] | null), called from the loop
 *   write(handle, frame)  -> bytes written, or -errno (the frame is then dropped, as on a LAN)
 *   close(handle)         stops reading and closes the descriptor; the kernel then removes a
 *                         device that this process created (one that is not persistent)
 *
 * The handle's memory is freed when both the JavaScript handle was collected
 * and libuv finished closing the poll handle, whichever comes last.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <node_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <uv.h>

#define READ_BUF 65536
/* Frames read per readable event: the poll is level-triggered, so the rest
   waits for the next loop iteration and other I/O gets its turn. */
#define FRAMES_PER_WAKE 64

typedef struct {
  int fd;
  int polling;    /* uv_poll_init done */
  int uv_open;    /* poll handle not yet closed by libuv */
  int finalized;  /* the JavaScript handle was collected */
  int persistent; /* the device survives close (created beforehand with TUNSETPERSIST) */
  uv_poll_t poll;
  napi_env env;
  napi_ref cb;
  napi_ref resource;
  napi_async_context actx;
  char name[IFNAMSIZ];
} tap_t;

static unsigned char read_buf[READ_BUF];

static napi_value throw_errno(napi_env env, int err, const char *syscall, const char *what) {
  const char *code = strerrorname_np(err);
  napi_value msg, codev, e, sys;
  char text[256];
  snprintf(text, sizeof text, "%s: %s", what, strerror(err));
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &msg);
  napi_create_string_utf8(env, code ? code : "EUNKNOWN", NAPI_AUTO_LENGTH, &codev);
  napi_create_error(env, codev, msg, &e);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &sys);
  napi_set_named_property(env, e, "syscall", sys);
  napi_value errnov;
  napi_create_int32(env, err, &errnov);
  napi_set_named_property(env, e, "errno", errnov);
  napi_throw(env, e);
  return NULL;
}

static void maybe_free(tap_t *t) {
  if (t->finalized && !t->uv_open) free(t);
}

static void on_uv_closed(uv_handle_t *h) {
  tap_t *t = (tap_t *)h->data;
  t->uv_open = 0;
  maybe_free(t);
}

/* Stops reading and closes the descriptor (idempotent). */
static void tap_shutdown(tap_t *t) {
  if (t->polling) {
    t->polling = 0;
    uv_poll_stop(&t->poll);
    uv_close((uv_handle_t *)&t->poll, on_uv_closed);
  }
  if (t->fd >= 0) {
    close(t->fd);
    t->fd = -1;
  }
  if (t->cb) {
    napi_delete_reference(t->env, t->cb);
    t->cb = NULL;
  }
  if (t->resource) {
    napi_async_destroy(t->env, t->actx);
    napi_delete_reference(t->env, t->resource);
    t->resource = NULL;
  }
}

static void on_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  tap_t *t = (tap_t *)data;
  tap_shutdown(t);
  t->finalized = 1;
  maybe_free(t);
}

static tap_t *get_tap(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok || p == NULL) {
    napi_throw_type_error(env, NULL, "not a TAP handle");
    return NULL;
  }
  return (tap_t *)p;
}

static napi_value js_open(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char name[IFNAMSIZ + 1];
  size_t len = 0;
  if (argc < 1 || napi_get_value_string_utf8(env, argv[0], name, sizeof name, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "open(name): name must be a string");
    return NULL;
  }
  if (len == 0 || len >= IFNAMSIZ) {
    napi_throw_range_error(env, NULL, "a device name has 1 to 15 bytes");
    return NULL;
  }
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return throw_errno(env, errno, "open", "cannot open /dev/net/tun");
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
  memcpy(ifr.ifr_name, name, len);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, err, "ioctl", "TUNSETIFF");
  }
  struct ifreq got;
  memset(&got, 0, sizeof got);
  int persistent = 0;
  if (ioctl(fd, TUNGETIFF, &got) == 0) persistent = (got.ifr_flags & IFF_PERSIST) != 0;
  tap_t *t = calloc(1, sizeof *t);
  if (t == NULL) {
    close(fd);
    return throw_errno(env, ENOMEM, "calloc", "TAP handle");
  }
  t->fd = fd;
  t->env = env;
  t->persistent = persistent;
  memcpy(t->name, ifr.ifr_name, IFNAMSIZ);
  t->name[IFNAMSIZ - 1] = 0;
  napi_value handle;
  if (napi_create_external(env, t, on_finalize, NULL, &handle) != napi_ok) {
    close(fd);
    free(t);
    return NULL;
  }
  return handle;
}

static napi_value js_info(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  tap_t *t = argc < 1 ? NULL : get_tap(env, argv[0]);
  if (t == NULL) return NULL;
  napi_value o, fd, name, persistent;
  napi_create_object(env, &o);
  napi_create_int32(env, t->fd, &fd);
  napi_create_string_utf8(env, t->name, NAPI_AUTO_LENGTH, &name);
  napi_get_boolean(env, t->persistent, &persistent);
  napi_set_named_property(env, o, "fd", fd);
  napi_set_named_property(env, o, "name", name);
  napi_set_named_property(env, o, "persistent", persistent);
  return o;
}

/* Calls the JavaScript callback with (err, frames) from the event loop. */
static void deliver(tap_t *t, const char *err, napi_value frames) {
  napi_env env = t->env;
  napi_value cb, resource, argv[2], result;
  if (t->cb == NULL) return;
  if (napi_get_reference_value(env, t->cb, &cb) != napi_ok || cb == NULL) return;
  napi_get_reference_value(env, t->resource, &resource);
  if (err) {
    napi_create_string_utf8(env, err, NAPI_AUTO_LENGTH, &argv[0]);
    napi_get_null(env, &argv[1]);
  } else {
    napi_get_null(env, &argv[0]);
    argv[1] = frames;
  }
  if (napi_make_callback(env, t->actx, resource, cb, 2, argv, &result) == napi_pending_exception) {
    napi_value e;
    napi_get_and_clear_last_exception(env, &e);
    napi_fatal_exception(env, e);
  }
}

static void on_readable(uv_poll_t *h, int status, int events) {
  (void)events;
  tap_t *t = (tap_t *)h->data;
  napi_handle_scope scope;
  napi_open_handle_scope(t->env, &scope);
  if (status < 0) {
    uv_poll_stop(&t->poll);
    deliver(t, uv_strerror(status), NULL);
    napi_close_handle_scope(t->env, scope);
    return;
  }
  napi_value frames;
  napi_create_array(t->env, &frames);
  uint32_t n = 0;
  const char *err = NULL;
  while (n < FRAMES_PER_WAKE && t->fd >= 0) {
    ssize_t r = read(t->fd, read_buf, READ_BUF);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) err = strerror(errno);
      break;
    }
    if (r == 0) break;
    napi_value b;
    void *data;
    napi_create_buffer_copy(t->env, (size_t)r, read_buf, &data, &b);
    napi_set_element(t->env, frames, n++, b);
  }
  if (n > 0) deliver(t, NULL, frames);
  if (err && t->polling) {
    uv_poll_stop(&t->poll);
    deliver(t, err, NULL);
  }
  napi_close_handle_scope(t->env, scope);
}

static napi_value js_start(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  tap_t *t = argc < 2 ? NULL : get_tap(env, argv[0]);
  if (t == NULL) return NULL;
  napi_valuetype type;
  napi_typeof(env, argv[1], &type);
  if (type != napi_function) {
    napi_throw_type_error(env, NULL, "start(handle, cb): cb must be a function");
    return NULL;
  }
  if (t->fd < 0 || t->polling) {
    napi_throw_error(env, NULL, "the TAP handle is closed or already started");
    return NULL;
  }
  uv_loop_t *loop;
  napi_get_uv_event_loop(env, &loop);
  int r = uv_poll_init(loop, &t->poll, t->fd);
  if (r < 0) {
    napi_throw_error(env, NULL, uv_strerror(r));
    return NULL;
  }
  t->poll.data = t;
  t->polling = 1;
  t->uv_open = 1;
  napi_create_reference(env, argv[1], 1, &t->cb);
  napi_value resource, rname;
  napi_create_object(env, &resource);
  napi_create_reference(env, resource, 1, &t->resource);
  napi_create_string_utf8(env, "remusd:tap", NAPI_AUTO_LENGTH, &rname);
  napi_async_init(env, resource, rname, &t->actx);
  r = uv_poll_start(&t->poll, UV_READABLE, on_readable);
  if (r < 0) {
    tap_shutdown(t);
    napi_throw_error(env, NULL, uv_strerror(r));
    return NULL;
  }
  return NULL;
}

static napi_value js_write(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  tap_t *t = argc < 2 ? NULL : get_tap(env, argv[0]);
  if (t == NULL) return NULL;
  void *data = NULL;
  size_t len = 0;
  if (napi_get_buffer_info(env, argv[1], &data, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "write(handle, frame): frame must be a Buffer");
    return NULL;
  }
  ssize_t n;
  if (t->fd < 0) {
    n = -EBADF;
  } else {
    do n = write(t->fd, data, len);
    while (n < 0 && errno == EINTR);
    if (n < 0) n = -errno;
  }
  napi_value out;
  napi_create_int64(env, (int64_t)n, &out);
  return out;
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  tap_t *t = argc < 1 ? NULL : get_tap(env, argv[0]);
  if (t == NULL) return NULL;
  tap_shutdown(t);
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"open", NULL, js_open, NULL, NULL, NULL, napi_default, NULL},
      {"info", NULL, js_info, NULL, NULL, NULL, napi_default, NULL},
      {"start", NULL, js_start, NULL, NULL, NULL, napi_default, NULL},
      {"write", NULL, js_write, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
