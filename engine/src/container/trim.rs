//! Keeps the per-container monitor small. The monitor is the engine binary re-executed: starting a container
//! touches a large part of its code (argument parsing, libcontainer, netlink), and those file-backed pages stay
//! resident although the supervision loop that follows only needs a little of it. Once the container runs, the
//! monitor drops its *unmodified* file-backed pages (`MADV_DONTNEED` on read-only mappings with no private
//! copies — text and pure read-only data; they come back from the page cache if ever touched again) and returns
//! free heap to the kernel. Writable mappings and any mapping with private (relocated or written) pages are left
//! alone, since dropping those would lose their contents.

use std::fs;

/// Releases what the monitor no longer needs after a start. Best effort: failures only leave memory resident.
pub fn release_startup_memory() {
    // SAFETY: malloc_trim only returns free memory of this process's heap to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
    let Ok(smaps) = fs::read_to_string("/proc/self/smaps") else { return };
    for (start, end) in droppable(&smaps) {
        // SAFETY: the range is a whole mapping that is read-only and file-backed with no private pages, so
        // discarding its pages loses nothing: the next access faults them in again from the file.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
}

/// Address ranges of read-only, file-backed mappings without anonymous (copied-on-write) pages.
fn droppable(smaps: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, usize, bool)> = None;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or_default();
        if let Some((a, b)) = first.split_once('-').filter(|(a, _)| a.chars().all(|c| c.is_ascii_hexdigit())) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let perms = fields.get(1).copied().unwrap_or_default();
            let inode = fields.get(4).copied().unwrap_or("0");
            let path = fields.get(5).copied().unwrap_or_default();
            let candidate = perms.starts_with('r')
                && perms.as_bytes().get(1) == Some(&b'-')
                && inode != "0"
                && path.starts_with('/');
            current = match (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) {
                (Ok(s), Ok(e)) if e > s => Some((s, e, candidate)),
                _ => None,
            };
            continue;
        }
        if let Some(rest) = line.strip_prefix("Anonymous:") {
            if let Some((s, e, true)) = current.take() {
                if rest.trim().trim_end_matches("kB").trim() == "0" {
                    out.push((s, e));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_clean_read_only_file_mappings_are_dropped() {
        let smaps = "\
55d0a0000000-55d0a0400000 r-xp 00001000 08:01 1234 /usr/bin/engine
Rss:                1024 kB
Anonymous:             0 kB
55d0a0400000-55d0a0500000 r--p 00401000 08:01 1234 /usr/bin/engine
Anonymous:           512 kB
55d0a0500000-55d0a0600000 rw-p 00501000 08:01 1234 /usr/bin/engine
Anonymous:             0 kB
7f0000000000-7f0000001000 r--p 00000000 00:00 0 [vvar]
Anonymous:             0 kB
7f0000002000-7f0000003000 r-xp 00000000 08:01 99 /usr/lib/x86_64-linux-gnu/libc.so.6
Anonymous:             0 kB
";
        assert_eq!(droppable(smaps), vec![(0x55d0a0000000, 0x55d0a0400000), (0x7f0000002000, 0x7f0000003000)]);
    }

    #[test]
    fn dropping_our_own_text_is_harmless() {
        // Runs the real thing in this test process, then keeps computing.
        release_startup_memory();
        let v: Vec<u64> = (0..1000).collect();
        assert_eq!(v.iter().sum::<u64>(), 499_500);
    }
}
