//! Packet filtering and outbound NAT for bridge networks with nftables: one table, `inet drydock`, shared by
//! every Drydock root on the host, driven by the `nft` command (Debian's `nftables` package).
//!
//! The rules never change; networks only add and remove *set elements*, so no rule handle is ever tracked:
//! ```text
//! table inet drydock {
//!   set bridges  { type ifname; }                      # every active Drydock bridge
//!   set same     { type ifname . ifname; }             # "dd-x" . "dd-x" for each of them
//!   set internal { type ifname; }                      # bridges of --internal networks
//!   set masq     { type ipv4_addr; flags interval; }   # subnets whose traffic out is masqueraded
//!   chain forward { type filter hook forward priority filter; policy accept;
//!     iifname . oifname @same accept                   # inside one network (seen with br_netfilter)
//!     iifname @internal drop; oifname @internal drop   # --internal: nothing is routed in or out
//!     iifname @bridges oifname @bridges drop }         # no forwarding between two Drydock networks
//!   chain postrouting { type nat hook postrouting priority srcnat; policy accept;
//!     ip saddr @masq oifname != @bridges masquerade }
//! }
//! ```
//! Traffic between containers of one network is switched by the bridge; it reaches the forward hook only when
//! `br_netfilter` is loaded (`net.bridge.bridge-nf-call-iptables=1`, as docker leaves it), with the bridge as both
//! input and output device — hence the `same` set, since nft cannot compare `iifname` with `oifname` directly. The
//! table is created with the first active network and deleted with the last, so a host without Drydock networks has no
//! Drydock rules. `nft` runs only when a bridge is made or removed (`network create`/`rm`, the built-in bridge's first
//! use and `network prune`), never per container: one process to add (an idempotent script), two to remove (a listing,
//! then one script). Masquerading (and `net.ipv4.ip_forward=1`, which it needs) is on by default; a network created
//! with `-o com.docker.network.bridge.enable_ip_masquerade=false` or while `DRYDOCK_MASQUERADE=0` is set gets none.
//! Callers hold the host network lock (see `super::host_lock`).

use std::io::Write;
use std::process::{Command, Stdio};

use super::ipam::Subnet;

pub const TABLE: &str = "inet drydock";
/// Environment variable that turns outbound masquerading off for new networks (`0`, `false`, `no`).
pub const MASQUERADE_ENV: &str = "DRYDOCK_MASQUERADE";

/// Creates the table, sets and chains if missing and (re)writes the chains' rules — idempotent, and atomic as
/// one nft transaction: `add` keeps what exists, `flush` + `add rule` leaves each rule exactly once.
const TABLE_SCRIPT: &str = "add table inet drydock
add set inet drydock bridges { type ifname; }
add set inet drydock same { type ifname . ifname; }
add set inet drydock internal { type ifname; }
add set inet drydock masq { type ipv4_addr; flags interval; }
add chain inet drydock forward { type filter hook forward priority filter; policy accept; }
flush chain inet drydock forward
add rule inet drydock forward iifname . oifname @same accept
add rule inet drydock forward iifname @internal drop
add rule inet drydock forward oifname @internal drop
add rule inet drydock forward iifname @bridges oifname @bridges drop
add chain inet drydock postrouting { type nat hook postrouting priority srcnat; policy accept; }
flush chain inet drydock postrouting
add rule inet drydock postrouting ip saddr @masq oifname != @bridges masquerade
";

/// Errors changing the firewall.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot run nft: {0} (install the nftables package: script/bootstrap)")]
    Spawn(std::io::Error),
    #[error("nft failed to {what}: {stderr}")]
    Nft { what: String, stderr: String },
    #[error("cannot enable IPv4 forwarding: {0}")]
    Forwarding(std::io::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// What the firewall needs to know about one bridge network.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    pub bridge: &'a str,
    pub subnet: Subnet,
    pub internal: bool,
    pub masquerade: bool,
}

/// Whether new networks masquerade by default (`DRYDOCK_MASQUERADE`).
pub fn masquerade_default() -> bool {
    !matches!(std::env::var(MASQUERADE_ENV).as_deref(), Ok("0" | "false" | "no" | "off"))
}

fn nft(script: &str, what: &str) -> Result<String> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(Error::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).map_err(Error::Spawn)?;
    }
    let out = child.wait_with_output().map_err(Error::Spawn)?;
    if !out.status.success() {
        return Err(Error::Nft {
            what: what.to_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn list(args: &[&str]) -> Option<String> {
    let out = Command::new("nft").args(args).stderr(Stdio::null()).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Adds a network's bridge (and subnet) to the table, creating the table first if needed: one `nft` process
/// (`add element` of an existing element is no error). Idempotent.
pub fn enable(r: &Rules<'_>) -> Result<()> {
    let mut script = format!(
        "{TABLE_SCRIPT}add element {TABLE} bridges {{ \"{0}\" }}\nadd element {TABLE} same {{ \"{0}\" . \"{0}\" }}\n",
        r.bridge
    );
    if r.internal {
        script.push_str(&format!("add element {TABLE} internal {{ \"{}\" }}\n", r.bridge));
    } else if r.masquerade {
        script.push_str(&format!("add element {TABLE} masq {{ {} }}\n", r.subnet));
        enable_forwarding()?;
    }
    nft(&script, &format!("add {} to table {TABLE}", r.bridge))?;
    Ok(())
}

/// Removes a network's elements, and the table when no other bridge is left in it: one listing and one
/// script. Missing elements are fine (nft refuses to delete an element that is not there, and one failure
/// aborts a whole script, so only listed elements are deleted). Callers hold the host lock, so no other root
/// adds a bridge between the listing and the script.
pub fn disable(r: &Rules<'_>) -> Result<()> {
    let Some(table) = list(&["list", "table", "inet", "drydock"]) else { return Ok(()) };
    let quoted = format!("\"{}\"", r.bridge);
    let pair = format!("{quoted} . {quoted}");
    let others =
        set_text(&table, "bridges").matches('"').count() / 2 > usize::from(set_has(&table, "bridges", &quoted));
    let script = if others {
        let mut script = String::new();
        for (set, element) in
            [("bridges", &quoted), ("same", &pair), ("internal", &quoted), ("masq", &r.subnet.to_string())]
        {
            if set_has(&table, set, element) {
                script.push_str(&format!("delete element {TABLE} {set} {{ {element} }}\n"));
            }
        }
        script
    } else {
        format!("delete table {TABLE}\n")
    };
    if !script.is_empty() {
        nft(&script, &format!("remove {} from table {TABLE}", r.bridge))?;
    }
    Ok(())
}

/// Removes the elements of bridges that no longer exist as devices — deleted by hand (`ip link del`), or
/// by a sweep that was interrupted between the device and its elements — and masquerading for subnets no
/// existing bridge has; deletes the table when no bridge is left in it. `existing` lists the host's Drydock
/// bridges with their subnets. One listing, and one script only when something is stale (`nft` costs a few
/// milliseconds a process, so this runs on `network prune` and after an orphaned bridge is swept, not before
/// every subnet choice). Returns the
/// elements removed (`set element`), for logs and tests. Callers hold the host lock.
pub fn sweep(existing: &[(String, Option<Subnet>)]) -> Result<Vec<String>> {
    let Some(table) = list(&["list", "table", "inet", "drydock"]) else { return Ok(Vec::new()) };
    let alive = |name: &str| existing.iter().any(|(b, _)| b == name);
    let listed = |set: &str| -> Vec<String> { quoted_words(&set_text(&table, set)) };
    let bridges = listed("bridges");
    if !bridges.iter().any(|b| alive(b)) {
        // Nothing of a live bridge is in the table: it goes, as with the last `disable`.
        nft(&format!("delete table {TABLE}\n"), &format!("delete the unused table {TABLE}"))?;
        return Ok(vec![format!("table {TABLE}")]);
    }
    let mut stale = Vec::new();
    for set in ["bridges", "internal"] {
        stale.extend(listed(set).into_iter().filter(|b| !alive(b)).map(|b| (set, format!("\"{b}\""))));
    }
    let same = listed("same");
    for pair in same.chunks(2) {
        if let [a, b] = pair {
            if !alive(a) {
                stale.push(("same", format!("\"{a}\" . \"{b}\"")));
            }
        }
    }
    let subnets: Vec<String> = existing.iter().filter_map(|(_, s)| s.map(|s| s.to_string())).collect();
    for word in set_text(&table, "masq").split(|c: char| c.is_whitespace() || c == ',' || c == '{' || c == '}') {
        if word.contains('/') && word.parse::<Subnet>().is_ok() && !subnets.iter().any(|s| s == word) {
            stale.push(("masq", word.to_owned()));
        }
    }
    if stale.is_empty() {
        return Ok(Vec::new());
    }
    let script: String =
        stale.iter().map(|(set, element)| format!("delete element {TABLE} {set} {{ {element} }}\n")).collect();
    nft(&script, &format!("remove elements of deleted bridges from table {TABLE}"))?;
    Ok(stale.into_iter().map(|(set, element)| format!("{set} {element}")).collect())
}

/// The double-quoted words of a listing, in order (`"dd-a" . "dd-a"` gives `dd-a` twice).
fn quoted_words(text: &str) -> Vec<String> {
    text.split('"').skip(1).step_by(2).map(str::to_owned).collect()
}

/// The lines of `set` in the listing of the table.
fn set_text(table: &str, set: &str) -> String {
    let mut in_set = false;
    let mut text = String::new();
    for line in table.lines() {
        let t = line.trim();
        if t.starts_with("set ") {
            in_set = t.starts_with(&format!("set {set} "));
        } else if t.starts_with("chain ") {
            in_set = false;
        }
        if in_set {
            text.push_str(t);
            text.push('\n');
        }
    }
    text
}

/// Whether the listing of the table shows `element` in `set`.
fn set_has(table: &str, set: &str, element: &str) -> bool {
    set_text(table, set).contains(element)
}

fn enable_forwarding() -> Result<()> {
    let path = "/proc/sys/net/ipv4/ip_forward";
    if std::fs::read_to_string(path).map(|s| s.trim() == "1").unwrap_or(false) {
        return Ok(());
    }
    std::fs::write(path, "1").map_err(Error::Forwarding)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_membership_is_read_per_set() {
        let table = "table inet drydock {\n\tset bridges {\n\t\ttype ifname\n\t\telements = { \"dd-a\" }\n\t}\n\tset internal {\n\t\ttype ifname\n\t}\n\tset masq {\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\telements = { 10.213.0.0/24 }\n\t}\n}\n";
        assert!(set_has(table, "bridges", "\"dd-a\""));
        assert!(!set_has(table, "internal", "\"dd-a\""));
        assert!(set_has(table, "masq", "10.213.0.0/24"));
        assert!(!set_has(table, "masq", "10.213.1.0/24"));
        assert_eq!(set_text(table, "bridges").matches('"').count(), 2);
    }

    #[test]
    fn quoted_words_are_read_in_order() {
        assert_eq!(
            quoted_words("elements = { \"dd-a\" . \"dd-a\",\n \"dd-b\" . \"dd-b\" }"),
            ["dd-a", "dd-a", "dd-b", "dd-b"]
        );
        assert!(quoted_words("type ifname").is_empty());
    }
}
