//! Regression test for issue 7's start-up cost: `runner exec` initialises libgit2 without parsing the CA bundle
//! ([`runner::exec::libgit2::init_with_lazy_tls_trust`]), so a local `discover` and `checkout` never read it,
//! and the first remote fetch does ([`runner::exec::libgit2::load_tls_trust`]).
//!
//! Observed from outside OpenSSL: `SSL_CERT_FILE` names a FIFO, and a watcher thread tries to open its write
//! end without blocking, which succeeds only while someone has it open for reading. A reader blocks in
//! `open` until the watcher opens it, so no read can go unseen; the watcher then writes a CA certificate.
//! Its own test binary without the libtest harness: the initialisation changes environment variables, which
//! needs a process where nothing else runs (the watcher only makes `open` and `write` system calls).

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use runner::exec::checkout;
use runner::exec::libgit2::{self, TlsTrust};

/// A throwaway self-signed CA certificate (its key was not kept): something OpenSSL can load.
const CA_PEM: &str = "\
-----BEGIN CERTIFICATE-----\n\
MIIDJTCCAg2gAwIBAgIUBZBPQE8pj2khwD9H3AZF+TbGPnAwDQYJKoZIhvcNAQEL\n\
BQAwGjEYMBYGA1UEAwwPRHJ5ZG9jayBUZXN0IENBMB4XDTI2MTIwMjE3MjMwOVoX\n\
DTM2MTEyOTE3MjMwOVowGjEYMBYGA1UEAwwPRHJ5ZG9jayBUZXN0IENBMIIBIjAN\n\
BgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAl9MVXzck0pETFSS76luMl43sbma2\n\
m4/HHNMtGI3TGe5GUMtuWNssmjyeOQDbwd0K3/QlCLOK/W4iPOiFuJerhhYySGHu\n\
dzBTrWRCucUbHatJOXZZfRP4Vf9/Wt8OZLNwBcrJgm9Z1SucMV0tCNbvBLp0JSZV\n\
lbwO4UK5KGZD99SMnRTDQjJ9w+9UirpCxG7CNRYYGteHqpGvHNCihzkRLJcE7p+T\n\
Arsnpon9H4XNLG6LpzRr9G6zndbOs2Lv2+ty5wLcus4F2Vg1Ei1pDRLoxwkYVmbm\n\
fp9ccFQxvJt0z4pwdOXO1gue/B9Etie0fV4oCh/QyLUiQGZH/8JuSulppwIDAQAB\n\
o2MwYTAdBgNVHQ4EFgQUjufzu2wsdS2iW0ZLIW741AJ5fM4wHwYDVR0jBBgwFoAU\n\
jufzu2wsdS2iW0ZLIW741AJ5fM4wDwYDVR0TAQH/BAUwAwEB/zAOBgNVHQ8BAf8E\n\
BAMCAgQwDQYJKoZIhvcNAQELBQADggEBADmZ6qNLZmJYe6vRIshUOOSQQTONuFBF\n\
6KuvJWP/8m8Pu0mZdaEK0CRE8/maeV/lsqHK4SbYhcAuMM/AV/pLuvYxKdFIwdw+\n\
r7fqq84oShDlFgl9e0Ml4zYIQD/DoLQEOBmwzLYJFQOrKVz97K+vVh2CmoPIjumG\n\
iCa3IJgDmaU4dTjs04ZtlQYBIyf3T4oafEzgQ5YaC9DU53l3xV2uBZKCNN6PZF6n\n\
JChrMRZgRXswSFDAUy6RsYQl9PzeDz9SMT99t2J84TSKjOMugUycNYsqaNpDws64\n\
fy1QhjTk3/sEa7WVU+Agrc0AMm3dQIm4pKpiV259Wrn1R+0CRyjXUsA=\n\
-----END CERTIFICATE-----\n\
";

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fifo = dir.path().join("ca-bundle.pem");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR).expect("mkfifo");
    let cert_dir = dir.path().join("certs");
    std::fs::create_dir(&cert_dir).expect("mkdir");
    std::env::set_var("SSL_CERT_FILE", &fifo);
    std::env::set_var("SSL_CERT_DIR", &cert_dir);

    let read = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (read, stop, fifo) = (Arc::clone(&read), Arc::clone(&stop), fifo.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                // ENXIO while no process has the FIFO open for reading.
                match OpenOptions::new().write(true).custom_flags(nix::libc::O_NONBLOCK).open(&fifo) {
                    Ok(mut w) => {
                        read.store(true, Ordering::SeqCst);
                        let _ = w.write_all(CA_PEM.as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
        })
    };

    // SAFETY: the watcher thread reads no environment variable.
    assert_eq!(unsafe { libgit2::init_with_lazy_tls_trust() }, TlsTrust::Deferred);
    assert!(!read.load(Ordering::SeqCst), "initialising libgit2 read the CA bundle");

    let project = dir.path().join("project");
    let repo = git2::Repository::init(&project).expect("git init");
    std::fs::write(project.join("README"), "hello").expect("write");
    let mut index = repo.index().expect("index");
    index.add_path(Path::new("README")).expect("add");
    let tree = repo.find_tree(index.write_tree().expect("tree")).expect("find tree");
    let sig = git2::Signature::now("T", "t@drydock.invalid").expect("signature");
    let head = repo.commit(Some("HEAD"), &sig, &sig, "first", &tree, &[]).expect("commit");

    let info = checkout::discover(&project).expect("a repository");
    assert_eq!(info.head, Some(head.to_string()));
    let oid = checkout::clone_at(&project, &dir.path().join("clone"), "HEAD", Some("main")).expect("local checkout");
    assert_eq!(oid, head);
    assert!(!read.load(Ordering::SeqCst), "a local discover or checkout read the CA bundle");

    // The first remote fetch loads it: from SSL_CERT_FILE, the FIFO.
    libgit2::load_tls_trust().expect("trust store loaded");
    assert!(read.load(Ordering::SeqCst), "the CA bundle was not read before a remote fetch");

    stop.store(true, Ordering::SeqCst);
    watcher.join().expect("watcher");
    println!("lazy_tls_trust: ok");
}
