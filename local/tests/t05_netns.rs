//! Network namespaces for partitions: members reach each other over the bridge, a cut drops
//! their traffic both ways, healing restores it.

use std::collections::BTreeMap;
use std::process::Command;

use grove_local::netns::Net;

fn ping(net: &Net, from: &str, to: &str) -> bool {
    let addr = net.addr(to).unwrap();
    Command::new("ip")
        .args(["netns", "exec", &net.namespace(from), "busybox", "ping", "-c", "1", "-W", "1", &addr])
        .output()
        .expect("running ping")
        .status
        .success()
}

#[test]
fn cut_drops_traffic_between_members_and_heal_restores_it() {
    if let Some(why) = Net::unavailable() {
        let banner = "!".repeat(100);
        eprintln!("\n{banner}\n!!! SKIPPED cut_drops_traffic_between_members_and_heal_restores_it: {why}\n{banner}\n");
        return;
    }
    let hosts: BTreeMap<String, u8> = [("a".to_owned(), 10), ("b".to_owned(), 11), ("c".to_owned(), 12)].into();
    let tag = format!("gt{}", std::process::id() % 100_000);
    let net = Net::create(&tag, 213, hosts).unwrap();
    assert!(ping(&net, "a", "b") && ping(&net, "b", "c"), "members reach each other over the bridge");
    net.cut(&["a".to_owned()], &["b".to_owned(), "c".to_owned()]).unwrap();
    assert!(!ping(&net, "a", "b"), "a is cut off from b");
    assert!(!ping(&net, "c", "a"), "the cut holds in both directions");
    assert!(ping(&net, "b", "c"), "the majority still talks");
    net.heal().unwrap();
    assert!(ping(&net, "a", "b") && ping(&net, "c", "a"), "healing restores traffic");
    let ns = net.namespace("a");
    drop(net);
    let left = String::from_utf8(Command::new("ip").args(["netns", "list"]).output().unwrap().stdout).unwrap();
    assert!(!left.contains(&ns), "dropping the net removes its namespaces: {left}");
}
