"""The inside of the code sandbox. eval/sandbox.py runs this file's text as
`python -I -S -c <text> <config fd>`; it imports nothing of the lab, only the standard library.

Three processes, each started by the one before:

- the launcher (L) unshares mount, PID, network, IPC and UTS namespaces (and, when the lab is
  not root, a user namespace mapping only the caller's own uid), forks, passes on the exit
  code of its child, and on SIGTERM kills that child and waits for it;
- the namespace's init (I, PID 1, trusted: runs none of the program's code) builds a new
  root from the allowlist eval/sandbox_fs.py computed (a tmpfs holding read-only bind mounts
  of the Python installation, the system's programs and libraries and a few devices, a
  fresh /proc), pivots into it and detaches the old root, makes every mount read-only and
  nosuid, and mounts the program's working directory as the one writable place (a tmpfs
  capped in bytes and inodes). It forks the candidate and
  exits with its exit code; when init ends, the kernel kills every process left in the
  namespace, whatever session or process group it moved to;
- the candidate (C) drops to an unprivileged uid (root: a fresh uid of its own, so the
  process limit RLIMIT_NPROC counts only its processes; otherwise: no capabilities), sets no
  new privileges and its resource limits, closes every inherited descriptor but stdout,
  stderr and the report pipe, and runs the program: as a script ("program" mode), or
  ("tests" mode) the program, then each top-level statement of the tests, from the harness's
  own code with the builtins as they were before the program ran. After each statement it
  writes "<nonce> ok <i>" to the report pipe; "<nonce> done <n>" after the last.

Records a setup step writes: "<nonce> setup <what failed>".
"""

import builtins
import ctypes
import marshal
import os
import resource
import select
import signal
import sys
import types

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 8, 4096, 0x4000, 1 << 18
MNT_DETACH, SYS_PIVOT_ROOT = 2, {"x86_64": 155, "aarch64": 41}.get(os.uname().machine)
DEV_LINKS = (
    ("/dev/fd", "/proc/self/fd"),
    ("/dev/stdin", "/proc/self/fd/0"),
    ("/dev/stdout", "/proc/self/fd/1"),
    ("/dev/stderr", "/proc/self/fd/2"),
)
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, AT_RECURSIVE, AT_FDCWD = 1, 2, 0x8000, -100
SYS_MOUNT_SETATTR = 442  # the same number on every Linux architecture
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class SetupError(Exception):
    pass


def _check(ret: int, what: str) -> None:
    if ret != 0:
        raise SetupError(f"{what}: {os.strerror(ctypes.get_errno())}")


def _enc(s: str | None) -> bytes | None:
    return s.encode() if s is not None else None


def _mount(src: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    ret = _libc.mount(_enc(src), _enc(target), _enc(fstype), ctypes.c_ulong(flags), _enc(data))
    _check(ret, f"mount {fstype or 'bind'} on {target}")


class _MountAttr(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in ("attr_set", "attr_clr", "propagation", "userns")]


def _all_read_only() -> None:
    """Every mount, recursively: read-only and nosuid (mount_setattr, Linux >= 5.12)."""
    attr = _MountAttr(MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, 0, 0, 0)
    ret = _libc.syscall(
        ctypes.c_long(SYS_MOUNT_SETATTR),
        ctypes.c_int(AT_FDCWD),
        b"/",
        ctypes.c_uint(AT_RECURSIVE),
        ctypes.byref(attr),
        ctypes.c_size_t(ctypes.sizeof(attr)),
    )
    _check(0 if ret == 0 else -1, "mount_setattr read-only (Linux >= 5.12 needed)")


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _launcher(cfg: dict, report) -> int:
    """L: new namespaces, fork init, pass on its exit code."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # dies with the lab
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
    uid, gid = os.getuid(), os.getgid()
    if cfg["userns"]:
        flags |= CLONE_NEWUSER
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare namespaces")
    if cfg["userns"]:
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"{uid} {uid} 1")
        _write("/proc/self/gid_map", f"{gid} {gid} 1")
    life_r, life_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(life_w)
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if select.select([life_r], [], [], 0)[0]:  # the launcher is already gone
            os._exit(1)
        os.close(life_r)
        return _init(cfg, report)
    os.close(life_r)
    os.close(cfg["report_fd"])
    signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGKILL))
    return _exit_code(os.waitpid(pid, 0)[1])


def _exit_code(status: int) -> int:
    return (
        os.waitstatus_to_exitcode(status) % 256
        if os.WIFEXITED(status)
        else (128 + os.WTERMSIG(status))
    )


def _bind(fd: int, target: str) -> None:
    """Mount what `fd` (O_PATH) names at `target`, made first as an empty folder or file."""
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if os.path.isdir(f"/proc/self/fd/{fd}"):
        os.makedirs(target, exist_ok=True)
    else:
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))
    _mount(f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC, None)
    os.close(fd)


def _pivot_root() -> None:
    """Make the current directory the root and detach the old one (pivot_root(".", "."));
    where the old root cannot be pivoted (an initramfs root), chroot into it."""
    ret = -1 if SYS_PIVOT_ROOT is None else _libc.syscall(SYS_PIVOT_ROOT, b".", b".")
    if ret == 0:
        _check(_libc.umount2(b".", MNT_DETACH), "detach the old root")
    else:
        os.chroot(".")
    os.chdir("/")


def _new_root(cfg: dict) -> None:
    """The allowlist (eval/sandbox_fs.py) as a new root: a tmpfs on the temp folder (the
    host's stays untouched: this mount namespace is private) with read-only binds, links,
    covers, /dev, a fresh /proc and the working directory's mount point; then pivot."""
    opened = [(p, os.open(p, os.O_PATH)) for p in cfg["binds"] + cfg["keep"]]
    new = cfg["stage"]
    _mount("none", new, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,nr_inodes=4096,mode=755")
    keep = opened[len(cfg["binds"]) :]
    for p, fd in opened[: len(cfg["binds"])]:
        _bind(fd, new + p)
    for p, target in [*cfg["links"], *DEV_LINKS]:
        os.makedirs(os.path.dirname(new + p), exist_ok=True)
        os.symlink(target, new + p)
    for h in cfg["hide"]:
        _mount("none", new + h, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,nr_inodes=256,mode=755")
    for k, fd in keep:
        _bind(fd, new + k)
    for d in ("/proc", "/tmp", "/dev/shm", cfg["workdir"]):
        os.makedirs(new + d, exist_ok=True)
    _mount("proc", new + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
    os.chdir(new)
    _pivot_root()


def _init(cfg: dict, report) -> int:
    """I (PID 1): the read-only filesystem and the working directory, then the candidate."""
    _mount("none", "/", None, MS_REC | MS_PRIVATE, None)
    _new_root(cfg)
    work = cfg["workdir"]
    _all_read_only()
    opts = f"size={cfg['disk_bytes']},nr_inodes={cfg['disk_files']},mode=700"
    if not cfg["userns"]:  # owned by the program's uid (in a user namespace: the caller's)
        opts += f",uid={cfg['uid']},gid={cfg['uid']}"
    _mount("none", work, "tmpfs", MS_NOSUID | MS_NODEV, opts)
    pid = os.fork()
    if pid == 0:
        _candidate(cfg, report)
    os.close(cfg["report_fd"])
    while True:
        try:
            got, status = os.waitpid(-1, 0)  # PID 1 reaps orphans too
        except ChildProcessError:
            return 1
        if got == pid:
            return _exit_code(status)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint32) for n in ("effective", "permitted", "inheritable")]


def _drop_privileges(cfg: dict) -> None:
    if cfg["userns"]:  # the caller's own uid already; give up the namespace's capabilities
        data = (_CapData * 2)()
        _check(_libc.capset(ctypes.byref(_CapHeader(0x20080522, 0)), data), "capset")
    else:  # root: a uid of its own, which has no capabilities
        os.setgroups([])
        os.setresgid(cfg["uid"], cfg["uid"], cfg["uid"])
        os.setresuid(cfg["uid"], cfg["uid"], cfg["uid"])
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")


def _candidate(cfg: dict, report) -> None:  # never returns
    """C: unprivileged, limited, then the program; it never returns to init's code."""
    _drop_privileges(cfg)
    cpu = cfg["cpu_s"]
    for res, lim in ((resource.RLIMIT_CPU, cpu), (resource.RLIMIT_AS, cfg["memory_bytes"]),
                     (resource.RLIMIT_NPROC, cfg["pids"]), (resource.RLIMIT_CORE, 0),
                     (resource.RLIMIT_FSIZE, cfg["file_bytes"])):  # fmt: skip
        resource.setrlimit(res, (lim, lim))
    os.chdir(cfg["workdir"])
    os.environ.clear()
    os.environ.update(cfg["env"])
    fd = cfg["report_fd"]
    os.closerange(3, fd)
    os.closerange(fd + 1, 1 << 16)
    report("start")
    main = types.ModuleType("__main__")
    sys.modules["__main__"] = main
    if cfg["mode"] == "tests":
        _run_tests(cfg["code"], cfg["tests"], main.__dict__, report)
    try:  # as a script: an exception prints its traceback, sys.exit as Python has it
        exec(compile(cfg["code"], "<program>", "exec"), main.__dict__)
    except SystemExit:
        raise
    except BaseException:
        import traceback

        traceback.print_exc()
        raise SystemExit(1) from None
    raise SystemExit(0)  # the interpreter's own exit: atexit handlers, threads joined


def _message(e: BaseException) -> str:
    import traceback

    return traceback.format_exception_only(type(e), e)[-1].strip()[:200]


def _run_tests(program: str, tests: str, g: dict, report) -> None:  # never returns
    """Harness: the program, then each test statement; a record after each one that ran."""
    import ast
    import traceback  # noqa: F401 (imported before the program runs: _message needs it)

    stmts = [
        compile(ast.Module(body=[s], type_ignores=[]), "<tests>", "exec")
        for s in ast.parse(tests).body
    ]
    clean = dict(builtins.__dict__)  # before the program could replace any of them
    exit_, flush, settrace, setprofile = os._exit, sys.stdout.flush, sys.settrace, sys.setprofile

    def _no_tracing(*a: object) -> None:  # a trace function could jump over a test's asserts
        raise PermissionError("tracing is disabled while tests run in the sandbox")

    sys.settrace = sys.setprofile = _no_tracing
    try:
        exec(compile(program, "<program>", "exec"), g)
    except BaseException as e:  # SystemExit too: a program must not end before its tests
        report("fail", f"-1 {_message(e)}")
        exit_(1)
    for i, stmt in enumerate(stmts):
        settrace(None)
        setprofile(None)
        g["__builtins__"] = dict(clean)
        try:
            exec(stmt, g)
        except BaseException as e:
            report("fail", f"{i} {_message(e)}")
            exit_(1)
        report("ok", str(i))
    report("done", str(len(stmts)))
    try:
        flush()
    finally:
        exit_(0)


def main() -> None:
    cfg_fd = int(sys.argv[1])
    with os.fdopen(cfg_fd, "rb") as f:
        cfg = marshal.loads(f.read())  # written by eval/sandbox.py, not by the program
    fd, nonce, write = cfg["report_fd"], cfg["nonce"], os.write

    def report(kind: str, payload: str = "") -> None:
        line = f"{nonce} {kind} {payload}".replace("\n", " ")[:400] + "\n"
        write(fd, line.encode())  # one write under PIPE_BUF: never interleaved

    del cfg["nonce"]
    try:
        code = _launcher(cfg, report)
    except SetupError as e:
        report("setup", str(e))
        code = 111
    except OSError as e:
        report("setup", f"{e.strerror or e}")
        code = 111
    sys.stdout.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
