//! Host-side plumbing of the sandbox: rlimits applied between `fork` and `exec`, uid leases, killing
//! leftovers by uid, run directories, interpreter discovery. Kept apart from the policy in `sandbox.rs`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::sandbox::SandboxConfig;

static RUN_COUNTER: AtomicU64 = AtomicU64::new(0);

/// True once the child has exited; it stays a zombie (WNOWAIT) so its process group id stays reserved.
pub(crate) fn exited_without_reaping(pid: libc::pid_t) -> bool {
    // SAFETY: zeroed siginfo_t is a valid out-parameter for waitid.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let r = libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        r == 0 && info.si_pid() != 0
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    cpu: u64,
    mem: u64,
    nproc: u64,
    fsize: u64,
    nofile: u64,
}

impl From<&SandboxConfig> for Limits {
    fn from(c: &SandboxConfig) -> Self {
        Limits {
            cpu: c.cpu_seconds.max(1),
            mem: c.memory_bytes,
            nproc: c.max_processes,
            fsize: c.max_file_bytes,
            nofile: c.max_open_files,
        }
    }
}

impl Limits {
    /// Runs in the forked child before `exec`: only async-signal-safe calls.
    pub(crate) fn apply(&self, drop_to_uid: Option<u32>) -> std::io::Result<()> {
        let check = |r: libc::c_int| {
            if r == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        };
        // SAFETY: raw syscalls with valid arguments, in the child process.
        unsafe {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            check(libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ))?;
            let set = |res, v: u64| {
                let l = libc::rlimit {
                    rlim_cur: v,
                    rlim_max: v,
                };
                check(libc::setrlimit(res, &l))
            };
            set(libc::RLIMIT_CPU, self.cpu)?;
            set(libc::RLIMIT_AS, self.mem)?;
            set(libc::RLIMIT_NPROC, self.nproc)?;
            set(libc::RLIMIT_FSIZE, self.fsize)?;
            set(libc::RLIMIT_NOFILE, self.nofile)?;
            set(libc::RLIMIT_CORE, 0)?;
            if let Some(uid) = drop_to_uid {
                check(libc::setgroups(0, std::ptr::null()))?;
                check(libc::setgid(uid))?;
                check(libc::setuid(uid))?;
            }
        }
        Ok(())
    }
}

/// SIGKILLs every process whose real uid is `uid` until none is left (at most about 2 s).
pub(crate) fn kill_uid(uid: u32) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let mut found = false;
        let Ok(entries) = fs::read_dir("/proc") else {
            return;
        };
        for e in entries.flatten() {
            let Some(pid) = e
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<libc::pid_t>().ok())
            else {
                continue;
            };
            let Ok(status) = fs::read_to_string(e.path().join("status")) else {
                continue;
            };
            let real_uid = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next())
                .and_then(|u| u.parse::<u32>().ok());
            if real_uid == Some(uid) {
                found = true;
                // SAFETY: plain syscall; the pid runs as a uid reserved for sandboxed programs.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
        if !found || Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

pub(crate) fn python_candidates(cfg: &SandboxConfig) -> Vec<PathBuf> {
    if let Some(p) = &cfg.python {
        return vec![p.clone()];
    }
    let mut v = vec![PathBuf::from("/usr/bin/python3")];
    let resolved = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if let Some(p) = resolved.filter(|p| !p.as_os_str().is_empty() && !v.contains(p)) {
        v.push(p);
    }
    v
}

fn base_dir() -> std::io::Result<PathBuf> {
    // One base per user: another user's base is not ours to chmod or write into.
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let base = std::env::temp_dir().join(format!("augur-sandbox-{euid}"));
    fs::create_dir_all(&base)?;
    fs::set_permissions(&base, fs::Permissions::from_mode(0o711))?;
    Ok(base)
}

/// Leases `n` uids from `base..base+4096` by holding an exclusive `flock` on one lock file per uid.
pub(crate) fn lease_uids(base: u32, n: usize) -> std::io::Result<(Vec<u32>, Vec<fs::File>)> {
    use std::os::fd::AsRawFd;
    let dir = base_dir()?;
    let (mut uids, mut files) = (Vec::new(), Vec::new());
    for k in 0..4096u32 {
        if uids.len() == n {
            break;
        }
        let uid = base + k;
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(format!("uid-{uid}.lock")))?;
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            uids.push(uid);
            files.push(f);
        }
    }
    if uids.len() < n {
        return Err(std::io::Error::other("no free sandbox uid"));
    }
    Ok((uids, files))
}

pub(crate) fn make_run_dir() -> std::io::Result<PathBuf> {
    let base = base_dir()?;
    let n = RUN_COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = base.join(format!("run-{}-{n}-{nanos}", std::process::id()));
    fs::create_dir(&dir)?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
    Ok(dir)
}
