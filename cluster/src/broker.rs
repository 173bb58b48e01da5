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

fn config(listen: SocketAddr, max_connections: usize) -> Result<rumqttd::Config, Error> {
    let text = format!(
        r#"
id = 0
[router]
id = 0
max_connections = {max_connections}
max_outgoing_packet_count = 200
max_segment_size = 10485760
max_segment_count = 10
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

