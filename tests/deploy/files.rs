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
                // Compose's own substitutions (image, published ports).
                if var == "CAXTON_IMAGE" || var.starts_with("CAXTON_PORT_") {
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
