//! `top`: the processes of a running container (those in its pids cgroup), as `ps -ef` columns.

use std::fs;

use super::store::ContainerStore;
use super::{spec, Error, Result};

pub const HEADER: [&str; 8] = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"];

/// One row per process of container `id`.
pub fn top(store: &ContainerStore, id: &str) -> Result<Vec<Vec<String>>> {
    let state = store.state(id)?;
    if !state.is_running() {
        return Err(Error::NotRunning(id.to_owned()));
    }
    let procs = format!("/sys/fs/cgroup/pids{}/cgroup.procs", spec::cgroups_path(id));
    let text = fs::read_to_string(&procs).unwrap_or_else(|_| state.pid.to_string());
    let tick = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100).max(1) as u64;
    let mut rows = Vec::new();
    for pid in text.split_whitespace() {
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some(close) = stat.rfind(')') else { continue };
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let ppid = fields.get(1).copied().unwrap_or("0");
        let cpu: u64 = fields.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
            + fields.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        let secs = cpu / tick;
        let uid = fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(1)).map(str::to_owned)
            })
            .unwrap_or_default();
        let cmd = fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| {
                b.split(|&c| c == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        rows.push(vec![
            uid,
            pid.to_owned(),
            ppid.to_owned(),
            "0".to_owned(),
            "-".to_owned(),
            "?".to_owned(),
            format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60),
            cmd,
        ]);
    }
    Ok(rows)
}
