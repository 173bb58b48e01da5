//! grove-chaos: Grove's chaos harness, in the style of Jepsen and etcd's robustness tests. It
//! starts a real topology ([`target`]), runs concurrent client workloads against it
//! ([`workload`], through [`client`]) while a [`nemesis`] kills, pauses and partitions
//! replicas on a seeded schedule and an [`observe`]r watches every replica's raft status,
//! records every operation ([`history`]), then checks the history ([`check`]) and writes a
//! report ([`report`]). [`run`] ties it together.

pub mod check;
pub mod client;
pub mod history;
pub mod nemesis;
pub mod observe;
pub mod report;
pub mod run;
pub mod target;
pub mod workload;
