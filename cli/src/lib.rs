//! grove-cli: the `grove` command-line client of Grove's root API (Oakestra's System Manager
//! REST API on :10000).
//!
//! - [`args`]: the command line (clap).
//! - [`client`]: HTTP with endpoint failover, token refresh on 401, timeouts.
//! - [`config`]: the configuration file (endpoints, the session's tokens; mode 0600).
//! - [`commands`]: one file per command group; each prints to the [`Ctx`]'s output.
//! - [`model`], [`table`], [`progress`]: reading the root's documents, tables, the live
//!   `status --watch` board.
//! - [`error`]: one error type whose messages are one sentence each.

pub mod args;
pub mod client;
pub mod commands;
pub mod config;
pub mod error;
pub mod model;
pub mod progress;
pub mod table;

use std::io::Write;
use std::time::Duration;

use args::{Cli, Command};
use client::{parse_endpoints, Client, ClientSettings, DEFAULT_ENDPOINT};
use config::ConfigStore;
pub use error::CliError;

/// What a command needs: the client, the configuration file, where to print.
pub struct Ctx<'a> {
    pub client: Client,
    pub store: ConfigStore,
    pub json: bool,
    pub out: &'a mut dyn Write,
    /// Standard output is a terminal: `status --watch` redraws in place.
    pub tty: bool,
}

impl Ctx<'_> {
    /// Print (a broken pipe ends the output quietly, like other command-line tools).
    pub fn print(&mut self, text: &str) {
        let _ = self.out.write_all(text.as_bytes());
        let _ = self.out.flush();
    }

    pub fn println(&mut self, text: &str) {
        self.print(&format!("{text}\n"));
    }

    pub fn print_json(&mut self, v: &serde_json::Value) {
        let text = serde_json::to_string_pretty(v).unwrap_or_default();
        self.println(&text);
    }

    /// A note for the person at the terminal (not part of the command's output).
    pub fn note(&self, text: &str) {
        let _ = writeln!(std::io::stderr(), "{text}");
    }
}

/// Endpoints: `--endpoints` / `GROVE_ENDPOINTS` (when not empty), else the configuration file, else
/// [`DEFAULT_ENDPOINT`].
pub fn endpoints(flag: Option<&str>, from_file: &[String]) -> Result<Vec<String>, CliError> {
    match flag.filter(|l| !l.trim().is_empty()) {
        Some(list) => parse_endpoints(list),
        None if !from_file.is_empty() => parse_endpoints(&from_file.join(",")),
        None => parse_endpoints(DEFAULT_ENDPOINT),
    }
}

/// Run one command line.
pub async fn run(cli: Cli, out: &mut dyn Write, tty: bool) -> Result<(), CliError> {
    let store = ConfigStore::default_location()?;
    let file = store.load()?;
    let settings = ClientSettings {
        endpoints: endpoints(cli.endpoints.as_deref(), &file.endpoints)?,
        timeout: Duration::from_secs(cli.timeout.max(1)),
        connect_timeout: Duration::from_secs(cli.timeout.clamp(1, 3)),
    };
    let client = Client::new(settings, file.session.clone(), Some(store.clone()))?;
    let mut ctx = Ctx { client, store, json: cli.json, out, tty };
    use commands::*;
    match cli.command {
        Command::Login(a) => login::login(&mut ctx, a).await,
        Command::Logout => login::logout(&mut ctx),
        Command::App(c) => app::run(&mut ctx, c).await,
        Command::Service(c) => service::run(&mut ctx, c).await,
        Command::Status(a) => status::run(&mut ctx, a).await,
        Command::Cluster(_) => cluster::list_clusters(&mut ctx).await,
        Command::Worker(_) => cluster::list_workers(&mut ctx).await,
        Command::Raft(_) => raft::status(&mut ctx).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_precedence_flag_then_file_then_default() {
        let file = vec!["http://f:1".to_owned()];
        assert_eq!(endpoints(Some("a:1,b:2"), &file).unwrap(), ["http://a:1", "http://b:2"]);
        assert_eq!(endpoints(None, &file).unwrap(), ["http://f:1"]);
        assert_eq!(endpoints(None, &[]).unwrap(), [DEFAULT_ENDPOINT]);
        assert_eq!(endpoints(Some(" "), &[]).unwrap(), [DEFAULT_ENDPOINT], "an empty GROVE_ENDPOINTS is no setting");
    }
}
