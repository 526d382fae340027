//! Host-side plumbing of the sandbox: rlimits applied between `fork` and `exec`, uid leases, killing
//! leftovers by uid, run directories, interpreter discovery. Kept apart from the policy in `sandbox.rs`,
//! which builds on it (this module knows nothing of `SandboxConfig`).
//!
//! System calls go through `nix`'s safe wrappers; none is left raw.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::prctl::set_pdeathsig;
use nix::sys::resource::{setrlimit, Resource};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::{geteuid, setgid, setgroups, setsid, setuid, Gid, Pid, Uid};

static RUN_COUNTER: AtomicU64 = AtomicU64::new(0);

/// True once the child has exited; it stays a zombie (WNOWAIT) so its process group id stays reserved.
pub(crate) fn exited_without_reaping(pid: Pid) -> bool {
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    match waitid(Id::Pid(pid), flags) {
        Ok(WaitStatus::StillAlive) => false,
        Ok(_) => true,
        // nix reports a death by a signal it has no name for (a real-time one) as EINVAL; the
        // flags are valid, so EINVAL can only mean that: the child has exited.
        Err(Errno::EINVAL) => true,
        Err(_) => false,
    }
}

/// The rlimits a sandboxed process starts under (soft = hard for each).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// `RLIMIT_CPU`, seconds.
    pub(crate) cpu_seconds: u64,
    /// `RLIMIT_AS`, bytes.
    pub(crate) memory_bytes: u64,
    /// `RLIMIT_NPROC`.
    pub(crate) processes: u64,
    /// `RLIMIT_FSIZE`, bytes.
    pub(crate) file_bytes: u64,
    /// `RLIMIT_NOFILE`.
    pub(crate) open_files: u64,
}

impl Limits {
    /// Runs in the forked child before `exec`: only async-signal-safe calls (each nix wrapper
    /// below is one system call, with no allocation).
    pub(crate) fn apply(&self, drop_to_uid: Option<u32>) -> std::io::Result<()> {
        setsid()?;
        set_pdeathsig(Signal::SIGKILL)?;
        let set = |resource, v: u64| setrlimit(resource, v, v);
        set(Resource::RLIMIT_CPU, self.cpu_seconds)?;
        set(Resource::RLIMIT_AS, self.memory_bytes)?;
        set(Resource::RLIMIT_NPROC, self.processes)?;
        set(Resource::RLIMIT_FSIZE, self.file_bytes)?;
        set(Resource::RLIMIT_NOFILE, self.open_files)?;
        set(Resource::RLIMIT_CORE, 0)?;
        if let Some(uid) = drop_to_uid {
            setgroups(&[])?;
            setgid(Gid::from_raw(uid))?;
            setuid(Uid::from_raw(uid))?;
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
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
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
                // The pid runs as a uid reserved for sandboxed programs; one already gone is fine.
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        if !found || Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub(crate) fn is_root() -> bool {
    geteuid().is_root()
}

/// The interpreters to try: `explicit` alone when given, else `/usr/bin/python3`, then the
/// `python3` found on `PATH` (resolved to the real binary).
pub(crate) fn python_candidates(explicit: Option<&Path>) -> Vec<PathBuf> {
    if let Some(p) = explicit {
        return vec![p.to_path_buf()];
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
    let euid = geteuid();
    let base = std::env::temp_dir().join(format!("augur-sandbox-{euid}"));
    fs::create_dir_all(&base)?;
    fs::set_permissions(&base, fs::Permissions::from_mode(0o711))?;
    Ok(base)
}

/// Leases `n` uids from `base..base+4096` by holding an exclusive `flock` on one lock file per uid.
pub(crate) fn lease_uids(base: u32, n: usize) -> std::io::Result<(Vec<u32>, Vec<Flock<fs::File>>)> {
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
        if let Ok(lock) = Flock::lock(f, FlockArg::LockExclusiveNonblock) {
            uids.push(uid);
            files.push(lock);
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
