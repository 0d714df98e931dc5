//! The command line: `caxton server start` runs a node; every other command
//! is a client of the REST API.

mod agent;
mod backup;
mod bargain;
mod client;
mod credentials;
mod key;
mod mcp;
mod memory;
mod memory_import;
mod message;
mod pki;
mod table;
mod topic;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use client::{ApiClient, CliError};

#[derive(Debug, Parser)]
#[command(name = "caxton", version, about = "Clustered multi-agent orchestration server")]
pub struct Cli {
    /// Server to talk to (client commands).
    #[arg(long, global = true, env = "CAXTON_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// API key for the server (else CAXTON_API_KEY, else the credentials file).
    #[arg(long, global = true, env = "CAXTON_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Credentials file: `api_key = "..."`, or per server under `[servers]`
    /// (default ~/.config/caxton/credentials.toml).
    #[arg(long, global = true, env = "CAXTON_CREDENTIALS")]
    pub credentials: Option<PathBuf>,
    /// PEM CA certificate to trust for an https server with a private CA.
    #[arg(long, global = true, env = "CAXTON_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node.
    Server {
        #[command(subcommand)]
        command: ServerCommand,
    },
    /// Manage agents.
    Agent {
        #[command(subcommand)]
        command: AgentCommand,
    },
    /// API keys: create (the token is shown once), list, revoke.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Inspect the cluster.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Send a message to an agent or a capability.
    Message {
        #[command(subcommand)]
        command: MessageCommand,
    },
    /// Publish/subscribe: publish to a topic, list topics, stream one.
    Topic {
        #[command(subcommand)]
        command: TopicCommand,
    },
    /// Auctions among agents: start one (and wait for its result), show, list.
    Auction {
        #[command(subcommand)]
        command: AuctionCommand,
    },
    /// Negotiations between agents: start one (and wait for its end), show.
    Negotiation {
        #[command(subcommand)]
        command: NegotiationCommand,
    },
    /// Inspect conversations.
    Conversation {
        #[command(subcommand)]
        command: ConversationCommand,
    },
    /// WASM MCP tool servers: deploy, list, remove, call.
    Mcp {
        #[command(subcommand)]
        command: McpCommand,
    },
    /// Embedded memory: add, search, export, import.
    Memory {
        #[command(subcommand)]
        command: MemoryCommand,
    },
    /// Talk to an agent interactively; tokens stream as they arrive.
    Chat { agent: String },
    /// Is the server alive?
    Health,
    /// Print the client version (and the server's, if reachable).
    Version,
}

#[derive(Debug, Subcommand)]
pub enum ServerCommand {
    /// Start a node in the foreground.
    Start(StartArgs),
}

#[derive(Debug, Args, Clone)]
pub struct StartArgs {
    /// Server config file (TOML); also `CAXTON_CONFIG_PATH` (a ConfigMap on Kubernetes).
    #[arg(long, short, env = "CAXTON_CONFIG_PATH")]
    pub config: Option<PathBuf>,
    /// Data directory (overrides server.data_dir).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Agents directory to deploy and watch (overrides server.agents_dir).
    #[arg(long)]
    pub agents_dir: Option<PathBuf>,
    /// Tool servers to deploy at start (overrides server.tools_dir).
    #[arg(long)]
    pub tools_dir: Option<PathBuf>,
    /// API listen address (overrides server.listen).
    #[arg(long)]
    pub listen: Option<String>,
    /// Cluster RPC listen address (overrides cluster.rpc_listen).
    #[arg(long)]
    pub rpc_listen: Option<String>,
    /// This node's id (overrides cluster.node_id).
    #[arg(long)]
    pub node_id: Option<u64>,
    /// Gossip UDP listen address (overrides cluster.gossip_listen).
    #[arg(long)]
    pub gossip_listen: Option<String>,
    /// Host/IP advertised to peers (overrides cluster.advertise).
    #[arg(long)]
    pub advertise: Option<String>,
    /// Initialise a new cluster if no peer already has one (cluster.bootstrap = true).
    #[arg(long)]
    pub bootstrap: bool,
    /// Comma-separated gossip seeds, host:port (overrides cluster.seeds).
    #[arg(long, value_delimiter = ',')]
    pub seeds: Option<Vec<String>>,
    /// `text` or `json` (overrides log.format).
    #[arg(long)]
    pub log_format: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create a key; prints its token once.
    Create {
        name: String,
        /// admin, deploy, invoke, memory:read, memory:write, read (repeat or comma-separate).
        #[arg(long = "scope", required = true, value_delimiter = ',')]
        scopes: Vec<String>,
        /// Limit the key to agents whose names match (e.g. `support-*`); repeatable.
        #[arg(long = "agents", value_delimiter = ',')]
        agents: Vec<String>,
        /// Limit the key to workspaces; repeatable.
        #[arg(long = "workspace", value_delimiter = ',')]
        workspaces: Vec<String>,
        /// Lifetime: `30d`, `12h`, `90m`.
        #[arg(long)]
        expires: Option<String>,
        /// Requests per second (default: the server's).
        #[arg(long)]
        rate: Option<f64>,
        #[arg(long)]
        burst: Option<u32>,
    },
    /// Every key, with its state (never a token).
    List,
    /// Revoke a key on every node.
    Revoke { name: String },
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Deploy an agent file, or every *.toml file in a directory.
    Deploy {
        path: PathBuf,
        /// direct, blue-green or canary: overrides the file's [rollout] strategy.
        #[arg(long)]
        strategy: Option<String>,
    },
    /// List agents.
    List {
        #[arg(long)]
        capability: Option<String>,
    },
    /// Show one agent.
    Get { name: String },
    /// Remove an agent.
    Remove { name: String },
    /// List an agent's revisions.
    History { name: String },
    /// Make a new revision equal to revision N (default: the previous one).
    Rollback {
        name: String,
        #[arg(long)]
        to: Option<u64>,
    },
    /// An agent's topic subscriptions (its definition's and the API's).
    Subscriptions {
        name: String,
        /// Subscribe the agent to this pattern first (until cancelled).
        #[arg(long)]
        add: Option<String>,
        /// Cancel this subscription (an id from the list) first.
        #[arg(long)]
        cancel: Option<String>,
    },
    /// Show or steer an agent's rollout.
    Rollout {
        #[command(subcommand)]
        command: RolloutCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Step, weights, analysis figures and time left.
    Status { name: String },
    /// Switch all traffic to the new revision now.
    Promote { name: String },
    /// Stop the rollout; the stable revision serves everything.
    Abort { name: String },
    /// Hold the current weight.
    Pause { name: String },
    /// Continue (past a manual step).
    Resume { name: String },
}

#[derive(Debug, Subcommand)]
pub enum MessageCommand {
    /// Send TEXT; waits for the reply unless --async.
    Send {
        #[arg(long, conflicts_with = "capability", required_unless_present = "capability")]
        to: Option<String>,
        #[arg(long)]
        capability: Option<String>,
        text: String,
        #[arg(long = "async")]
        asynchronous: bool,
        #[arg(long)]
        conversation: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum McpCommand {
    /// Deploy a tool server from DIR (holding manifest.toml and the module).
    Deploy { dir: PathBuf },
    /// Tool servers and their tools.
    List,
    /// Remove a tool server.
    Remove { name: String },
    /// Call a tool with JSON arguments.
    Call {
        tool: String,
        /// Arguments as a JSON object.
        #[arg(default_value = "{}")]
        arguments: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum MemoryCommand {
    /// Store observations about an entity.
    Add {
        name: String,
        /// One or more observations (texts).
        #[arg(required = true)]
        observations: Vec<String>,
        #[arg(long, default_value = "fact")]
        entity_type: String,
        /// agent_only | workspace | global
        #[arg(long, default_value = "global")]
        scope: String,
        #[arg(long)]
        agent: Option<String>,
        #[arg(long)]
        workspace: Option<String>,
    },
    /// Semantic search.
    Search {
        query: String,
        #[arg(long)]
        scope: Option<String>,
        #[arg(long)]
        agent: Option<String>,
        #[arg(long)]
        workspace: Option<String>,
        #[arg(long, default_value_t = 10)]
        limit: usize,
        #[arg(long)]
        min_similarity: Option<f32>,
    },
    /// Write the whole memory as MemoryExport JSON to stdout (or --output).
    Export {
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Import a MemoryExport JSON file.
    Import { file: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum ConversationCommand {
    /// Every message of a conversation, in order.
    Show { id: String },
    /// Conversations, newest first.
    List {
        /// request_reply, contract_net or subscribe.
        #[arg(long)]
        protocol: Option<String>,
        /// initiated, in_progress, completed, failed or expired.
        #[arg(long)]
        state: Option<String>,
        /// An agent (or sender) that took part.
        #[arg(long)]
        participant: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuctionCommand {
    /// Start an auction; waits for its result unless --no-wait.
    Start(AuctionArgs),
    /// One auction: every bid and the result.
    Show { id: String },
    /// Auctions, newest first.
    List {
        /// Only those still open.
        #[arg(long)]
        open: bool,
    },
}

#[derive(Debug, Args)]
pub struct AuctionArgs {
    /// english or sealed_bid.
    #[arg(long, default_value = "english")]
    pub kind: String,
    #[arg(long)]
    pub item: String,
    /// Every agent declaring it bids.
    #[arg(long)]
    pub capability: Option<String>,
    /// A bidder by name (repeatable; instead of --capability).
    #[arg(long = "bidder")]
    pub bidders: Vec<String>,
    #[arg(long, default_value_t = 0.0)]
    pub reserve: f64,
    #[arg(long)]
    pub increment: Option<f64>,
    #[arg(long)]
    pub round_ms: Option<u64>,
    #[arg(long)]
    pub max_rounds: Option<u32>,
    /// first_price or second_price (sealed bid).
    #[arg(long)]
    pub pricing: Option<String>,
    #[arg(long)]
    pub deadline_ms: Option<u64>,
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Debug, Subcommand)]
pub enum NegotiationCommand {
    /// Start a negotiation; waits for its end unless --no-wait.
    Start {
        #[arg(long)]
        subject: String,
        /// A party by name, in turn order (repeat: at least two).
        #[arg(long = "party", required = true)]
        parties: Vec<String>,
        #[arg(long)]
        max_rounds: Option<u32>,
        #[arg(long)]
        deadline_ms: Option<u64>,
        #[arg(long)]
        no_wait: bool,
    },
    /// One negotiation: every move, and how it ended.
    Show { id: String },
}

#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Publish TEXT to TOPIC: every subscribed agent is notified.
    Publish {
        topic: String,
        text: String,
        /// An id of your choosing: publishing again with it is a no-op.
        #[arg(long)]
        id: Option<String>,
    },
    /// Topics published to.
    List,
    /// Follow the publications matching PATTERN (until interrupted).
    Stream {
        pattern: String,
        /// Start after this stream position (default: from now).
        #[arg(long)]
        after: Option<i64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Members, roles, leader, term and indexes.
    Status,
    /// Members with gossip's view (alive, ready).
    Members,
    /// Which agents run where.
    Placement,
    /// Make the node at --server leave the cluster gracefully.
    Leave,
    /// Remove a node from the membership.
    Remove { node: u64 },
    /// Move leadership to NODE.
    TransferLeader { node: u64 },
    /// Recompute agent placement now.
    Rebalance,
    /// Save a consistent backup of the whole replicated state to FILE
    /// (admin key; any node). It holds every write acknowledged before.
    Backup { file: PathBuf },
    /// Found a new one-node cluster from a backup, in an empty data
    /// directory (offline; no server needed). The old cluster's nodes
    /// cannot join it: it has a new cluster id.
    Restore {
        file: PathBuf,
        #[arg(long)]
        data_dir: PathBuf,
        /// The node id the restored node starts with.
        #[arg(long, default_value_t = 1)]
        node_id: u64,
    },
    /// After losing a majority of voters for good: make this stopped
    /// node the only member of a new cluster, keeping its data
    /// (offline). Pick the survivor with the highest last log index.
    Recover {
        #[arg(long)]
        data_dir: PathBuf,
        /// Confirms that the other members are abandoned.
        #[arg(long)]
        force_new_cluster: bool,
    },
    /// The cluster's certificate authority (local files; no server needed).
    Ca {
        #[command(subcommand)]
        command: pki::CaCommand,
    },
    /// Node certificates for mutual TLS between nodes (local files).
    Cert {
        #[command(subcommand)]
        command: pki::CertCommand,
    },
}

/// Runs a client command; returns the process exit code.
pub async fn run_client(cli: &Cli) -> Result<(), CliError> {
    match &cli.command {
        Command::Cluster { command: ClusterCommand::Ca { command } } => return pki::ca(command),
        Command::Cluster { command: ClusterCommand::Cert { command } } => return pki::cert(command),
        Command::Cluster { command: ClusterCommand::Restore { file, data_dir, node_id } } => {
            return backup::restore(file, data_dir, *node_id, cli.json)
        }
        Command::Cluster { command: ClusterCommand::Recover { data_dir, force_new_cluster } } => {
            return backup::recover(data_dir, *force_new_cluster, cli.json)
        }
        _ => {}
    }
    let key = credentials::api_key(cli.api_key.as_deref(), cli.credentials.as_deref(), &cli.server)?;
    let client = ApiClient::new(&cli.server, key, cli.ca_cert.as_deref())?;
    match &cli.command {
        Command::Key { command } => key::run(&client, command, cli.json).await,
        Command::Agent { command } => agent::run(&client, command, cli.json).await,
        Command::Cluster { command: ClusterCommand::Backup { file } } => backup::save(&client, file, cli.json).await,
        Command::Cluster { command } => cluster_command(&client, command, cli.json).await,
        Command::Message { command: MessageCommand::Send { to, capability, text, asynchronous, conversation } } => {
            let args = message::SendArgs {
                to: to.as_deref(),
                capability: capability.as_deref(),
                text,
                asynchronous: *asynchronous,
                conversation: conversation.as_deref(),
            };
            message::send(&client, args, cli.json).await
        }
        Command::Conversation { command: ConversationCommand::Show { id } } => {
            message::show_conversation(&client, id, cli.json).await
        }
        Command::Conversation { command: ConversationCommand::List { protocol, state, participant } } => {
            topic::conversations(&client, protocol.as_deref(), state.as_deref(), participant.as_deref(), cli.json).await
        }
        Command::Topic { command } => topic::run(&client, command, cli.json).await,
        Command::Auction { command } => bargain::auction(&client, command, cli.json).await,
        Command::Negotiation { command } => bargain::negotiation(&client, command, cli.json).await,
        Command::Chat { agent } => message::chat(&client, agent).await,
        Command::Memory { command } => memory::run(&client, command, cli.json).await,
        Command::Mcp { command } => mcp::run(&client, command, cli.json).await,
        Command::Health => {
            let health = client.get_json("/health").await?;
            if cli.json {
                println!("{health}");
            } else {
                println!("ok: node {} (caxton {})", health["node_id"], health["version"].as_str().unwrap_or("?"));
            }
            Ok(())
        }
        Command::Version => {
            let server = client.get_json("/health").await.ok();
            let server_version = server.as_ref().and_then(|h| h["version"].as_str()).unwrap_or("unreachable");
            if cli.json {
                println!("{}", serde_json::json!({"client": env!("CARGO_PKG_VERSION"), "server": server_version}));
            } else {
                println!("caxton {} (server: {server_version})", env!("CARGO_PKG_VERSION"));
            }
            Ok(())
        }
        Command::Server { .. } => unreachable!("server commands are dispatched by main"),
    }
}

async fn cluster_command(client: &ApiClient, command: &ClusterCommand, json: bool) -> Result<(), CliError> {
    use reqwest::Method;
    let post = |path: String, body: Option<serde_json::Value>| async move {
        let body = body.map(|b| ("application/json", b.to_string().into_bytes()));
        client.request(Method::POST, &path, body).await.map(|(_, v)| v)
    };
    let (value, render): (serde_json::Value, fn(&serde_json::Value)) = match command {
        ClusterCommand::Status => (client.get_json("/v1/cluster/status").await?, table::cluster_status),
        ClusterCommand::Members => (client.get_json("/v1/cluster/members").await?, table::members),
        ClusterCommand::Placement => (client.get_json("/v1/cluster/placement").await?, table::placement),
        ClusterCommand::Leave => (post("/v1/cluster/leave".into(), None).await?, table::done),
        ClusterCommand::Remove { node } => {
            (post(format!("/v1/cluster/members/{node}/remove"), None).await?, table::done)
        }
        ClusterCommand::TransferLeader { node } => {
            (post("/v1/cluster/transfer-leader".into(), Some(serde_json::json!({"node": node}))).await?, table::done)
        }
        ClusterCommand::Rebalance => (post("/v1/cluster/rebalance".into(), None).await?, |v| {
            println!("moved {} shards (leader {})", v["moved"], v["leader"])
        }),
        ClusterCommand::Ca { .. }
        | ClusterCommand::Cert { .. }
        | ClusterCommand::Restore { .. }
        | ClusterCommand::Recover { .. } => unreachable!("handled without a server"),
        ClusterCommand::Backup { .. } => unreachable!("streamed to a file, not rendered"),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
    } else {
        render(&value);
    }
    Ok(())
}
