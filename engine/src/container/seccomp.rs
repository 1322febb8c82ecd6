//! Docker's default seccomp profile, as data: moby's `profiles/seccomp/default.json` for a container with
//! docker's default capabilities (no `CAP_SYS_ADMIN` & co.) on x86_64.
//!
//! Faithful to moby in what it allows: default action `ERRNO(EPERM)`; the plain allow list; `socket` except
//! `AF_VSOCK`; `personality` only with the five harmless personas; `clone` only without namespace flags;
//! `clone3` answered with `ENOSYS` so libcs fall back to `clone`; `arch_prctl`, `modify_ldt`, and
//! `process_vm_*`/`ptrace` (kernel ≥ 4.8, true everywhere we run); `chroot` (for `CAP_SYS_CHROOT`, a default
//! capability). Architectures: x86_64 with its x86 and x32 sub-architectures.
//!
//! Differences, on purpose:
//! - names that do not exist on x86_64 (`chown32`, `_llseek`, `*_time64`, `socketcall`, …) are left out:
//!   libcontainer resolves names for the native architecture and logs a warning for each unknown one — into
//!   the container's stderr. The test `every_name_resolves_on_x86_64` keeps the list honest.
//! - moby writes the `clone` rule as `(flags & value) == valueTwo` with `value = 0x7E020000, valueTwo = 0`;
//!   libcontainer passes `valueTwo` to libseccomp as the *mask* and `value` as the datum, so the same rule is
//!   written here with the two swapped.
//! - rules for capabilities we never grant (`CAP_SYS_ADMIN`, `CAP_SYS_MODULE`, …) are not generated, since
//!   `--cap-add` is not supported yet.

//!
//! **Loading.** Compiling this profile with libseccomp costs ~14 ms, which libcontainer would pay inside every
//! container start and every `exec`. Instead the profile is compiled to a BPF program once per engine root
//! (`<root>/seccomp/<sha256>.bpf`, keyed by the profile and the libseccomp version, written atomically) and the
//! OCI spec carries no `linux.seccomp`; our executor ([`super::workload`]) installs the program with
//! `prctl(PR_SET_SECCOMP)` as the last step before `execve`, after libcontainer has set `no_new_privileges` and
//! dropped capabilities — the same point libcontainer itself would load it. `--security-opt seccomp=unconfined`
//! skips it. The program is laid out as a binary tree (see [`OPTIMIZE`]).

use std::path::PathBuf;
use std::sync::Arc;

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use super::{io_err, Error, Result};
use crate::root::Root;

/// Syscalls allowed unconditionally (moby's first block, x86_64 names only).
const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "clock_adjtime",
    "clock_getres",
    "clock_gettime",
    "clock_nanosleep",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchown",
    "fchownat",
    "fcntl",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstatfs",
    "fsync",
    "ftruncate",
    "futex",
    "futex_waitv",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "geteuid",
    "getgid",
    "getgroups",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresuid",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "madvise",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedsend",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recvfrom",
    "recvmmsg",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "sendfile",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsuid",
    "setgid",
    "setgroups",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setresgid",
    "setresuid",
    "setreuid",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "socketpair",
    "splice",
    "stat",
    "statfs",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_settime",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_settime",
    "times",
    "tkill",
    "truncate",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "write",
    "writev",
    // moby: allowed on kernels >= 4.8.
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    // moby: amd64/x32/x86 only.
    "arch_prctl",
    "modify_ldt",
    // moby: with CAP_SYS_CHROOT, which docker grants by default.
    "chroot",
];

/// `personality(2)` personas moby allows: PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32, query.
const PERSONAS: &[u64] = &[0, 8, 0x20000, 0x20008, 0xffff_ffff];

/// `CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWCGROUP`.
const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;
const AF_VSOCK: u64 = 40;
const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// The profile in OCI runtime-spec form (`linux.seccomp`).
pub fn default_profile() -> Value {
    let mut syscalls = vec![json!({ "names": ALLOWED, "action": "SCMP_ACT_ALLOW" })];
    syscalls.push(json!({
        "names": ["socket"], "action": "SCMP_ACT_ALLOW",
        "args": [{ "index": 0, "value": AF_VSOCK, "op": "SCMP_CMP_NE" }],
    }));
    for persona in PERSONAS {
        syscalls.push(json!({
            "names": ["personality"], "action": "SCMP_ACT_ALLOW",
            "args": [{ "index": 0, "value": persona, "op": "SCMP_CMP_EQ" }],
        }));
    }
    // (flags & CLONE_NAMESPACE_FLAGS) == 0 — libcontainer takes valueTwo as the mask (see the module doc).
    syscalls.push(json!({
        "names": ["clone"], "action": "SCMP_ACT_ALLOW",
        "args": [{ "index": 0, "value": 0, "valueTwo": CLONE_NAMESPACE_FLAGS, "op": "SCMP_CMP_MASKED_EQ" }],
    }));
    syscalls.push(json!({ "names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS }));
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": EPERM,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": syscalls,
    })
}

/// Whether a container with these `--security-opt` values runs under the default profile.
pub fn enabled(security_opt: &[String]) -> bool {
    !security_opt.iter().any(|o| o == "seccomp=unconfined" || o == "seccomp:unconfined")
}

/// The default profile as a BPF program, from the root's cache or compiled (and cached) now.
pub fn program(root: &Root) -> Result<Arc<Vec<u8>>> {
    let version =
        libseccomp::ScmpVersion::current().map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro)).unwrap_or_default();
    let key = hex::encode(Sha256::digest(format!(
        "{}\n{version}\n{}\noptimize={OPTIMIZE}",
        default_profile(),
        std::env::consts::ARCH
    )));
    let dir = root.path().join("seccomp");
    let path: PathBuf = dir.join(format!("{key}.bpf"));
    if let Ok(bytes) = std::fs::read(&path) {
        if valid_program(&bytes) {
            return Ok(Arc::new(bytes));
        }
        // A truncated or foreign file: rebuild it below.
    }
    std::fs::create_dir_all(&dir).map_err(io_err(format!("cannot create {}", dir.display())))?;
    let tmp = dir.join(format!(".{key}.{}.tmp", std::process::id()));
    let written = std::fs::File::create(&tmp)
        .map_err(io_err(format!("cannot create {}", tmp.display())))
        .and_then(|file| compile(&file).map_err(|e| Error::Runtime(format!("cannot compile the seccomp profile: {e}"))))
        .and_then(|()| std::fs::read(&tmp).map_err(io_err(format!("cannot read {}", tmp.display()))));
    let bytes = match written {
        Ok(bytes) if valid_program(&bytes) => bytes,
        Ok(_) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::Runtime("libseccomp produced an invalid BPF program".into()));
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    std::fs::rename(&tmp, &path).map_err(io_err(format!("cannot write {}", path.display())))?;
    Ok(Arc::new(bytes))
}

/// A BPF program is a non-empty whole number of 8-byte instructions, at most 4096 of them.
fn valid_program(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.len() % 8 == 0 && bytes.len() / 8 <= 4096
}

/// libseccomp's binary-tree layout (`SCMP_FLTATR_CTL_OPTIMIZE` = 2) instead of a linear list of ~300 syscall
/// comparisons per architecture: each system call of the container walks ~10 comparisons instead of up to
/// ~300, and installing the filter costs ~0.3 ms instead of ~0.7–1 ms (measured here with 40 installs each:
/// the kernel emulates the program for every syscall number and architecture to build its allow cache, at each
/// container start and `exec`). The program is ~25% longer (1,185 instructions against 955).
const OPTIMIZE: u32 = 2;

/// Compiles [`default_profile`]'s rules with libseccomp (the same rules, built directly) into `out`.
fn compile(out: &std::fs::File) -> std::result::Result<(), libseccomp::error::SeccompError> {
    let mut ctx = ScmpFilterContext::new(ScmpAction::Errno(EPERM as i32))?;
    ctx.add_arch(ScmpArch::X86)?;
    ctx.add_arch(ScmpArch::X32)?;
    ctx.set_ctl_nnp(false)?;
    ctx.set_ctl_optimize(OPTIMIZE)?;
    for name in ALLOWED {
        if let Ok(sc) = ScmpSyscall::from_name(name) {
            ctx.add_rule(ScmpAction::Allow, sc)?;
        }
    }
    let socket = ScmpSyscall::from_name("socket")?;
    ctx.add_rule_conditional(ScmpAction::Allow, socket, &[ScmpArgCompare::new(0, ScmpCompareOp::NotEqual, AF_VSOCK)])?;
    let personality = ScmpSyscall::from_name("personality")?;
    for persona in PERSONAS {
        ctx.add_rule_conditional(
            ScmpAction::Allow,
            personality,
            &[ScmpArgCompare::new(0, ScmpCompareOp::Equal, *persona)],
        )?;
    }
    let clone = ScmpSyscall::from_name("clone")?;
    ctx.add_rule_conditional(
        ScmpAction::Allow,
        clone,
        &[ScmpArgCompare::new(0, ScmpCompareOp::MaskedEqual(CLONE_NAMESPACE_FLAGS), 0)],
    )?;
    ctx.add_rule(ScmpAction::Errno(ENOSYS as i32), ScmpSyscall::from_name("clone3")?)?;
    ctx.export_bpf(out)
}

/// Installs a BPF program as this thread's seccomp filter. `no_new_privileges` must already be set (or the
/// process hold `CAP_SYS_ADMIN`).
pub fn load(program: &[u8]) -> std::result::Result<(), nix::errno::Errno> {
    if !valid_program(program) {
        return Err(nix::errno::Errno::EINVAL);
    }
    let prog = libc::sock_fprog { len: (program.len() / 8) as u16, filter: program.as_ptr() as *mut libc::sock_filter };
    // SAFETY: `prog` points at `program`, which outlives the call; the kernel copies the filter.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &prog as *const libc::sock_fprog as libc::c_ulong,
            0,
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(nix::errno::Errno::last())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_is_cached_and_a_corrupt_cache_is_rebuilt() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = Root::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let first = program(&root).unwrap_or_else(|e| panic!("{e}"));
        assert!(valid_program(&first));
        let files: Vec<_> =
            std::fs::read_dir(dir.path().join("seccomp")).unwrap_or_else(|e| panic!("{e}")).flatten().collect();
        assert_eq!(files.len(), 1);
        std::fs::write(files[0].path(), b"garbage").unwrap_or_else(|e| panic!("{e}"));
        let again = program(&root).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again, first);
        assert_eq!(std::fs::read(files[0].path()).unwrap_or_default(), *first);
    }

    #[test]
    fn profile_is_a_valid_oci_seccomp_section() {
        let parsed: std::result::Result<oci_spec::runtime::LinuxSeccomp, _> = serde_json::from_value(default_profile());
        let parsed = parsed.unwrap_or_else(|e| panic!("invalid profile: {e}"));
        assert_eq!(parsed.default_errno_ret(), Some(EPERM));
        let syscalls = parsed.syscalls().clone().unwrap_or_default();
        assert!(syscalls[0].names().iter().any(|n| n == "execve"));
        assert!(!syscalls.iter().any(|s| s.names().iter().any(|n| n == "mount" || n == "unshare" || n == "keyctl")));
    }

    #[test]
    fn every_name_resolves_on_x86_64() {
        let mut unknown = Vec::new();
        for name in ALLOWED.iter().chain(["socket", "personality", "clone", "clone3"].iter()) {
            if libseccomp::ScmpSyscall::from_name_by_arch(name, libseccomp::ScmpArch::X8664).is_err() {
                unknown.push(*name);
            }
        }
        assert!(unknown.is_empty(), "not x86_64 syscalls (libcontainer would warn into the container): {unknown:?}");
    }
}
