//! The Kubernetes manifests as `kubectl apply -k` would create them: the
//! base and every overlay in deploy/k8s/overlays/ rendered by `kubectl
//! kustomize` (no cluster needed), and every rendered StatefulSet checked:
//! the Pod Security "restricted" profile for each container, resources,
//! placement, disruption budget, probes, network policy, the name each pod
//! advertises, and the image it runs.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// The version deploy/build-image.sh tags the images with.
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs kubectl with `input` on its standard input.
fn kubectl(args: &[&str], input: Option<&[u8]>) -> Output {
    let mut child = match Command::new("kubectl")
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("kubectl is not installed: run `make test`, which installs it (`make kubectl`)")
        }
        Err(e) => panic!("cannot run kubectl: {e}"),
    };
    // Written from another thread, so that kubectl never waits on a full
    // output pipe while we wait on its input.
    let writer = input.map(|input| {
        let (mut stdin, input) = (child.stdin.take().unwrap(), input.to_vec());
        std::thread::spawn(move || stdin.write_all(&input))
    });
    let out = child.wait_with_output().unwrap();
    if let Some(writer) = writer {
        // A failed write shows as kubectl's own failure below.
        let _ = writer.join();
    }
    out
}

/// The objects `kubectl apply -k dir` would create, as JSON.
fn render(dir: &Path) -> Vec<Value> {
    let at = relative(dir);
    let yaml = kubectl(&["kustomize", dir.to_str().unwrap()], None);
    assert!(
        yaml.status.success(),
        "kubectl kustomize {at} failed (kubectl 1.21 or later is needed; `make kubectl` installs it):\n{}",
        text(&yaml.stderr)
    );
    // kubectl turns YAML into JSON without a cluster when asked for a local
    // change that changes nothing: removing a label no object has.
    let json = kubectl(&["label", "--local", "-f", "-", "-o", "json", "caxton-test-render-"], Some(&yaml.stdout));
    assert!(json.status.success(), "kubectl could not read what {at} renders:\n{}", text(&json.stderr));
    let mut objects = Vec::new();
    for value in serde_json::Deserializer::from_slice(&json.stdout).into_iter::<Value>() {
        let value = value.unwrap_or_else(|e| panic!("kubectl's JSON for {at}: {e}"));
        match value["kind"].as_str() {
            Some("List") => objects.extend(value["items"].as_array().cloned().unwrap_or_default()),
            _ => objects.push(value),
        }
    }
    let documents = text(&yaml.stdout).lines().filter(|l| *l == "---").count() + 1;
    assert_eq!(objects.len(), documents, "{at}: every rendered document was read");
    objects
}

fn relative(dir: &Path) -> String {
    dir.strip_prefix(ROOT).unwrap_or(dir).display().to_string()
}

/// The base and every overlay in deploy/k8s/overlays/.
fn kustomizations() -> Vec<PathBuf> {
    let k8s = Path::new(ROOT).join("deploy/k8s");
    let mut overlays: Vec<PathBuf> = std::fs::read_dir(k8s.join("overlays"))
        .expect("deploy/k8s/overlays/")
        .map(|entry| entry.unwrap().path())
        .filter(|dir| dir.join("kustomization.yaml").exists())
        .collect();
    overlays.sort();
    let names: Vec<String> = overlays.iter().map(|d| relative(d)).collect();
    for wanted in ["deploy/k8s/overlays/production", "deploy/k8s/overlays/demo"] {
        assert!(names.iter().any(|n| n == wanted), "{wanted} is an overlay: {names:?}");
    }
    std::iter::once(k8s.join("base")).chain(overlays).collect()
}

/// Each kustomization (its path in the repository) with what it renders,
/// rendered once for every test.
fn rendered() -> &'static [(String, Vec<Value>)] {
    static RENDERED: OnceLock<Vec<(String, Vec<Value>)>> = OnceLock::new();
    RENDERED.get_or_init(|| kustomizations().iter().map(|dir| (relative(dir), render(dir))).collect())
}

/// Every rendered StatefulSet: where it comes from (for messages), the
/// StatefulSet, and every object rendered with it.
fn statefulsets() -> Vec<(String, &'static Value, &'static [Value])> {
    let mut out = Vec::new();
    for (dir, objects) in rendered() {
        let sets: Vec<&Value> = objects.iter().filter(|o| o["kind"] == "StatefulSet").collect();
        assert!(!sets.is_empty(), "{dir} renders no StatefulSet");
        for set in sets {
            out.push((format!("{dir}: StatefulSet {}", name(set)), set, objects.as_slice()));
        }
    }
    out
}

fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

/// Init containers, then containers.
fn containers(pod: &Value) -> Vec<&Value> {
    ["initContainers", "containers"].iter().flat_map(|key| pod[*key].as_array().into_iter().flatten()).collect()
}

/// Whether a selector's `matchLabels` (not empty) all hold on `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    selector["matchLabels"]
        .as_object()
        .is_some_and(|want| !want.is_empty() && want.iter().all(|(k, v)| labels[k.as_str()] == *v))
}

/// A container's variable `var`, if it sets it.
fn env<'a>(container: &'a Value, var: &str) -> Option<&'a Value> {
    container["env"].as_array()?.iter().find(|e| e["name"] == var)
}

/// The `$(NAME)` references in a variable's value or an argument.
fn references(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("$(") {
        // `$$(` is an escaped, literal `$(`.
        let escaped = rest[..at].ends_with('$');
        rest = &rest[at + 2..];
        let Some(end) = rest.find(')') else { break };
        if !escaped {
            out.push(&rest[..end]);
        }
        rest = &rest[end + 1..];
    }
    out
}

/// (repository, tag) of an image reference; the tag is empty when there is none.
fn split_image(image: &str) -> (&str, &str) {
    match image.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => (repository, tag),
        _ => (image, ""),
    }
}

/// Volume types the restricted profile allows (no hostPath among them).
const RESTRICTED_VOLUMES: [&str; 8] =
    ["configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"];

#[test]
fn every_container_passes_the_restricted_pod_security_profile() {
    for (at, set, _) in statefulsets() {
        let pod = &set["spec"]["template"]["spec"];
        let pod_context = &pod["securityContext"];
        assert_eq!(pod["automountServiceAccountToken"], false, "{at}: automountServiceAccountToken must be false");
        for key in ["hostNetwork", "hostPID", "hostIPC"] {
            assert_ne!(pod[key], true, "{at}: {key} is not allowed");
        }
        assert_eq!(pod_context["seccompProfile"]["type"], "RuntimeDefault", "{at}: the pod's seccompProfile");
        assert_eq!(pod_context["runAsNonRoot"], true, "{at}: the pod's runAsNonRoot");
        assert_eq!(pod_context["runAsUser"], 65532, "{at}: the pod runs as 65532, the image's user");
        for volume in pod["volumes"].as_array().into_iter().flatten() {
            let kinds: Vec<&String> = volume.as_object().unwrap().keys().filter(|k| *k != "name").collect();
            assert!(
                kinds.iter().all(|k| RESTRICTED_VOLUMES.contains(&k.as_str())),
                "{at}: volume {}: {kinds:?} is not a volume type the restricted profile allows",
                name_of(volume)
            );
        }
        let all = containers(pod);
        assert!(all.len() >= 2, "{at}: the init container and the server");
        for container in all {
            let at = format!("{at}: container {}", name_of(container));
            let context = &container["securityContext"];
            assert_eq!(context["allowPrivilegeEscalation"], false, "{at}: allowPrivilegeEscalation must be false");
            assert_ne!(context["privileged"], true, "{at}: privileged");
            let dropped = context["capabilities"]["drop"].as_array().cloned().unwrap_or_default();
            assert!(dropped.iter().any(|c| c == "ALL"), "{at}: capabilities must drop ALL (drops {dropped:?})");
            let added = context["capabilities"]["add"].as_array().cloned().unwrap_or_default();
            assert!(added.iter().all(|c| c == "NET_BIND_SERVICE"), "{at}: capabilities add {added:?}");
            assert_eq!(context["readOnlyRootFilesystem"], true, "{at}: readOnlyRootFilesystem must be true");
            let non_root =
                if context["runAsNonRoot"].is_null() { &pod_context["runAsNonRoot"] } else { &context["runAsNonRoot"] };
            assert_eq!(*non_root, true, "{at}: runAsNonRoot must be true");
            let user = context["runAsUser"].as_u64().or(pod_context["runAsUser"].as_u64());
            assert_ne!(user, Some(0), "{at}: runs as root");
            if let Some(seccomp) = context["seccompProfile"]["type"].as_str() {
                assert!(["RuntimeDefault", "Localhost"].contains(&seccomp), "{at}: seccompProfile {seccomp}");
            }
            for port in container["ports"].as_array().into_iter().flatten() {
                assert!(port["hostPort"].as_u64().unwrap_or(0) == 0, "{at}: hostPort {}", port["hostPort"]);
            }
            for (kind, resource) in [("requests", "cpu"), ("requests", "memory"), ("limits", "memory")] {
                assert!(
                    !container["resources"][kind][resource].is_null(),
                    "{at}: resources.{kind}.{resource} must be set (every container, init containers too)"
                );
            }
        }
    }
}

fn name_of(item: &Value) -> &str {
    item["name"].as_str().unwrap_or("?")
}

#[test]
fn pods_are_spread_probed_and_disrupted_one_at_a_time() {
    for (at, set, objects) in statefulsets() {
        let labels = &set["spec"]["template"]["metadata"]["labels"];
        let pod = &set["spec"]["template"]["spec"];

        let budgets: Vec<&Value> = objects
            .iter()
            .filter(|o| o["kind"] == "PodDisruptionBudget" && selects(&o["spec"]["selector"], labels))
            .collect();
        assert_eq!(budgets.len(), 1, "{at}: one PodDisruptionBudget selects the pods");
        assert_eq!(budgets[0]["spec"]["maxUnavailable"], 1, "{at}: the budget allows one pod down");

        // Soft: a cluster with fewer machines than pods still schedules them all.
        let anti = &pod["affinity"]["podAntiAffinity"];
        assert!(anti["requiredDuringSchedulingIgnoredDuringExecution"].is_null(), "{at}: hard anti-affinity");
        let preferred =
            anti["preferredDuringSchedulingIgnoredDuringExecution"].as_array().into_iter().flatten().any(|t| {
                t["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
                    && selects(&t["podAffinityTerm"]["labelSelector"], labels)
            });
        let spreads = pod["topologySpreadConstraints"].as_array().cloned().unwrap_or_default();
        for spread in &spreads {
            assert_eq!(spread["whenUnsatisfiable"], "ScheduleAnyway", "{at}: topology spread must be soft: {spread}");
        }
        let spread = spreads.iter().any(|s| selects(&s["labelSelector"], labels));
        assert!(preferred || spread, "{at}: soft pod anti-affinity on kubernetes.io/hostname or a topology spread");

        // Every container that serves (declares ports) is probed; the
        // certificate renewer serves nothing.
        let serving = pod["containers"].as_array().unwrap().iter().filter(|c| c["ports"].is_array());
        assert!(serving.clone().count() >= 1, "{at}: a serving container");
        for container in serving {
            for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
                let path = &container[probe]["httpGet"]["path"];
                assert!(path.is_string(), "{at}: container {}: {probe} (an HTTP probe)", name_of(container));
            }
            assert_eq!(
                container["startupProbe"]["httpGet"]["path"],
                container["livenessProbe"]["httpGet"]["path"],
                "{at}: container {}: the startup probe holds liveness back on the same check",
                name_of(container)
            );
        }

        let service = set["spec"]["serviceName"].as_str().expect("serviceName");
        let headless = objects
            .iter()
            .find(|o| o["kind"] == "Service" && name(o) == service)
            .unwrap_or_else(|| panic!("{at}: its headless service {service} is rendered with it"));
        assert_eq!(headless["spec"]["clusterIP"], "None", "{at}: {service} is headless");
        assert_eq!(headless["spec"]["publishNotReadyAddresses"], true, "{at}: pods find each other before ready");
        assert!(
            headless["spec"]["selector"].as_object().is_some_and(|s| s.iter().all(|(k, v)| labels[k.as_str()] == *v)),
            "{at}: {service} selects the pods"
        );
    }
}

#[test]
fn the_network_policy_admits_rpc_and_gossip_only_from_the_clusters_pods() {
    for (at, set, objects) in statefulsets() {
        let labels = &set["spec"]["template"]["metadata"]["labels"];
        let pod = &set["spec"]["template"]["spec"];
        let all = containers(pod);
        let named: BTreeMap<&str, u64> = all
            .iter()
            .flat_map(|c| c["ports"].as_array().into_iter().flatten())
            .filter_map(|p| Some((p["name"].as_str()?, p["containerPort"].as_u64()?)))
            .collect();
        let policies: Vec<&Value> = objects
            .iter()
            .filter(|o| o["kind"] == "NetworkPolicy" && selects(&o["spec"]["podSelector"], labels))
            .collect();
        assert!(!policies.is_empty(), "{at}: a NetworkPolicy selects the pods");
        let (mut rpc, mut gossip, mut api) = (false, false, false);
        for policy in policies {
            let at = format!("{at}: NetworkPolicy {}", name(policy));
            let types = &policy["spec"]["policyTypes"];
            assert!(
                types.is_null() || types.as_array().unwrap().iter().any(|t| t == "Ingress"),
                "{at}: limits ingress"
            );
            for rule in policy["spec"]["ingress"].as_array().into_iter().flatten() {
                // (port, protocol); no port: every port of the protocol.
                let ports: Vec<(Option<u64>, &str)> = rule["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| {
                        let number = p["port"].as_u64().or_else(|| named.get(p["port"].as_str()?).copied());
                        (number, p["protocol"].as_str().unwrap_or("TCP"))
                    })
                    .collect();
                let admits = |port: u64, protocol: &str| {
                    ports.is_empty() || ports.iter().any(|(p, proto)| *proto == protocol && p.is_none_or(|p| p == port))
                };
                let cluster_only = rule["from"].as_array().is_some_and(|peers| {
                    !peers.is_empty()
                        && peers.iter().all(|peer| {
                            peer["namespaceSelector"].is_null()
                                && peer["ipBlock"].is_null()
                                && selects(&peer["podSelector"], labels)
                        })
                });
                for (port, protocol, what) in [(8081, "TCP", "RPC"), (7946, "UDP", "gossip")] {
                    assert!(
                        !admits(port, protocol) || cluster_only,
                        "{at}: a rule admits {what} ({port}/{protocol}) from others than the cluster's pods: {rule}"
                    );
                }
                rpc |= admits(8081, "TCP");
                gossip |= admits(7946, "UDP");
                api |= admits(8080, "TCP");
            }
        }
        assert!(rpc, "{at}: the cluster's pods reach each other's RPC port (8081/TCP)");
        assert!(gossip, "{at}: the cluster's pods reach each other's gossip port (7946/UDP)");
        assert!(api, "{at}: the API port (8080/TCP) is reachable");
    }
}

#[test]
fn pods_advertise_their_dns_name_and_every_variable_they_use_is_defined() {
    for (at, set, objects) in statefulsets() {
        let pod = &set["spec"]["template"]["spec"];
        let service = set["spec"]["serviceName"].as_str().expect("serviceName");
        for container in containers(pod) {
            let at = format!("{at}: container {}", name_of(container));
            // Kubernetes leaves a reference to a variable not defined above it as literal text.
            let mut defined: Vec<&str> = Vec::new();
            for var in container["env"].as_array().into_iter().flatten() {
                for reference in references(var["value"].as_str().unwrap_or_default()) {
                    assert!(
                        defined.contains(&reference),
                        "{at}: {} uses $({reference}) before it is defined",
                        var["name"]
                    );
                }
                if let Some(map) = var["valueFrom"]["configMapKeyRef"].as_object() {
                    let key = map["key"].as_str().unwrap();
                    let found = objects.iter().any(|o| {
                        o["kind"] == "ConfigMap"
                            && map["name"] == name(o)
                            && o["data"][key].as_str().is_some_and(|v| !v.is_empty())
                    });
                    assert!(
                        found,
                        "{at}: {} reads key {key} of ConfigMap {}, which is not rendered",
                        var["name"], map["name"]
                    );
                }
                defined.push(var["name"].as_str().unwrap());
            }
            for arg in ["command", "args"].iter().flat_map(|k| container[*k].as_array().into_iter().flatten()) {
                for reference in references(arg.as_str().unwrap_or_default()) {
                    assert!(
                        defined.contains(&reference),
                        "{at}: argument {arg} uses $({reference}), which is not defined"
                    );
                }
            }
        }
        for volume in pod["volumes"].as_array().into_iter().flatten() {
            if let Some(map) = volume["configMap"]["name"].as_str() {
                let found = objects.iter().any(|o| o["kind"] == "ConfigMap" && name(o) == map);
                assert!(found, "{at}: volume {} mounts ConfigMap {map}, which is not rendered", name_of(volume));
            }
        }

        let server =
            pod["containers"].as_array().unwrap().iter().find(|c| env(c, "CAXTON_CLUSTER_ADVERTISE").is_some());
        let server = server.unwrap_or_else(|| panic!("{at}: a container sets CAXTON_CLUSTER_ADVERTISE"));
        let pod_name = env(server, "POD_NAME").map(|v| &v["valueFrom"]["fieldRef"]["fieldPath"]);
        assert_eq!(pod_name, Some(&Value::from("metadata.name")), "{at}: POD_NAME is the pod's name");
        // A recreated pod gets a new IP but keeps its name: peers must dial the name.
        let advertise = env(server, "CAXTON_CLUSTER_ADVERTISE").unwrap()["value"].as_str().unwrap_or_default();
        let under_service = format!(".{service}.");
        assert!(
            advertise.starts_with("$(POD_NAME).") && advertise.contains(under_service.as_str()),
            "{at}: CAXTON_CLUSTER_ADVERTISE is the pod's name under its headless service {service}: {advertise}"
        );
        assert!(!advertise.contains("POD_IP"), "{at}: advertises its IP: {advertise}");
        let seeds = env(server, "CAXTON_CLUSTER_SEEDS").map(|v| v["value"].as_str().unwrap_or_default());
        let seeds_from = format!("{service}.");
        assert!(seeds.is_some_and(|s| s.starts_with(seeds_from.as_str())), "{at}: seeds from {service}: {seeds:?}");
        let remove_after =
            env(server, "CAXTON_CLUSTER_REMOVE_DEAD_AFTER").map(|v| v["value"].as_str().unwrap_or_default());
        assert!(remove_after.is_some_and(|v| !v.is_empty()), "{at}: scale-down removes departed members");
        // The certificate the init container issues names the host the pod advertises.
        let issuer = pod["initContainers"].as_array().into_iter().flatten().find(|c| {
            let args = c["args"].as_array().cloned().unwrap_or_default();
            args.iter().any(|a| a == "cert") && args.iter().any(|a| a == "issue")
        });
        let issuer = issuer.unwrap_or_else(|| panic!("{at}: an init container issues the pod's certificate"));
        assert!(
            issuer["args"].as_array().unwrap().iter().any(|a| a == advertise),
            "{at}: the certificate names {advertise}: {}",
            issuer["args"]
        );
    }
}

#[test]
fn every_image_carries_the_version_and_production_runs_no_samples() {
    let mut images: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (at, set, _) in statefulsets() {
        let dir = at.split(':').next().unwrap().to_owned();
        let pod = &set["spec"]["template"]["spec"];
        for container in containers(pod) {
            let at = format!("{at}: container {}", name_of(container));
            let image = container["image"].as_str().unwrap_or_default();
            let (repository, tag) = split_image(image);
            assert!(!tag.is_empty() && tag != "latest", "{at}: image {image} has no version tag");
            assert_eq!(
                tag, VERSION,
                "{at}: image {image} is not this version's (deploy/build-image.sh tags {VERSION})"
            );
            images.entry(dir.clone()).or_default().push(repository.to_owned());
            if dir.ends_with("/production") {
                for var in ["CAXTON_SERVER_AGENTS_DIR", "CAXTON_SERVER_TOOLS_DIR"] {
                    assert!(env(container, var).is_none(), "{at}: production sets {var}");
                }
                for mount in container["volumeMounts"].as_array().into_iter().flatten() {
                    let path = mount["mountPath"].as_str().unwrap_or_default();
                    assert!(!path.starts_with("/opt/caxton"), "{at}: production mounts samples at {path}");
                }
            }
        }
    }
    let production = &images["deploy/k8s/overlays/production"];
    let demo = &images["deploy/k8s/overlays/demo"];
    for repository in production {
        assert!(!repository.contains("demo"), "production runs the demo image {repository}");
        assert!(!demo.contains(repository), "production and demo run the same image {repository}");
    }
    assert!(demo.iter().all(|r| r.contains("demo")), "the demo overlay runs the demo image: {demo:?}");
}

#[test]
fn each_overlay_sets_its_namespace_cluster_domain_and_volume_sizes() {
    for (dir, objects) in rendered().iter().filter(|(dir, _)| dir.contains("/overlays/")) {
        let namespaces: Vec<&str> =
            objects.iter().map(|o| o["metadata"]["namespace"].as_str().unwrap_or_default()).collect();
        assert!(
            !namespaces[0].is_empty() && namespaces.iter().all(|n| *n == namespaces[0]),
            "{dir}: every object in the overlay's namespace: {namespaces:?}"
        );
        for set in objects.iter().filter(|o| o["kind"] == "StatefulSet") {
            let pod = &set["spec"]["template"]["spec"];
            let domain = pod["containers"]
                .as_array()
                .unwrap()
                .iter()
                .find_map(|c| env(c, "CLUSTER_DOMAIN"))
                .unwrap_or_else(|| panic!("{dir}: the server reads CLUSTER_DOMAIN"));
            let reference = &domain["valueFrom"]["configMapKeyRef"];
            let map = objects
                .iter()
                .find(|o| o["kind"] == "ConfigMap" && reference["name"] == name(o))
                .unwrap_or_else(|| panic!("{dir}: CLUSTER_DOMAIN comes from a rendered ConfigMap: {domain}"));
            let value = map["data"][reference["key"].as_str().unwrap()].as_str().unwrap_or_default();
            assert!(!value.is_empty() && !value.starts_with('.'), "{dir}: cluster domain {value:?}");
            for claim in set["spec"]["volumeClaimTemplates"].as_array().into_iter().flatten() {
                let size = &claim["spec"]["resources"]["requests"]["storage"];
                assert!(size.is_string(), "{dir}: volume claim {} has a size", name(claim));
            }
        }
    }
}

#[test]
fn references_are_read_as_kubernetes_expands_them() {
    assert_eq!(references("$(A).x.$(B_C)"), ["A", "B_C"]);
    assert_eq!(references("$$(A) $(B)"), ["B"]);
    assert!(references("plain").is_empty());
    assert_eq!(split_image("caxton:0.1.0"), ("caxton", "0.1.0"));
    assert_eq!(split_image("registry:5000/caxton"), ("registry:5000/caxton", ""));
}

/// Pods outlive certificates: a sidecar renews the pod's certificate with
/// the CA it mounts, more often than the certificate's life; the server
/// never mounts the CA key.
#[test]
fn a_sidecar_renews_each_pods_certificate_and_the_server_never_sees_the_ca() {
    for (overlay, set, _) in statefulsets() {
        let pod = &set["spec"]["template"]["spec"];
        let containers = pod["containers"].as_array().unwrap();
        let ca_volume_mounted =
            |c: &Value| c["volumeMounts"].as_array().into_iter().flatten().any(|m| m["name"] == "ca");
        let renewer = containers
            .iter()
            .find(|c| c["args"].as_array().is_some_and(|a| a.iter().any(|x| x == "--renew-every")))
            .unwrap_or_else(|| panic!("{overlay}: a container renews the certificate"));
        assert!(ca_volume_mounted(renewer), "{overlay}: the renewer mounts the CA");
        let args: Vec<&str> = renewer["args"].as_array().unwrap().iter().filter_map(|a| a.as_str()).collect();
        let after = |flag: &str| args.iter().position(|a| *a == flag).map(|i| args[i + 1]).unwrap();
        let days: u64 = after("--days").parse().unwrap();
        let every = after("--renew-every");
        let hours: u64 = every.trim_end_matches('h').parse().unwrap_or_else(|_| panic!("{every}: hours"));
        assert!(hours * 3 < days * 24, "{overlay}: renewed every {every}, well within {days} days");
        for c in containers.iter().filter(|c| c["ports"].is_array()) {
            assert!(!ca_volume_mounted(c), "{overlay}: the server container mounts the CA key");
        }
    }
}
