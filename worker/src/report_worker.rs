//! The reporter: every period, `nodes/<id>/information` (Node JSON) and
//! `nodes/<id>/jobs/resources` (one message per runtime); after every (re)connect, a full
//! report that also repeats the status of every instance, so the cluster can reconcile; and
//! as soon as an instance starts, the resources alone — the cluster marks an instance RUNNING
//! when a resources report lists it, so waiting for the period would delay every deployment
//! by up to a period.

use std::time::Duration;

use grove_core::worker_protocol::topic;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::engine::Engine;
use crate::mqtt_worker::{ConnState, Publisher};
use crate::node_info::NodeSampler;

/// The reporter task. Returns when `cancel` fires.
pub async fn report_worker(
    engine: Engine,
    mut sampler: NodeSampler,
    publisher: Publisher,
    node_id: String,
    mut state: watch::Receiver<ConnState>,
    period: Duration,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut reported_epoch = 0u64;
    loop {
        let mut only_resources = false;
        let full = tokio::select! {
            _ = cancel.cancelled() => break,
            _ = engine.started_instance() => {
                if !state.borrow().connected { continue; }
                only_resources = true;
                false
            }
            changed = state.changed() => {
                if changed.is_err() { break; }
                let s = state.borrow_and_update().clone();
                if !s.connected || s.epoch == reported_epoch { continue; }
                reported_epoch = s.epoch;
                info!(broker = %s.broker, "connected: sending a full report");
                true
            }
            _ = tick.tick() => {
                if !state.borrow().connected { continue; }
                false
            }
        };
        if !only_resources {
            publisher.report(topic::information(&node_id), &sampler.sample());
        }
        if full {
            engine.publish_all_statuses();
        }
        for report in engine.resources().await {
            debug!(instances = report.services.len(), "resources report");
            publisher.report(topic::resources(&node_id), &report);
        }
    }
    info!("reporter stopped");
}
