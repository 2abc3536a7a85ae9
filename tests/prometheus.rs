//! The chart's dashboard and alerts against a real Prometheus (issue 19, item 4). The chart is rendered with helm
//! (`dashboards.enabled`, `alerts.enabled`, short `for:` for the upstream-down and certificate alerts); `promtool check rules`
//! accepts the rules; a real Prometheus (Debian's `prometheus`, a foreground child on a free port, 1 s scrape and
//! evaluation) scrapes a real pushbridge with two routes, clients on three transports and a TLS listener whose
//! certificate expires in 3 days. Then, through Prometheus' HTTP API: every dashboard expression parses and returns
//! at least one series, both template variables find their values, every alert rule parses and evaluates without
//! error, the certificate alert fires, and "upstream down" fires when the test application stops and resolves when
//! it comes back.
//!
//! Needs prometheus and promtool (`apt-get install prometheus`, in .ci/run) and helm (`bash .ci/helm-check` fetches it
//! into .ci/.cache/helm-check/bin, or set HELM_BIN). Without them the test fails, unless
//! `PUSHBRIDGE_SKIP_PROMETHEUS=1` is set: then it prints a skip line and passes.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::process::{Child, Command};

use support::client::{self, Proto, get_text};
use support::proxy;
use support::upstream::SseUpstream;

const SKIP_ENV: &str = "PUSHBRIDGE_SKIP_PROMETHEUS";
/// The pod and namespace labels the test's scrape adds (a ServiceMonitor adds them in a cluster).
const POD: &str = "pushbridge-0";
const NAMESPACE: &str = "ci";
/// What `$__rate_interval` stands for (Grafana makes it at least four scrape intervals).
const RATE_INTERVAL: &str = "10s";
/// Bound on each wait for Prometheus (a scrape or an evaluation is 1 s).
const WAIT: Duration = Duration::from_secs(40);

struct Tools {
    prometheus: PathBuf,
    promtool: PathBuf,
    helm: PathBuf,
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

fn tools() -> Option<Tools> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let helm = std::env::var_os("HELM_BIN")
        .map(PathBuf::from)
        .or_else(|| Some(root.join(".ci/.cache/helm-check/bin/helm")))
        .filter(|p| p.is_file());
    let (prometheus, promtool) = (which("prometheus"), which("promtool"));
    let mut missing = Vec::new();
    for (name, found, how) in [
        (
            "prometheus",
            prometheus.is_some(),
            "apt-get install prometheus",
        ),
        ("promtool", promtool.is_some(), "apt-get install prometheus"),
        ("helm", helm.is_some(), "bash .ci/helm-check, or HELM_BIN"),
    ] {
        if !found {
            missing.push(format!("{name} ({how})"));
        }
    }
    if !missing.is_empty() {
        assert!(
            std::env::var(SKIP_ENV).is_ok_and(|v| v == "1"),
            "tests/prometheus.rs needs {} (or set {SKIP_ENV}=1 to skip it)",
            missing.join(", ")
        );
        println!(
            "prometheus test skipped ({SKIP_ENV}=1): missing {}",
            missing.join(", ")
        );
        return None;
    }
    Some(Tools {
        prometheus: prometheus?,
        promtool: promtool?,
        helm: helm?,
    })
}

/// The chart rendered with the dashboard and the alerts on: (the rules file's YAML, the dashboard JSON).
fn render(helm: &Path) -> (String, Value) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(helm)
        .args(["template", "pb"])
        .arg(root.join("helm/pushbridge"))
        .args(["--namespace", NAMESPACE, "--set"])
        .arg("alerts.enabled=true,dashboards.enabled=true,alerts.upstreamDown.for=1s,alerts.certificateExpiry.for=0s")
        .output()
        .expect("helm runs");
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let mut rules = None;
    let mut dashboard = None;
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let doc = serde_yaml::Value::deserialize(doc).expect("rendered YAML");
        match doc["kind"].as_str() {
            Some("PrometheusRule") => {
                let groups = serde_yaml::Mapping::from_iter([(
                    "groups".into(),
                    doc["spec"]["groups"].clone(),
                )]);
                rules = Some(serde_yaml::to_string(&groups).expect("YAML"));
            }
            Some("ConfigMap") if doc["metadata"]["labels"]["grafana_dashboard"] == "1" => {
                let json = doc["data"]["pushbridge.json"]
                    .as_str()
                    .expect("dashboard JSON");
                dashboard = Some(serde_json::from_str(json).expect("dashboard is JSON"));
            }
            _ => {}
        }
    }
    (
        rules.expect("a PrometheusRule"),
        dashboard.expect("a dashboard ConfigMap"),
    )
}

use serde::Deserialize as _;

/// Civil date of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year as i32, month as u8, day as u8)
}

/// A self-signed certificate for localhost that expires 3 days from now (at midnight UTC), written to `dir`.
fn expiring_cert(dir: &Path) -> (PathBuf, PathBuf, i64) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let days = now / 86_400 + 3;
    let (y, m, d) = civil_from_days(days);
    let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).expect("params");
    params.not_after = rcgen::date_time_ymd(y, m, d);
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("certificate");
    let (cert_path, key_path) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&cert_path, cert.pem()).expect("write");
    std::fs::write(&key_path, key.serialize_pem()).expect("write");
    (cert_path, key_path, days * 86_400)
}

/// Prometheus as a child process; killed when dropped.
struct Prometheus {
    addr: SocketAddr,
    _child: Child,
}

impl Prometheus {
    async fn start(binary: &Path, dir: &Path, target: SocketAddr) -> Prometheus {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let config = format!(
            "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\n\
             rule_files: [ {rules} ]\n\
             scrape_configs:\n\
             \x20 - job_name: pushbridge\n\
             \x20   static_configs:\n\
             \x20     - targets: [ \"{target}\" ]\n\
             \x20       labels: {{ pod: {POD}, namespace: {NAMESPACE} }}\n",
            rules = dir.join("rules.yml").display()
        );
        std::fs::write(dir.join("prometheus.yml"), config).expect("write");
        let child = Command::new(binary)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("prometheus starts");
        let prometheus = Prometheus {
            addr,
            _child: child,
        };
        prometheus
            .until("ready", || async {
                tokio::net::TcpStream::connect(addr).await.is_ok()
                    && get_text(addr, "/-/ready").await.0 == 200
            })
            .await;
        prometheus
    }

    /// `GET path` on the HTTP API; the JSON answer.
    async fn api(&self, path: &str) -> Value {
        let (_, body) = get_text(self.addr, path).await;
        serde_json::from_str(&body).unwrap_or_else(|_| panic!("{path}: not JSON: {body}"))
    }

    /// An instant query: (status, result vector).
    async fn query(&self, expr: &str) -> (String, Vec<Value>) {
        let q: String = form_urlencoded::byte_serialize(expr.as_bytes()).collect();
        let answer = self.api(&format!("/api/v1/query?query={q}")).await;
        let status = answer["status"].as_str().unwrap_or_default().to_owned();
        let result = answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(status == "success", "{expr}: {answer}");
        (status, result)
    }

    /// The alerts in `state` (firing, pending) named `name`.
    async fn alerts(&self, name: &str, state: &str) -> Vec<Value> {
        let answer = self.api("/api/v1/alerts").await;
        answer["data"]["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["labels"]["alertname"] == name && a["state"] == state)
            .cloned()
            .collect()
    }

    /// Polls `check` every 200 ms (Prometheus tells nothing by itself) until it holds, for at most [`WAIT`].
    async fn until<F, Fut>(&self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !check().await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "Prometheus never: {what}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_alerts_work_against_a_real_prometheus() {
    let Some(tools) = tools() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let (rules, dashboard) = render(&tools.helm);
    std::fs::write(dir.path().join("rules.yml"), &rules).expect("write");
    let check = std::process::Command::new(&tools.promtool)
        .args(["check", "rules"])
        .arg(dir.path().join("rules.yml"))
        .output()
        .expect("promtool runs");
    assert!(
        check.status.success(),
        "promtool check rules:\n{}",
        String::from_utf8_lossy(&check.stdout)
    );

    // pushbridge: two routes, a TLS listener whose certificate expires in 3 days, clients on three transports.
    let (ticks, feed) = (
        SseUpstream::start(true).await,
        SseUpstream::start(true).await,
    );
    let (cert, key, not_after) = expiring_cert(dir.path());
    let yaml = format!(
        r#"
listen:
  - address: "127.0.0.1:0"
  - address: "127.0.0.1:0"
    tls: {{ cert: "{cert}", key: "{key}" }}
admin: {{ address: "127.0.0.1:0" }}
streams:
  - name: ticks
    path: /ticks/{{channel}}
    upstream: {{ url: "http://{ticks}/up/{{channel}}", reconnect: {{ initial: 100ms, max: 300ms }} }}
    idle_timeout: 1m
  - name: feed
    path: /feed/{{room}}
    upstream: {{ url: "http://{feed}/up/{{room}}" }}
    idle_timeout: 1m
"#,
        cert = cert.display(),
        key = key.display(),
        ticks = ticks.addr,
        feed = feed.addr,
    );
    let proxy = proxy::start(&yaml).await;
    let addr = proxy.addr();
    let mut h1 = client::connect(addr, Proto::H1).await;
    let mut sse = h1.sse(addr, "/ticks/a", None).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ticks/a"))
        .await
        .expect("WebSocket opens");
    let mut h2 = client::connect(addr, Proto::H2).await;
    let mut feed_sse = h2.sse(addr, "/feed/lobby", None).await;
    ticks.wait_connections(1).await;
    feed.wait_connections(1).await;
    // Events all along, read by every client, so rates and the latency histogram have data.
    let ticks = std::sync::Arc::new(ticks);
    let publisher = {
        let (ticks, feed) = (ticks.clone(), std::sync::Arc::new(feed));
        tokio::spawn(async move {
            for i in 0.. {
                ticks.publish(format!("t{i}"));
                feed.publish(format!("f{i}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let readers = tokio::spawn(async move {
        use futures_util::StreamExt;
        loop {
            tokio::select! {
                e = sse.next_event() => if e.is_none() { break },
                e = feed_sse.next_event() => if e.is_none() { break },
                m = ws.next() => if m.is_none() { break },
            }
        }
    });
    // A long-poll held on feed (a third transport).
    let uri = format!("http://{addr}/feed/lobby?transport=long-poll");
    let poll = tokio::spawn(async move {
        loop {
            let _ = h2
                .send(
                    http::Request::get(uri.clone())
                        .body(client::empty())
                        .expect("request"),
                )
                .await;
        }
    });

    let prometheus = Prometheus::start(&tools.prometheus, dir.path(), proxy.admin()).await;
    // Enough samples for every rate window of the dashboard (RATE_INTERVAL) and the rules.
    prometheus
        .until("5 scrapes of pushbridge", || async {
            let (_, r) = prometheus
                .query("count_over_time(up{job=\"pushbridge\"}[1m]) >= 5")
                .await;
            !r.is_empty()
        })
        .await;
    let (_, up) = prometheus.query("up{job=\"pushbridge\"}").await;
    assert_eq!(up[0]["value"][1], "1", "{up:?}");

    // The dashboard: template variables, then every panel's expressions as Grafana would send them.
    for (variable, want) in [("pod", vec![POD]), ("route", vec!["feed", "ticks"])] {
        let def = dashboard["templating"]["list"]
            .as_array()
            .and_then(|l| l.iter().find(|v| v["name"] == variable))
            .and_then(|v| v["definition"].as_str())
            .expect("variable");
        let metric = def
            .strip_prefix("label_values(")
            .and_then(|r| r.split(',').next())
            .expect("label_values(metric, label)");
        let answer = prometheus
            .api(&format!("/api/v1/label/{variable}/values?match[]={metric}"))
            .await;
        assert_eq!(answer["data"], serde_json::json!(want), "{def}");
    }
    let mut exprs = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            let expr = expr
                .replace("$__rate_interval", RATE_INTERVAL)
                .replace("$pod", POD)
                .replace("$route", "ticks|feed");
            let (_, result) = prometheus.query(&expr).await;
            assert!(
                !result.is_empty(),
                "panel {:?}: no series from {expr}",
                panel["title"]
            );
            exprs += 1;
        }
    }
    println!("{exprs} dashboard expressions returned series");

    // Every alert rule parses as a query and evaluates without error; only the certificate alert fires.
    let rules: serde_yaml::Value = serde_yaml::from_str(&rules).expect("rules");
    let alerts = rules["groups"][0]["rules"].as_sequence().expect("rules");
    assert_eq!(alerts.len(), 7);
    for rule in alerts {
        prometheus.query(rule["expr"].as_str().expect("expr")).await;
    }
    prometheus
        .until("every rule evaluated without error", || async {
            let answer = prometheus.api("/api/v1/rules").await;
            let rules = answer["data"]["groups"][0]["rules"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            rules.len() == 7
                && rules
                    .iter()
                    .all(|r| r["health"] == "ok" && r["lastEvaluation"] != "0001-01-01T00:00:00Z")
        })
        .await;
    prometheus
        .until("the certificate alert fires", || async {
            !prometheus
                .alerts("PushbridgeCertificateExpiring", "firing")
                .await
                .is_empty()
        })
        .await;
    let (_, expiry) = prometheus
        .query("pushbridge_tls_cert_expiry_timestamp_seconds")
        .await;
    assert_eq!(expiry[0]["value"][1], not_after.to_string(), "{expiry:?}");
    let answer = prometheus.api("/api/v1/alerts").await;
    let firing: Vec<&str> = answer["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["labels"]["alertname"].as_str())
        .collect();
    assert_eq!(firing, ["PushbridgeCertificateExpiring"], "{answer}");

    // The application of route ticks stops: "upstream down" fires for ticks (only); it comes back: resolved.
    ticks.kill();
    prometheus
        .until("PushbridgeUpstreamDown fires for ticks", || async {
            let firing = prometheus.alerts("PushbridgeUpstreamDown", "firing").await;
            firing.len() == 1 && firing[0]["labels"]["route"] == "ticks"
        })
        .await;
    ticks.restart().await;
    prometheus
        .until("PushbridgeUpstreamDown resolves", || async {
            prometheus
                .alerts("PushbridgeUpstreamDown", "firing")
                .await
                .is_empty()
                && prometheus
                    .alerts("PushbridgeUpstreamDown", "pending")
                    .await
                    .is_empty()
        })
        .await;
    publisher.abort();
    readers.abort();
    poll.abort();
}
