//! The `caxton` binary: parse, dispatch, exit.

use std::process::ExitCode;

use caxton::cli::{Cli, Command, ServerCommand, StartArgs};
use caxton::config::{LogFormat, ServerConfig};
use clap::Parser;

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
        Command::Server { command: ServerCommand::Start(args) } => runtime.block_on(serve(args.clone())),
        _ => match runtime.block_on(caxton::cli::run_client(&cli)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Flags beat environment variables, which beat the config file.
fn load_config(args: &StartArgs) -> Result<ServerConfig, String> {
    let mut config = ServerConfig::load(args.config.as_deref()).map_err(|e| e.to_string())?;
    if let Some(d) = &args.data_dir {
        config.server.data_dir = d.clone();
    }
    if let Some(d) = &args.agents_dir {
        config.server.agents_dir = d.display().to_string();
    }
    if let Some(d) = &args.tools_dir {
        config.server.tools_dir = d.display().to_string();
    }
    if let Some(l) = &args.listen {
        config.server.listen = l.clone();
    }
    if let Some(r) = &args.rpc_listen {
        config.cluster.rpc_listen = r.clone();
    }
    if let Some(n) = args.node_id {
        config.cluster.node_id = n;
    }
    if let Some(g) = &args.gossip_listen {
        config.cluster.gossip_listen = g.clone();
    }
    if let Some(a) = &args.advertise {
        config.cluster.advertise = a.clone();
    }
    if args.bootstrap {
        config.cluster.bootstrap = "true".into();
    }
    if let Some(seeds) = &args.seeds {
        config.cluster.seeds = seeds.clone();
    }
    if let Some(f) = &args.log_format {
        config.log.format = match f.as_str() {
            "json" => LogFormat::Json,
            "text" => LogFormat::Text,
            other => return Err(format!("--log-format = {other:?}: expected `text` or `json`")),
        };
    }
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
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
    wait_for_signal().await;
    tracing::info!("shutdown requested");
    node.shutdown().await;
    if let Some(traces) = traces {
        // The exporter blocks while it flushes: off the async workers.
        let _ = tokio::task::spawn_blocking(move || traces.shutdown()).await;
    }
    ExitCode::SUCCESS
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot install SIGTERM handler; only Ctrl-C will stop the node");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
