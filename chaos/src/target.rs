//! What the nemesis acts on: a running topology whose members it can kill, restart, pause
//! and partition. [`Processes`] is the local process topology (grove-local) with every member
//! in its own network namespace; [`Compose`] is `docker-compose.ha.yml` on the local Docker
//! engine.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::Context;
use grove_local::{Tier, Topology};

use crate::observe::Watched;

pub mod compose;
pub use compose::Compose;

pub trait Target: Send {
    /// What kind of topology this is (`processes`, `compose`), for the report.
    fn topology(&self) -> &'static str;
    /// The tiers with replicas: `root`, `cluster-1`, …
    fn tiers(&self) -> Vec<String>;
    /// The members of a tier (`worker` names the workers).
    fn members(&self, tier: &str) -> Vec<String>;
    /// The root API URLs clients use.
    fn root_endpoints(&self) -> Vec<String>;
    /// The member behind a root API URL.
    fn member_of_endpoint(&self, url: &str) -> Option<String>;
    /// Every replica, for the observer.
    fn watched(&self) -> Vec<Watched>;
    fn kill(&mut self, member: &str) -> anyhow::Result<()>;
    fn restart(&mut self, member: &str) -> anyhow::Result<()>;
    fn pause(&mut self, member: &str) -> anyhow::Result<()>;
    fn resume(&mut self, member: &str) -> anyhow::Result<()>;
    /// Cut every side off from every other side.
    fn partition(&mut self, sides: &[Vec<String>]) -> anyhow::Result<()>;
    fn heal(&mut self) -> anyhow::Result<()>;
    /// The task ids a worker's containerd namespace runs.
    fn running_tasks(&self, worker: &str) -> Vec<String>;
    /// Undo every fault: heal, resume, start what is down.
    fn restore_all(&mut self) -> anyhow::Result<()>;
}

/// The process topology in network namespaces.
pub struct Processes {
    pub topology: Topology,
    pub containerd: Option<PathBuf>,
    paused: BTreeSet<String>,
}

impl Processes {
    pub fn new(topology: Topology, containerd: Option<PathBuf>) -> Processes {
        Processes { topology, containerd, paused: BTreeSet::new() }
    }

    fn tier_of(name: &str) -> String {
        match name.rsplit_once('-') {
            Some((tier, _)) if tier.starts_with("cluster-") || tier == "root" || tier == "worker" => tier.to_owned(),
            _ => name.to_owned(),
        }
    }
}

impl Target for Processes {
    fn topology(&self) -> &'static str {
        "processes"
    }

    fn tiers(&self) -> Vec<String> {
        let mut t = vec!["root".to_owned()];
        t.extend((0..self.topology.layout.clusters).map(grove_local::Layout::cluster_name));
        t
    }

    fn members(&self, tier: &str) -> Vec<String> {
        self.topology.members.keys().filter(|n| Self::tier_of(n) == tier).cloned().collect()
    }

    fn root_endpoints(&self) -> Vec<String> {
        self.topology.layout.root_urls()
    }

    fn member_of_endpoint(&self, url: &str) -> Option<String> {
        self.topology.members.values().find(|m| m.url.as_deref() == Some(url)).map(|m| m.name.clone())
    }

    fn watched(&self) -> Vec<Watched> {
        self.topology
            .members
            .values()
            .filter(|m| m.tier != Tier::Worker)
            .map(|m| Watched {
                tier: Self::tier_of(&m.name),
                member: m.name.clone(),
                raft_addr: self.topology.layout.raft_addr(m.tier, m.index()),
            })
            .collect()
    }

    fn kill(&mut self, member: &str) -> anyhow::Result<()> {
        self.paused.remove(member);
        self.topology.kill(member)
    }

    fn restart(&mut self, member: &str) -> anyhow::Result<()> {
        self.topology.start(member)
    }

    fn pause(&mut self, member: &str) -> anyhow::Result<()> {
        self.topology.signal(member, libc::SIGSTOP)?;
        self.paused.insert(member.to_owned());
        Ok(())
    }

    fn resume(&mut self, member: &str) -> anyhow::Result<()> {
        self.paused.remove(member);
        self.topology.signal(member, libc::SIGCONT)
    }

    fn partition(&mut self, sides: &[Vec<String>]) -> anyhow::Result<()> {
        let net = self.topology.net.as_ref().context("this topology has no network namespaces to partition")?;
        for (i, a) in sides.iter().enumerate() {
            for b in &sides[i + 1..] {
                net.cut(a, b)?;
            }
        }
        Ok(())
    }

    fn heal(&mut self) -> anyhow::Result<()> {
        match &self.topology.net {
            Some(net) => net.heal(),
            None => Ok(()),
        }
    }

    fn running_tasks(&self, worker: &str) -> Vec<String> {
        let (Some(socket), Some(m)) = (&self.containerd, self.topology.members.get(worker)) else { return Vec::new() };
        grove_local::running_tasks(socket, &self.topology.layout.worker_namespace(m.index()))
    }

    fn restore_all(&mut self) -> anyhow::Result<()> {
        self.heal()?;
        for m in std::mem::take(&mut self.paused) {
            self.topology.signal(&m, libc::SIGCONT)?;
        }
        self.topology.start_all()
    }
}
