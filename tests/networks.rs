//! Networks through the CLI: lifecycle and docker's errors, real connectivity between network namespaces we create
//! ourselves (`ip netns add`, joined with the hidden `network connect --netns`), name resolution through the hosts
//! files Drydock keeps current, isolation between networks, `--internal`, the default bridge (kept once used, given
//! back by prune), cleanup of every device and nftables element, and the userland proxy publishing a port of a
//! namespace running busybox httpd. Everything talks only to loopback or to addresses of networks the test created;
//! every namespace, network and process is removed by a guard even when an assertion fails.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::util::{can_run_containers, eventually, TestEngine};

/// A unique suffix for host-wide names (namespaces), so parallel tests never collide.
fn unique() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{}-{}-{:x}", std::process::id(), N.fetch_add(1, Ordering::SeqCst), nanos % 0xffff)
}

fn sh(program: &str, args: &[&str]) -> Output {
    Command::new(program).args(args).output().unwrap_or_else(|e| panic!("run {program}: {e}"))
}

/// A network namespace made with `ip netns add`, deleted (with its /etc/netns overlay) when dropped.
struct Netns {
    name: String,
}

impl Netns {
    fn new() -> Netns {
        let name = format!("drydock-test-{}", unique());
        let out = sh("ip", &["netns", "add", &name]);
        assert!(out.status.success(), "ip netns add: {}", String::from_utf8_lossy(&out.stderr));
        Netns { name }
    }

    fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// `ip netns exec NAME busybox ARGS` to completion.
    fn busybox(&self, args: &[&str]) -> Output {
        let mut full = vec!["netns", "exec", &self.name, "busybox"];
        full.extend_from_slice(args);
        sh("ip", &full)
    }

    fn ping(&self, target: &str) -> bool {
        self.busybox(&["ping", "-c", "1", "-W", "2", target]).status.success()
    }

    fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["netns", "exec", &self.name, "ip"];
        full.extend_from_slice(args);
        String::from_utf8_lossy(&sh("ip", &full).stdout).into_owned()
    }

    /// `GET /` with busybox nc from inside the namespace; the whole response.
    fn http_get(&self, host: &str, port: u16) -> String {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name, "busybox", "nc", "-w", "2", host, &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nc");
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(b"GET / HTTP/1.0\r\n\r\n");
        }
        child.wait_with_output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
    }

    /// Makes `ip netns exec` bind-mount `hosts` over /etc/hosts, as the runtime does for containers.
    fn use_hosts_file(&self, hosts: &Path) {
        let dir = Path::new("/etc/netns").join(&self.name);
        std::fs::create_dir_all(&dir).expect("create /etc/netns dir");
        std::os::unix::fs::symlink(hosts, dir.join("hosts")).expect("link hosts file");
    }

    /// Starts `busybox httpd` serving `dir` on port 8080 inside the namespace.
    fn httpd(&self, dir: &Path) -> Background {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name, "busybox", "httpd", "-f", "-p", "8080", "-h"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start httpd");
        Background(child)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(&self.name));
        let _ = sh("ip", &["netns", "del", &self.name]);
    }
}

/// A child process killed when dropped.
struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A network of a test engine: disconnected from everything and removed when dropped.
struct Network<'a> {
    e: &'a TestEngine,
    name: String,
}

impl<'a> Network<'a> {
    fn create(e: &'a TestEngine, name: &str, flags: &[&str]) -> Network<'a> {
        let mut args = vec!["network", "create"];
        args.extend_from_slice(flags);
        args.push(name);
        e.run(&args).success();
        Network { e, name: name.to_owned() }
    }

    fn inspect(&self) -> serde_json::Value {
        self.e.run(["network", "inspect", &self.name]).success().json()[0].clone()
    }

    fn bridge(&self) -> String {
        let id = self.inspect()["Id"].as_str().unwrap_or_default().to_owned();
        format!("dd-{}", &id[..12])
    }

    /// Connects a namespace as container `name` with a fixed ID and a hosts file like the runtime's; returns
    /// the ID.
    fn connect(&self, ns: &Netns, name: &str, extra: &[&str]) -> String {
        let id = container_id(name);
        let dir = self.e.root().join("containers").join(&id);
        std::fs::create_dir_all(&dir).expect("container dir");
        let hosts = dir.join("hosts");
        if !hosts.exists() {
            std::fs::write(&hosts, format!("127.0.0.1\tlocalhost\n127.0.1.1\t{}\n", &id[..12])).expect("hosts");
        }
        let path = ns.path();
        let mut args = vec!["network", "connect", "--netns", path.to_str().unwrap_or_default(), "--container-id", &id];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[&self.name, name]);
        self.e.run(&args).success();
        id
    }

    fn address_of(&self, name: &str) -> String {
        let v = self.inspect();
        let c = v["Containers"].as_object().and_then(|m| m.values().find(|c| c["Name"] == name)).cloned();
        let cidr = c.map(|c| c["IPv4Address"].as_str().unwrap_or_default().to_owned()).unwrap_or_default();
        cidr.split('/').next().unwrap_or_default().to_owned()
    }
}

impl Drop for Network<'_> {
    fn drop(&mut self) {
        if let Ok(out) = self.e.cmd(["network", "inspect", &self.name]).output() {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            for id in v[0]["Containers"].as_object().map(|m| m.keys().cloned().collect::<Vec<_>>()).unwrap_or_default()
            {
                let _ = self.e.cmd(["network", "disconnect", "-f", &self.name, &id]).output();
            }
        }
        let _ = self.e.cmd(["network", "rm", &self.name]).output();
    }
}

/// A stable 64-hex container ID for a test name.
fn container_id(name: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(format!("{name}-{}", unique())))
}

fn host_links() -> String {
    String::from_utf8_lossy(&sh("ip", &["-o", "link"]).stdout).into_owned()
}

fn nft_table() -> String {
    String::from_utf8_lossy(&sh("nft", &["list", "table", "inet", "drydock"]).stdout).into_owned()
}

#[test]
fn network_lifecycle_and_errors_follow_docker() {
    if !can_run_containers() {
        return;
    }
    let e = TestEngine::new();
    let listing = e.run(["network", "ls"]).success().stdout();
    let lines: Vec<&str> = listing.lines().collect();
    assert!(lines[0].starts_with("NETWORK ID") && lines[0].ends_with("SCOPE"), "{listing}");
    for (name, driver) in [("bridge", "bridge"), ("host", "host"), ("none", "null")] {
        assert!(
            lines.iter().any(|l| l.split_whitespace().collect::<Vec<_>>()[1..] == [name, driver, "local"]),
            "{listing}"
        );
    }

    let n = Network::create(
        &e,
        "backend",
        &["--subnet", "10.214.77.0/24", "--gateway", "10.214.77.254", "--label", "team=ci"],
    );
    let v = n.inspect();
    assert_eq!(v["Name"], "backend");
    assert_eq!(v["Id"].as_str().map(str::len), Some(64));
    assert_eq!(
        (v["Scope"].as_str(), v["Driver"].as_str(), v["Internal"].as_bool()),
        (Some("local"), Some("bridge"), Some(false))
    );
    assert_eq!(v["IPAM"]["Driver"], "default");
    assert_eq!(v["IPAM"]["Config"], serde_json::json!([{"Subnet": "10.214.77.0/24", "Gateway": "10.214.77.254"}]));
    assert_eq!(v["Labels"], serde_json::json!({"team": "ci"}));
    assert_eq!(v["Containers"], serde_json::json!({}));
    let bridge = n.bridge();
    assert!(host_links().contains(&format!(" {bridge}:")), "the bridge exists from create on");
    assert!(nft_table().contains(&bridge), "{}", nft_table());
    let short = v["Id"].as_str().unwrap_or_default()[..12].to_owned();
    e.run(["network", "inspect", "-f", "{{.Name}}", &short]).success().stdout_is("backend\n");

    e.run(["network", "create", "backend"]).code_is(125).stderr_has("network with name backend already exists");
    e.run(["network", "create", "-bad"]).code_is(125);
    e.run(["network", "create", "bad/name"]).code_is(125).stderr_has("invalid network name");
    e.run(["network", "create", "--subnet", "10.214.77.128/25", "other"]).code_is(125).stderr_has("overlaps");
    e.run(["network", "create", "--subnet", "10.214.78.5/24", "other"]).code_is(125).stderr_has("use 10.214.78.0/24");
    e.run(["network", "create", "--gateway", "10.1.1.1", "other"]).code_is(125).stderr_has("needs a --subnet");
    e.run(["network", "create", "--subnet", "10.214.79.0/24", "--gateway", "10.215.0.1", "other"])
        .code_is(125)
        .stderr_has("not in subnet");
    e.run(["network", "create", "-d", "overlay", "other"]).code_is(125).stderr_has("plugin \"overlay\" not found");
    e.run(["network", "rm", "bridge"]).code_is(125).stderr_has("bridge is a pre-defined network and cannot be removed");
    e.run(["network", "inspect", "nosuch"]).code_is(125).stderr_has("network nosuch not found");
    assert!(!e.run(["network", "ls", "-q"]).success().stdout().contains("other"));

    // A pool network gets a /24 of the pool and its first address as gateway.
    let pooled = Network::create(&e, "pooled", &[]);
    let v = pooled.inspect();
    let subnet = v["IPAM"]["Config"][0]["Subnet"].as_str().unwrap_or_default().to_owned();
    assert!(subnet.starts_with("10.213.") && subnet.ends_with(".0/24"), "{v}");
    assert_eq!(v["IPAM"]["Config"][0]["Gateway"].as_str(), Some(subnet.replace(".0/24", ".1").as_str()));

    e.run(["network", "rm", "backend"]).success().stdout_is("backend\n");
    assert!(!host_links().contains(&format!(" {bridge}:")), "rm deletes the bridge");
    assert!(!nft_table().contains(&bridge), "rm deletes the firewall elements");
    e.run(["network", "prune", "-f"]).success().stdout_is("Deleted Networks:\npooled\n\n");
    assert_eq!(e.run(["network", "ls", "-q"]).success().stdout().lines().count(), 3, "only the built-ins remain");
}

#[test]
fn two_namespaces_on_one_network_talk_and_resolve_names() {
    if !can_run_containers() {
        return;
    }
    let e = TestEngine::new();
    let n = Network::create(&e, "app", &[]);
    let (a, b) = (Netns::new(), Netns::new());
    let id_a = n.connect(&a, "alpha", &[]);
    let hosts_a = e.root().join("containers").join(&id_a).join("hosts");
    let inode = std::fs::metadata(&hosts_a).map(|m| m.ino()).unwrap_or(0);
    let id_b = n.connect(&b, "beta", &["--alias", "web", "--alias", "www"]);
    let (ip_a, ip_b) = (n.address_of("alpha"), n.address_of("beta"));
    assert!(!ip_a.is_empty() && !ip_b.is_empty() && ip_a != ip_b, "{}", n.inspect());

    // Interfaces as docker sets them up: eth0, docker's MAC, the default route via the gateway.
    let addr = a.ip(&["-o", "-4", "addr", "show", "eth0"]);
    assert!(addr.contains(&format!("inet {ip_a}/24")), "{addr}");
    let v = n.inspect();
    let ep = &v["Containers"][&id_a];
    let octets: Vec<String> = ip_a.split('.').map(|o| format!("{:02x}", o.parse::<u8>().unwrap_or(0))).collect();
    assert_eq!(ep["MacAddress"].as_str(), Some(format!("02:42:{}", octets.join(":")).as_str()));
    assert!(a.ip(&["link", "show", "eth0"]).contains(&format!("02:42:{}", octets.join(":"))));
    let gateway = v["IPAM"]["Config"][0]["Gateway"].as_str().unwrap_or_default().to_owned();
    assert!(a.ip(&["route"]).contains(&format!("default via {gateway} dev eth0")), "{}", a.ip(&["route"]));

    assert!(a.ping(&ip_b), "alpha reaches beta");
    assert!(b.ping(&ip_a), "beta reaches alpha");
    assert!(a.ping(&gateway), "the host answers on the gateway");

    // The hosts files were rewritten in place and list both containers with their aliases.
    let text = std::fs::read_to_string(&hosts_a).unwrap_or_default();
    assert!(text.starts_with("127.0.0.1\tlocalhost\n"), "the runtime's lines are kept:\n{text}");
    assert!(text.contains(&format!("{ip_a}\talpha {}", &id_a[..12])), "{text}");
    assert!(text.contains(&format!("{ip_b}\tbeta web www {}", &id_b[..12])), "{text}");
    assert_eq!(std::fs::metadata(&hosts_a).map(|m| m.ino()).unwrap_or(1), inode, "same inode: bind mounts see it");

    // Names resolve inside the namespace through that file, and TCP works (busybox httpd in beta).
    a.use_hosts_file(&hosts_a);
    assert!(a.ping("web"), "alpha resolves beta's alias");
    let site = tempfile::tempdir().expect("site dir");
    std::fs::write(site.path().join("index.html"), "hello from beta\n").expect("index");
    let _httpd = b.httpd(site.path());
    // (busybox-static's wget crashes resolving names; nc is enough for an HTTP/1.0 request.)
    let mut body = String::new();
    for _ in 0..50 {
        body = a.http_get("beta", 8080);
        if body.contains("hello from beta") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(body.starts_with("HTTP/1.1 200 OK") && body.ends_with("\r\n\r\nhello from beta\n"), "{body}");

    // Leaving the network: beta disappears from alpha's hosts file, its address is free again.
    e.run(["network", "disconnect", "app", "beta"]).success();
    let text = std::fs::read_to_string(&hosts_a).unwrap_or_default();
    assert!(!text.contains("beta"), "{text}");
    assert!(!b.ip(&["-o", "link"]).contains("eth0"), "the container end went with the pair");
    let b2 = Netns::new();
    n.connect(&b2, "gamma", &["--ip", &ip_b]);
    assert_eq!(n.address_of("gamma"), ip_b, "a freed address can be taken again");
    e.run(["network", "connect", "--netns", b2.path().to_str().unwrap_or_default(), "app", "gamma"])
        .code_is(125)
        .stderr_has("endpoint with name gamma already exists in network app");
    e.run(["network", "connect", "--netns", b.path().to_str().unwrap_or_default(), "--ip", &ip_a, "app", "delta"])
        .code_is(125)
        .stderr_has("already in use");
    e.run(["network", "rm", "app"]).code_is(125).stderr_has("has active endpoints");
    e.run(["network", "disconnect", "app", "nobody"]).code_is(125).stderr_has("is not connected to network app");
}

#[test]
fn networks_are_isolated_and_internal_ones_have_no_way_out() {
    if !can_run_containers() {
        return;
    }
    let e = TestEngine::new();
    let (n1, n2) = (Network::create(&e, "one", &[]), Network::create(&e, "two", &[]));
    let internal = Network::create(&e, "sealed", &["--internal"]);
    let (a, b, c, d) = (Netns::new(), Netns::new(), Netns::new(), Netns::new());
    n1.connect(&a, "a", &[]);
    n2.connect(&b, "b", &[]);
    internal.connect(&c, "c", &[]);
    internal.connect(&d, "d", &[]);
    let (ip_a, ip_b, ip_d) = (n1.address_of("a"), n2.address_of("b"), internal.address_of("d"));
    let gw1 = n1.inspect()["IPAM"]["Config"][0]["Gateway"].as_str().unwrap_or_default().to_owned();

    assert!(a.ping(&gw1), "the network itself works");
    assert!(!a.ping(&ip_b), "one → two is dropped");
    assert!(!b.ping(&ip_a), "two → one is dropped");

    assert_eq!(internal.inspect()["Internal"], true);
    assert!(!c.ip(&["route"]).contains("default"), "an internal network gives no default route: {}", c.ip(&["route"]));
    assert!(c.ping(&ip_d), "containers of an internal network reach each other");
    assert!(!c.ping(&ip_a), "nothing is routed out of an internal network");
    assert!(!a.ping(&ip_d), "nothing is routed into an internal network");
    let table = nft_table();
    assert!(table.contains(&internal.bridge()) && table.contains(&n1.bridge()), "{table}");
    // Each network's creation rewrites the fixed rules in one transaction: they are there exactly once.
    assert_eq!(table.matches("masquerade").count(), 1, "{table}");
    assert_eq!(table.matches("oifname @bridges drop").count(), 1, "{table}");
}

#[test]
fn cleanup_leaves_no_device_or_rule_behind() {
    if !can_run_containers() {
        return;
    }
    let e = TestEngine::new();
    let n = Network::create(&e, "tidy", &[]);
    let bridge = n.bridge();
    let (a, b) = (Netns::new(), Netns::new());
    let id_a = n.connect(&a, "a", &[]);
    n.connect(&b, "b", &[]);
    let endpoint_a =
        format!("ddv{}", &n.inspect()["Containers"][&id_a]["EndpointID"].as_str().unwrap_or_default()[..12]);
    let veths = |links: &str| links.lines().filter(|l| l.contains(&format!("master {bridge}"))).count();
    assert_eq!(veths(&host_links()), 2, "{}", host_links());
    assert!(host_links().contains(&endpoint_a));

    e.run(["network", "disconnect", "tidy", "a"]).success();
    assert!(!host_links().contains(&endpoint_a), "disconnect deletes the veth pair");
    // A namespace that vanishes without a disconnect (a killed container) is reaped: rm succeeds.
    drop(b);
    // The kernel destroys a namespace (and its veth pairs) asynchronously after the last reference goes.
    let deadline = Instant::now() + Duration::from_secs(10);
    while veths(&host_links()) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(veths(&host_links()), 0, "the kernel removed the pair with the namespace");
    e.run(["network", "rm", "tidy"]).success();
    let links = host_links();
    assert!(!links.contains(&bridge), "{links}");
    assert!(!links.contains("ddv") || !links.contains(&format!("master {bridge}")), "{links}");
    assert!(!nft_table().contains(&bridge), "{}", nft_table());
    drop(a);
}

#[test]
fn bridges_of_a_deleted_engine_root_are_swept_by_the_next_network_change() {
    if !can_run_containers() {
        return;
    }
    let gone = TestEngine::new();
    let n = Network::create(&gone, "orphan", &["--internal"]);
    let bridge = n.bridge();
    assert!(host_links().contains(&bridge), "{}", host_links());
    let alias = String::from_utf8_lossy(&sh("ip", &["-d", "link", "show", &bridge]).stdout).into_owned();
    assert!(alias.contains("alias drydock-network:"), "the bridge names its record: {alias}");
    // `rm -rf` of the root: the record goes, the bridge and its nftables elements stay behind.
    std::fs::remove_dir_all(gone.root().join("networks")).expect("delete the networks of the root");
    assert!(nft_table().contains(&bridge), "{}", nft_table());

    let other = TestEngine::new();
    other.run(["network", "create", "next"]).success();
    let links = host_links();
    assert!(!links.contains(&format!("{bridge}:")), "the orphaned bridge is deleted: {links}");
    assert!(!nft_table().contains(&format!("\"{bridge}\"")), "{}", nft_table());
    other.run(["network", "rm", "next"]).success();
    drop(n);
}

#[test]
fn prune_removes_the_firewall_elements_of_a_bridge_deleted_by_hand() {
    if !can_run_containers() {
        return;
    }
    let owner = TestEngine::new();
    let n = Network::create(&owner, "by-hand", &[]);
    let bridge = n.bridge();
    let subnet = n.inspect()["IPAM"]["Config"][0]["Subnet"].as_str().unwrap_or_default().to_owned();
    assert!(nft_table().contains(&format!("\"{bridge}\"")), "{}", nft_table());
    assert!(nft_table().contains(&subnet), "masquerading for {subnet}: {}", nft_table());
    // The device goes behind Drydock's back: its nftables elements (by name and subnet) stay until a prune (any
    // root's: another test's may come first).
    let del = sh("ip", &["link", "del", &bridge]);
    assert!(del.status.success(), "ip link del {bridge}: {}", String::from_utf8_lossy(&del.stderr));

    // A third root's prune sweeps the host: the elements of the missing device and its subnet go; the record
    // of the network stays with its root.
    let third = TestEngine::new();
    let keep = Network::create(&third, "stays", &[]);
    let kept = keep.bridge();
    TestEngine::new().run(["network", "prune", "-f"]).success();
    let table = nft_table();
    assert!(!table.contains(&format!("\"{bridge}\"")), "elements of the deleted bridge swept: {table}");
    // Its subnet was free once the device went: another network (this test's next one, say) may hold it now.
    let holder = String::from_utf8_lossy(&sh("ip", &["route", "show", &subnet]).stdout).into_owned();
    assert!(!table.contains(&subnet) || holder.contains("dev dd-"), "masquerading of its subnet swept: {table}");
    assert!(table.contains(&format!("\"{kept}\"")), "a live bridge keeps its elements: {table}");
    drop(keep);
    owner.run(["network", "inspect", "by-hand"]).success();
    drop(n);
    assert!(!nft_table().contains(&format!("\"{bridge}\"")), "{}", nft_table());
}

#[test]
fn the_default_bridge_takes_resources_on_first_use_and_prune_gives_them_back() {
    if !can_run_containers() {
        return;
    }
    let e = TestEngine::new();
    let bridge_net = Network { e: &e, name: "bridge".into() };
    assert_eq!(bridge_net.inspect()["IPAM"]["Config"], serde_json::json!([]), "no subnet until first use");
    let bridge = bridge_net.bridge();
    let a = Netns::new();
    let id = bridge_net.connect(&a, "solo", &[]);
    let v = bridge_net.inspect();
    assert_eq!(v["IPAM"]["Config"].as_array().map(Vec::len), Some(1), "{v}");
    assert!(host_links().contains(&bridge));
    // No name resolution on the default bridge, as in docker.
    let hosts = std::fs::read_to_string(e.root().join("containers").join(&id).join("hosts")).unwrap_or_default();
    assert!(!hosts.contains("solo"), "{hosts}");
    e.run([
        "network",
        "connect",
        "--netns",
        a.path().to_str().unwrap_or_default(),
        "--ip",
        "10.213.250.9",
        "bridge",
        "x",
    ])
    .code_is(125)
    .stderr_has("user specified IP address is supported on user defined networks only");
    e.run(["network", "disconnect", "bridge", "solo"]).success();
    // Like docker0, the bridge stays when its last container leaves: the next container finds it ready.
    assert_eq!(bridge_net.inspect()["IPAM"]["Config"].as_array().map(Vec::len), Some(1));
    assert!(host_links().contains(&bridge), "the bridge stays for the next container");
    assert!(!host_links().contains(&format!("master {bridge}")), "no veth is left on it");
    e.run(["network", "prune", "-f"]).success();
    assert_eq!(bridge_net.inspect()["IPAM"]["Config"], serde_json::json!([]), "prune gives the subnet back");
    assert!(!host_links().contains(&bridge), "prune deletes the unused bridge");
    assert!(!nft_table().contains(&bridge), "prune deletes its firewall elements");
    e.run(["network", "connect", "--netns", a.path().to_str().unwrap_or_default(), "host", "x"])
        .code_is(125)
        .stderr_has("cannot be connected to network host");
    std::mem::forget(bridge_net); // built-in: nothing to remove
}

#[test]
fn a_published_port_reaches_httpd_in_a_namespace_through_loopback() {
    if !can_run_containers() {
        return;
    }
    let e = TestEngine::new();
    let n = Network::create(&e, "web", &[]);
    let ns = Netns::new();
    n.connect(&ns, "site", &[]);
    let ip = n.address_of("site");
    let site = tempfile::tempdir().expect("site dir");
    std::fs::write(site.path().join("index.html"), "published!\n").expect("index");
    let _httpd = ns.httpd(site.path());

    let mut proxy = e
        .cmd(["network", "publish", "--container-ip", &ip, "-p", "127.0.0.1::8080"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the proxy");
    let stdout = proxy.stdout.take().expect("piped stdout");
    let mut guard = Background(proxy);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("read the bound port");
    // 8080/tcp -> 127.0.0.1:PORT
    let port: u16 = line.trim().rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or_else(|| {
        let _ = guard.0.kill();
        panic!("unexpected proxy output {line:?}")
    });
    assert!(line.starts_with("8080/tcp -> 127.0.0.1:"), "{line}");

    let deadline = Instant::now() + Duration::from_secs(10);
    let response = loop {
        let attempt = (|| -> std::io::Result<String> {
            let mut s = TcpStream::connect(("127.0.0.1", port))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
            let mut r = String::new();
            s.read_to_string(&mut r)?;
            Ok(r)
        })();
        match attempt {
            Ok(r) if r.contains("published!") => break r,
            _ if Instant::now() > deadline => panic!("no answer through the proxy: {attempt:?}"),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    assert!(response.starts_with("HTTP/1.") && response.contains(" 200 "), "{response}");
    drop(guard);
}

// ---- Containers on networks: `run --network`, `-p`, `-P`, `port`, `network connect`, cleanup -------------------

/// A test engine with busybox, or `None` without root (outside CI).
fn engine_with_busybox() -> Option<TestEngine> {
    can_run_containers().then(TestEngine::with_busybox)
}

/// `GET /` over a real TCP connection to `127.0.0.1:port`, retried until it answers with `want` (httpd may
/// still be starting).
fn http_get_loopback(port: u16, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let attempt = (|| -> std::io::Result<String> {
            let mut s = TcpStream::connect(("127.0.0.1", port))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
            let mut r = String::new();
            s.read_to_string(&mut r)?;
            Ok(r)
        })();
        match attempt {
            Ok(r) if r.contains(want) => return r,
            _ if Instant::now() > deadline => panic!("no answer on 127.0.0.1:{port}: {attempt:?}"),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The host's veth ends plugged into the bridge of network `name` of engine `e`.
fn veths_on(e: &TestEngine, name: &str) -> usize {
    let v = e.run(["network", "inspect", name]).success().json();
    let id = v[0]["Id"].as_str().unwrap_or_default().to_owned();
    let bridge = format!("master dd-{}", &id[..12.min(id.len())]);
    host_links().lines().filter(|l| l.contains(&bridge)).count()
}

/// A directory with `index.html` for busybox httpd.
fn site(text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("site dir");
    std::fs::write(dir.path().join("index.html"), text).expect("index");
    dir
}

#[test]
fn containers_on_a_user_network_resolve_each_other_and_other_networks_are_isolated() {
    let Some(e) = engine_with_busybox() else { return };
    let n = Network::create(&e, "app", &[]);
    let other = Network::create(&e, "other", &[]);
    let www = site("hello from web\n");
    let volume = format!("{}:/www:ro", www.path().display());
    e.run([
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "app",
        "--network-alias",
        "www",
        "-v",
        &volume,
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/www",
    ])
    .success();
    let ip = e.run(["inspect", "-f", "{{.NetworkSettings.Networks.app.IPAddress}}", "web"]).success().stdout();
    let ip = ip.trim().to_owned();
    assert_eq!(ip, n.address_of("web"), "inspect shows the endpoint's address");
    assert_eq!(veths_on(&e, "app"), 1);

    // By name and by alias, ICMP and HTTP (busybox nc) from a second container on the same network.
    let script = "ping -c1 -W2 web >/dev/null && ping -c1 -W2 www >/dev/null && \
                  for i in 1 2 3 4 5 6 7 8 9 10; do \
                    printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w2 www 80 && break; sleep 0.2; done";
    let out = e.run(["run", "--rm", "--network", "app", "busybox", "sh", "-c", script]).success().stdout();
    assert!(out.starts_with("HTTP/1.") && out.contains("hello from web"), "{out}");
    let hosts = e.run(["run", "--rm", "--name", "peer", "--network", "app", "busybox", "cat", "/etc/hosts"]).success();
    let hosts = hosts.stdout();
    assert!(hosts.contains(&format!("{ip}\tweb www ")), "{hosts}");
    assert!(hosts.lines().any(|l| l.contains("\tpeer ")), "a container lists itself:\n{hosts}");

    // Another network: neither the name nor the address of web is reachable from there.
    let script = format!("ping -c1 -W1 web; echo name=$?; ping -c1 -W1 {ip}; echo addr=$?");
    let out = e.run(["run", "--rm", "--network", "other", "busybox", "sh", "-c", &script]).success().stdout();
    assert!(out.contains("name=1") && out.contains("addr=1"), "{out}");
    // Nor from the default bridge, where there is no name resolution at all (docker's rule).
    let hosts = e.run(["run", "--rm", "busybox", "cat", "/etc/hosts"]).success().stdout();
    assert!(!hosts.contains("web"), "{hosts}");

    // rm and network rm leave no veth, bridge or firewall element behind.
    let (bridge_app, bridge_other) = (n.bridge(), other.bridge());
    e.run(["rm", "-f", "web"]).success();
    assert_eq!(veths_on(&e, "app"), 0, "{}", host_links());
    assert_eq!(n.inspect()["Containers"], serde_json::json!({}));
    e.run(["network", "rm", "app", "other"]).success();
    let links = host_links();
    assert!(!links.contains(&bridge_app) && !links.contains(&bridge_other), "{links}");
    let table = nft_table();
    assert!(!table.contains(&bridge_app) && !table.contains(&bridge_other), "{table}");
}

#[test]
fn network_connect_and_disconnect_a_running_container() {
    let Some(e) = engine_with_busybox() else { return };
    let _n = Network::create(&e, "late", &[]);
    e.run(["run", "-d", "--name", "box", "busybox", "sleep", "60"]).success();
    e.run(["network", "connect", "--alias", "boxy", "late", "box"]).success();
    let links = e.run(["exec", "box", "ls", "/sys/class/net"]).success().stdout();
    assert_eq!(links, "eth0\neth1\nlo\n", "bridge first (eth0), then the new network");
    e.run(["run", "--rm", "--network", "late", "busybox", "ping", "-c1", "-W2", "boxy"]).success();
    e.run(["network", "connect", "late", "box"]).code_is(125).stderr_has("already exists in network late");

    e.run(["network", "disconnect", "late", "box"]).success();
    let links = e.run(["exec", "box", "ls", "/sys/class/net"]).success().stdout();
    assert_eq!(links, "eth0\nlo\n");
    e.run(["run", "--rm", "--network", "late", "busybox", "ping", "-c1", "-W1", "boxy"]).code_is(1);
    // That container's pair goes with its namespace, which the kernel destroys just after the exit is reported
    // (asynchronously, within milliseconds): `run --rm` does not wait for it.
    assert!(eventually(5, || veths_on(&e, "late") == 0), "{}", host_links());
    e.run(["network", "disconnect", "late", "box"]).code_is(125).stderr_has("is not connected to network late");
    e.run(["network", "connect", "host", "box"]).code_is(125).stderr_has("cannot be connected");
}

#[test]
fn a_published_port_reaches_httpd_in_a_container_from_the_host() {
    let Some(e) = engine_with_busybox() else { return };
    let www = site("published!\n");
    let volume = format!("{}:/www:ro", www.path().display());
    e.run([
        "run",
        "-d",
        "--name",
        "pub",
        "-p",
        "127.0.0.1::80",
        "-v",
        &volume,
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/www",
    ])
    .success();
    let line = e.run(["port", "pub"]).success().stdout();
    assert!(line.starts_with("80/tcp -> 127.0.0.1:") && line.lines().count() == 1, "{line}");
    let address = e.run(["port", "pub", "80"]).success().stdout();
    let port: u16 = address.trim().rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0);
    assert!(port > 0, "{address}");
    let response = http_get_loopback(port, "published!");
    assert!(response.starts_with("HTTP/1.") && response.contains(" 200 "), "{response}");

    let ps = e.run(["ps", "--format", "{{.Ports}}"]).success().stdout();
    assert_eq!(ps, format!("127.0.0.1:{port}->80/tcp\n"));
    let ports = e.run(["inspect", "-f", "{{json .NetworkSettings.Ports}}", "pub"]).success().stdout();
    assert_eq!(ports.trim(), format!(r#"{{"80/tcp":[{{"HostIp":"127.0.0.1","HostPort":"{port}"}}]}}"#));
    e.run(["port", "pub", "81"]).code_is(125).stderr_has("No public port '81/tcp' published for pub");

    // Stopping the container closes the port; starting it again publishes afresh.
    e.run(["stop", "-t", "1", "pub"]).success();
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "the proxy stopped with the container");
    e.run(["port", "pub"]).success().stdout_is("");
    e.run(["start", "pub"]).success();
    let address = e.run(["port", "pub", "80/tcp"]).success().stdout();
    let port: u16 = address.trim().rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0);
    http_get_loopback(port, "published!");
}

#[test]
fn publish_all_maps_every_exposed_port() {
    let Some(e) = engine_with_busybox() else { return };
    let tar = crate::util::busybox_tar().to_string_lossy().into_owned();
    e.run(["import", "-c", "EXPOSE 80", "-c", "EXPOSE 53/udp", &tar, "exposing"]).success();
    let www = site("all of them\n");
    let volume = format!("{}:/www:ro", www.path().display());
    e.run(["run", "-d", "--name", "all", "-P", "-v", &volume, "exposing", "httpd", "-f", "-p", "80", "-h", "/www"])
        .success();
    let lines = e.run(["port", "all"]).success().stdout();
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with("53/udp -> 0.0.0.0:") && lines[1].starts_with("80/tcp -> 0.0.0.0:"), "{lines:?}");
    let port: u16 = lines[1].rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0);
    http_get_loopback(port, "all of them");
}

#[test]
fn a_busy_host_port_fails_the_start_clearly_and_leaves_nothing() {
    let Some(e) = engine_with_busybox() else { return };
    let taken = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind a port");
    let port = taken.local_addr().map(|a| a.port()).unwrap_or(0);
    let spec = format!("127.0.0.1:{port}:80");
    e.run(["run", "-d", "--name", "busy", "-p", &spec, "busybox", "sleep", "60"])
        .code_is(125)
        .stderr_has(&format!("Bind for 127.0.0.1:{port} failed: port is already allocated"));
    e.run(["inspect", "-f", "{{.State.Status}}", "busy"]).success().stdout_is("created\n");
    // No endpoint and no veth left (the default bridge itself stays, as docker0).
    let bridge = e.run(["network", "inspect", "bridge"]).success().json();
    assert_eq!(bridge[0]["Containers"], serde_json::json!({}));
    assert_eq!(veths_on(&e, "bridge"), 0, "{}", host_links());
    let id = bridge[0]["Id"].as_str().unwrap_or_default().to_owned();
    // No process of the container is left either: its cgroup is gone.
    let cid = e.run(["inspect", "-f", "{{.Id}}", "busy"]).success().stdout().trim().to_owned();
    assert!(!Path::new("/sys/fs/cgroup/pids/drydock").join(&cid).exists());

    // Once the port is free, the same container starts.
    drop(taken);
    e.run(["start", "busy"]).success();
    e.run(["port", "busy", "80"]).success().stdout_is(&format!("127.0.0.1:{port}\n"));
    e.run(["rm", "-f", "busy"]).success();
    assert_eq!(veths_on(&e, "bridge"), 0, "rm leaves no veth behind: {}", host_links());
    e.run(["network", "prune", "-f"]).success();
    assert!(!host_links().contains(&format!("dd-{}", &id[..12])), "{}", host_links());
}

#[test]
fn network_none_has_only_lo_and_host_shares_the_hosts_interfaces() {
    let Some(e) = engine_with_busybox() else { return };
    e.run(["run", "--rm", "--network", "none", "busybox", "ls", "/sys/class/net"]).success().stdout_is("lo\n");
    // Any interface of the host is visible with --network host (the bridge of a network of ours, say).
    let n = Network::create(&e, "visible", &[]);
    let bridge = n.bridge();
    let inside = e.run(["run", "--rm", "--network", "host", "busybox", "ls", "/sys/class/net"]).success().stdout();
    assert!(inside.lines().any(|l| l == bridge), "{inside}");
    let inspect = e.run(["create", "--network", "host", "busybox", "true"]).success().stdout();
    let mode = e.run(["inspect", "-f", "{{.HostConfig.NetworkMode}}", inspect.trim()]).success().stdout();
    assert_eq!(mode, "host\n");
    e.run(["run", "--rm", "--network", "nosuch", "busybox", "true"])
        .code_is(125)
        .stderr_has("network nosuch not found");
    e.run(["run", "--rm", "--network-alias", "x", "busybox", "true"])
        .code_is(125)
        .stderr_has("only supported for user-defined networks");
}

#[test]
fn network_container_shares_the_namespace_hosts_and_hostname_of_a_running_container() {
    let Some(e) = engine_with_busybox() else { return };
    let www = site("shared namespace\n");
    let volume = format!("{}:/www:ro", www.path().display());
    // httpd listens on the primary's loopback only: only a container in the same namespace can reach it, as the
    // secondary images of a CircleCI docker job reach each other on localhost.
    e.run([
        "run",
        "-d",
        "--name",
        "primary",
        "-v",
        &volume,
        "busybox",
        "httpd",
        "-f",
        "-p",
        "127.0.0.1:8080",
        "-h",
        "/www",
    ])
    .success();
    let get = || {
        e.run(["run", "--rm", "--network", "container:primary", "busybox", "wget", "-qO-", "http://127.0.0.1:8080/"])
    };
    assert!(eventually(10, || get().code() == 0), "{}", get().stderr());
    get().success().stdout_is("shared namespace\n");
    let hostname = e.run(["exec", "primary", "hostname"]).success().stdout();
    e.run(["run", "--rm", "--network", "container:primary", "busybox", "hostname"]).success().stdout_is(&hostname);
    // A second-level share joins the namespace's owner.
    e.run(["create", "--name", "middle", "--network", "container:primary", "busybox", "sleep", "60"]).success();
    e.run(["inspect", "-f", "{{.HostConfig.NetworkMode}}", "middle"])
        .success()
        .stdout_is(&format!("container:{}\n", container_id_of(&e, "primary")));
    // Flags that describe a namespace of one's own conflict with sharing one; a stopped owner cannot be joined.
    e.run(["run", "--rm", "--network", "container:primary", "-p", "80", "busybox", "true"])
        .code_is(125)
        .stderr_has("conflicting options: --publish");
    e.run(["create", "--name", "stopped", "busybox", "true"]).success();
    e.run(["run", "--rm", "--network", "container:stopped", "busybox", "true"])
        .code_is(125)
        .stderr_has("non-running container");
    e.run(["run", "--rm", "--network", "container:nosuch", "busybox", "true"]).code_is(125).stderr_has("nosuch");
    e.run(["rm", "-f", "primary", "middle", "stopped"]).success();
}

fn container_id_of(e: &TestEngine, name: &str) -> String {
    e.run(["inspect", "-f", "{{.Id}}", name]).success().stdout().trim().to_owned()
}

#[test]
fn add_host_dns_flags_and_expose_shape_the_containers_files_and_ports() {
    let Some(e) = engine_with_busybox() else { return };
    let out = e
        .run([
            "run",
            "--rm",
            "--add-host",
            "db.internal:10.1.2.3",
            "--add-host",
            "gw:host-gateway",
            "--dns",
            "10.0.0.2",
            "--dns-search",
            "example.test",
            "--dns-option",
            "ndots:2",
            "busybox",
            "sh",
            "-c",
            "cat /etc/hosts /etc/resolv.conf; echo route $(ip route | awk '/default/ {print $3}')",
        ])
        .success()
        .stdout();
    assert!(out.contains("10.1.2.3\tdb.internal\n"), "{out}");
    let gateway = out.lines().find_map(|l| l.strip_prefix("route ")).unwrap_or_default().trim().to_owned();
    assert!(!gateway.is_empty() && out.contains(&format!("{gateway}\tgw\n")), "host-gateway is the gateway: {out}");
    assert!(out.contains("nameserver 10.0.0.2\n") && out.contains("search example.test\n"), "{out}");
    assert!(out.contains("options ndots:2\n"), "{out}");
    assert_eq!(out.matches("nameserver").count(), 1, "--dns replaces the host's servers: {out}");
    e.run(["run", "--rm", "--add-host", "nocolon", "busybox", "true"]).code_is(125).stderr_has("--add-host");
    e.run(["run", "--rm", "--dns", "not-an-ip", "busybox", "true"]).code_is(125).stderr_has("--dns");
    // --expose adds to the image's ports, so -P publishes it.
    e.run(["run", "-d", "--name", "exposed", "--expose", "7000-7001/udp", "-P", "busybox", "sleep", "60"]).success();
    let ports = e.run(["port", "exposed"]).success().stdout();
    assert!(ports.contains("7000/udp -> 0.0.0.0:") && ports.contains("7001/udp -> 0.0.0.0:"), "{ports}");
    e.run(["rm", "-f", "exposed"]).success();
}
