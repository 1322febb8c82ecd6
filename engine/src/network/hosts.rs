//! Name resolution on user-defined networks through `/etc/hosts`: each container's hosts file
//! (`<root>/containers/<id>/hosts`, bind-mounted by the runtime) ends with a section Drydock owns, listing every
//! container of every user-defined network the container is on, by name, aliases and short ID. The section is
//! rewritten whenever a container joins or leaves one of those networks.
//!
//! The rewrite happens **in place** — truncate and write the same inode — never by renaming a new file over the
//! old one: a bind mount pins the inode it was made from, so a renamed file would never be seen inside the
//! container. Everything above the marker line (localhost, the container's own hostname, user edits) is kept.
//! The default `bridge` network has no name resolution, as in docker.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::Path;

/// The line that starts the section Drydock rewrites.
pub const MARKER: &str = "# drydock networks (rewritten when containers join or leave; edit above this line)";

/// One line of the section: an address and the names it answers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostsEntry {
    pub address: Ipv4Addr,
    pub names: Vec<String>,
}

/// The section's text (marker included) for these entries; empty when there are none.
pub fn section(entries: &[HostsEntry]) -> String {
    if entries.is_empty() {
        return String::new();
    }
    let mut s = format!("{MARKER}\n");
    for e in entries {
        s.push_str(&format!("{}\t{}\n", e.address, e.names.join(" ")));
    }
    s
}

/// `existing` with its Drydock section replaced by `section`.
pub fn render(existing: &str, section: &str) -> String {
    let mut kept = String::new();
    for line in existing.lines() {
        if line == MARKER {
            break;
        }
        kept.push_str(line);
        kept.push('\n');
    }
    kept.push_str(section);
    kept
}

/// Rewrites the section of the hosts file at `path` in place (same inode). A missing file is left missing:
/// the container has no hosts file of ours (host network, or not created by this engine).
pub fn rewrite(path: &Path, entries: &[HostsEntry]) -> io::Result<()> {
    let existing = match fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let text = render(&existing, &section(entries));
    if text == existing {
        return Ok(());
    }
    let mut file = OpenOptions::new().write(true).truncate(true).open(path)?;
    file.write_all(text.as_bytes())?;
    file.flush()
}

/// Adds each of `lines` that the hosts file at `path` lacks, above Drydock's section, in place (same inode).
pub fn ensure_lines(path: &Path, lines: &[String]) -> io::Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let existing = fs::read_to_string(path)?;
    let missing: Vec<&String> = lines.iter().filter(|l| !existing.lines().any(|e| e == l.as_str())).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let (head, tail) = match existing.find(MARKER) {
        Some(i) => existing.split_at(i),
        None => (existing.as_str(), ""),
    };
    let mut text = head.to_owned();
    for l in missing {
        text.push_str(l);
        text.push('\n');
    }
    text.push_str(tail);
    let mut file = OpenOptions::new().write(true).truncate(true).open(path)?;
    file.write_all(text.as_bytes())?;
    file.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_replaces_only_itself() {
        let base = "127.0.0.1\tlocalhost\n127.0.1.1\tabc\n";
        let entries = vec![
            HostsEntry { address: Ipv4Addr::new(10, 213, 0, 2), names: vec!["a".into(), "web".into()] },
            HostsEntry { address: Ipv4Addr::new(10, 213, 0, 3), names: vec!["b".into()] },
        ];
        let once = render(base, &section(&entries));
        assert_eq!(once, format!("{base}{MARKER}\n10.213.0.2\ta web\n10.213.0.3\tb\n"));
        let twice = render(&once, &section(&entries[1..]));
        assert_eq!(twice, format!("{base}{MARKER}\n10.213.0.3\tb\n"));
        assert_eq!(render(&twice, &section(&[])), base);
    }

    #[test]
    fn rewrite_keeps_the_inode() -> io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("hosts");
        fs::write(&path, "127.0.0.1\tlocalhost\n")?;
        let before = fs::metadata(&path)?.ino();
        rewrite(&path, &[HostsEntry { address: Ipv4Addr::new(10, 1, 1, 2), names: vec!["x".into()] }])?;
        assert_eq!(fs::metadata(&path)?.ino(), before);
        assert!(fs::read_to_string(&path)?.ends_with("10.1.1.2\tx\n"));
        rewrite(&dir.path().join("missing"), &[])?;
        assert!(!dir.path().join("missing").exists());
        Ok(())
    }
}
