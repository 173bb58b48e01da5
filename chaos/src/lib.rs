//! grove-chaos: Grove's chaos harness, in the style of Jepsen and etcd's robustness tests. It
//! starts a real topology, runs concurrent client workloads against it while a nemesis kills,
//! pauses and partitions replicas on a seeded schedule, records every operation
//! ([`history`]), then checks the history ([`check`]) and writes a report ([`report`]).

pub mod check;
pub mod history;
pub mod report;
