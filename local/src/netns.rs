//! Members in network namespaces, so the chaos harness can partition them for real.
//!
//! Each member gets its own namespace (`<tag>-<member>`) with one veth into a bridge
//! (`<tag>br`) in the host namespace, which holds `10.<subnet>.0.1` so clients on the host
//! reach every member. A partition is a pair of iptables DROP rules (in and out) inside each
//! cut-off member's namespace; healing flushes them. Needs root (CAP_NET_ADMIN) and the `ip`
//! and `iptables` commands.

use std::collections::BTreeMap;
use std::process::Command;

use anyhow::{bail, Context};

/// The namespaces, veths and bridge of one topology. Dropping it removes them all.
#[derive(Debug)]
pub struct Net {
    tag: String,
    subnet: u8,
    /// Member name → host number (the last octet of its address).
    hosts: BTreeMap<String, u8>,
    created: bool,
}

fn run(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(args[0]).args(&args[1..]).output().with_context(|| format!("running {}", args[0]))?;
    if !out.status.success() {
        bail!("`{}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

impl Net {
    /// Can this process make namespaces? `None` when it can, else why not.
    pub fn unavailable() -> Option<String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Some("network namespaces need root (CAP_NET_ADMIN)".into());
        }
        for tool in ["ip", "iptables"] {
            if Command::new(tool).arg("--version").output().is_err() {
                return Some(format!("the `{tool}` command is missing (apt-get install iproute2 iptables)"));
            }
        }
        None
    }

    /// Create a namespace per member on a fresh bridge. `tag` names everything (at most 8
    /// characters, so interface names stay under Linux's 15); `subnet` picks 10.<subnet>.0.0/24.
    pub fn create(tag: &str, subnet: u8, hosts: BTreeMap<String, u8>) -> anyhow::Result<Net> {
        if tag.is_empty() || tag.len() > 8 || !tag.chars().all(|c| c.is_ascii_alphanumeric()) {
            bail!("network tag {tag:?} must be 1 to 8 letters or digits");
        }
        if let Some(why) = Net::unavailable() {
            bail!("cannot partition members: {why}");
        }
        let mut net = Net { tag: tag.into(), subnet, hosts, created: true };
        net.remove(); // what a crashed earlier run left behind
        let bridge = net.bridge();
        let gateway = format!("10.{subnet}.0.1/24");
        run(&["ip", "link", "add", &bridge, "type", "bridge"])?;
        run(&["ip", "addr", "add", &gateway, "dev", &bridge])?;
        run(&["ip", "link", "set", &bridge, "up"])?;
        // Docker sets the FORWARD policy to DROP, which also filters bridged frames.
        run(&["iptables", "-I", "FORWARD", "-i", &bridge, "-o", &bridge, "-j", "ACCEPT"])?;
        for (name, host) in net.hosts.clone() {
            let ns = net.namespace(&name);
            let (outside, inside) = (format!("{}v{host}", net.tag), format!("{}i{host}", net.tag));
            run(&["ip", "netns", "add", &ns])?;
            run(&["ip", "link", "add", &outside, "type", "veth", "peer", "name", &inside])?;
            run(&["ip", "link", "set", &inside, "netns", &ns])?;
            run(&["ip", "link", "set", &outside, "master", &bridge, "up"])?;
            let addr = format!("10.{subnet}.0.{host}/24");
            run(&["ip", "-n", &ns, "addr", "add", &addr, "dev", &inside])?;
            run(&["ip", "-n", &ns, "link", "set", &inside, "up"])?;
            run(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    fn bridge(&self) -> String {
        format!("{}br", self.tag)
    }

    /// The namespace of a member.
    pub fn namespace(&self, member: &str) -> String {
        format!("{}-{member}", self.tag)
    }

    /// The address of a member.
    pub fn addr(&self, member: &str) -> Option<String> {
        self.hosts.get(member).map(|h| format!("10.{}.0.{h}", self.subnet))
    }

    /// Cut every member of `side` off from every member of `others` (both directions).
    pub fn cut(&self, side: &[String], others: &[String]) -> anyhow::Result<()> {
        for a in side {
            for b in others {
                for (from, to) in [(a, b), (b, a)] {
                    let ns = self.namespace(from);
                    let peer = self.addr(to).with_context(|| format!("no member named {to}"))?;
                    run(&["ip", "netns", "exec", &ns, "iptables", "-A", "INPUT", "-s", &peer, "-j", "DROP"])?;
                    run(&["ip", "netns", "exec", &ns, "iptables", "-A", "OUTPUT", "-d", &peer, "-j", "DROP"])?;
                }
            }
        }
        Ok(())
    }

    /// Remove every partition.
    pub fn heal(&self) -> anyhow::Result<()> {
        for name in self.hosts.keys() {
            let ns = self.namespace(name);
            run(&["ip", "netns", "exec", &ns, "iptables", "-F", "INPUT"])?;
            run(&["ip", "netns", "exec", &ns, "iptables", "-F", "OUTPUT"])?;
        }
        Ok(())
    }

    fn remove(&mut self) {
        if !self.created {
            return;
        }
        let bridge = self.bridge();
        for name in self.hosts.keys() {
            let _ = run(&["ip", "netns", "del", &self.namespace(name)]);
        }
        while run(&["iptables", "-D", "FORWARD", "-i", &bridge, "-o", &bridge, "-j", "ACCEPT"]).is_ok() {}
        let _ = run(&["ip", "link", "del", &bridge]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.remove();
        self.created = false;
    }
}
