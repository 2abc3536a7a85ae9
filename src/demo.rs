//! `pushbridge demo`: a self-contained tour. Starts an in-process ticker application (an SSE upstream plus the
//! demo page), then the proxy on HTTPS (a self-signed certificate made at start) and HTTP in front of it.

pub mod ticker;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::BoxError;
use crate::config::Config;

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Address to bind the demo's listeners to.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub bind: IpAddr,
    /// HTTPS port (self-signed certificate).
    #[arg(long, default_value_t = 8443)]
    pub https_port: u16,
    /// Plain HTTP port.
    #[arg(long, default_value_t = 8080)]
    pub http_port: u16,
    /// Admin port (/status, /metrics, /healthz, /readyz).
    #[arg(long, default_value_t = 9090)]
    pub admin_port: u16,
    /// Time between ticks.
    #[arg(long, default_value = "1s", value_parser = crate::config::parse_duration)]
    pub interval: Duration,
}

/// Runs the demo until Ctrl-C (or SIGTERM), then drains.
pub async fn run(args: DemoArgs) -> Result<(), BoxError> {
    let app = ticker::start(
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
        args.interval,
    )
    .await?;
    let dir = std::env::temp_dir().join(format!("pushbridge-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (cert, key) = crate::tls::self_signed(&["localhost", "127.0.0.1", "::1"])?;
    std::fs::write(dir.join("demo.crt"), cert)?;
    std::fs::write(dir.join("demo.key"), key)?;
    let yaml = config_yaml(&args, app, &dir, crate::fds::soft_limit());
    let config = Config::parse("<demo>", &yaml)?;
    let mut signals = crate::shutdown::signals()?;
    let running = crate::app::start(config)
        .await
        .map_err(|error| -> BoxError {
            format!("{error} (choose other ports with --https-port, --http-port and --admin-port)")
                .into()
        })?;
    // The bound addresses (a port given as 0 is chosen by the OS).
    let (https, http) = (running.listen_addrs()[0], running.listen_addrs()[1]);
    let admin = running
        .admin_addr()
        .map_or_else(|| "-".to_owned(), |a| a.to_string());
    println!(
        "\npushbridge demo is running (Ctrl-C to stop)\n\
         \n  page (HTTPS, self-signed):  https://{https}/\
         \n  page (HTTP):                http://{http}/\
         \n  status:                     http://{admin}/status\
         \n  metrics:                    http://{admin}/metrics\
         \n\nTry the stream from a terminal:\
         \n  curl -N -H 'Accept: text/event-stream' http://{http}/events/demo\
         \n  curl -kN -H 'Accept: text/event-stream' https://{https}/events/demo\
         \n  curl --http2-prior-knowledge -N -H 'Accept: text/event-stream' http://{http}/events/demo\
         \n  curl 'http://{http}/events/demo?last_event_id=1'      # long-poll\n"
    );
    while let Some(signal) = signals.recv().await {
        if signal == crate::shutdown::Signal::Drain {
            break;
        }
    }
    running.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The demo's config; `open_files`: the open-file limit its limits are sized to.
fn config_yaml(
    args: &DemoArgs,
    app: SocketAddr,
    dir: &std::path::Path,
    open_files: Option<u64>,
) -> String {
    let https = SocketAddr::new(args.bind, args.https_port);
    let http = SocketAddr::new(args.bind, args.http_port);
    let admin = SocketAddr::new(args.bind, args.admin_port);
    let cert = dir.join("demo.crt");
    let key = dir.join("demo.key");
    format!(
        r#"
listen:
  - address: "{https}"
    tls: {{ cert: "{cert}", key: "{key}" }}
  - address: "{http}"
admin: {{ address: "{admin}" }}
passthrough: {{ upstream: "http://{app}" }}
streams:
  - name: demo
    path: /events/{{channel}}
    upstream: {{ url: "http://{app}/internal/events/{{channel}}", kind: sse }}
    buffer: {{ events: 100, age: 5m }}
    heartbeat: 15s
shutdown: {{ grace: 5s }}
{limits}"#,
        cert = cert.display(),
        key = key.display(),
        limits = limits_for(open_files),
    )
}

/// The demo's `limits`, sized to the open-file limit so its own defaults never trigger the start-up WARN about it:
/// a quarter of what is left after the spare descriptors for streams (at most 1000), the rest for connections.
fn limits_for(open_files: Option<u64>) -> String {
    let Some(limit) = open_files else {
        return String::new();
    };
    let room = limit.saturating_sub(crate::fds::reserve(limit)).max(2);
    let streams = (room / 4).clamp(1, 1000);
    let connections = (room - streams).min(100_000);
    format!("limits: {{ max_connections: {connections}, max_streams: {streams} }}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_fits_any_open_file_limit() {
        let args = DemoArgs {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            https_port: 0,
            http_port: 0,
            admin_port: 0,
            interval: Duration::from_secs(1),
        };
        let app = SocketAddr::from(([127, 0, 0, 1], 1));
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = crate::tls::self_signed(&["localhost"]).expect("certificate");
        std::fs::write(dir.path().join("demo.crt"), cert).expect("write");
        std::fs::write(dir.path().join("demo.key"), key).expect("write");
        for limit in [64, 256, 1024, 4096, 65_536, 1 << 20] {
            let yaml = config_yaml(&args, app, dir.path(), Some(limit));
            let config = Config::parse("<demo>", &yaml).expect("the demo's config is valid");
            assert_eq!(
                crate::fds::warning(&config.limits, limit),
                None,
                "{limit}: {yaml}"
            );
        }
    }
}
