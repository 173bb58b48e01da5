//! grove-fleet: a **load generator for benchmarks** — N simulated workers in one process, in the
//! spirit of Kubernetes' kubemark "hollow nodes". It never runs a container and never replaces
//! `grove-worker` in a deployment.
//!
//! Each simulated worker is a real client of the worker contract (contract §4.2–4.3):
//! `POST /api/node/register` with the Node JSON, its own MQTT session (client id `<id>-ne`,
//! with broker failover), `nodes/<id>/information` and `nodes/<id>/jobs/resources` every 2 s
//! (spread evenly over the period across the fleet), and answers to `control/deploy` and
//! `control/delete` with `nodes/<id>/job` status events after a simulated start-up time, failing
//! a configurable fraction of deploys.
//!
//! - [`config`]: [`FleetConfig`], what a fleet simulates (one documented struct).
//! - [`fleet`]: [`Fleet`], registration of every worker, their sessions, counters and the
//!   ledger of what every simulated worker runs; `shutdown` with a deadline.
//! - [`hollow_worker`]: one worker's session loop and its instance state machine.
//! - [`bench`]: what `grove-bench` measures with (process CPU and memory from `/proc`,
//!   percentiles, the Markdown table and the PNG plot of cost per worker).
//! - [`error`]: the crate's error type, [`FleetError`].

pub mod bench;
pub mod config;
pub mod error;
pub mod fleet;
pub mod hollow_worker;

pub use config::FleetConfig;
pub use error::FleetError;
pub use fleet::{Fleet, InstanceRecord, Stats};
