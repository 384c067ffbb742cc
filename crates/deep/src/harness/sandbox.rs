//! The restrictions a worker applies to itself before it touches any model
//! byte, in this order, while it is still single-threaded:
//!
//! 1. resource limits (address space, CPU time, file size, no core dumps,
//!    open files);
//! 2. a new network namespace (as root directly; otherwise inside a new user
//!    namespace), so there is no route anywhere;
//! 3. Landlock: read-only access to the model folders (and the few system
//!    files a running process needs), read-write access to one private
//!    temporary folder, no TCP bind/connect (ABI ≥ 4);
//! 4. a seccomp filter: no sockets other than Unix ones, no ptrace, mount,
//!    namespace changes, BPF, kernel keyrings, module loading or io_uring.
//!
//! The parent starts the worker with an empty environment (but for
//! RAYON_NUM_THREADS). Each primitive
//! reports whether it was applied and, if not, why; the report goes into the
//! deep-scan report, and `--require-sandbox` refuses to go on without all of
//! them.

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use crate::wire::{DeviceKind, Isolation, Policy, Primitive};

impl Primitive {
    fn ok(detail: impl Into<String>) -> Self {
        Primitive {
            applied: true,
            detail: detail.into(),
        }
    }
    fn no(detail: impl Into<String>) -> Self {
        Primitive {
            applied: false,
            detail: detail.into(),
        }
    }
}

/// Applies every restriction to the calling (single-threaded) process.
pub fn apply(policy: &Policy) -> Isolation {
    let resource_limits = set_rlimits(policy);
    let network_namespace = new_network_namespace();
    let (landlock_filesystem, landlock_network) = landlock(policy);
    let seccomp = seccomp();
    let secrets: Vec<String> = std::env::vars_os()
        .map(|(k, _)| k.to_string_lossy().to_string())
        .filter(|k| {
            k.contains("TOKEN")
                || k.contains("SECRET")
                || k.contains("KEY")
                || k.starts_with("AWS_")
                || k.starts_with("HF_")
        })
        .collect();
    let environment = if secrets.is_empty() {
        Primitive::ok(format!(
            "{} variables, none carrying credentials",
            std::env::vars_os().count()
        ))
    } else {
        Primitive::no(format!(
            "credential-like variables present: {}",
            secrets.join(", ")
        ))
    };
    Isolation {
        resource_limits,
        network_namespace,
        landlock_filesystem,
        landlock_network,
        seccomp,
        environment,
    }
}

fn set_rlimits(policy: &Policy) -> Primitive {
    // the CUDA driver reserves far more virtual address space than it uses:
    // an address-space limit makes it fail, so on CUDA there is none (and
    // the primitive is reported as not applied)
    let address_space = if policy.device == DeviceKind::Cuda {
        libc::RLIM_INFINITY
    } else {
        policy.memory_bytes
    };
    let limits: [(libc::__rlimit_resource_t, u64, &str); 5] = [
        (libc::RLIMIT_AS, address_space, "address space"),
        (libc::RLIMIT_CPU, policy.cpu_seconds, "CPU seconds"),
        (libc::RLIMIT_FSIZE, policy.max_file_bytes, "file size"),
        (libc::RLIMIT_CORE, 0, "core dumps"),
        (libc::RLIMIT_NOFILE, 256, "open files"),
    ];
    let mut failed = Vec::new();
    for (res, value, what) in limits {
        let lim = libc::rlimit {
            rlim_cur: value,
            rlim_max: value,
        };
        // SAFETY: setrlimit reads a valid rlimit struct; no memory is shared.
        if unsafe { libc::setrlimit(res, &lim) } != 0 {
            failed.push(format!("{what}: {}", std::io::Error::last_os_error()));
        }
    }
    if failed.is_empty() && address_space == libc::RLIM_INFINITY {
        Primitive::no(format!(
            "no address-space limit on cuda (the driver reserves large virtual ranges); CPU {} s, file size {} MiB, no core dumps, 256 open files",
            policy.cpu_seconds,
            policy.max_file_bytes >> 20
        ))
    } else if failed.is_empty() {
        Primitive::ok(format!(
            "address space {} MiB, CPU {} s, file size {} MiB, no core dumps, 256 open files",
            policy.memory_bytes >> 20,
            policy.cpu_seconds,
            policy.max_file_bytes >> 20
        ))
    } else {
        Primitive::no(failed.join("; "))
    }
}

fn new_network_namespace() -> Primitive {
    // SAFETY: unshare affects only this process, which is single-threaded here.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } == 0 {
        return Primitive::ok("new network namespace (loopback only, down)");
    }
    let direct = std::io::Error::last_os_error();
    // Unprivileged: a user namespace first, mapping our ids, then the network one.
    let uid = unsafe { libc::geteuid() };
    let gid = unsafe { libc::getegid() };
    // SAFETY: as above.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) } == 0 {
        let _ = std::fs::write("/proc/self/setgroups", "deny");
        let _ = std::fs::write("/proc/self/uid_map", format!("{uid} {uid} 1"));
        let _ = std::fs::write("/proc/self/gid_map", format!("{gid} {gid} 1"));
        return Primitive::ok("new user and network namespaces (loopback only, down)");
    }
    Primitive::no(format!(
        "unshare(CLONE_NEWNET) failed ({direct}) and so did a user namespace ({})",
        std::io::Error::last_os_error()
    ))
}

fn landlock(policy: &Policy) -> (Primitive, Primitive) {
    use landlock::{
        path_beneath_rules, Access, AccessFs, AccessNet, Ruleset, RulesetAttr, RulesetCreatedAttr,
        RulesetStatus, ABI,
    };
    let abi = ABI::V5;
    let mut readable: Vec<PathBuf> = policy.read_only.clone();
    // What a running process needs: null/random devices and the CPU list
    // (thread pools size themselves from it).
    for p in ["/dev/null", "/dev/urandom", "/sys/devices/system/cpu"] {
        readable.push(PathBuf::from(p));
    }
    // A GPU: the driver libraries it loads at run time, and its device files
    // (which it also writes to, through ioctls).
    let mut devices: Vec<PathBuf> = Vec::new();
    if policy.device == DeviceKind::Cuda {
        for p in [
            "/usr/lib",
            "/usr/lib64",
            "/lib",
            "/lib64",
            "/usr/local/cuda",
            "/etc/ld.so.cache",
            "/proc/driver/nvidia",
            "/sys/bus/pci",
            "/sys/devices",
        ] {
            if std::path::Path::new(p).exists() {
                readable.push(PathBuf::from(p));
            }
        }
        if let Ok(rd) = std::fs::read_dir("/dev") {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with("nvidia") {
                    devices.push(e.path());
                }
            }
        }
    }
    let result = (|| -> Result<landlock::RestrictionStatus, landlock::RulesetError> {
        Ruleset::default()
            .handle_access(AccessFs::from_all(abi))?
            .handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)?
            .create()?
            .add_rules(path_beneath_rules(&readable, AccessFs::from_read(abi)))?
            .add_rules(path_beneath_rules(
                [&policy.temp_dir],
                AccessFs::from_all(abi),
            ))?
            .add_rules(path_beneath_rules(&devices, AccessFs::from_all(abi)))?
            .restrict_self()
    })();
    match result {
        Ok(status) => {
            let fs = match status.ruleset {
                RulesetStatus::FullyEnforced => Primitive::ok(format!(
                    "read-only: {}; read-write: {}",
                    policy
                        .read_only
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    policy.temp_dir.display()
                )),
                RulesetStatus::PartiallyEnforced => {
                    Primitive::ok("partially enforced (older kernel ABI)")
                }
                RulesetStatus::NotEnforced => {
                    Primitive::no("Landlock is not supported or not enabled by this kernel")
                }
            };
            let net = if fs.applied && matches!(status.ruleset, RulesetStatus::FullyEnforced) {
                Primitive::ok("TCP bind and connect denied")
            } else {
                Primitive::no("the kernel's Landlock ABI has no network rules")
            };
            (fs, net)
        }
        Err(e) => (
            Primitive::no(format!("Landlock error: {e}")),
            Primitive::no("not applied"),
        ),
    }
}

fn seccomp() -> Primitive {
    use seccompiler::{
        SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    };
    let arch = match std::env::consts::ARCH.try_into() {
        Ok(a) => a,
        Err(_) => {
            return Primitive::no(format!(
                "seccomp filters are not built for {}",
                std::env::consts::ARCH
            ))
        }
    };
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    let not_unix = |syscall: i64| -> Result<(i64, Vec<SeccompRule>), seccompiler::Error> {
        let cond = SeccompCondition::new(
            0,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::Ne,
            libc::AF_UNIX as u64,
        )?;
        Ok((syscall, vec![SeccompRule::new(vec![cond])?]))
    };
    for s in [libc::SYS_socket, libc::SYS_socketpair] {
        match not_unix(s) {
            Ok((k, v)) => {
                rules.insert(k, v);
            }
            Err(e) => return Primitive::no(format!("seccomp rule: {e}")),
        }
    }
    // new processes: `clone` only for threads (CLONE_THREAD set); fork and
    // vfork never. A fork bomb would outlive the worker's kill.
    let process = (|| -> Result<Vec<SeccompRule>, seccompiler::Error> {
        let cond = SeccompCondition::new(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(libc::CLONE_THREAD as u64),
            0,
        )?;
        Ok(vec![SeccompRule::new(vec![cond])?])
    })();
    match process {
        Ok(v) => {
            rules.insert(libc::SYS_clone, v);
        }
        Err(e) => return Primitive::no(format!("seccomp rule: {e}")),
    }
    #[cfg(target_arch = "x86_64")]
    for s in [libc::SYS_fork, libc::SYS_vfork] {
        rules.insert(s, vec![]);
    }
    for s in [
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_kexec_load,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_userfaultfd,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        // nothing the worker does needs another program
        libc::SYS_execve,
        libc::SYS_execveat,
    ] {
        rules.insert(s, vec![]);
    }
    let filter = match SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    ) {
        Ok(f) => f,
        Err(e) => return Primitive::no(format!("seccomp filter: {e}")),
    };
    let prog: seccompiler::BpfProgram = match filter.try_into() {
        Ok(p) => p,
        Err(e) => return Primitive::no(format!("seccomp compile: {e}")),
    };
    if let Err(e) = seccompiler::apply_filter(&prog) {
        return Primitive::no(format!("seccomp: {e}"));
    }
    // clone3 passes its flags in memory a filter cannot read: it answers
    // ENOSYS, and the C library falls back to clone, judged above (a second
    // filter: one filter has one action for all its matches)
    let mut only_clone3: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    only_clone3.insert(libc::SYS_clone3, vec![]);
    let second = match SeccompFilter::new(
        only_clone3,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    ) {
        Ok(f) => f,
        Err(e) => return Primitive::no(format!("seccomp clone3 filter: {e}")),
    };
    let prog: seccompiler::BpfProgram = match second.try_into() {
        Ok(p) => p,
        Err(e) => return Primitive::no(format!("seccomp clone3 filter: {e}")),
    };
    match seccompiler::apply_filter(&prog) {
        Ok(()) => Primitive::ok("non-Unix sockets, new processes (fork, vfork, clone without CLONE_THREAD; clone3 answers ENOSYS), exec, ptrace, mount, namespaces, bpf, keyrings, modules and io_uring denied"),
        Err(e) => Primitive::no(format!("seccomp: {e}")),
    }
}
