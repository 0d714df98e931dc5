//! `caxton cluster ca|cert`: the files mutual TLS between nodes needs,
//! made locally (the CA key never has to reach a server).

use std::net::IpAddr;
use std::path::PathBuf;

use caxton_cluster::pki::{self, NodeCertRequest};
use clap::Subcommand;

use super::CliError;
use crate::config::server::statefulset_ordinal;

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create a cluster CA (ca.crt, ca.key) in DIR; never overwrites one.
    Init {
        dir: PathBuf,
        /// Named in the CA's subject.
        #[arg(long, default_value = "caxton")]
        name: String,
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Issue a node certificate naming its node id, signed by the CA.
    /// Writes node-<id>.crt, node-<id>.key (or --name) and a copy of ca.crt
    /// to --out.
    Issue {
        /// The node id the certificate names.
        #[arg(long, required_unless_present = "hostname")]
        node_id: Option<u64>,
        /// Host names to add; the first, if it ends in -ORDINAL (a
        /// StatefulSet pod such as caxton-2), also gives the node id
        /// (ordinal + 1) when --node-id is absent.
        #[arg(long)]
        hostname: Vec<String>,
        /// IP addresses to add.
        #[arg(long)]
        ip: Vec<IpAddr>,
        /// The directory `caxton cluster ca init` created.
        #[arg(long, default_value = ".")]
        ca_dir: PathBuf,
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// File names: NAME.crt and NAME.key (default node-<id>).
        #[arg(long)]
        name: Option<String>,
        #[arg(long, default_value_t = 825)]
        days: u32,
        /// Keep running and issue a fresh certificate this often (e.g.
        /// "24h"): a sidecar that renews a pod's certificate for as long
        /// as the pod lives. Files are replaced atomically; the node picks
        /// them up within 2 s.
        #[arg(long, value_parser = crate::config::duration::parse)]
        renew_every: Option<std::time::Duration>,
    },
}

fn failed(e: pki::PkiError) -> CliError {
    CliError::Usage(e.to_string())
}

pub fn ca(command: &CaCommand) -> Result<(), CliError> {
    let CaCommand::Init { dir, name, days } = command;
    let cert = pki::init_ca(dir, name, *days).map_err(failed)?;
    println!("created the cluster CA: {} (keep {} secret)", cert.display(), dir.join(pki::CA_KEY).display());
    Ok(())
}

pub fn cert(command: &CertCommand) -> Result<(), CliError> {
    let CertCommand::Issue { node_id, hostname, ip, ca_dir, out, name, days, renew_every } = command;
    let node_id = match (node_id, hostname.first()) {
        (Some(id), _) => *id,
        (None, Some(host)) => statefulset_ordinal(host).map(|o| o + 1).ok_or_else(|| {
            CliError::Usage(format!(
                "--hostname {host}: cannot tell the node id (the name does not end in -ORDINAL); give --node-id"
            ))
        })?,
        (None, None) => return Err(CliError::Usage("give --node-id or --hostname".into())),
    };
    if node_id == 0 {
        return Err(CliError::Usage("--node-id must be at least 1".into()));
    }
    let request = NodeCertRequest { node_id, hostnames: hostname.clone(), ips: ip.clone(), valid_days: *days };
    let stem = name.clone().unwrap_or_else(|| pki::default_stem(node_id));
    if let Some(every) = renew_every.filter(|e| e.as_secs() >= u64::from(*days) * 86_400) {
        return Err(CliError::Usage(format!(
            "--renew-every {every:?} is not shorter than the certificate's life (--days {days}): it would expire first"
        )));
    }
    loop {
        let files = pki::issue_node_cert(ca_dir, &request, out, &stem).map_err(failed)?;
        println!(
            "issued node {node_id}: cluster.tls_cert_file = {}, cluster.tls_key_file = {}, cluster.tls_ca_file = {}",
            files.cert.display(),
            files.key.display(),
            files.ca.display()
        );
        let Some(every) = renew_every else { return Ok(()) };
        std::thread::sleep(*every);
    }
}
