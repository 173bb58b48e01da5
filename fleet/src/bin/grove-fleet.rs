//! `grove-fleet`: a load generator for benchmarks — N simulated workers (hollow nodes) attached
//! to a Grove (or Oakestra) cluster until Ctrl-C. Not a worker runtime: it runs nothing.

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use grove_fleet::config::parse_broker;
use grove_fleet::{Fleet, FleetConfig};

#[derive(Parser)]
#[command(
    name = "grove-fleet",
    about = "Load generator for benchmarks: N simulated workers in one process, each registering over HTTP and holding its own MQTT session (never a product runtime)"
)]
struct Args {
    /// Registration endpoints of one cluster tier (host:port or URL), comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    cluster_endpoints: Vec<String>,
    /// MQTT brokers host:port, comma-separated, in failover order (default: the broker of each
    /// worker's registration answer, MQTT_BROKER_PORT on the endpoint's host).
    #[arg(long, value_delimiter = ',')]
    brokers: Vec<String>,
    /// How many workers to simulate.
    #[arg(long, default_value_t = 100)]
    workers: usize,
    /// Simulated instance start-up time, ms (deploy command to CREATED).
    #[arg(long, default_value_t = 0)]
    startup_ms: u64,
    /// Fraction (0-1) of deploys that fail.
    #[arg(long, default_value_t = 0.0)]
    failure_rate: f64,
    /// Of the failing deploys, the fraction that start and then die (DEAD) instead of failing to
    /// start (FAILED).
    #[arg(long, default_value_t = 0.5)]
    dead_share: f64,
    /// Hostname prefix: workers register as <prefix>0, <prefix>1, ...
    #[arg(long, default_value = "hollow-")]
    prefix: String,
    /// Report period, ms (the contract's 2000).
    #[arg(long, default_value_t = 2000)]
    report_period_ms: u64,
    /// Seed of the failure draws.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Registrations in flight at once.
    #[arg(long, default_value_t = 64)]
    register_concurrency: usize,
    /// Print the counters every this many seconds (0: never).
    #[arg(long, default_value_t = 10)]
    stats_every_secs: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GROVE_LOG")
                .unwrap_or_else(|_| "info,rumqttc=warn".into()),
        )
        .init();
    let brokers = args
        .brokers
        .iter()
        .filter(|b| !b.trim().is_empty())
        .map(|b| parse_broker(b))
        .collect::<Result<Vec<_>, _>>()?;
    let config = FleetConfig {
        cluster_endpoints: args.cluster_endpoints,
        brokers,
        workers: args.workers,
        prefix: args.prefix,
        report_period: Duration::from_millis(args.report_period_ms),
        startup: Duration::from_millis(args.startup_ms),
        failure_rate: args.failure_rate,
        dead_share: args.dead_share,
        seed: args.seed,
        register_concurrency: args.register_concurrency,
        ..FleetConfig::default()
    };
    let fleet = Fleet::start(config).await.context("starting the fleet")?;
    eprintln!(
        "grove-fleet: {} simulated workers registered; Ctrl-C stops them",
        fleet.workers().len()
    );
    let mut every = tokio::time::interval(Duration::from_secs(args.stats_every_secs.max(1)));
    every.tick().await;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = every.tick(), if args.stats_every_secs > 0 => eprintln!("grove-fleet: {:?}", fleet.stats()),
        }
    }
    eprintln!("grove-fleet: stopping; {:?}", fleet.stats());
    fleet.shutdown(Duration::from_secs(5)).await;
    Ok(())
}
