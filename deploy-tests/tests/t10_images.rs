//! `scripts/build-images.sh` for real: the Debian base built without a registry (or reused when
//! this machine already has it), `grove/root` from the host-built binary, `grove/haproxy` from
//! Debian's archive; then a grove-root container must answer `/healthz` and `/readyz` and log
//! the Admin in on its mapped port. Skipped loudly where no Docker engine answers.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Images built by this test carry this tag, so a user's `latest` images are never replaced.
const TAG: &str = "grove-test";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// `target/<profile>`: this test binary lives in `target/<profile>/deps/`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>").to_path_buf()
}

fn skip(test: &str, why: &str, hint: &str) {
    let banner = "!".repeat(78);
    let notice = format!("\n{banner}\n!!! SKIPPED {test}: {why}\n!!! {hint}\n{banner}\n");
    // Straight to file descriptor 2: libtest's capture of `eprintln!` would hide it.
    let _ = std::io::stderr().write_all(notice.as_bytes());
}

fn docker_or_skip(test: &str) -> bool {
    match Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]).output() {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            skip(test, &format!("the Docker engine does not answer: {}", String::from_utf8_lossy(&o.stderr).trim()), "Start dockerd (and let this user use it) to run this test.");
            false
        }
        Err(e) => {
            skip(test, &format!("no docker command ({e})"), "Install Docker Engine (Debian's docker.io) to run this test.");
            false
        }
    }
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    // Shown when the test fails (and with --no-capture).
    eprintln!("$ {cmd:?} -> {}\n{}{}", out.status, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    out
}

fn build_images(args: &[&str]) -> Output {
    run(Command::new(repo_root().join("scripts/build-images.sh")).args(args).current_dir(repo_root()))
}

/// Removes the test's containers and images, whatever happens.
struct Cleanup {
    containers: Vec<String>,
    images: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = Command::new("docker").args(["rm", "-f", "-v", c]).output();
        }
        for i in &self.images {
            let _ = Command::new("docker").args(["rmi", i]).output();
        }
    }
}

/// One HTTP/1.0 exchange; `(status, body)`.
fn http(addr: &str, method: &str, path: &str, body: Option<&str>) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let body = body.unwrap_or("");
    write!(s, "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len())?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((status, body))
}

/// Poll `check` until it returns `Some`, or fail after `limit` with `what`.
fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(started.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn t10_root_image_serves_the_api_and_haproxy_image_checks_a_config() {
    let test = "t10_root_image_serves_the_api_and_haproxy_image_checks_a_config";
    if !docker_or_skip(test) {
        return;
    }
    let bin_dir = profile_dir();
    let grove_root = bin_dir.join("grove-root");
    if !grove_root.exists() {
        skip(
            test,
            &format!("no grove-root binary at {}", grove_root.display()),
            "`cargo nextest run --workspace` builds it; alone: cargo build -p grove-root --bin grove-root",
        );
        return;
    }
    let root_image = format!("grove/root:{TAG}");
    let haproxy_image = format!("grove/haproxy:{TAG}");
    let mut cleanup = Cleanup { containers: Vec::new(), images: vec![root_image.clone(), haproxy_image.clone()] };

    // The base is built here on a fresh machine (debootstrap, about a minute and a half) and
    // reused afterwards.
    let out = build_images(&["--only", "root,haproxy", "--bin-dir", bin_dir.to_str().unwrap(), "--tag", TAG, "--strict"]);
    assert!(out.status.success(), "build-images.sh failed: {}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("built {root_image}")), "{stderr}");
    assert!(stderr.contains(&format!("built {haproxy_image}")), "{stderr}");

    // Every shared library the binary needs is in the image.
    let out = run(Command::new("docker").args(["run", "--rm", "--entrypoint", "ldd", &root_image, "/usr/local/bin/grove-root"]));
    let ldd = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && ldd.contains("libc.so"), "ldd in the image failed: {ldd}");
    assert!(!ldd.contains("not found"), "the image lacks a library grove-root needs:\n{ldd}");

    // One grove-root replica (a group of one), API on a port Docker picks.
    let name = format!("grove-test-root-{}", std::process::id());
    cleanup.containers.push(name.clone());
    let out = run(Command::new("docker").args([
        "run", "-d", "--name", &name, "-p", "127.0.0.1::10000", "-e", "GROVE_ADMIN_PASSWORD=test-admin-pw", &root_image, "--id", "1",
        "--raft-advertise", "127.0.0.1:10010",
    ]));
    assert!(out.status.success(), "docker run failed");
    let out = run(Command::new("docker").args(["port", &name, "10000/tcp"]));
    let addr = String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("").trim().to_owned();
    assert!(addr.starts_with("127.0.0.1:"), "no mapped port: {addr:?}");

    let logs = || String::from_utf8_lossy(&run(Command::new("docker").args(["logs", &name])).stderr).into_owned();
    let (status, body) = wait_for("/healthz on the container", Duration::from_secs(30), || http(&addr, "GET", "/healthz", None).ok());
    assert_eq!(status, 200, "healthz: {body}\n{}", logs());
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["status"], "ok");

    let ready = wait_for("/readyz 200 (leader elected, signing key committed)", Duration::from_secs(60), || {
        http(&addr, "GET", "/readyz", None).ok().filter(|(s, _)| *s == 200).map(|(_, b)| b)
    });
    let ready: serde_json::Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(ready["role"], "leader", "{ready}");

    // The data directory is writable by the image's user: a login reads the committed admin.
    // The root answers ready once it holds the signing key; the default Admin is committed just
    // after (404 "organization root does not exist" until then).
    let login = || http(&addr, "POST", "/api/auth/login", Some(r#"{"username":"Admin","password":"test-admin-pw"}"#)).ok();
    let (status, body) = wait_for("the Admin's login", Duration::from_secs(60), || login().filter(|(s, _)| *s != 404 && *s != 503));
    assert_eq!(status, 200, "login: {body}\n{}", logs());
    assert!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["token"].as_str().is_some_and(|t| t.len() > 20));

    // HAProxy from Debian's archive, reading a configuration at the registry image's path.
    let dir = std::env::temp_dir().join(format!("grove-test-haproxy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("haproxy.cfg"),
        "global\n  log stderr local0\ndefaults\n  mode http\n  timeout connect 1s\n  timeout client 5s\n  timeout server 5s\n\
         frontend api\n  bind :10000\n  default_backend roots\nbackend roots\n  option httpchk GET /readyz\n  server r1 127.0.0.1:10001 check\n",
    )
    .unwrap();
    let mount = format!("{}:/usr/local/etc/haproxy:ro", dir.display());
    let out = run(Command::new("docker").args(["run", "--rm", "-v", &mount, &haproxy_image, "haproxy", "-c", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "haproxy -c rejected a valid configuration");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Configuration file is valid"));
}

#[test]
fn t20_a_missing_binary_is_skipped_loudly_and_strict_fails() {
    let test = "t20_a_missing_binary_is_skipped_loudly_and_strict_fails";
    if !docker_or_skip(test) {
        return;
    }
    let empty = std::env::temp_dir().join(format!("grove-test-empty-bin-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let dir = empty.to_str().unwrap();
    // An explicit base that is never built: this test touches no image.
    let args = ["--only", "cluster", "--bin-dir", dir, "--base", "grove/debian:never-built"];
    let out = build_images(&args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "a skipped image is not an error without --strict: {stderr}");
    assert!(stderr.contains(&format!("SKIPPED image grove/cluster: no binary {dir}/grove-cluster")), "{stderr}");
    assert!(stderr.contains("Images NOT built"), "{stderr}");

    let strict: Vec<&str> = args.iter().copied().chain(["--strict"]).collect();
    let out = build_images(&strict);
    let _ = std::fs::remove_dir(&empty);
    assert_eq!(out.status.code(), Some(3), "--strict exits 3 when an image was skipped");
}
