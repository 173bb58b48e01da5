//! The embedded MQTT broker (rumqttd) of one replica, and the in-process link the gateway uses.
//!
//! rumqttd's `Broker::start` blocks for the broker's lifetime, so it runs on its own thread; it
//! has no stop call, so the broker lives as long as the process (a replica that shuts down
//! stops reading and publishing; its workers notice when the process exits). A
//! publish on a topic nobody subscribes to is dropped (a deploy published on a broker the worker
//! is not attached to is lost, which is why delivery goes through the replica holding the
//! worker's session and reconciliation re-sends what is not confirmed).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use rumqttd::local::{LinkRx, LinkTx};

use crate::Error;

/// A running broker: its bound address and the gateway's link.
pub struct EmbeddedBroker {
    pub addr: SocketAddr,
    pub link: Option<(LinkTx, LinkRx)>,
}

/// rumqttd keeps every message published to a subscription filter in an in-memory log of
/// segments (for consumers that fall behind), up to `max_segment_count` full segments plus the
/// active one. The gateway's three filters (`nodes/+/information`, `nodes/+/job`,
/// `nodes/+/jobs/resources`) receive every worker's reports, so this is what the broker holds
/// per filter once it has run a while: at most about 3 MiB. (With 10 MiB × 10 segments a
/// replica's resident memory grew with time and fleet size, to 170 MB at 5,000 workers.) The
/// gateway reads its link in-process; 3 MiB is seconds of reports even at 5,000 workers.
const SEGMENT_BYTES: usize = 1 << 20;
const MEMORY_SEGMENTS: usize = 2;

fn config(listen: SocketAddr, max_connections: usize) -> Result<rumqttd::Config, Error> {
    let text = format!(
        r#"
id = 0
[router]
id = 0
max_connections = {max_connections}
max_outgoing_packet_count = 200
max_segment_size = {SEGMENT_BYTES}
max_segment_count = {MEMORY_SEGMENTS}
[v4.1]
name = "grove-mqtt"
listen = "{listen}"
next_connection_delay_ms = 0
[v4.1.connections]
connection_timeout_ms = 10000
max_payload_size = {max_payload}
max_inflight_count = 200
dynamic_filters = true
"#,
        max_payload = crate::messages::MAX_PAYLOAD * 4,
    );
    toml::from_str(&text).map_err(|e| Error::Config(format!("mqtt broker configuration: {e}")))
}

/// Start the broker on `listen` (port 0: a free port, chosen by binding and releasing it; tried
/// again on another port if it is taken meanwhile) and return once it accepts connections.
pub fn start(listen: SocketAddr, max_connections: usize) -> Result<EmbeddedBroker, Error> {
    let attempts = if listen.port() == 0 { 5 } else { 1 };
    let mut last_error = String::new();
    for _ in 0..attempts {
        let addr = if listen.port() == 0 {
            let probe = TcpListener::bind(listen).map_err(|e| Error::Io(format!("mqtt_listen {listen}: {e}")))?;
            probe.local_addr().map_err(|e| Error::Io(e.to_string()))?
        } else {
            // Fail early and clearly when the port is taken (rumqttd would only log it).
            drop(TcpListener::bind(listen).map_err(|e| Error::Io(format!("cannot bind mqtt_listen {listen}: {e}")))?);
            listen
        };
        let mut broker = rumqttd::Broker::new(config(addr, max_connections)?);
        let link = broker.link("grove-gateway").map_err(|e| Error::Io(format!("mqtt gateway link: {e}")))?;
        let thread = std::thread::Builder::new()
            .name("mqtt-broker".into())
            .spawn(move || {
                if let Err(e) = broker.start() {
                    tracing::error!("embedded MQTT broker stopped: {e}");
                }
            })
            .map_err(|e| Error::Io(format!("cannot start the broker thread: {e}")))?;
        let connect_to = if addr.ip().is_unspecified() { SocketAddr::new([127, 0, 0, 1].into(), addr.port()) } else { addr };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && !thread.is_finished() {
            if TcpStream::connect_timeout(&connect_to, Duration::from_millis(200)).is_ok() {
                tracing::info!(%addr, "embedded MQTT broker listening");
                return Ok(EmbeddedBroker { addr, link: Some(link) });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        last_error = format!("the broker did not start listening on {addr}");
    }
    Err(Error::Io(format!("mqtt_listen {listen}: {last_error}")))
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broker_keeps_a_few_megabytes_per_filter_whatever_it_has_seen() {
        let c = config("127.0.0.1:1883".parse().unwrap(), 10).unwrap();
        let retained = c.router.max_segment_size * (c.router.max_segment_count + 1);
        assert!(retained <= 4 << 20, "a filter's log may hold {retained} bytes");
        assert!(c.router.max_segment_size >= 1024, "rumqttd panics on segments under 1 KiB");
        assert_eq!(c.router.max_connections, 10);
    }
}
