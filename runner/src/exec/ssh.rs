//! `add_ssh_keys`: private keys given to the runner (`runner exec --ssh-key FILE`) written into the primary
//! container's `~/.ssh` as `id_rsa_<fingerprint hex>` (CircleCI's names), each listed as an `IdentityFile` in
//! `~/.ssh/config`, with GitHub's host keys added to `~/.ssh/known_hosts`. The step's `fingerprints` select
//! keys, by MD5 (`aa:bb:…`, what CircleCI shows) or SHA-256 (`SHA256:…`, what `ssh-keygen -l` shows); without
//! fingerprints every key is added. A fingerprint comes from the key file itself (the OpenSSH format carries the
//! public key in clear, even when the private part is encrypted) or, for PEM keys, from `FILE.pub` beside it.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use engine::container::exec::{exec_captured, ExecOptions};
use engine::container::ContainerStore;
use md5::Digest as _;

use super::error::ExecError;

/// github.com's SSH host keys, as GitHub publishes them (`https://api.github.com/meta`, `ssh_keys`).
pub const GITHUB_KNOWN_HOSTS: &str = "\
github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl
github.com ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7opKgwFB9nkt5YRrYMjNuG5N87uRgg6CLrbo5wAdT/y6v0mKV0U2w0WZ2YB/++Tpockg=
github.com ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQCj7ndNxQowgcQnjshcLrqPEiiphnt+VTTvDP6mHBL9j1aNUkY4Ue1gvwnGLVlOhGeYrnZaMgRK6+PKCUXaDbC7qtbW8gIkhL7aGCsOr/C56SJMy/BCZfxd1nWzAOxSDPgVsmerOBYfNqltV9/hWCqBywINIR+5dIg6JTJ72pcEpEjcYgXkE2YEFXV1JHnsKgbLWNlhScqb2UmyRkQyytRLtL+38TGxkxCflmO+5Z8CSSNY7GidjMIZ7Q4zMjA2n1nGrlTDkzwDCsw+wqFPGQA179cnfGWOWRVruj16z6XyvxvjJwbz0wQZ75XK5tKSb7FNyeIEs4TT4jk+S4dhPeAUC5y+bDYirYgM4GC7uEnztnZyaVWQ7B381AK4Qdrwt51ZqExKbQpTUNn+EjqoTwvqNj4kqx5QUCI0ThS/YkOxJCXmPUWZbhjpCg56i+2aB6CmK2JGhn57K5mj0MNdBXA4/WnwH6XoPWJzK5Nyu2zB3nAZp+S5hpQs+p1vN1/wsjk=
";

/// A private key the runner may add to jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshKey {
    /// The key file's text (a secret: it is masked in output like the project variables).
    pub private: String,
    /// `aa:bb:…` (MD5 of the public key blob), when the public key is known.
    pub md5: Option<String>,
    /// `SHA256:…` (unpadded base64), when the public key is known.
    pub sha256: Option<String>,
    /// Where it came from (for messages).
    pub origin: String,
}

impl SshKey {
    /// Reads a private key file (and `FILE.pub` when the key's own format does not carry the public key).
    pub fn read(path: &Path) -> Result<SshKey, ExecError> {
        let private = std::fs::read_to_string(path)
            .map_err(|source| ExecError::Io { context: format!("cannot read SSH key {}", path.display()), source })?;
        if !private.contains("PRIVATE KEY-----") {
            return Err(ExecError::BadVariable {
                origin: "--ssh-key".into(),
                text: path.display().to_string(),
                hint: "not a private key (no `-----BEGIN … PRIVATE KEY-----`): give the private key file".into(),
            });
        }
        let blob = openssh_public_blob(&private).or_else(|| {
            let mut pub_path = path.as_os_str().to_owned();
            pub_path.push(".pub");
            std::fs::read_to_string(pub_path).ok().and_then(|p| public_line_blob(&p))
        });
        Ok(SshKey {
            md5: blob.as_deref().map(md5_fingerprint),
            sha256: blob.as_deref().map(sha256_fingerprint),
            private,
            origin: path.display().to_string(),
        })
    }

    /// Whether `fingerprint` (either form, case-insensitive hex for MD5, optional `MD5:` prefix) names this key.
    pub fn matches(&self, fingerprint: &str) -> bool {
        let f = fingerprint.trim();
        if let Some(sha) = f.strip_prefix("SHA256:") {
            return self.sha256.as_deref().and_then(|s| s.strip_prefix("SHA256:")) == Some(sha.trim_end_matches('='));
        }
        let f = f.strip_prefix("MD5:").unwrap_or(f);
        self.md5.as_deref().is_some_and(|m| m.eq_ignore_ascii_case(f))
    }

    /// The file name in `~/.ssh`: `id_rsa_` and the MD5 fingerprint's hex, as CircleCI names them.
    pub fn file_name(&self, n: usize) -> String {
        match &self.md5 {
            Some(m) => format!("id_rsa_{}", m.replace(':', "")),
            None => format!("id_rsa_{n}"),
        }
    }
}

/// The public key blob of an `-----BEGIN OPENSSH PRIVATE KEY-----` file: after the magic `openssh-key-v1\0`
/// come the cipher name, KDF name and KDF options (strings), the key count (u32), then the first public key.
pub fn openssh_public_blob(text: &str) -> Option<Vec<u8>> {
    let body = text.split("-----BEGIN OPENSSH PRIVATE KEY-----").nth(1)?.split("-----END").next()?;
    let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let data = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let mut rest = data.strip_prefix(b"openssh-key-v1\0")?;
    let mut string = || -> Option<&[u8]> {
        let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let s = rest.get(4..4 + len)?;
        rest = &rest[4 + len..];
        Some(s)
    };
    string()?; // cipher
    string()?; // kdf
    string()?; // kdf options
    let _count = string_u32(&mut rest)?;
    let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    rest.get(4..4 + len).map(<[u8]>::to_vec)
}

fn string_u32(rest: &mut &[u8]) -> Option<u32> {
    let n = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
    *rest = &rest[4..];
    Some(n)
}

/// The blob of a public key line (`ssh-rsa AAAA… comment`).
fn public_line_blob(line: &str) -> Option<Vec<u8>> {
    let b64 = line.split_whitespace().nth(1)?;
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

pub fn md5_fingerprint(blob: &[u8]) -> String {
    let digest = md5::Md5::digest(blob);
    digest.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

pub fn sha256_fingerprint(blob: &[u8]) -> String {
    use sha2::Digest as _;
    format!("SHA256:{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(sha2::Sha256::digest(blob)))
}

/// The keys `fingerprints` select (all when empty); an unknown fingerprint is an error naming it.
pub fn select<'k>(keys: &'k [SshKey], fingerprints: &[String]) -> Result<Vec<&'k SshKey>, ExecError> {
    if fingerprints.is_empty() {
        return Ok(keys.iter().collect());
    }
    let mut out = Vec::new();
    for f in fingerprints {
        match keys.iter().find(|k| k.matches(f)) {
            Some(k) if !out.contains(&k) => out.push(k),
            Some(_) => {}
            None => {
                return Err(ExecError::StepInput {
                    field: "add_ssh_keys.fingerprints".into(),
                    value: f.clone(),
                    hint: "no key given to the runner has this fingerprint: pass its private key with --ssh-key FILE"
                        .into(),
                })
            }
        }
    }
    Ok(out)
}

/// Writes `keys` into the container's `~/.ssh` (`home` is the container user's), owned by that user.
pub fn install(store: &ContainerStore, id: &str, home: &str, keys: &[&SshKey]) -> Result<Vec<String>, ExecError> {
    let io = |context: String| move |source| ExecError::Io { context, source };
    let mut b = tar::Builder::new(Vec::new());
    let mut names = Vec::new();
    let mut add = |path: String, mode: u32, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append_data(&mut h, &path, data).map_err(io(format!("cannot archive {path}")))
    };
    for (n, k) in keys.iter().enumerate() {
        let name = k.file_name(n);
        let mut text = k.private.clone();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        add(format!("tmp/.drydock/ssh/{name}"), 0o600, text.as_bytes())?;
        names.push(name);
    }
    add("tmp/.drydock/ssh/known_hosts_github".into(), 0o644, GITHUB_KNOWN_HOSTS.as_bytes())?;
    let tar = b.into_inner().map_err(io("cannot finish the SSH key archive".into()))?;
    engine::container::cp::extract(store, id, "/", std::io::Cursor::new(tar))?;
    // As root (the files are root's after the copy), then handed to the container's user.
    let script = r#"set -e
s=/tmp/.drydock/ssh
owner=$1; d=$2/.ssh; shift 2
mkdir -p "$d"
touch "$d/known_hosts" "$d/config"
while IFS= read -r line; do grep -qxF "$line" "$d/known_hosts" || printf '%s\n' "$line" >>"$d/known_hosts"; done <"$s/known_hosts_github"
for n in "$@"; do
  cp "$s/$n" "$d/$n"
  grep -qxF "IdentityFile $d/$n" "$d/config" || printf 'IdentityFile %s\n' "$d/$n" >>"$d/config"
done
chmod 700 "$d"; chmod 600 "$d/config"; for n in "$@"; do chmod 600 "$d/$n"; done
chown -R "$owner" "$d"
rm -rf "$s""#;
    let id_opts = ExecOptions {
        cmd: vec!["/bin/sh".into(), "-c".into(), "echo $(id -u):$(id -g)".into()],
        ..ExecOptions::default()
    };
    let owner = exec_captured(store, id, &id_opts, Duration::from_secs(60), 4096)?;
    let owner = String::from_utf8_lossy(&owner.output).trim().to_owned();
    let mut cmd = vec!["/bin/sh".into(), "-c".into(), script.into(), "add_ssh_keys".into(), owner, home.to_owned()];
    cmd.extend(names.iter().cloned());
    let opts = ExecOptions { cmd, user: Some("0".into()), ..ExecOptions::default() };
    let out = exec_captured(store, id, &opts, Duration::from_secs(60), 64 * 1024)?;
    if out.exit_code != Some(0) {
        return Err(ExecError::StepInput {
            field: "add_ssh_keys".into(),
            value: format!("{home}/.ssh"),
            hint: format!("cannot write the keys: {}", String::from_utf8_lossy(&out.output).trim()),
        });
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    // `ssh-keygen -t ed25519 -N '' -C test`: a throwaway key made for this test; its fingerprints as
    // `ssh-keygen -l [-E md5]` printed them.
    const KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACB8pzX1/1MX6HRKALxBhp3U9q6lBRQ41Ye15jLJiQ6vGgAAAIgy2XPmMtlz
5gAAAAtzc2gtZWQyNTUxOQAAACB8pzX1/1MX6HRKALxBhp3U9q6lBRQ41Ye15jLJiQ6vGg
AAAEAafJliV8vha5M5BYKrQvodc0c6yvJb9zVG3EfXfFXTrHynNfX/UxfodEoAvEGGndT2
rqUFFDjVh7XmMsmJDq8aAAAABHRlc3QB
-----END OPENSSH PRIVATE KEY-----
";
    const MD5: &str = "0a:08:c0:51:ec:26:69:90:5a:d8:c0:d4:19:c5:59:8f";
    const SHA256: &str = "SHA256:QEbBu0zVYu5AbJD50Pw/BwL2Ls0Er8UdmIp+/5Yvf/A";

    #[test]
    fn openssh_keys_yield_their_public_blob() {
        let blob = openssh_public_blob(KEY).expect("public blob");
        assert!(blob.starts_with(b"\0\0\0\x0bssh-ed25519"));
        assert_eq!(blob.len(), 4 + 11 + 4 + 32);
        assert_eq!(md5_fingerprint(&blob), MD5);
        assert_eq!(sha256_fingerprint(&blob), SHA256);
        assert_eq!(openssh_public_blob("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----"), None);
    }

    #[test]
    fn fingerprints_select_keys_and_unknown_ones_are_errors() {
        let blob = openssh_public_blob(KEY).expect("public blob");
        let key = SshKey {
            private: KEY.into(),
            md5: Some(md5_fingerprint(&blob)),
            sha256: Some(sha256_fingerprint(&blob)),
            origin: "k".into(),
        };
        let other = SshKey { private: KEY.into(), md5: Some("00:11".into()), sha256: None, origin: "o".into() };
        let keys = [other, key.clone()];
        let md5 = key.md5.clone().expect("md5").to_uppercase();
        assert_eq!(select(&keys, &[md5]).expect("by md5"), vec![&keys[1]]);
        assert_eq!(select(&keys, &[key.sha256.clone().expect("sha")]).expect("by sha256"), vec![&keys[1]]);
        assert_eq!(select(&keys, &[]).expect("all").len(), 2);
        let e = select(&keys, &["SHA256:nope".into()]).expect_err("unknown").to_string();
        assert!(e.contains("SHA256:nope") && e.contains("--ssh-key"), "{e}");
        assert_eq!(key.file_name(0), format!("id_rsa_{}", key.md5.clone().expect("md5").replace(':', "")));
    }
}
