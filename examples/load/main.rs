//! `load`: a whole-process load tool for pushbridge, loopback only. It can be the upstream (an SSE source, or a
//! publisher that POSTs to a broker), the clients, or both in one invocation:
//!
//! ```sh
//! cargo run --release --example load -- --upstream 127.0.0.1:9001 --rate 10 --size 200 --serve-for 5m
//! cargo run --release --example load -- --target http://127.0.0.1:8080/events/bench --transport sse \
//!     --clients 1000 --duration 10s --pid "$(pgrep -n pushbridge)"
//! ```
//!
//! Clients connect (at most `--connect-concurrency` at a time), then, once all are connected and `--settle` has
//! passed, events are counted for `--duration`: events/s delivered in total, delivery latency (the `ts=` the source
//! wrote into each event's data to the client's receipt), errors, and missing and duplicated events (from the
//! `seq=` the source numbers events with; see `stats`). With `--pid` (one or more, comma-separated), those
//! processes' summed RSS before the clients connect and after, and their CPU time over the window, are reported
//! too. SSE clients can also use TLS (`--tls --ca FILE`; `--write-cert DIR` makes a dev certificate for the
//! server) or share HTTP/2 connections (`--h2 --streams-per-conn K`). WebSocket clients can offer permessage-deflate
//! and inflate (`--ws-offer`, the tool's own client in `wsdeflate`), and the source can send JSON events that
//! compress like real ones (`--payload json`). See docs/BENCHMARKS.md.

mod clients;
mod h1sse;
mod stats;
mod upstream;
mod wsdeflate;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use clients::{H2Pool, Shared, Target, Transport};
use stats::{Percentiles, Window};

type BoxError = pushbridge::BoxError;

/// Most clients one run may open.
const MAX_CLIENTS: u32 = 20_000;
/// Longest measurement window or upstream lifetime.
const MAX_DURATION: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, Parser)]
#[command(about = "Load tool for pushbridge (loopback only)")]
struct Args {
    /// Stream URL the clients connect to, e.g. http://127.0.0.1:8080/events/bench.
    #[arg(long)]
    target: Option<http::Uri>,
    #[arg(long, value_enum, default_value = "sse")]
    transport: Transport,
    /// Number of clients.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_CLIENTS)))]
    clients: u32,
    /// Measurement window, after every client has connected.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Wait this long after the last client connected before measuring (lets held long-polls reach the server).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    settle: Duration,
    /// Connection attempts in flight at once.
    #[arg(long, default_value_t = 200)]
    connect_concurrency: usize,
    /// Give up waiting for all clients to connect after this long (the window then opens anyway).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    connect_timeout: Duration,
    /// Processes to sample, summed (RSS from /proc/PID/status, CPU from /proc/PID/stat): pushbridge, or Nginx's
    /// workers. Repeat the flag or give a comma-separated list.
    #[arg(long, value_delimiter = ',')]
    pid: Vec<u32>,
    /// Events the source stamped in the window's last `--grace` are not owed (they may still be in flight).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    grace: Duration,
    /// SSE over TLS (an https:// target; HTTP/1.1 by ALPN), trusting the webpki roots and `--ca`.
    #[arg(long)]
    tls: bool,
    /// Extra CA certificate (PEM) for `--tls`, e.g. the one `--write-cert` wrote.
    #[arg(long, requires = "tls")]
    ca: Option<std::path::PathBuf>,
    /// SSE as HTTP/2 streams over prior-knowledge h2c connections shared by `--streams-per-conn` clients each.
    #[arg(long, conflicts_with = "tls")]
    h2: bool,
    #[arg(long, default_value_t = 100, requires = "h2", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    streams_per_conn: u32,
    /// Write a self-signed certificate for localhost and 127.0.0.1 (cert.pem, key.pem) into this directory, exit.
    #[arg(long)]
    write_cert: Option<std::path::PathBuf>,
    /// Serve an SSE upstream on this address (any path gets the same live stream).
    #[arg(long)]
    upstream: Option<SocketAddr>,
    /// Instead of serving, POST each event's data to this URL (e.g. an Nchan publisher location).
    #[arg(long, conflicts_with = "upstream")]
    publish: Option<http::Uri>,
    /// Events per second from the upstream or publisher.
    #[arg(long, default_value_t = 10)]
    rate: u32,
    /// With --publish: concurrent publishing connections sharing --rate (each numbers its own events).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    publishers: u16,
    /// Bytes of data per event.
    #[arg(long, default_value_t = 200)]
    size: usize,
    /// What the data is: the stamps padded with `x`, or a JSON document of about --size bytes.
    #[arg(long, value_enum, default_value = "text")]
    payload: upstream::Shape,
    /// With --publish: post the data as is (Nchan), or wrapped in Pushpin's publish API.
    #[arg(long, value_enum, default_value = "plain")]
    publish_format: upstream::PublishFormat,
    /// WebSocket clients of the load tool's own (not tungstenite) that offer this Sec-WebSocket-Extensions value
    /// and inflate permessage-deflate messages; "" offers nothing (the same client, for the uncompressed side).
    /// A browser offers "permessage-deflate; client_max_window_bits".
    #[arg(long)]
    ws_offer: Option<String>,
    /// The source writes one `<seq> <ts>` line (`<seq> <ts> <publisher>` with --publish) per event it publishes to
    /// this file; the clients read it at the
    /// window's end to know which events every client owes (without it: the span as the clients saw it).
    #[arg(long)]
    seq_log: Option<std::path::PathBuf>,
    /// Without --target: how long to serve the upstream (or publish) before exiting.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    serve_for: Duration,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

/// The outcome of one client run.
#[derive(Debug, serde::Serialize)]
struct Report {
    transport: String,
    /// `h1`, `tls` or `h2`.
    protocol: &'static str,
    clients: u32,
    /// TCP connections the clients use (fewer than clients with `--h2`).
    connections: u64,
    connected: u64,
    connect_seconds: f64,
    window_seconds: f64,
    events: u64,
    events_per_second: f64,
    /// Mean events per client per second (compare with --rate).
    per_client_rate: f64,
    latency_ms: Percentiles,
    errors: u64,
    /// Events owed to every client: those the source stamped between the window's opening and its end − grace.
    owed_per_client: u64,
    /// The source's rate in that span (owed_per_client / span seconds): below --rate when it was throttled.
    published_per_second: f64,
    /// Owed events that a client did not receive before the window closed, over all clients.
    missing: u64,
    /// Events received again (seq not above the client's last), over all clients, from connect to close.
    duplicated: u64,
    grace_seconds: f64,
    target_rss_kib_before: Option<u64>,
    target_rss_kib_connected: Option<u64>,
    target_rss_kib_end: Option<u64>,
    kib_per_connection: Option<f64>,
    /// RSS growth per TCP connection (differs from kib_per_connection, which is per client, only with --h2).
    kib_per_tcp_connection: Option<f64>,
    target_cpu_percent: Option<f64>,
    /// The sampled processes' CPU time over the window per event delivered in it.
    target_cpu_us_per_event: Option<f64>,
    load_tool_cpu_percent: Option<f64>,
    /// With `--publish` and `--target`: each accepted post's round trip (the publisher's, from start to end).
    publish_latency_ms: Option<Percentiles>,
    /// With `--publish` and `--target`: posts that failed (not accepted: not owed to clients).
    publish_failures: Option<u64>,
    /// WebSocket: clients whose server accepted permessage-deflate (with `--ws-offer`; counted once per client).
    ws_deflate_clients: u64,
    /// WebSocket messages received in the window: mean payload bytes as sent (compressed or not), as read
    /// (inflated), and how many were compressed.
    ws_wire_bytes_per_message: Option<f64>,
    ws_message_bytes_per_message: Option<f64>,
    ws_compressed_messages: u64,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build();
    let result = runtime
        .map_err(BoxError::from)
        .and_then(|rt| rt.block_on(run(args)));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("load: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), BoxError> {
    if args.duration > MAX_DURATION || args.serve_for > MAX_DURATION {
        return Err(format!("durations are capped at {MAX_DURATION:?}").into());
    }
    if let Some(dir) = &args.write_cert {
        let (cert, key) = pushbridge::tls::self_signed(&["localhost", "127.0.0.1"])?;
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("cert.pem"), cert)?;
        std::fs::write(dir.join("key.pem"), key)?;
        return Ok(());
    }
    let stop_source = CancellationToken::new();
    let source = start_source(&args, stop_source.clone()).await?;
    let Some(target) = &args.target else {
        if source.is_none() {
            return Err("nothing to do: give --target, --upstream or --publish".into());
        }
        tokio::select! {
            () = tokio::time::sleep(args.serve_for) => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        stop_source.cancel();
        return Ok(());
    };
    let target = parse_target(target, &args)?;
    let mut report = drive(&args, target).await;
    stop_source.cancel();
    if let Some(source) = source
        && let Ok(Some((failures, latencies))) = source.await
    {
        report.publish_failures = Some(failures);
        report.publish_latency_ms = Some(Percentiles::of(latencies));
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

/// A publisher's failed posts and accepted posts' round trips (µs).
type Published = (u64, Vec<u32>);

/// Starts the upstream server or the publisher, if asked for.
async fn start_source(
    args: &Args,
    stop: CancellationToken,
) -> Result<Option<tokio::task::JoinHandle<Option<Published>>>, BoxError> {
    let (rate, size) = (args.rate, args.size);
    let payload = upstream::Payload {
        size,
        shape: args.payload,
    };
    let log = match (
        &args.seq_log,
        args.upstream.is_some() || args.publish.is_some(),
    ) {
        (Some(path), true) => Some(upstream::SeqLog::create(path)?),
        _ => None,
    };
    if let Some(addr) = args.upstream {
        loopback(addr.ip())?;
        let listener = tokio::net::TcpListener::bind(addr).await?;
        eprintln!(
            "upstream: serving SSE on http://{} ({rate} events/s of {size} B)",
            listener.local_addr()?
        );
        let serve = upstream::serve(listener, rate, payload, log, stop);
        return Ok(Some(tokio::spawn(async move {
            serve.await;
            None
        })));
    }
    if let Some(url) = &args.publish {
        let addr = authority(url)?;
        let url = url.clone();
        let publishers = usize::from(args.publishers);
        eprintln!(
            "publisher: POSTing to {url} ({rate} events/s of {size} B from {publishers} connections)"
        );
        let to = upstream::PublishTo {
            url,
            addr,
            format: args.publish_format,
        };
        return Ok(Some(tokio::spawn(async move {
            let (failures, latencies) =
                upstream::publish(to, rate, publishers, payload, log, stop).await;
            if failures > 0 {
                eprintln!("publisher: {failures} failed posts");
            }
            Some((failures, latencies))
        })));
    }
    Ok(None)
}

fn parse_target(uri: &http::Uri, args: &Args) -> Result<Target, BoxError> {
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    if args.ws_offer.is_some() && args.transport != Transport::Ws {
        return Err("--ws-offer is for --transport ws".into());
    }
    if (args.tls || args.h2) && args.transport != Transport::Sse {
        return Err("--tls and --h2 are for --transport sse".into());
    }
    if args.tls != (uri.scheme_str() == Some("https")) {
        return Err(format!("{uri}: --tls goes with an https:// target, and only with one").into());
    }
    let tls = if args.tls {
        let mut config = pushbridge::tls::client_config(args.ca.as_deref())?;
        config.alpn_protocols = vec![pushbridge::tls::ALPN_HTTP11.to_vec()];
        Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
    } else {
        None
    };
    Ok(Target {
        addr: authority(uri)?,
        path,
        transport: args.transport,
        tls,
        h2: args
            .h2
            .then(|| H2Pool::new(args.clients, args.streams_per_conn)),
        ws_offer: args.ws_offer.clone(),
    })
}

/// The loopback socket address of an `http://` (or `https://`) URL.
fn authority(uri: &http::Uri) -> Result<SocketAddr, BoxError> {
    if uri
        .scheme_str()
        .is_some_and(|s| !matches!(s, "http" | "ws" | "https"))
    {
        return Err(format!("{uri}: only http:// (ws://, https://) on loopback").into());
    }
    let default_port = if uri.scheme_str() == Some("https") {
        443
    } else {
        80
    };
    let host = uri.host().ok_or_else(|| format!("{uri}: no host"))?;
    let ip: IpAddr = match host {
        "localhost" => IpAddr::from([127, 0, 0, 1]),
        _ => host.trim_matches(['[', ']']).parse()?,
    };
    loopback(ip)?;
    Ok(SocketAddr::new(ip, uri.port_u16().unwrap_or(default_port)))
}

fn loopback(ip: IpAddr) -> Result<(), BoxError> {
    if ip.is_loopback() {
        Ok(())
    } else {
        Err(format!("{ip} is not a loopback address").into())
    }
}

/// Connects every client, measures for `--duration`, stops them and gathers the report.
async fn drive(args: &Args, target: Target) -> Report {
    let window = Window::default();
    let stop = CancellationToken::new();
    let (protocol, connections) = match &target.h2 {
        Some(pool) => ("h2", pool.connections() as u64),
        None if target.tls.is_some() => ("tls", u64::from(args.clients)),
        None => ("h1", u64::from(args.clients)),
    };
    let (connected_tx, mut connected_rx) = mpsc::unbounded_channel();
    let shared = Shared {
        target,
        window: window.clone(),
        stop: stop.clone(),
        connecting: Arc::new(Semaphore::new(args.connect_concurrency.max(1))),
        connected: connected_tx,
    };
    let rss_before = stats::rss_kib_sum(&args.pid);
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.clients)
        .map(|index| tokio::spawn(clients::run(shared.clone(), index)))
        .collect();
    drop(shared);
    let mut connected = 0u64;
    let deadline = tokio::time::sleep(args.connect_timeout);
    tokio::pin!(deadline);
    while connected < u64::from(args.clients) {
        tokio::select! {
            () = &mut deadline => break,
            Some(()) = connected_rx.recv() => connected += 1,
        }
    }
    let connect_seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "load: {connected}/{} clients connected in {connect_seconds:.1}s",
        args.clients
    );
    tokio::time::sleep(args.settle).await;
    let rss_connected = stats::rss_kib_sum(&args.pid);
    let cpu_start = (stats::cpu_time_sum(&args.pid), stats::cpu_time("self"));
    window.open(args.duration, args.grace);
    let opened = Instant::now();
    tokio::time::sleep(args.duration).await;
    window.close();
    let window_seconds = opened.elapsed().as_secs_f64();
    let cpu_end = (stats::cpu_time_sum(&args.pid), stats::cpu_time("self"));
    let rss_end = stats::rss_kib_sum(&args.pid);
    stop.cancel();
    let mut errors = 0;
    let mut tallies = Vec::with_capacity(tasks.len());
    for task in tasks {
        match task.await {
            Ok(tally) => tallies.push(tally),
            Err(_) => errors += 1,
        }
    }
    let published = match &args.seq_log {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(log) => Some(window.owed_range(&log)),
            Err(error) => {
                eprintln!("load: {}: {error}", path.display());
                None
            }
        },
        None => None,
    };
    let (missing, owed_per_client) = stats::missing(tallies.iter(), published);
    let duplicated = tallies.iter().map(|t| t.duplicated).sum();
    let ws_deflate_clients = tallies.iter().filter(|t| t.deflate_sessions > 0).count() as u64;
    let wire_bytes: u64 = tallies.iter().map(|t| t.wire_bytes).sum();
    let message_bytes: u64 = tallies.iter().map(|t| t.message_bytes).sum();
    let ws_compressed_messages = tallies.iter().map(|t| t.compressed).sum();
    let mut events = 0;
    let mut latencies = Vec::with_capacity(tallies.iter().map(|t| t.latencies.len()).sum());
    for tally in tallies {
        events += tally.events;
        errors += tally.errors;
        latencies.extend(tally.latencies);
    }
    let span_seconds = args.duration.saturating_sub(args.grace).as_secs_f64();
    let percent = |start: Option<Duration>, end: Option<Duration>| {
        Some((end?.saturating_sub(start?)).as_secs_f64() / window_seconds * 100.0)
    };
    let kib_per_connection = match (rss_before, rss_connected) {
        (Some(before), Some(after)) if connected > 0 => {
            Some((after as f64 - before as f64) / connected as f64)
        }
        _ => None,
    };
    let cpu_seconds = cpu_start
        .0
        .zip(cpu_end.0)
        .map(|(start, end)| end.saturating_sub(start).as_secs_f64());
    Report {
        transport: args.transport.name().to_owned(),
        protocol,
        clients: args.clients,
        connections,
        connected,
        connect_seconds,
        window_seconds,
        events,
        events_per_second: events as f64 / window_seconds,
        per_client_rate: events as f64 / window_seconds / connected.max(1) as f64,
        latency_ms: Percentiles::of(latencies),
        errors,
        owed_per_client,
        published_per_second: if span_seconds > 0.0 {
            owed_per_client as f64 / span_seconds
        } else {
            0.0
        },
        missing,
        duplicated,
        grace_seconds: args.grace.as_secs_f64(),
        target_rss_kib_before: rss_before,
        target_rss_kib_connected: rss_connected,
        target_rss_kib_end: rss_end,
        kib_per_connection,
        kib_per_tcp_connection: kib_per_connection
            .map(|kib| kib * connected as f64 / (connections.min(connected).max(1)) as f64),
        target_cpu_percent: percent(cpu_start.0, cpu_end.0),
        target_cpu_us_per_event: cpu_seconds
            .filter(|_| events > 0)
            .map(|s| s * 1e6 / events as f64),
        load_tool_cpu_percent: percent(cpu_start.1, cpu_end.1),
        publish_latency_ms: None,
        publish_failures: None,
        ws_deflate_clients,
        ws_wire_bytes_per_message: (events > 0).then(|| wire_bytes as f64 / events as f64),
        ws_message_bytes_per_message: (events > 0).then(|| message_bytes as f64 / events as f64),
        ws_compressed_messages,
    }
}

fn print_report(r: &Report) {
    let opt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
    let kib = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
    println!("transport         {} over {}", r.transport, r.protocol);
    println!(
        "clients           {} connected of {} (in {:.1}s) over {} TCP connections",
        r.connected, r.clients, r.connect_seconds, r.connections
    );
    println!(
        "events            {} in {:.1}s = {:.0}/s total, {:.2}/s per client",
        r.events, r.window_seconds, r.events_per_second, r.per_client_rate
    );
    let l = r.latency_ms;
    println!(
        "latency ms        p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        l.p50, l.p90, l.p99, l.max
    );
    println!("errors            {}", r.errors);
    if let (Some(p), Some(failures)) = (r.publish_latency_ms, r.publish_failures) {
        println!(
            "publish ms        p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}  ({failures} failed)",
            p.p50, p.p90, p.p99, p.max
        );
    }
    println!(
        "owed events       {} per client ({:.0}/s published)  missing {}  duplicated {}",
        r.owed_per_client, r.published_per_second, r.missing, r.duplicated
    );
    println!(
        "target RSS KiB    before {}  connected {}  end {}  => {} KiB/connection",
        kib(r.target_rss_kib_before),
        kib(r.target_rss_kib_connected),
        kib(r.target_rss_kib_end),
        opt(r.kib_per_connection)
    );
    if let (Some(wire), Some(message)) =
        (r.ws_wire_bytes_per_message, r.ws_message_bytes_per_message)
    {
        println!(
            "ws payload        {wire:.1} B per message on the wire, {message:.1} B read ({} compressed; {} clients with permessage-deflate)",
            r.ws_compressed_messages, r.ws_deflate_clients
        );
    }
    println!(
        "CPU %             target {}  load tool {}  (target {} µs per event)",
        opt(r.target_cpu_percent),
        opt(r.load_tool_cpu_percent),
        opt(r.target_cpu_us_per_event)
    );
}
