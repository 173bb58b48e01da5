//! The observer: polls every replica's raft `Status` RPC ten times a second, and keeps what the
//! checkers and the nemesis need — every leader claim (tier, replica, term), the latest status
//! of each replica, and per tier the moments it had a writable leader (one a quorum
//! acknowledged within the last few heartbeats).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use grove_proto::raft::raft_client::RaftClient;
use grove_proto::raft::StatusRequest;
use serde_json::Value;
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};

use crate::check::LeaderSample;
use crate::client::Recorder;
use crate::history::Micros;

/// How often every replica is asked.
pub const POLL: Duration = Duration::from_millis(100);
/// A leader whose quorum acknowledged it within this is writable (three heartbeats).
const FRESH_QUORUM_MS: u64 = 300;
/// A replica that does not answer within this counts as silent for that poll (a paused one
/// never answers: waiting longer would coarsen every poll while it is paused).
const ANSWER_WITHIN: Duration = Duration::from_millis(150);

/// One replica to watch.
#[derive(Debug, Clone)]
pub struct Watched {
    /// `root`, `cluster-1`, …
    pub tier: String,
    /// `root-1`, `cluster-1-2`, …
    pub member: String,
    /// Its raft gRPC address (`host:port`).
    pub raft_addr: String,
}

#[derive(Default)]
struct Seen {
    latest: BTreeMap<String, (Micros, Value)>,
    /// (tier, replica, term) → first time seen.
    claims: BTreeMap<(String, String, u64), Micros>,
    /// tier → (poll time, writable leader and its term, if any).
    writable: BTreeMap<String, Vec<(Micros, Option<(String, u64)>)>>,
}

/// The running observer; clones share what it saw.
#[derive(Clone)]
pub struct Observer {
    watched: Vec<Watched>,
    clients: Vec<RaftClient<Channel>>,
    recorder: Recorder,
    seen: Arc<Mutex<Seen>>,
}

impl Observer {
    pub fn new(watched: Vec<Watched>, recorder: Recorder) -> anyhow::Result<Observer> {
        let clients = watched
            .iter()
            .map(|w| {
                let channel = Endpoint::from_shared(format!("http://{}", w.raft_addr))?
                    .connect_timeout(ANSWER_WITHIN)
                    .connect_lazy();
                Ok(RaftClient::new(channel))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Observer { watched, clients, recorder, seen: Arc::default() })
    }

    /// Poll until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            self.poll_once().await;
            let _ = tokio::time::timeout(POLL, stop.changed()).await;
        }
    }

    /// Ask every replica once (concurrently) and record the answers.
    pub async fn poll_once(&self) {
        let asks = self.clients.iter().map(|c| status(c.clone(), false));
        let answers = futures::future::join_all(asks).await;
        let at = self.recorder.now();
        let mut seen = self.seen.lock().expect("observer lock");
        let mut writable: BTreeMap<String, Option<(String, u64)>> = BTreeMap::new();
        for (w, answer) in self.watched.iter().zip(answers) {
            writable.entry(w.tier.clone()).or_default();
            let Some(s) = answer else { continue };
            let term = s["term"].as_u64().unwrap_or(0);
            if s["role"] == "leader" {
                seen.claims.entry((w.tier.clone(), w.member.clone(), term)).or_insert(at);
                if s["millis_since_quorum_ack"].as_u64().is_some_and(|m| m <= FRESH_QUORUM_MS) {
                    writable.insert(w.tier.clone(), Some((w.member.clone(), term)));
                }
            }
            seen.latest.insert(w.member.clone(), (at, s));
        }
        for (tier, leader) in writable {
            seen.writable.entry(tier).or_default().push((at, leader));
        }
    }

    /// Every leader claim seen, for the safety checker.
    pub fn leader_samples(&self) -> Vec<LeaderSample> {
        let seen = self.seen.lock().expect("observer lock");
        seen.claims.iter().map(|((tier, replica, term), at)| LeaderSample { tier: tier.clone(), replica: replica.clone(), term: *term, at: *at }).collect()
    }

    /// The tier's writable leader at the latest poll, if it had one.
    pub fn leader(&self, tier: &str) -> Option<(String, u64)> {
        let seen = self.seen.lock().expect("observer lock");
        seen.writable.get(tier)?.last()?.1.clone()
    }

    /// The first poll at or after `from` where the tier had a writable leader that was not
    /// one of `excluded` — those count again from `back` on (a restarted replica that resumes
    /// its leadership): how long after `from` it came.
    pub fn writable_after(&self, tier: &str, from: Micros, excluded: &[String], back: Micros) -> Option<Micros> {
        let seen = self.seen.lock().expect("observer lock");
        seen.writable
            .get(tier)?
            .iter()
            .find(|(at, l)| *at >= from && l.as_ref().is_some_and(|(m, _)| !excluded.contains(m) || *at >= back))
            .map(|(at, _)| at - from)
    }

    /// Every replica's status with its state digest (unanswered replicas are missing).
    pub async fn digests(&self) -> BTreeMap<String, (String, Value)> {
        let asks = self.clients.iter().map(|c| status(c.clone(), true));
        let answers = futures::future::join_all(asks).await;
        self.watched.iter().zip(answers).filter_map(|(w, a)| Some((w.member.clone(), (w.tier.clone(), a?)))).collect()
    }

    /// What the observer saw, for `observations.json`: every leader claim, and per tier each
    /// poll's writable leader.
    pub fn dump(&self) -> Value {
        let seen = self.seen.lock().expect("observer lock");
        let claims: Vec<Value> = seen.claims.iter().map(|((t, r, term), at)| serde_json::json!({"tier": t, "replica": r, "term": term, "first_seen_us": at})).collect();
        let writable: BTreeMap<&String, Vec<Value>> = seen
            .writable
            .iter()
            .map(|(t, polls)| (t, polls.iter().map(|(at, l)| serde_json::json!([at, l])).collect()))
            .collect();
        serde_json::json!({ "leader_claims": claims, "writable_leader_per_poll": writable })
    }

    /// The tiers watched.
    pub fn tiers(&self) -> BTreeSet<String> {
        self.watched.iter().map(|w| w.tier.clone()).collect()
    }
}

async fn status(mut client: RaftClient<Channel>, digest: bool) -> Option<Value> {
    let ask = client.status(StatusRequest { group: String::new(), digest, from: 0 });
    // A digest serialises the whole state: give it longer.
    let within = if digest { Duration::from_secs(3) } else { ANSWER_WITHIN };
    let reply = tokio::time::timeout(within, ask).await.ok()?.ok()?;
    serde_json::from_str(&reply.into_inner().json).ok()
}
