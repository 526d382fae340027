//! Hostile programs are contained, scored 0, and leave the host (this test process included) unharmed.
//! Every run is bounded by a 3 s wall clock.

use std::io::ErrorKind;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use augur_reward::code::sandbox::{Isolation, Outcome, Sandbox, SandboxConfig};
use augur_reward::{CodeOptions, CodeTests, CodeVerifier, Reference, RewardMode, Verifier};

const UID_BASE: u32 = 61_500;

/// The CPU limit sits above the wall timeout so an infinite loop always ends as `Timeout`:
/// with equal limits, an idle machine lets RLIMIT_CPU's SIGKILL win the race (`Exited(137)`).
fn config() -> SandboxConfig {
    SandboxConfig {
        wall_timeout: Duration::from_secs(3),
        cpu_seconds: 4,
        uid_base: UID_BASE,
        ..SandboxConfig::default()
    }
}

fn sandbox() -> Sandbox {
    let sb = Sandbox::new(config(), 2).expect("sandbox");
    println!("isolation: {:?}", sb.isolation());
    sb
}

/// Processes owned by the sandbox's uids still alive.
fn leftover_processes(sb: &Sandbox) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(status) = std::fs::read_to_string(e.path().join("status")) else {
            continue;
        };
        if let Some(line) = status.lines().find(|l| l.starts_with("Uid:")) {
            let uid: u32 = line
                .split_whitespace()
                .nth(1)
                .and_then(|u| u.parse().ok())
                .unwrap_or(0);
            if sb.uids().contains(&uid) {
                n += 1;
            }
        }
    }
    n
}

fn scored_zero(program: &str) {
    let v = CodeVerifier::new(CodeOptions {
        sandbox: config(),
        workers: 2,
        mode: RewardMode::Fraction,
    })
    .unwrap();
    let tests = Reference::Code(CodeTests::Asserts {
        setup: String::new(),
        asserts: vec!["assert solve(2) == 4".into()],
    });
    let s = v.score(program, &tests);
    println!("score: reward {} reason {:?}", s.reward, s.reason);
    assert_eq!(s.reward, 0.0);
    assert!(!s.correct);
}

#[test]
fn infinite_loop_times_out() {
    let sb = sandbox();
    let t = Instant::now();
    let out = sb.run("while True:\n    pass\n", "").unwrap();
    assert_eq!(out.outcome, Outcome::Timeout);
    assert!(t.elapsed() < Duration::from_secs(6));
    scored_zero("def solve(x):\n    return x * 2\nwhile True:\n    pass\n");
}

#[test]
fn fork_bomb_is_contained() {
    let sb = sandbox();
    let bomb =
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n";
    let t = Instant::now();
    let out = sb.run(bomb, "").unwrap();
    println!("fork bomb: {:?} after {:?}", out.outcome, out.elapsed);
    assert!(t.elapsed() < Duration::from_secs(8));
    assert_ne!(out.outcome, Outcome::Exited(0));
    assert_eq!(
        leftover_processes(&sb),
        0,
        "fork bomb left processes behind"
    );
    // The host can still start processes.
    assert!(std::process::Command::new("true")
        .status()
        .unwrap()
        .success());
    // Detached children (setsid + double fork) die with the run too.
    let daemon = "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(60)\n    os._exit(0)\nprint('parent done')\n";
    let out = sb.run(daemon, "").unwrap();
    println!("daemon: {:?} {:?}", out.outcome, out.stdout.trim());
    assert_eq!(
        leftover_processes(&sb),
        0,
        "daemonized child survived the run"
    );
    scored_zero(&format!("def solve(x):\n    return x * 2\n{bomb}"));
}

#[test]
fn memory_bomb_fails_fast() {
    let sb = sandbox();
    let out = sb
        .run("x = bytearray(8 * 1024 ** 3)\nprint('allocated')\n", "")
        .unwrap();
    assert!(
        matches!(out.outcome, Outcome::Exited(c) if c != 0),
        "{out:?}"
    );
    assert!(out.stderr.contains("MemoryError"), "{}", out.stderr);
    let out = sb
        .run(
            "a = []\nwhile True:\n    a.append(bytearray(10 ** 7))\n",
            "",
        )
        .unwrap();
    assert!(
        matches!(out.outcome, Outcome::Exited(c) if c != 0),
        "{out:?}"
    );
    scored_zero("def solve(x):\n    return x * 2\nblob = ' ' * (4 * 1024 ** 3)\n");
}

#[test]
fn huge_output_is_capped() {
    let sb = sandbox();
    let out = sb
        .run("while True:\n    print('x' * 100000)\n", "")
        .unwrap();
    assert_eq!(out.outcome, Outcome::OutputLimit);
    assert!(out.stdout.len() <= config().max_output_bytes);
    // Files are capped by RLIMIT_FSIZE.
    let out = sb
        .run(
            "open('big', 'w').write('x' * (64 << 20))\nprint('wrote')\n",
            "",
        )
        .unwrap();
    assert!(!out.stdout.contains("wrote"), "{out:?}");
    scored_zero("def solve(x):\n    return x * 2\nimport sys\nwhile True:\n    sys.stdout.write('y' * 65536)\n");
}

#[test]
fn writes_outside_run_dir_do_not_land() {
    let sb = sandbox();
    let host_dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let victim = host_dir.join(format!("augur-escape-{}", std::process::id()));
    let tmp_victim = std::path::PathBuf::from(format!("/tmp/augur-escape-{}", std::process::id()));
    let program = format!(
        "for p in [{:?}, {:?}, '/root/augur-escape', '/etc/augur-escape']:\n    try:\n        open(p, 'w').write('pwned')\n        print('wrote', p)\n    except OSError as e:\n        print('blocked', p, e)\n",
        victim.display().to_string(),
        tmp_victim.display().to_string()
    );
    let out = sb.run(&program, "").unwrap();
    println!("{}", out.stdout);
    assert!(!victim.exists(), "wrote into {}", victim.display());
    assert!(!std::path::Path::new("/root/augur-escape").exists());
    assert!(!std::path::Path::new("/etc/augur-escape").exists());
    if sb.isolation() != Isolation::Plain {
        assert!(!tmp_victim.exists(), "wrote into the host /tmp");
    }
    let _ = std::fs::remove_file(&tmp_victim);
    scored_zero(&program);
}

#[test]
fn network_is_unreachable() {
    let sb = sandbox();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let program = format!(
        "import socket\nfor addr in [('127.0.0.1', {port}), ('1.1.1.1', 53)]:\n    try:\n        socket.create_connection(addr, timeout=1)\n        print('connected', addr)\n    except OSError as e:\n        print('blocked', addr, e)\n"
    );
    let out = sb.run(&program, "").unwrap();
    println!("{}", out.stdout);
    if sb.isolation() != Isolation::Plain {
        assert!(!out.stdout.contains("connected"), "{}", out.stdout);
        assert_eq!(
            listener.accept().map(|_| ()).unwrap_err().kind(),
            ErrorKind::WouldBlock
        );
    }
    scored_zero(&program);
}

#[test]
fn killing_the_parent_fails() {
    let sb = sandbox();
    let me = std::process::id();
    let program = format!(
        "import os, signal\nfor name, f in [('ppid', lambda: os.kill(os.getppid(), 9)), ('host', lambda: os.kill({me}, 9)),\n        ('hostgroup', lambda: os.killpg({me}, 9)), ('all', lambda: os.kill(-1, 9))]:\n    try:\n        f()\n        print('sent', name)\n    except (OSError, ValueError) as e:\n        print('blocked', name, e)\n"
    );
    let out = sb.run(&program, "").unwrap();
    println!("{:?} {}", out.outcome, out.stdout);
    // Still alive: this line runs.
    assert!(!out.stdout.contains("sent host\n"));
    scored_zero(&program);
}

#[test]
fn environment_secrets_are_not_visible() {
    let sb = sandbox();
    let secret = "augur-secret-value-7c1f";
    std::env::set_var("AUGUR_TEST_SECRET", secret);
    let me = std::process::id();
    let program = format!(
        "import os\nprint(dict(os.environ))\nfor p in ['/proc/1/environ', '/proc/{me}/environ', '/proc/self/environ']:\n    try:\n        print(p, open(p, 'rb').read())\n    except OSError as e:\n        print('blocked', p, e)\n"
    );
    let out = sb.run(&program, "").unwrap();
    println!("{}", out.stdout);
    assert!(!out.stdout.contains(secret));
    assert!(!out.stdout.contains("CARGO"), "environment not cleared");
    scored_zero(&format!(
        "{program}\ndef solve(x):\n    return x * 2 if 'AUGUR_TEST_SECRET' in os.environ else 0\n"
    ));
}

#[test]
fn plain_fallback_still_contains_fork_bomb_and_loops() {
    let sb = Sandbox::new(
        SandboxConfig {
            force_plain: true,
            ..config()
        },
        2,
    )
    .expect("plain sandbox");
    assert_eq!(sb.isolation(), Isolation::Plain);
    assert_eq!(sb.run("print(1 + 1)", "").unwrap().stdout.trim(), "2");
    let t = Instant::now();
    let bomb =
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n";
    let out = sb.run(bomb, "").unwrap();
    println!("plain fork bomb: {:?}", out.outcome);
    assert!(t.elapsed() < Duration::from_secs(8));
    assert_eq!(
        leftover_processes(&sb),
        0,
        "fork bomb left processes behind"
    );
    assert_eq!(
        sb.run("while True: pass", "").unwrap().outcome,
        Outcome::Timeout
    );
}

/// A file the test owns, world-readable, in `dir`; removed on drop.
struct Canary(std::path::PathBuf);

impl Canary {
    fn new(dir: &std::path::Path, content: &str) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(format!("augur-canary-{}", std::process::id()));
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        Canary(path)
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn host_files_are_not_readable() {
    let sb = sandbox();
    let secret = "augur-canary-secret-93a1";
    let target = Canary::new(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")), secret);
    let tmp = Canary::new(std::path::Path::new("/tmp"), secret);
    let home = std::env::var_os("HOME").map(|h| Canary::new(std::path::Path::new(&h), secret));
    let mut paths = vec![target.0.clone(), tmp.0.clone(), "/etc/passwd".into()];
    paths.extend(home.iter().map(|c| c.0.clone()));
    let program = format!(
        "for p in {:?}:\n    try:\n        print(p, open(p).read())\n    except OSError as e:\n        print('blocked', p, e)\n",
        paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>()
    );
    let out = sb.run(&program, "").unwrap();
    println!("{}", out.stdout);
    assert_eq!(out.outcome, Outcome::Exited(0), "{}", out.stderr);
    if sb.isolation() != Isolation::Plain {
        assert!(!out.stdout.contains(secret), "a host file was readable");
        assert!(!out.stdout.contains("root:"), "/etc/passwd was readable");
    }
}

#[test]
fn home_and_root_cannot_be_listed() {
    let sb = sandbox();
    // Make sure each holds something to see, whatever the machine has.
    let home = Canary::new(
        std::path::Path::new(&std::env::var_os("HOME").unwrap()),
        "x",
    );
    let in_home_dir = std::fs::create_dir_all("/home")
        .ok()
        .map(|_| Canary::new(std::path::Path::new("/home"), "x"));
    let program = "import os\nfor d in ['/home', '/root', os.path.expanduser('~')]:\n    try:\n        print(d, sorted(os.listdir(d)))\n    except OSError as e:\n        print('blocked', d, e)\n";
    let out = sb.run(program, "").unwrap();
    println!("{}", out.stdout);
    assert_eq!(out.outcome, Outcome::Exited(0), "{}", out.stderr);
    if sb.isolation() != Isolation::Plain {
        let name = home.0.file_name().unwrap().to_str().unwrap().to_string();
        assert!(!out.stdout.contains(&name), "{}", out.stdout);
        for dir in ["/home", "/root"] {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                assert!(
                    !out.stdout.contains(&format!("'{name}'")),
                    "{dir}/{name} listed: {}",
                    out.stdout
                );
            }
        }
    }
    drop(in_home_dir);
}
