//! `dhcp-server --config FILE`: serve DHCPv4 as the config file says.
//!
//! Exit status: 0 after a clean shutdown (SIGINT or SIGTERM), 1 when the config is refused
//! (`--check` only validates it), 2 when the server cannot start (store, sockets).
//!
//! SIGHUP reloads the config file (a config that fails validation is refused and the running
//! one stays); SIGUSR1 writes the lease dump. With `api-listen` set, the management API and
//! `/metrics` are served there.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use dhcp_core::Engine;
use dhcp_net::admin::{MeteredStore, Metrics};
use dhcp_net::{ConfigControl, Server, ServerConfig, shutdown_signal};
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

/// A DHCPv4 server.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The config file (TOML).
    #[arg(short, long)]
    config: PathBuf,
    /// Validate the config and exit.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let text = match std::fs::read_to_string(&args.config) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("{}: cannot read the config: {e}", args.config.display());
            return ExitCode::from(1);
        }
    };
    let config = match ServerConfig::from_toml_str(&text) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{}: config refused: {e}", args.config.display());
            return ExitCode::from(1);
        }
    };
    if args.check {
        println!("{}: config is valid", args.config.display());
        return ExitCode::SUCCESS;
    }
    // RUST_LOG overrides the config's level, for debugging a running setup.
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(config.settings.log_level.as_str()));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            error!(error = %e, "cannot start the runtime");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(args.config, text, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            ExitCode::from(2)
        }
    }
}

async fn run(path: PathBuf, text: String, config: ServerConfig) -> Result<(), Box<dyn std::error::Error>> {
    let metrics = Arc::new(Metrics::new());
    let store = MeteredStore::new(dhcp_store::open(&config.settings.store).await?, &metrics);
    let engine = Arc::new(Engine::new(config.dhcp, store));
    // A durable or shared store may hold leases already: start the gauges from them.
    if let Err(e) = engine.count_leases(dhcp_net::now()).await {
        warn!(error = %e, "cannot count the stored leases; assigned-addresses starts at 0");
    }
    let control = Arc::new(ConfigControl::new(path, text, config.settings.clone()));
    let server = Arc::new(Server::bind(engine, config.settings)?.with_control(control).with_metrics(metrics));
    info!("serving");
    server
        .serve(async {
            if let Err(e) = shutdown_signal().await {
                error!(error = %e, "cannot watch for signals; stopping");
            }
        })
        .await?;
    info!("stopped");
    Ok(())
}
