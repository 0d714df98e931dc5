//! The `caxton` binary: parse, dispatch, exit.

use std::process::ExitCode;

use caxton::cli::{Cli, Command, ServerCommand, StartArgs};
use caxton::config::{Flag, ServerConfig};
use clap::Parser;

/// Small, short-lived allocations dominate a node's work (requests,
/// JSON values, log lines); glibc's allocator spent a tenth of the CPU of
/// a loaded node on them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match &cli.command {
        Command::Server { command: ServerCommand::Start(args) } => {
            let code = runtime.block_on(serve(args.clone()));
            caxton::observability::finish_logging();
            code
        }
        _ => match runtime.block_on(caxton::cli::run_client(&cli)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Flags beat environment variables, which beat the config file; the
/// three are merged before any check runs (`ServerConfig::load`).
fn load_config(args: &StartArgs) -> Result<ServerConfig, String> {
    ServerConfig::load(args.config.as_deref(), &flags(args)).map_err(|e| e.to_string())
}

/// The settings given as flags, as config keys.
fn flags(args: &StartArgs) -> Vec<Flag> {
    let path = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.display().to_string());
    let given = [
        ("server.data_dir", "--data-dir", path(&args.data_dir)),
        ("server.agents_dir", "--agents-dir", path(&args.agents_dir)),
        ("server.tools_dir", "--tools-dir", path(&args.tools_dir)),
        ("server.listen", "--listen", args.listen.clone()),
        ("cluster.rpc_listen", "--rpc-listen", args.rpc_listen.clone()),
        ("cluster.node_id", "--node-id", args.node_id.map(|n| n.to_string())),
        ("cluster.gossip_listen", "--gossip-listen", args.gossip_listen.clone()),
        ("cluster.advertise", "--advertise", args.advertise.clone()),
        ("cluster.bootstrap", "--bootstrap", args.bootstrap.then(|| "true".to_owned())),
        ("cluster.seeds", "--seeds", args.seeds.as_ref().map(|s| s.join(","))),
        ("log.format", "--log-format", args.log_format.clone()),
    ];
    given.into_iter().filter_map(|(key, flag, value)| value.map(|value| Flag { key, flag, value })).collect()
}

async fn serve(args: StartArgs) -> ExitCode {
    let config = match load_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    let traces = caxton::observability::init_logging(config.log.format, &config.log.level, config.cluster.node_id);
    let node = match caxton::node::Node::start(config).await {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "node failed to start");
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    wait_for_stop(&node).await;
    tracing::info!("shutdown requested");
    node.shutdown().await;
    if let Some(traces) = traces {
        // The exporter blocks while it flushes: off the async workers.
        let _ = tokio::task::spawn_blocking(move || traces.shutdown()).await;
    }
    ExitCode::SUCCESS
}

/// Waits for SIGTERM or Ctrl-C; SIGHUP meanwhile re-reads the config.
async fn wait_for_stop(node: &caxton::node::Node) {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut hup) = match (signal(SignalKind::terminate()), signal(SignalKind::hangup())) {
        (Ok(t), Ok(h)) => (t, h),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "cannot install signal handlers; only Ctrl-C will stop the node");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return,
            _ = term.recv() => return,
            _ = hup.recv() => {
                let reloader = node.reloader.clone();
                match tokio::task::spawn_blocking(move || reloader.reload()).await {
                    Ok(Ok(_)) => {} // the reloader logs what changed
                    Ok(Err(e)) => tracing::error!(error = %e, "SIGHUP: the configuration did not load; nothing changed"),
                    Err(e) => tracing::error!(error = %e, "SIGHUP: the reload failed"),
                }
            }
        }
    }
}
