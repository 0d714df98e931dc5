//! What observability costs a message.
//!
//! (a) End to end, one node process per configuration, echo agents (each
//!     message: the HTTP request, `invoke_agent` and `chat` spans, and a
//!     share of an apply span per log entry), 1 and 64 clients: trace export
//!     off (no OTEL variables) versus on (OTLP/HTTP to a receiver in this
//!     process that decodes every batch and counts its spans, so dropped
//!     spans would show) and on with a 10 % parent-based sampler. Metrics
//!     are always on, so (a) measures the export on top of them. The three
//!     nodes run side by side and short phases alternate between them, in a
//!     rotating order; per phase: throughput, p50/p99 latency, and the
//!     node's CPU time per message. After each turn of phases all three
//!     are loaded at once, sharing the node CPU, for their CPU time per
//!     message measured over the same seconds: on this machine, whose speed
//!     moves by 10-20 % between phases, the steadiest figure of what
//!     export costs. The summary is the median of the per-phase
//!     differences against export off.
//! (b) The metrics a message records (HTTP histogram, message histogram and
//!     counter, one LLM call with tokens, a commit), timed in a loop: the
//!     cost of metrics per message, to set against (a)'s latency.
//!
//! Run: `cargo bench --bench observability` (`-- --quick` for one short
//! round, `-- --shared` not to pin the node and the load to a CPU each;
//! `CAXTON_BENCH_DISK=1` keeps the nodes' data on disk instead of tmpfs).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use caxton::observability::{Metrics, Outcome};
use caxton_testing::{echo_agent_toml, percentile, NodeOptions, TestNode};

fn ms(v: &mut [Duration], p: f64) -> f64 {
    percentile(v, p).as_secs_f64() * 1e3
}

/// Spans one receiver got: the total, and by the first word of the name.
#[derive(Default)]
struct Received {
    spans: AtomicU64,
    names: Mutex<std::collections::BTreeMap<String, u64>>,
}

/// An OTLP/HTTP endpoint that accepts every export and counts the spans in
/// it, so a run can show that every message's spans arrived (the SDK
/// drops spans silently when its queue is full, which would look cheap).
async fn otlp_sink() -> (String, Arc<Received>) {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;
    let received = Arc::new(Received::default());
    let counter = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let counter = counter.clone();
            async move {
                let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export");
                let spans: Vec<_> =
                    request.resource_spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans).collect();
                counter.spans.fetch_add(spans.len() as u64, Ordering::Relaxed);
                let mut names = counter.names.lock().unwrap();
                for span in spans {
                    *names.entry(span.name.split(' ').next().unwrap_or_default().to_owned()).or_insert(0) += 1;
                }
                ""
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

/// What one phase measured.
#[derive(Clone, Copy)]
struct Row {
    /// Answered messages per second.
    rate: f64,
    p50: f64,
    p99: f64,
    /// CPU time of the node process (every thread, the exporter's
    /// included) per answered message, in microseconds: what the node
    /// spends on a message whoever else shares the cores.
    cpu_us: f64,
    /// Share of the machine's CPUs busy during the phase.
    busy: f64,
}

/// User + system CPU of a process, all threads (`/proc/PID/stat`).
fn process_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the node's /proc stat");
    // Fields after the command name, which is parenthesised and may hold spaces.
    let rest = &stat[stat.rfind(')').expect("stat has a command") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 1000 / clock_ticks())
}

fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        let out = std::process::Command::new("getconf").arg("CLK_TCK").output().expect("getconf");
        String::from_utf8_lossy(&out.stdout).trim().parse().expect("CLK_TCK")
    })
}

/// (busy, total) jiffies of the whole machine (`/proc/stat`).
fn machine_cpu() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let v: Vec<u64> = stat.lines().next().unwrap().split_whitespace().skip(1).map(|x| x.parse().unwrap()).collect();
    let total: u64 = v.iter().take(8).sum();
    (total - v[3] - v[4], total)
}

/// Pins every thread of `pid` to the given CPUs (`taskset` syntax).
fn pin(pid: u32, cpus: &str) {
    let status = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("taskset (util-linux)");
    assert!(status.success(), "taskset -c {cpus} {pid}");
}

async fn echo_node(env: Vec<(String, String)>, pinned: bool) -> TestNode {
    let node = TestNode::start_with(NodeOptions { env, ..Default::default() }).await;
    if pinned {
        pin(node.pid(), "1");
    }
    for i in 0..4 {
        let r = node
            .http
            .post(node.url("/v1/agents"))
            .header("content-type", "application/toml")
            .body(echo_agent_toml(&format!("echo{i}"), &[]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    node
}

/// What `clients` concurrent senders got from one node in `secs`: every
/// refusal is kept, so a node that falls over cannot pass for a slow one.
struct Load {
    answered: u64,
    latencies: Vec<Duration>,
    /// The node's CPU time over the load.
    cpu: Duration,
}

async fn load(node: &TestNode, clients: usize, secs: u64) -> Load {
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build().unwrap();
    let failed: Arc<Mutex<std::collections::BTreeMap<String, u64>>> = Default::default();
    let cpu0 = process_cpu(node.pid());
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (http, url, failed) = (http.clone(), node.url("/v1/messages"), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while Instant::now() < deadline {
                let body = serde_json::json!({"to": format!("echo{}", c % 4), "content": "ping", "timeout_ms": 30000});
                let t = Instant::now();
                match http.post(&url).json(&body).send().await {
                    Ok(r) if r.status() == 200 => mine.push(t.elapsed()),
                    Ok(r) => {
                        let status = r.status().to_string();
                        let body = r.text().await.unwrap_or_default();
                        let mut failed = failed.lock().unwrap();
                        if failed.is_empty() {
                            println!("first refusal: {}", body.chars().take(300).collect::<String>());
                        }
                        *failed.entry(status).or_insert(0) += 1;
                    }
                    Err(e) => *failed.lock().unwrap().entry(format!("error: {e}")).or_insert(0) += 1,
                }
            }
            mine
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let cpu = process_cpu(node.pid()) - cpu0;
    let failed = std::mem::take(&mut *failed.lock().unwrap());
    if !failed.is_empty() {
        println!("{:<24} not answered with 200: {failed:?}", "");
        let log = node.log();
        let tail: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).take(3).collect();
        println!("node errors:\n{}", tail.join("\n"));
    }
    Load { answered: latencies.len() as u64, latencies, cpu }
}

impl Load {
    /// The node's CPU time per answered message, in microseconds.
    fn cpu_us(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.answered.max(1) as f64
    }
}

/// One node alone under load: throughput, latency, CPU per message.
async fn phase(node: &TestNode, label: &str, clients: usize, secs: u64) -> Row {
    let machine0 = machine_cpu();
    let mut got = load(node, clients, secs).await;
    let machine = machine_cpu();
    let busy = (machine.0 - machine0.0) as f64 / (machine.1 - machine0.1) as f64;
    let rate = got.answered as f64 / secs as f64;
    let (p50, p99) = (ms(&mut got.latencies, 0.5), ms(&mut got.latencies, 0.99));
    let cpu_us = got.cpu_us();
    println!(
        "{label:<24} {clients:>3} clients: {rate:>7.0} messages/s, p50 {p50:.2} ms, p99 {p99:.2} ms, node CPU {cpu_us:.0} µs/message, machine {:.0} % busy",
        busy * 100.0
    );
    Row { rate, p50, p99, cpu_us, busy }
}

/// Every node under load at the same moment, sharing the node CPU: each
/// one's CPU time per message, measured over the same seconds, so a drift
/// of the machine's speed falls on all of them alike. (Their throughputs
/// are not compared: the scheduler's share of the CPU decides those.)
async fn side_by_side(nodes: &[TestNode], labels: &[&str], clients: usize, secs: u64) -> Vec<Load> {
    let loads = futures::future::join_all(nodes.iter().map(|n| load(n, clients, secs))).await;
    let line: Vec<String> = labels.iter().zip(&loads).map(|(l, got)| format!("{l}: {:.0}", got.cpu_us())).collect();
    println!("side by side, {clients:>3} clients each, node CPU µs/message: {}", line.join(", "));
    loads
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn metrics_cost_per_message() {
    let m = Metrics::new();
    let n = 200_000u32;
    let t = Instant::now();
    for i in 0..n {
        let took = Duration::from_micros(u64::from(i % 5000));
        m.http_duration.with_label_values(&["/v1/messages", "POST", "200"]).observe(took.as_secs_f64());
        m.message_accepted();
        m.message_done("echo0", "request", Outcome::Ok, took);
        m.llm_call("openai", "gpt", took, Ok((120, 40)));
        caxton_cluster::WriteObserver::proposed(&m);
        caxton_cluster::WriteObserver::finished(&m, took, Ok(()));
    }
    let per = t.elapsed() / n;
    println!("metrics recorded per message (6 instruments, labels looked up each time): {per:?}");
}

/// Short phases alternate between the configurations, round after round of
/// fresh nodes, and the per-phase differences are summarised by their
/// median: on two shared cores the machine drifts by as much as the effect.
fn main() {
    // Node data directories on tmpfs: what is compared is CPU work, and on
    // this machine's virtual disk an fsync now and then stalls a node for
    // over a second (seen in both configurations), which swamps the effect.
    // Set before the runtime starts its threads.
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() && std::env::var_os("CAXTON_BENCH_DISK").is_none() {
        std::env::set_var("TMPDIR", shm);
    }
    tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(run());
}

async fn run() {
    let quick = std::env::args().any(|a| a == "--quick");
    // Pinned (default): the nodes on CPU 1, this process (clients and the
    // OTLP receivers) on CPU 0, as if the load and the collector were other
    // machines; a node's exporter thread shares the node's CPU. `--shared`
    // lets everything float over both CPUs.
    let pinned =
        !std::env::args().any(|a| a == "--shared") && std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2);
    if pinned {
        pin(std::process::id(), "0");
    }
    let (secs, reps, rounds) = if quick { (2, 1, 1) } else { (3, 4, 3) };
    metrics_cost_per_message();
    let var = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    let (on_url, on_received) = otlp_sink().await;
    let (sampled_url, sampled_received) = otlp_sink().await;
    let on_env = vec![var("OTEL_EXPORTER_OTLP_ENDPOINT", &on_url), var("OTEL_BSP_SCHEDULE_DELAY", "500")];
    let sampled_env = vec![
        var("OTEL_EXPORTER_OTLP_ENDPOINT", &sampled_url),
        var("OTEL_BSP_SCHEDULE_DELAY", "500"),
        var("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
        var("OTEL_TRACES_SAMPLER_ARG", "0.1"),
    ];
    let configs = [
        ("trace export off", Vec::new(), None),
        ("trace export on (OTLP)", on_env, Some(on_received)),
        ("export on, 10% sampled", sampled_env, Some(sampled_received)),
    ];
    // (config, clients) -> per-phase differences against export off.
    let mut deltas: std::collections::BTreeMap<(usize, usize), Deltas> = Default::default();
    for round in 1..=rounds {
        println!("round {round} of {rounds}");
        // One node per configuration, all alive at once; short phases
        // alternate between them, so a drift of the machine (its speed moves
        // by 10-20 % over minutes here) falls on every configuration alike.
        let mut nodes = Vec::new();
        for (_, env, _) in &configs {
            nodes.push(echo_node(env.clone(), pinned).await);
        }
        let mut answered = vec![0.0; configs.len()];
        for clients in [1usize, 64] {
            for rep in 0..reps {
                let mut rows = vec![None; configs.len()];
                for k in 0..configs.len() {
                    let config = (k + rep + round) % configs.len();
                    let row = phase(&nodes[config], configs[config].0, clients, secs).await;
                    answered[config] += row.rate * secs as f64;
                    rows[config] = Some(row);
                }
                let off = rows[0].unwrap();
                for (config, on) in rows.iter().enumerate().skip(1) {
                    let on = on.unwrap();
                    let d = deltas.entry((config, clients)).or_default();
                    d.rate.push((on.rate / off.rate - 1.0) * 100.0);
                    d.p50.push((on.p50 / off.p50 - 1.0) * 100.0);
                    d.p99.push((on.p99 / off.p99 - 1.0) * 100.0);
                    d.cpu.push((on.cpu_us / off.cpu_us - 1.0) * 100.0);
                    d.busy.push(on.busy.min(off.busy) * 100.0);
                }
                let labels: Vec<&str> = configs.iter().map(|c| c.0).collect();
                let loads = side_by_side(&nodes, &labels, clients, secs).await;
                for (config, got) in loads.iter().enumerate() {
                    answered[config] += got.answered as f64;
                    if config > 0 {
                        let d = deltas.entry((config, clients)).or_default();
                        d.side_cpu.push((got.cpu_us() / loads[0].cpu_us() - 1.0) * 100.0);
                    }
                }
            }
        }
        // The last batches leave within the schedule delay.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        for ((label, _, received), messages) in configs.iter().zip(&answered) {
            if let Some(received) = received {
                let spans = received.spans.swap(0, Ordering::Relaxed);
                let names = std::mem::take(&mut *received.names.lock().unwrap());
                println!(
                    "{label:<24} spans received: {spans} ({:.2} per answered message: {names:?})",
                    spans as f64 / messages
                );
            }
        }
    }
    let list = |v: &[f64]| v.iter().map(|d| format!("{d:+.1}")).collect::<Vec<_>>().join(", ");
    for ((config, clients), d) in deltas {
        println!(
            "{} against off, {clients} clients, median of {} phases: throughput {:+.1} %, p50 latency {:+.1} %, p99 {:+.1} %, node CPU per message {:+.1} %; side by side, node CPU per message {:+.1} % (per phase: throughput {}; CPU {}; side by side CPU {}; machine busy at least {:.0} %)",
            configs[config].0,
            d.rate.len(),
            median(d.rate.clone()),
            median(d.p50.clone()),
            median(d.p99.clone()),
            median(d.cpu.clone()),
            median(d.side_cpu.clone()),
            list(&d.rate),
            list(&d.cpu),
            list(&d.side_cpu),
            median(d.busy.clone()),
        );
    }
}

/// Per-phase differences of one configuration against export off, in %.
#[derive(Default)]
struct Deltas {
    rate: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    cpu: Vec<f64>,
    /// Node CPU per message with every configuration loaded at once.
    side_cpu: Vec<f64>,
    busy: Vec<f64>,
}
