//! libgit2's process-wide state, set up once by the first use of libgit2 in the runner ([`init`]), which every
//! function of [`super::checkout`] calls first: the network timeouts, and — in `runner exec` — the TLS trust
//! store left empty until the first remote fetch ([`load_tls_trust`]).
//!
//! Why: libgit2 is built with its https transport over the system OpenSSL (git2's `https` feature), and
//! `git_libgit2_init` then creates its `SSL_CTX` and calls `SSL_CTX_set_default_verify_paths`, which parses the
//! whole CA bundle (`SSL_CERT_FILE`, else `/usr/lib/ssl/cert.pem`: ~150 certificates) — 30 to 60 ms and 1.4 MB
//! on our hosts, in every process that merely opens a local repository. OpenSSL takes the locations from
//! `SSL_CERT_FILE` and `SSL_CERT_DIR` at that moment: [`init_with_lazy_tls_trust`] initialises libgit2 with
//! both naming `/dev/null` (no certificate: nothing parsed), restores them at once, and before the
//! first remote connection [`load_tls_trust`] gives libgit2 the locations it would have used
//! (`GIT_OPT_SET_SSL_CERT_LOCATIONS`). Certificate checking is the same: libgit2 verifies the server's chain
//! and name against that store; had the store stayed empty, every https fetch would fail, never pass unchecked.
//! The `runner agent` does not call libgit2 at all until its first checkout, so an idle agent pays nothing.
//!
//! What cannot be avoided once libgit2 is initialised with the https transport compiled in: OpenSSL's own
//! initialisation and an `SSL_CTX` (about 3 ms and 2.5 MB). The coordinator needs git2's `https` too, and Cargo
//! unifies features in a build of both (`script/server`), so leaving the feature out of the runner would not
//! hold; libgit2-sys offers no lazily initialised OpenSSL (libgit2's `GIT_OPENSSL_DYNAMIC`) either.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use super::error::ExecError;

/// How long libgit2 waits for a TCP (and TLS) connection to a git server.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long libgit2 waits for the next bytes from a git server before it gives up on the fetch.
pub const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// OpenSSL's environment variables for its default CA bundle and hashed certificate directory.
const TRUST_VARIABLES: [&str; 2] = ["SSL_CERT_FILE", "SSL_CERT_DIR"];

/// Whether libgit2's TLS trust store was filled at initialisation or is left for [`load_tls_trust`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsTrust {
    /// OpenSSL's default locations, loaded by `git_libgit2_init` itself.
    Loaded,
    /// Empty until the first remote fetch.
    Deferred,
}

static STATE: OnceLock<TlsTrust> = OnceLock::new();
/// The outcome of loading a deferred trust store (an error is repeated to every later fetch).
static DEFERRED_TRUST: OnceLock<Result<(), String>> = OnceLock::new();

/// Initialises libgit2 the first time (with its trust store loaded as libgit2 does it, unless
/// [`init_with_lazy_tls_trust`] ran before) and sets the network timeouts. Every libgit2 use of the runner
/// passes here first, so the timeouts — plain C globals — are written before any thread reads them.
pub fn init() -> TlsTrust {
    *STATE.get_or_init(|| {
        set_network_timeouts();
        TlsTrust::Loaded
    })
}

/// Initialises libgit2 with an empty TLS trust store, filled by [`load_tls_trust`] at the first remote fetch:
/// for `runner exec`, whose checkouts are local. Does nothing if libgit2 is already initialised.
///
/// # Safety
/// It changes environment variables for the duration of the call: no other thread may run.
pub unsafe fn init_with_lazy_tls_trust() -> TlsTrust {
    *STATE.get_or_init(|| {
        let saved: Vec<(&str, Option<OsString>)> = TRUST_VARIABLES.iter().map(|k| (*k, std::env::var_os(k))).collect();
        // `/dev/null` exists (so git2's openssl-probe keeps it) and holds no certificate (so OpenSSL loads none).
        for k in TRUST_VARIABLES {
            std::env::set_var(k, "/dev/null");
        }
        set_network_timeouts(); // the first libgit2 call: git2 runs openssl-probe, then `git_libgit2_init`
        for (k, v) in saved {
            match v {
                Some(v) => std::env::set_var(k, v),
                None => std::env::remove_var(k),
            }
        }
        TlsTrust::Deferred
    })
}

/// Makes sure libgit2 trusts the system's certificate authorities before a remote connection: a no-op unless
/// the trust store was deferred, else it is loaded once — from the locations git2 would have given OpenSSL
/// (`SSL_CERT_FILE` / `SSL_CERT_DIR` when they name something, else the usual system places, as
/// openssl-probe finds them).
pub fn load_tls_trust() -> Result<(), ExecError> {
    if init() == TlsTrust::Loaded {
        return Ok(());
    }
    DEFERRED_TRUST.get_or_init(|| load_locations(openssl_probe::probe())).clone().map_err(ExecError::Checkout)
}

fn load_locations(probe: openssl_probe::ProbeResult) -> Result<(), String> {
    let started = std::time::Instant::now();
    let failed = |what: &str, path: &PathBuf, e: git2::Error| {
        format!("cannot load the CA certificates {what} {}: {}", path.display(), e.message())
    };
    // SAFETY: this runs once, before any TLS connection of the process (every remote fetch waits for it), and
    // only touches libgit2's SSL_CTX, which local operations do not use.
    unsafe {
        if let Some(file) = &probe.cert_file {
            git2::opts::set_ssl_cert_file(file).map_err(|e| failed("file", file, e))?;
        }
        if let Some(dir) = &probe.cert_dir {
            git2::opts::set_ssl_cert_dir(dir).map_err(|e| failed("directory", dir, e))?;
        }
    }
    if probe.cert_file.is_none() && probe.cert_dir.is_none() {
        tracing::warn!("no CA certificates found (SSL_CERT_FILE, SSL_CERT_DIR, /etc/ssl…): https fetches will fail");
    }
    tracing::debug!(
        cert_file = ?probe.cert_file,
        cert_dir = ?probe.cert_dir,
        duration_ms = started.elapsed().as_millis() as u64,
        "libgit2's TLS trust store loaded"
    );
    Ok(())
}

/// Sets libgit2's process-wide connect and read timeouts ([`CONNECT_TIMEOUT`], [`READ_TIMEOUT`]; libgit2 waits
/// without end by default), so an unreachable or stalled server fails the checkout instead of hanging it.
fn set_network_timeouts() {
    let ms = |d: Duration| i32::try_from(d.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: called once, from the initialisation every libgit2 use of the runner waits for, so no thread
    // of the runner is in libgit2 yet.
    let set = unsafe {
        git2::opts::set_server_connect_timeout_in_milliseconds(ms(CONNECT_TIMEOUT))
            .and_then(|()| git2::opts::set_server_timeout_in_milliseconds(ms(READ_TIMEOUT)))
    };
    if let Err(e) = set {
        tracing::warn!(error = %e.message(), "cannot set libgit2's network timeouts: a stalled git server may hang a checkout");
    }
}
