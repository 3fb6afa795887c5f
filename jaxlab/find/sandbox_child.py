"""The sandbox's child process (run as `python -I -c <this file's text>`; see `jaxlab.find.sandbox`).

Reads one JSON request from stdin: {"code", "calls", "kind", "workdir", "limits", "preload"}. Confines
itself (namespaces, a read-only view of the filesystem, resource limits, an unprivileged user, an audit
hook), runs `code`, calls the last top-level function it defines on each input, and writes one JSON result
to its original stdout. The user code's own output goes to a file in the working directory.
"""

import ast
import json
import os
import resource
import sys

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET = 0x00020000, 0x10000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_NOATIME, MS_NODIRATIME, MS_RELATIME, MS_STRICTATIME = 1024, 2048, 1 << 21, 1 << 24
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
NOBODY = 65534
_MOUNT_FLAGS = {"ro": MS_RDONLY, "nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC,
                "noatime": MS_NOATIME, "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME}


def _mount_points():
  """Mount points with their per-mount flags, parents before children."""
  points = []
  with open("/proc/self/mountinfo") as f:
    for line in f:
      fields = line.split()
      path = fields[4].encode().decode("unicode_escape")
      flags = 0
      for option in fields[5].split(","):
        flags |= _MOUNT_FLAGS.get(option, 0)
      points.append((path, flags))
  return sorted(points, key=lambda p: p[0].count("/"))


def _isolate(libc, workdir: str, applied: list) -> bool:
  """New network and mount namespaces; everything read-only except a fresh tmpfs at `workdir`.

  Returns whether a user namespace was created (done when not root: it is what allows the rest).
  """
  import ctypes
  uid, gid = os.getuid(), os.getgid()
  own_namespace = uid != 0
  if libc.unshare(CLONE_NEWNET | CLONE_NEWNS | (CLONE_NEWUSER if own_namespace else 0)) != 0:
    if own_namespace and libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0:
      applied.append("network namespace")
      return True
    return False
  if own_namespace:  # become root inside the new user namespace, which is what lets us mount
    for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
      with open(f"/proc/self/{name}", "w") as f:
        f.write(text)
  applied.append("network namespace")
  libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
  if libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
    return own_namespace
  all_read_only = True
  for path, existing in _mount_points():
    # Locked mounts keep their flags; a remount that drops one is refused, so they are carried over.
    if libc.mount(None, path.encode(), None, MS_REMOUNT | MS_BIND | MS_RDONLY | existing, None) != 0:
      all_read_only = False
  owner = 0 if own_namespace else NOBODY
  options = f"size=64m,mode=0700,uid={owner},gid={owner}".encode()
  if libc.mount(b"tmpfs", workdir.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, options) == 0 and all_read_only:
    applied.append("read-only filesystem except the working directory")
  return own_namespace


def _limit(name: str, value: int) -> None:
  resource.setrlimit(getattr(resource, name), (value, value))


def _guard(workdir: str, readable: list[str]):
  """An audit hook: no processes, sockets, native calls; reads only under `readable` and `workdir`,
  writes only under `workdir`."""
  root = os.path.realpath(workdir)
  readable = tuple(os.path.realpath(p) for p in readable) + (root,)
  denied_prefixes = ("socket.", "ctypes.", "subprocess.", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
                     "os.forkpty", "pty.", "os.system", "os.kill", "os.killpg", "signal.pthread_kill",
                     "resource.setrlimit", "resource.prlimit", "sys.addaudithook", "mmap.")
  path_events = ("os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.truncate",
                 "os.link", "os.symlink", "os.utime", "os.chdir", "os.chroot", "os.mkfifo", "os.mknod",
                 "shutil.", "os.setxattr", "os.removexattr")
  write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
  realpath, fspath, startswith = os.path.realpath, os.fspath, str.startswith

  def under(path, roots) -> bool:
    try:
      path = fspath(path)
    except TypeError:
      return True  # a file descriptor
    if isinstance(path, bytes):
      path = path.decode(errors="replace")
    full = realpath(path)
    return any(full == r or startswith(full, r.rstrip("/") + "/") for r in roots)

  def hook(event, args):
    if startswith(event, denied_prefixes):
      raise PermissionError(f"sandbox: {event} is not allowed")
    if event == "open":
      path, mode, flags = args
      if path is None:
        return
      writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (flags or 0) & write_flags
      if writes and not under(path, (root,)):
        raise PermissionError(f"sandbox: writing {path!r} is not allowed (only the working directory)")
      if not writes and not under(path, readable):
        raise PermissionError(f"sandbox: reading {path!r} is not allowed")
    elif event in ("os.listdir", "os.scandir"):
      if args and args[0] is not None and not under(args[0], readable):
        raise PermissionError(f"sandbox: listing {args[0]!r} is not allowed")
    elif startswith(event, path_events):
      for arg in args:
        if isinstance(arg, (str, bytes, os.PathLike)) and not under(arg, (root,)):
          raise PermissionError(f"sandbox: {event} on {arg!r} is not allowed")

  return hook


def _deny_sockets():
  import socket

  def refuse(*args, **kwargs):
    raise PermissionError("sandbox: network access is not allowed")
  for name in ("socket", "create_connection", "create_server", "socketpair", "fromfd", "getaddrinfo",
               "gethostbyname", "gethostbyname_ex", "gethostbyaddr"):
    setattr(socket, name, refuse)


def _number(value):
  """A float, a complex (as [re, im]) or an error for a numeric result."""
  if isinstance(value, complex):
    return {"complex": [value.real, value.imag]}
  try:
    import numpy as np
    array = np.asarray(value)
    if array.size != 1:
      return {"error": f"returned an array of shape {array.shape}, not one number"}
    item = array.reshape(()).item()
  except Exception as e:  # noqa: BLE001 - anything the user returned
    return {"error": f"returned {type(value).__name__}: {e}"}
  if isinstance(item, complex):
    return {"complex": [item.real, item.imag]}
  if isinstance(item, (bool, int, float)):
    return {"value": float(item)}
  return {"error": f"returned {type(value).__name__}, not a number"}


def _confine(request) -> list[str]:
  """Everything before the user's code runs; returns the layers that applied."""
  workdir, limits = request["workdir"], request["limits"]
  # What imports may read once confined: the Python installation (stdlib and site-packages).
  readable = [p for p in sys.path if os.path.isdir(p)] + [sys.prefix, sys.base_prefix, sys.exec_prefix,
                                                           "/dev/null", "/dev/urandom", "/proc/self", "/sys/devices"]
  applied = []
  import ctypes
  for module in request["preload"]:  # imported now: once confined, the installation may be unreadable
    try:
      __import__(module)
    except ImportError:
      pass
  _deny_sockets()
  libc = ctypes.CDLL(None, use_errno=True)
  libc.prctl(PR_SET_PDEATHSIG, 9)
  own_namespace = _isolate(libc, workdir, applied) if request["namespaces"] else False
  os.chdir(workdir)
  output = os.open("output.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
  os.dup2(output, 1)
  os.dup2(output, 2)
  os.close(output)
  devnull = os.open(os.devnull, os.O_RDONLY)
  os.dup2(devnull, 0)
  os.close(devnull)
  _limit("RLIMIT_CORE", 0)
  _limit("RLIMIT_CPU", int(limits["cpu_seconds"]))
  _limit("RLIMIT_AS", int(limits["memory_bytes"]))
  _limit("RLIMIT_FSIZE", int(limits["file_bytes"]))
  libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
  if os.getuid() == 0 and not own_namespace:
    if os.path.exists("output.txt"):
      os.chown("output.txt", NOBODY, NOBODY)
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)
    applied.append("unprivileged user")
  # No new processes or threads (the kernel does not enforce this for root, hence the user above).
  _limit("RLIMIT_NPROC", 0)
  applied.append("resource limits")
  sys.addaudithook(_guard(workdir, readable))
  applied.append("audit hook")
  return applied


def main():
  result_fd = os.dup(1)
  dumps, write = json.dumps, os.write
  try:
    request = json.loads(sys.stdin.read())
    reply = {"isolation": _confine(request)}
  except BaseException as e:  # noqa: BLE001 - reported, not raised: the parent reads only the reply
    write(result_fd, dumps({"status": "error", "error": f"sandbox set-up failed: {type(e).__name__}: {e}"}).encode())
    return
  try:
    tree = ast.parse(request["code"])
    names = [node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    if not names:
      raise ValueError("the code defines no function")
    namespace = {"__name__": "interpretation"}
    exec(compile(tree, "<interpretation>", "exec"), namespace)
    function = namespace[names[-1]]
    results = []
    for args in request["calls"]:
      try:
        value = function(*args)
        if request["kind"] == "number":
          results.append(_number(value))
        elif isinstance(value, str):
          results.append({"value": value})
        else:
          results.append({"error": f"returned {type(value).__name__}, not str"})
      except BaseException as e:  # noqa: BLE001 - whatever the user's code raises is its result
        results.append({"error": f"{type(e).__name__}: {e}"})
    reply.update(status="ok", function=names[-1], results=results)
  except BaseException as e:  # noqa: BLE001
    reply.update(status="error", error=f"{type(e).__name__}: {e}")
  try:
    sys.stdout.flush()
    sys.stderr.flush()
    with open("output.txt", "rb") as f:
      f.seek(max(0, os.fstat(f.fileno()).st_size - 2000))
      reply["output"] = f.read().decode(errors="replace")
  except BaseException:  # noqa: BLE001 - the user's code may have removed it
    pass
  write(result_fd, dumps(reply).encode())


if __name__ == "__main__":
  main()
