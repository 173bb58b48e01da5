//! The command line (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "grove",
    version,
    about = "Command-line client of Grove, the highly available orchestrator for edge computing",
    long_about = "Command-line client of Grove's root API (Oakestra's System Manager REST API). \
                  Every command tries the endpoints in order and fails over on connection errors and 503s."
)]
pub struct Cli {
    /// Root API endpoints, comma-separated; the client fails over between them.
    #[arg(long, short = 'e', global = true, env = "GROVE_ENDPOINTS", value_name = "URL,URL,...")]
    pub endpoints: Option<String>,
    /// Seconds allowed for each HTTP request.
    #[arg(long, global = true, default_value_t = 10, value_name = "SECONDS")]
    pub timeout: u64,
    /// Print the server's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Log in and store the session (tokens) in the configuration file.
    Login(LoginArgs),
    /// Forget the stored session.
    Logout,
    /// Applications: create from an SLA, list, delete.
    #[command(subcommand)]
    App(AppCommand),
    /// Services (Oakestra's jobs) and their instances.
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Every instance of every service you can see; `--watch` follows them until they settle.
    Status(StatusArgs),
    /// Clusters registered with the root.
    #[command(subcommand)]
    Cluster(ListOnly),
    /// Workers of every cluster.
    #[command(subcommand)]
    Worker(ListOnly),
    /// Raft replicas of every tier.
    #[command(subcommand)]
    Raft(RaftCommand),
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    #[arg(long, short = 'u', env = "GROVE_USERNAME", default_value = "Admin")]
    pub username: String,
    /// Password (else GROVE_PASSWORD, else read from the terminal without echo).
    #[arg(long, short = 'p', env = "GROVE_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Read the password from the first line of standard input.
    #[arg(long, conflicts_with = "password")]
    pub password_stdin: bool,
    #[arg(long, short = 'o', default_value = "root")]
    pub organization: String,
}

#[derive(Subcommand, Debug)]
pub enum AppCommand {
    /// Create every application (and its microservices) of an SLA file (`-` reads stdin).
    Create {
        #[arg(long = "file", short = 'f', value_name = "SLA.json")]
        file: PathBuf,
    },
    /// List your applications (all of them for an Admin).
    List,
    /// Delete an application and its services (their instances are undeployed).
    Delete { app_id: String },
}

#[derive(Subcommand, Debug)]
pub enum ServiceCommand {
    /// List services, of one application or all you can see.
    List {
        #[arg(long)]
        app: Option<String>,
    },
    /// Deploy one more instance (POST /api/service/<id>/instance).
    Deploy { service_id: String },
    /// Undeploy one instance, or every instance when --instance is not given.
    Undeploy {
        service_id: String,
        #[arg(long, short = 'i')]
        instance: Option<u32>,
    },
    /// Deploy or undeploy instances until the service has exactly <count>.
    Scale { service_id: String, count: u32 },
    /// The service's instances and their status.
    Status { service_id: String },
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Follow the instances until every one runs (exit 0) or one fails (exit 1).
    #[arg(long, short = 'w')]
    pub watch: bool,
    /// Only these services (repeatable).
    #[arg(long = "service", short = 's', value_name = "SERVICE_ID")]
    pub services: Vec<String>,
    /// Only the services of this application.
    #[arg(long)]
    pub app: Option<String>,
    /// Give up watching after this many seconds (exit 1).
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub watch_timeout: u64,
    /// Seconds an instance may stay unplaced (a scheduler's NO_WORKER_CAPACITY, …; the root
    /// keeps retrying) before the watch counts it as failed.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub unplaced_grace: u64,
    /// Milliseconds between two polls while watching.
    #[arg(long, default_value_t = 500, value_name = "MS")]
    pub interval: u64,
}

#[derive(Subcommand, Debug)]
pub enum ListOnly {
    List,
}

#[derive(Subcommand, Debug)]
pub enum RaftCommand {
    /// Role, term, leader and indexes of every replica of every tier.
    Status,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("grove").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn global_flags_go_anywhere() {
        let cli = parse(&["service", "deploy", "abc", "--endpoints", "a:1,b:2", "--json", "--timeout", "3"]);
        assert_eq!(cli.endpoints.as_deref(), Some("a:1,b:2"));
        assert!(cli.json);
        assert_eq!(cli.timeout, 3);
        assert!(matches!(cli.command, Command::Service(ServiceCommand::Deploy { ref service_id }) if service_id == "abc"));
    }

    #[test]
    fn undeploy_instance_is_optional_and_numeric() {
        let cli = parse(&["service", "undeploy", "s1", "--instance", "2"]);
        assert!(matches!(cli.command, Command::Service(ServiceCommand::Undeploy { instance: Some(2), .. })));
        let cli = parse(&["service", "undeploy", "s1"]);
        assert!(matches!(cli.command, Command::Service(ServiceCommand::Undeploy { instance: None, .. })));
        assert!(Cli::try_parse_from(["grove", "service", "undeploy", "s1", "-i", "minus"]).is_err());
    }

    #[test]
    fn scale_takes_a_count_and_app_create_a_file() {
        let cli = parse(&["service", "scale", "s1", "3"]);
        assert!(matches!(cli.command, Command::Service(ServiceCommand::Scale { count: 3, .. })));
        let cli = parse(&["app", "create", "-f", "sla.json"]);
        assert!(matches!(cli.command, Command::App(AppCommand::Create { ref file }) if file == &PathBuf::from("sla.json")));
        assert!(Cli::try_parse_from(["grove", "app", "create"]).is_err(), "-f is required");
    }

    #[test]
    fn status_watch_options() {
        let cli = parse(&["status", "--watch", "-s", "a", "-s", "b", "--watch-timeout", "9"]);
        let Command::Status(s) = cli.command else { panic!("status") };
        assert!(s.watch);
        assert_eq!(s.services, ["a", "b"]);
        assert_eq!(s.watch_timeout, 9);
        assert_eq!(s.interval, 500);
        assert_eq!(s.unplaced_grace, 10);
    }

    #[test]
    fn login_defaults_and_conflicts() {
        let cli = parse(&["login", "--password-stdin"]);
        let Command::Login(l) = cli.command else { panic!("login") };
        assert_eq!((l.username.as_str(), l.organization.as_str(), l.password_stdin), ("Admin", "root", true));
        assert!(Cli::try_parse_from(["grove", "login", "-p", "x", "--password-stdin"]).is_err());
    }

    #[test]
    fn the_command_tree_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
