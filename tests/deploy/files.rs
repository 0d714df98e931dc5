//! The deploy files configure the server only through variables it reads,
//! and name images of this version.

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn every_variable_in_the_deploy_files_is_one_the_server_reads() {
    let known: Vec<String> = caxton::config::ServerConfig::env_variables().into_iter().map(|(_, v)| v).collect();
    // Read by the node itself rather than mapped to a config key.
    let special = ["CAXTON_CLUSTER_SECRET", "CAXTON_ADMIN_KEY", "CAXTON_CONFIG_PATH"];
    let mut files: Vec<String> =
        ["deploy/Dockerfile", "deploy/docker-compose.yml", "deploy/docker-compose.single.yml"].map(String::from).into();
    // The kustomize base and overlays, and what sits beside them.
    files.extend(files_under("deploy/k8s"));
    assert!(files.iter().any(|f| f == "deploy/k8s/base/statefulset.yaml"), "{files:?}");
    let mut seen = 0;
    for file in &files {
        let text = std::fs::read_to_string(std::path::Path::new(ROOT).join(file)).unwrap();
        for (line_no, line) in text.lines().enumerate() {
            for (at, _) in line.match_indices("CAXTON_") {
                let var: String = line[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || *c == '_' || c.is_ascii_digit())
                    .collect();
                // Compose's own substitutions (image, secrets directory, published ports), the
                // binary make-secrets.sh runs, and the prefix itself (`CAXTON_*`).
                if ["CAXTON_IMAGE", "CAXTON_SECRETS", "CAXTON_BIN", "CAXTON_"].contains(&var.as_str())
                    || var.starts_with("CAXTON_PORT_")
                {
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

/// Every file under `dir` (relative to the repository), sorted.
fn files_under(dir: &str) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(std::path::Path::new(ROOT).join(dir)).unwrap() {
        let entry = entry.unwrap();
        let path = format!("{dir}/{}", entry.file_name().to_string_lossy());
        if entry.file_type().unwrap().is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The production image serves no samples (the demo image does), both carry
/// their version and license, and the compose files run a tagged image of
/// this version (deploy/build-image.sh tags `caxton:VERSION` and
/// `caxton-demo:VERSION`).
#[test]
fn the_images_are_versioned_and_only_the_demo_serves_samples() {
    let version = env!("CARGO_PKG_VERSION");
    let dockerfile = std::fs::read_to_string(std::path::Path::new(ROOT).join("deploy/Dockerfile")).unwrap();
    let demo_at = dockerfile.find("FROM production AS demo").expect("a demo stage built on the production one");
    let (production, demo) = dockerfile.split_at(demo_at);
    assert!(production.contains("FROM scratch AS production"), "{production}");
    for var in ["CAXTON_SERVER_AGENTS_DIR", "CAXTON_SERVER_TOOLS_DIR"] {
        assert!(!production.contains(var), "the production image sets {var}");
        assert!(demo.contains(var), "the demo image serves its samples through {var}");
    }
    for label in ["org.opencontainers.image.version", "org.opencontainers.image.licenses"] {
        assert!(production.contains(label), "the image is labelled {label}");
    }
    assert!(std::path::Path::new(ROOT).join("LICENSE").exists(), "the image carries LICENSE");
    let script = std::fs::read_to_string(std::path::Path::new(ROOT).join("deploy/build-image.sh")).unwrap();
    assert!(script.contains("LICENSE"), "deploy/build-image.sh puts LICENSE in the image");
    for (file, image) in [("deploy/docker-compose.yml", "caxton"), ("deploy/docker-compose.single.yml", "caxton-demo")]
    {
        let text = std::fs::read_to_string(std::path::Path::new(ROOT).join(file)).unwrap();
        let images: Vec<&str> = text.lines().filter_map(|l| l.trim().strip_prefix("image: ")).collect();
        assert!(!images.is_empty(), "{file} names its image");
        for named in images {
            assert_eq!(
                named,
                format!("${{CAXTON_IMAGE:-{image}:{version}}}"),
                "{file}: a tagged image of this version"
            );
        }
    }
}

/// The arguments of the StatefulSet container whose `args: [...]` list
/// holds `marker`, as pod `pod` runs them, with the CA and certificate
/// volumes at `ca` and `tls`; a `--renew-every` period becomes 1s.
fn statefulset_args(marker: &str, pod: &str, ca: &std::path::Path, tls: &std::path::Path) -> Vec<String> {
    let manifest =
        std::fs::read_to_string(std::path::Path::new(ROOT).join("deploy/k8s/base/statefulset.yaml")).unwrap();
    let at = manifest.find(marker).unwrap_or_else(|| panic!("{marker} in the StatefulSet"));
    let start = manifest[..at + marker.len()].rfind("args: [").expect("an args list");
    let list = &manifest[start + "args: ".len()..];
    let list = &list[..=list.find(']').unwrap()];
    let args: Vec<String> = serde_json::from_str(list).expect("the args are a flow sequence of strings");
    let mut renew_next = false;
    args.iter()
        .map(|a| {
            let a = a
                .replace("$(POD_NAME)", pod)
                .replace("$(POD_NAMESPACE)", "default")
                .replace("$(CLUSTER_DOMAIN)", "cluster.local");
            assert!(!a.contains("$("), "a variable the test does not substitute: {a}");
            if std::mem::replace(&mut renew_next, a == "--renew-every") {
                return "1s".to_owned();
            }
            match a.as_str() {
                "/ca" => ca.display().to_string(),
                "/tls" => tls.display().to_string(),
                _ => a,
            }
        })
        .collect()
}

/// The StatefulSet's init step issues the pod's certificate with the real
/// CLI: its arguments, with the pod's name substituted, work and name the
/// node id the server derives from the same host name.
#[test]
fn the_kubernetes_init_step_issues_a_certificate_for_the_pods_node_id() {
    use caxton_testing::{caxton_bin, cluster_pki, stderr};
    let dir = tempfile::tempdir().unwrap();
    cluster_pki(dir.path(), []);
    let (ca, tls) = (dir.path().join("ca"), dir.path().join("tls"));
    let args = statefulset_args("args: [\"cluster\", \"cert\", \"issue\"", "caxton-2", &ca, &tls);
    let manifest =
        std::fs::read_to_string(std::path::Path::new(ROOT).join("deploy/k8s/base/statefulset.yaml")).unwrap();
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

/// The renewing sidecar's command line, run for real with a short period:
/// it issues at once, then replaces the certificate each period.
#[test]
fn the_kubernetes_certificate_sidecar_issues_again_and_again() {
    use caxton_testing::{caxton_bin, cluster_pki};
    let dir = tempfile::tempdir().unwrap();
    cluster_pki(dir.path(), []);
    let (ca, tls) = (dir.path().join("ca"), dir.path().join("tls"));
    let args = statefulset_args("\"--renew-every\"", "caxton-0", &ca, &tls);
    let mut child =
        std::process::Command::new(caxton_bin()).args(&args).stdout(std::process::Stdio::null()).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 3 && std::time::Instant::now() < deadline {
        if let Ok(pem) = std::fs::read(tls.join("node.crt")) {
            seen.insert(pem);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let still_running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert!(still_running, "the sidecar keeps running");
    assert!(seen.len() >= 3, "three different certificates in a row, saw {}", seen.len());
}
