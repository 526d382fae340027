//! Running one untrusted Python program, as contained as this machine allows.
//!
//! Every run gets a fresh directory under the system temp dir (mode 0700, removed afterwards) holding `prog.py`
//! and the stdin file, and a new process started with: an empty environment (only `PATH`, `LANG`, `HOME` set),
//! `python -I -B` (isolated mode: no user site, no `PYTHON*` variables), its own session and process group,
//! `PR_SET_PDEATHSIG`, and rlimits on CPU seconds, address space (memory), process count, file size, open files
//! and core dumps. A wall-clock timeout kills the whole process group; stdout and stderr are each capped, and
//! going over the cap kills the program too.
//!
//! On top of that, one of three isolation levels, probed once at [`Sandbox::new`] (first that runs a test
//! program wins):
//! * [`Isolation::RootNamespaces`] (running as root, the case on the development machines and in CI): `unshare
//!   --pid --net --mount --mount-proc --fork --kill-child`, then a minimal root file system (below), then
//!   `setpriv` drops to an unprivileged uid/gid (one per worker slot, leased from `uid_base..uid_base+4096` with
//!   an `flock` on `<tmp>/augur-sandbox-<euid>/uid-N.lock`, so concurrent sandboxes, in this process or another,
//!   never share one; no supplementary groups, no capabilities, `no_new_privs`). Root ignores
//!   `RLIMIT_NPROC`; the dropped uid does not, and each worker slot has its own uid so one fork bomb cannot
//!   starve the other workers. The program is pid 1 of its own pid namespace: when it exits or is killed,
//!   the kernel kills every process it left behind, even ones that escaped the process group.
//! * [`Isolation::UserNamespaces`] (not root, unprivileged user namespaces allowed): the same through
//!   `unshare --user --map-root-user`; `RLIMIT_NPROC` applies because the real uid is not root (counted per
//!   user namespace on current kernels). Exercised on the development machine by running the hostile suite
//!   as uid 65534; there is no uid drop, so no kill-by-uid cleanup either (the pid namespace does it).
//! * [`Isolation::Plain`] (fallback when `unshare` is missing or refused, or the minimal root cannot be built):
//!   only rlimits, the process group and (when root) the uid drop in the child before `exec`. **No network
//!   isolation, no private `/tmp` and the host's file system** at this level (read-only only by permissions);
//!   children that call `setsid` can outlive the run until their CPU limit ends them. Falling back to it
//!   prints a warning naming why the namespace levels failed.
//!
//! The minimal root file system (both namespace levels): a tmpfs made the root with `pivot_root`, the host's
//! tree unmounted, holding read-only binds of `/usr` (the interpreter, its standard library and the shared
//! libraries it loads; `/bin`, `/lib`... as the host has them) and of the interpreter's install prefix when it
//! is outside `/usr`, `/dev/{null,zero,random,urandom}`, a fresh `/proc` of the sandbox's pid namespace, a
//! 16 MiB tmpfs `/tmp`, and the run directory at `/tmp/w`. `/etc`, `/home`, `/root`, `/sys` and every other
//! host path do not exist for the program.
//!
//! Not isolated at any level: there is no seccomp filter (any syscall allowed by the uid can be made); CPU time
//! is limited per process, not for the whole tree (the process cap bounds the product); no cgroup memory
//! accounting, so `RLIMIT_AS` (per process) is the memory bound.

use std::fs;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::fcntl::Flock;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::host::{
    exited_without_reaping, is_root, kill_uid, lease_uids, make_run_dir, python_candidates, Limits,
};
use crate::error::RewardError;

/// Resource limits and interpreter choice for sandboxed runs.
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxConfig {
    /// Python interpreter; `None` tries `/usr/bin/python3`, then the `python3` found on `PATH` (resolved to the
    /// real binary: shims such as pyenv's need an environment the sandbox clears).
    pub python: Option<PathBuf>,
    /// Wall-clock limit per run.
    pub wall_timeout: Duration,
    /// `RLIMIT_CPU` in seconds, per process: a backstop above `wall_timeout`, so that a
    /// busy loop is reported as a timeout rather than as a SIGKILL from the CPU limit.
    pub cpu_seconds: u64,
    /// `RLIMIT_AS` in bytes, per process.
    pub memory_bytes: u64,
    /// `RLIMIT_NPROC`: processes (threads included) of the sandbox uid.
    pub max_processes: u64,
    /// `RLIMIT_FSIZE` in bytes: largest file the program may write.
    pub max_file_bytes: u64,
    /// `RLIMIT_NOFILE`.
    pub max_open_files: u64,
    /// Cap on captured stdout and on stderr, each; exceeding it kills the program.
    pub max_output_bytes: usize,
    /// First uid used when dropping root privileges; each worker slot leases its own uid from
    /// `uid_base..uid_base + 4096`. After every run, processes left with that uid are killed.
    pub uid_base: u32,
    /// Skip namespace isolation even if available (for tests of the fallback).
    pub force_plain: bool,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            python: None,
            wall_timeout: Duration::from_secs(10),
            cpu_seconds: 11,
            memory_bytes: 1 << 30,
            max_processes: 32,
            max_file_bytes: 16 << 20,
            max_open_files: 64,
            max_output_bytes: 1 << 20,
            uid_base: 61_000,
            force_plain: false,
        }
    }
}

/// The isolation level this machine allows (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Root: pid+net+mount namespaces, private tmpfs, uid drop via `setpriv`.
    RootNamespaces,
    /// Non-root: the same inside a user namespace.
    UserNamespaces,
    /// rlimits and process group only.
    Plain,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exited with this code (a signal death reads as 128 + signal).
    Exited(i32),
    /// Killed at the wall-clock limit.
    Timeout,
    /// Killed for writing more than the output cap.
    OutputLimit,
}

/// What one run produced.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutput {
    /// How it ended.
    pub outcome: Outcome,
    /// Captured stdout (lossy UTF-8, capped).
    pub stdout: String,
    /// Captured stderr (lossy UTF-8, capped).
    pub stderr: String,
    /// Wall time.
    pub elapsed: Duration,
}

/// A probed, shareable sandbox with a fixed number of concurrent worker slots.
#[derive(Debug)]
pub struct Sandbox {
    cfg: SandboxConfig,
    isolation: Isolation,
    python: PathBuf,
    slots: Mutex<Vec<u32>>,
    freed: Condvar,
    uids: Vec<u32>,
    _leases: Arc<Vec<Flock<fs::File>>>,
}

impl Sandbox {
    /// Probes the strongest working isolation and a usable interpreter; `workers` bounds concurrent runs.
    pub fn new(cfg: SandboxConfig, workers: usize) -> Result<Self, RewardError> {
        let mut modes = Vec::new();
        if !cfg.force_plain {
            if is_root() {
                modes.push(Isolation::RootNamespaces);
            }
            modes.push(Isolation::UserNamespaces);
        }
        modes.push(Isolation::Plain);
        let pythons = python_candidates(cfg.python.as_deref());
        let (uids, leases) = lease_uids(cfg.uid_base, workers.max(1))
            .map_err(|e| RewardError::Sandbox(format!("uid lease: {e}")))?;
        let leases = Arc::new(leases);
        let mut errors = Vec::new();
        for mode in modes {
            for py in &pythons {
                let sb = Sandbox {
                    cfg: cfg.clone(),
                    isolation: mode,
                    python: py.clone(),
                    slots: Mutex::new(uids.iter().rev().copied().collect()),
                    freed: Condvar::new(),
                    uids: uids.clone(),
                    _leases: leases.clone(),
                };
                match sb.run("print(6 * 7)", "") {
                    Ok(out) if out.stdout.trim() == "42" => {
                        if mode == Isolation::Plain && !cfg.force_plain {
                            eprintln!(
                                "warning: code sandbox: no namespace isolation on this machine ({}); \
                                 untrusted programs run with rlimits only and can read the host's \
                                 world-readable files and reach the network",
                                errors.join("; ")
                            );
                        }
                        return Ok(sb);
                    }
                    Ok(out) => {
                        errors.push(format!("{mode:?} {}: {}", py.display(), out.stderr.trim()))
                    }
                    Err(e) => errors.push(format!("{mode:?} {}: {e}", py.display())),
                }
            }
        }
        Err(RewardError::Sandbox(errors.join("; ")))
    }

    /// The isolation level in use.
    pub fn isolation(&self) -> Isolation {
        self.isolation
    }

    /// The uids programs run as (one per worker slot; meaningful when running as root).
    pub fn uids(&self) -> &[u32] {
        &self.uids
    }

    /// The interpreter in use.
    pub fn python(&self) -> &Path {
        &self.python
    }

    /// Runs `program` with `stdin`, blocking until a worker slot is free. Errors only when the process cannot
    /// be set up; anything the program does is reported in [`RunOutput`].
    pub fn run(&self, program: &str, stdin: &str) -> Result<RunOutput, RewardError> {
        let uid = self.acquire();
        let result = match make_run_dir() {
            Ok(dir) => {
                let r = self.run_in(&dir, uid, program, stdin);
                let _ = fs::remove_dir_all(&dir);
                r
            }
            Err(e) => Err(RewardError::Sandbox(format!("temp dir: {e}"))),
        };
        self.release(uid);
        result
    }

    fn acquire(&self) -> u32 {
        let mut free = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(s) = free.pop() {
                return s;
            }
            free = self.freed.wait(free).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn release(&self, slot: u32) {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(slot);
        self.freed.notify_one();
    }

    fn run_in(
        &self,
        dir: &Path,
        uid: u32,
        program: &str,
        stdin: &str,
    ) -> Result<RunOutput, RewardError> {
        let err = |what: &str, e: std::io::Error| RewardError::Sandbox(format!("{what}: {e}"));
        fs::write(dir.join("prog.py"), program).map_err(|e| err("write program", e))?;
        fs::write(dir.join("stdin.txt"), stdin).map_err(|e| err("write stdin", e))?;
        let drop_uid = is_root() && self.isolation != Isolation::UserNamespaces;
        if drop_uid {
            std::os::unix::fs::chown(dir, Some(uid), Some(uid)).map_err(|e| err("chown", e))?;
        }
        let stdin_file = fs::File::open(dir.join("stdin.txt")).map_err(|e| err("open stdin", e))?;
        let mut cmd = self.command(uid);
        cmd.current_dir(dir)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("LANG", "C.UTF-8")
            .env("HOME", "/tmp")
            .stdin(Stdio::from(stdin_file))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let limits = Limits::from(&self.cfg);
        let plain_uid = (self.isolation == Isolation::Plain && drop_uid).then_some(uid);
        // SAFETY: the closure only makes async-signal-safe syscalls (setsid, prctl, setrlimit, set*id).
        unsafe {
            cmd.pre_exec(move || limits.apply(plain_uid));
        }
        let start = Instant::now();
        let mut child = cmd.spawn().map_err(|e| err("spawn", e))?;
        let result = self.supervise(&mut child, start);
        if drop_uid {
            // Whatever still runs as this slot's uid is a leftover of this run (daemons in plain mode, or a
            // namespace still tearing down): kill it before the slot, and its process quota, is reused.
            kill_uid(uid);
        }
        result
    }

    fn command(&self, uid: u32) -> Command {
        let ns = [
            "--pid",
            "--net",
            "--mount",
            "--mount-proc",
            "--fork",
            "--kill-child",
            "--",
        ];
        // `$0` is the interpreter, `$1` its install prefix when outside /usr (else empty).
        let prefix = install_prefix(&self.python)
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let (program, exec) = match self.isolation {
            Isolation::RootNamespaces => (
                "unshare",
                format!(
                    "exec setpriv --reuid={uid} --regid={uid} --clear-groups --no-new-privs \
                     --inh-caps=-all --bounding-set=-all -- \"$0\" -I -B prog.py"
                ),
            ),
            Isolation::UserNamespaces => ("unshare", "exec \"$0\" -I -B prog.py".to_string()),
            Isolation::Plain => {
                let mut c = Command::new(&self.python);
                c.args(["-I", "-B", "prog.py"]);
                return c;
            }
        };
        let mut c = Command::new(program);
        if self.isolation == Isolation::UserNamespaces {
            c.args(["--user", "--map-root-user"]);
        }
        c.args(ns)
            .args(["/bin/sh", "-c", &format!("{MINIMAL_ROOT}{exec}")])
            .arg(&self.python)
            .arg(prefix);
        c
    }

    /// Waits for the child under the wall-clock limit and output caps, then kills its process group.
    fn supervise(&self, child: &mut Child, start: Instant) -> Result<RunOutput, RewardError> {
        let pid = Pid::from_raw(child.id() as i32);
        let overflow = Arc::new(AtomicBool::new(false));
        let cap = self.cfg.max_output_bytes;
        let out_rx = spawn_reader(child.stdout.take(), cap, overflow.clone());
        let err_rx = spawn_reader(child.stderr.take(), cap, overflow.clone());
        let mut outcome = None;
        let mut nap = Duration::from_micros(200);
        while outcome.is_none() {
            if exited_without_reaping(pid) {
                break;
            }
            if overflow.load(Ordering::Relaxed) {
                outcome = Some(Outcome::OutputLimit);
            } else if start.elapsed() >= self.cfg.wall_timeout {
                outcome = Some(Outcome::Timeout);
            } else {
                std::thread::sleep(nap);
                nap = (nap * 2).min(Duration::from_millis(5));
            }
        }
        // The child is not reaped yet, so its pid (= process group id) cannot have been reused;
        // a group already empty is fine.
        let _ = killpg(pid, Signal::SIGKILL);
        let status = child
            .wait()
            .map_err(|e| RewardError::Sandbox(format!("wait: {e}")))?;
        let elapsed = start.elapsed();
        let grace = Duration::from_secs(1);
        let stdout = out_rx.recv_timeout(grace).unwrap_or_default();
        let stderr = err_rx.recv_timeout(grace).unwrap_or_default();
        let code = {
            use std::os::unix::process::ExitStatusExt;
            status
                .code()
                .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
        };
        let outcome = outcome.unwrap_or(if overflow.load(Ordering::Relaxed) {
            Outcome::OutputLimit
        } else {
            Outcome::Exited(code)
        });
        Ok(RunOutput {
            outcome,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            elapsed,
        })
    }
}

impl From<&SandboxConfig> for Limits {
    fn from(c: &SandboxConfig) -> Self {
        Limits {
            cpu_seconds: c.cpu_seconds.max(1),
            memory_bytes: c.memory_bytes,
            processes: c.max_processes,
            file_bytes: c.max_file_bytes,
            open_files: c.max_open_files,
        }
    }
}

/// The shell steps (run as root of the new mount namespace, the run directory as working
/// directory) that give the program a root file system of its own: a tmpfs holding read-only
/// binds of `/usr` (interpreter, standard library, shared libraries; `/bin`, `/lib`... as the
/// host has them, links or binds) and of the interpreter's prefix `$1` when it is elsewhere,
/// `/dev/{null,zero,random,urandom}`, a fresh `/proc`, a tmpfs `/tmp` and the run directory at
/// `/tmp/w`. `pivot_root` makes it the root and the host's tree is unmounted, so `/etc`, `/home`,
/// `/root` and every other host file are simply absent.
const MINIMAL_ROOT: &str = "set -e; R=/tmp; mount -t tmpfs -o size=16m,mode=755 tmpfs $R; \
    ro() { mount --bind \"$1\" \"$R$1\"; mount -o remount,bind,ro \"$R$1\"; }; \
    mkdir -p $R/usr $R/dev $R/proc $R/tmp $R/.old ${1:+\"$R$1\"}; \
    for d in /bin /lib /lib32 /lib64 /libx32 /sbin; do \
      if [ -L $d ]; then ln -s \"$(readlink $d)\" $R$d; elif [ -d $d ]; then mkdir $R$d; ro $d; fi; done; \
    ro /usr; if [ -n \"$1\" ]; then ro \"$1\"; fi; \
    touch $R/dev/null $R/dev/zero $R/dev/random $R/dev/urandom; \
    for n in null zero random urandom; do mount --bind /dev/$n $R/dev/$n; done; \
    mount -t proc proc $R/proc; mount -t tmpfs -o size=16m,mode=1777 tmpfs $R/tmp; \
    mkdir $R/tmp/w; mount --bind /proc/self/cwd $R/tmp/w; \
    P=/usr/sbin/pivot_root; [ -x $P ] || P=/sbin/pivot_root; \
    cd $R; $P . .old; umount -l /.old; rmdir /.old; cd /tmp/w; \
    unset OLDPWD; ";

/// The install prefix of `python` (`<prefix>/bin/python3`) when it is not under `/usr`, which
/// the minimal root binds anyway.
fn install_prefix(python: &Path) -> Option<PathBuf> {
    let real = python.canonicalize().ok()?;
    let prefix = real.parent()?.parent()?;
    (!prefix.starts_with("/usr") && prefix != Path::new("/")).then(|| prefix.to_path_buf())
}

/// Reads a pipe to the end (or until `cap` bytes, then flags overflow and stops reading).
fn spawn_reader<R: Read + Send + 'static>(
    pipe: Option<R>,
    cap: usize,
    overflow: Arc<AtomicBool>,
) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let mut chunk = [0u8; 8192];
            while let Ok(n) = p.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                let room = cap.saturating_sub(buf.len());
                buf.extend_from_slice(&chunk[..n.min(room)]);
                if n > room {
                    overflow.store(true, Ordering::Relaxed);
                    break;
                }
            }
        }
        let _ = tx.send(buf);
    });
    rx
}
