//! `dhcp-server --config FILE`: serve DHCPv4 as the config file says.
//!
//! Exit status: 0 after a clean shutdown (SIGINT or SIGTERM), 1 when the config is refused
//! (`--check` only validates it), 2 when the server cannot start (store, sockets).
//!
//! SIGHUP reloads the config file (a config that fails validation is refused and the running
//! one stays); SIGUSR1 writes the lease dump. With `api-listen` set, the management API and
//! `/metrics` are served there. Everything but the arguments and the logger is
//! [`dhcp_server::Service`].

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use dhcp_server::{Service, shutdown_signal};
use tracing::error;
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
    let service = match Service::from_file(&args.config) {
        Ok(service) => service,
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
    let level = service.config().settings.log_level.as_str();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level)))
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    // One thread: everything on this one, no task handed between threads. More: a receive task
    // per socket hands datagrams to tasks that the runtime's workers share (see README,
    // `threads`).
    let threads = service.config().settings.threads;
    let mut builder = if threads > 1 {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads).thread_name("dhcp-worker");
        builder
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            error!(error = %e, "cannot start the runtime");
            return ExitCode::from(2);
        }
    };
    let shutdown = async {
        if let Err(e) = shutdown_signal().await {
            error!(error = %e, "cannot watch for signals; stopping");
        }
    };
    match runtime.block_on(service.run(shutdown)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            ExitCode::from(2)
        }
    }
}
