//! The deploy files configure the server only through variables it reads.

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn every_variable_in_the_deploy_files_is_one_the_server_reads() {
    let known: Vec<String> = caxton::config::ServerConfig::env_variables().into_iter().map(|(_, v)| v).collect();
    // Read by the node itself rather than mapped to a config key.
    let special = ["CAXTON_CLUSTER_SECRET", "CAXTON_ADMIN_KEY", "CAXTON_CONFIG_PATH"];
    let files = [
        "deploy/Dockerfile",
        "deploy/docker-compose.yml",
        "deploy/docker-compose.single.yml",
        "deploy/k8s/caxton.yaml",
    ];
    let mut seen = 0;
    for file in files {
        let text = std::fs::read_to_string(std::path::Path::new(ROOT).join(file)).unwrap();
        for (line_no, line) in text.lines().enumerate() {
            for (at, _) in line.match_indices("CAXTON_") {
                let var: String = line[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || *c == '_' || c.is_ascii_digit())
                    .collect();
                // Compose's own substitutions (image, secrets directory, published ports).
                if var == "CAXTON_IMAGE" || var == "CAXTON_SECRETS" || var.starts_with("CAXTON_PORT_") {
                    continue;
                }
                seen += 1;
                assert!(
                    known.contains(&var) || special.contains(&var.as_str()),
                    "{file}:{}: {var} is not a Caxton variable",
                    line_no + 1
                );
            }
        }
    }
    assert!(seen > 15, "the deploy files configure the server through variables ({seen} seen)");
}

/// The StatefulSet's init step issues the pod's certificate with the real
/// CLI: its arguments, with the pod's name substituted, work and name the
/// node id the server derives from the same host name.
#[test]
fn the_kubernetes_init_step_issues_a_certificate_for_the_pods_node_id() {
    use caxton::testing::{caxton_bin, cluster_pki, stderr};
    let manifest = std::fs::read_to_string(std::path::Path::new(ROOT).join("deploy/k8s/caxton.yaml")).unwrap();
    let start = manifest.find("args: [\"cluster\", \"cert\", \"issue\"").expect("the init container's args");
    let list = &manifest[start + "args: ".len()..];
    let list = &list[..=list.find(']').unwrap()];
    let args: Vec<String> = serde_json::from_str(list).expect("the args are a flow sequence of strings");
    let dir = tempfile::tempdir().unwrap();
    cluster_pki(dir.path(), []);
    let (ca, tls) = (dir.path().join("ca"), dir.path().join("tls"));
    let args: Vec<String> = args
        .iter()
        .map(|a| {
            let a = a.replace("$(POD_NAME)", "caxton-2").replace("$(NAMESPACE)", "default");
            match a.as_str() {
                "/ca" => ca.display().to_string(),
                "/tls" => tls.display().to_string(),
                _ => a,
            }
        })
        .collect();
    let out = std::process::Command::new(caxton_bin()).args(&args).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    for file in ["node.crt", "node.key", "ca.crt"] {
        assert!(tls.join(file).exists(), "{file} is where the server container's variables point");
    }
    for var in ["/run/caxton/tls/node.crt", "/run/caxton/tls/node.key", "/run/caxton/tls/ca.crt"] {
        assert!(manifest.contains(var), "the server reads {var}");
    }
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_file(tls.join("node.crt")).unwrap();
    assert_eq!(caxton_cluster::pki::node_id_of(&der), Some(3), "pod caxton-2 is node 3");
}
