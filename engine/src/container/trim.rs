//! Keeps the per-container monitor small. The monitor is the engine binary (the forked CLI, or re-executed):
//! starting a container touches a large part of its code (argument parsing, libcontainer, netlink), and those
//! file-backed pages stay resident although the supervision loop that follows only needs a little of it. Once
//! the container has run for a moment (a container that exits at once never pays for this), the monitor drops its *unmodified* file-backed pages (`MADV_DONTNEED` on read-only mappings with no private
//! copies — text and pure read-only data; they come back from the page cache if ever touched again) and returns
//! free heap to the kernel, and drops the startup depth of its stack. (A page of code touched again comes back
//! with its 64 KiB neighbourhood — the kernel's fault-around, which `MADV_RANDOM` no longer turns off — so the
//! text the loop uses weighs ~0.5–0.8 MB.) Writable mappings and any mapping with private (relocated or written) pages are left
//! alone, since dropping those would lose their contents.

use std::fs;

/// Releases what the monitor no longer needs after a start. Best effort: failures only leave memory resident.
pub fn release_startup_memory() {
    // SAFETY: malloc_trim only returns free memory of this process's heap to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
    let Ok(smaps) = fs::read_to_string("/proc/self/smaps") else { return };
    // Everything is computed first: code run after the pages are dropped faults them (and their neighbours)
    // back in.
    let ranges = droppable(&smaps);
    let marker = 0u8;
    let stack = unused_stack(&smaps, std::hint::black_box(&marker) as *const u8 as usize);
    for (start, end) in ranges {
        // SAFETY: the range is a whole mapping that is read-only and file-backed with no private pages, so
        // discarding its pages loses nothing: the next access faults them in again from the file.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
    if let Some((low, top)) = stack {
        // SAFETY: [low, top) is the part of the main thread's stack below the live frames (with a margin, see
        // `unused_stack`); nothing references it, and the kernel gives zeroed pages if the stack grows into it.
        unsafe {
            libc::madvise(low as *mut libc::c_void, top - low, libc::MADV_DONTNEED);
        }
    }
}

/// The part of the main thread's stack below the frame at `here` (less a 16 KiB margin for the calls still to
/// come and the red zone), page-aligned: startup went deeper (libcontainer, netlink) than the supervision loop
/// ever will. `None` when `here` is not on the main thread's stack.
fn unused_stack(smaps: &str, here: usize) -> Option<(usize, usize)> {
    let header = smaps.lines().find(|l| l.ends_with("[stack]"))?;
    let (a, b) = header.split_whitespace().next()?.split_once('-')?;
    let (low, high) = (usize::from_str_radix(a, 16).ok()?, usize::from_str_radix(b, 16).ok()?);
    if !(low..high).contains(&here) {
        return None;
    }
    let top = here.saturating_sub(16 * 1024) & !(4096 - 1);
    (top > low).then_some((low, top))
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
    fn unused_stack_is_below_the_frame_with_a_margin() {
        let smaps = "7ffc2d8eb000-7ffc2d90c000 rw-p 00000000 00:00 0                          [stack]\nRss: 92 kB\n";
        assert_eq!(unused_stack(smaps, 0x7ffc2d908123), Some((0x7ffc2d8eb000, 0x7ffc2d904000)));
        // Another thread's stack (or too shallow a main stack): nothing to drop.
        assert_eq!(unused_stack(smaps, 0x7f0000001000), None);
        assert_eq!(unused_stack(smaps, 0x7ffc2d8ec000), None);
    }

    #[test]
    fn dropping_our_own_text_is_harmless() {
        // Runs the real thing in this test process, then keeps computing.
        release_startup_memory();
        let v: Vec<u64> = (0..1000).collect();
        assert_eq!(v.iter().sum::<u64>(), 499_500);
    }
}
