//! `handshakes`: a TLS handshake load client for `benches/tls-handshakes.sh`, loopback only. It opens `--count`
//! connections to `--target`, `--concurrency` at a time; on each it completes a TLS 1.3 handshake, sends one
//! `GET /` with `connection: close` and reads the answer to its end (so the session tickets the server sends after
//! the handshake arrive), then closes. `--resume` keeps the tickets and offers one on every connection (one
//! connection first, outside the count, fetches the first); otherwise every handshake is full. Prints one JSON
//! line: connections, how many resumed, failures, seconds.
//!
//! ```sh
//! cargo run --release --example handshakes -- --target 127.0.0.1:28443 --ca ca.pem --count 5000 --concurrency 32
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use clap::Parser;
use rustls::client::Resumption;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, HandshakeKind, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

#[derive(Debug, Parser)]
#[command(about = "TLS 1.3 handshake load client (loopback only)")]
struct Args {
    /// Server address, e.g. 127.0.0.1:28443.
    #[arg(long)]
    target: SocketAddr,
    /// CA certificate (PEM) the server's chain ends in.
    #[arg(long)]
    ca: PathBuf,
    /// Name to ask for (SNI) and check the certificate against.
    #[arg(long, default_value = "localhost")]
    name: String,
    /// Connections to open.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    count: u64,
    /// Connections in flight at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1000))]
    concurrency: u64,
    /// Resume sessions by ticket (else every handshake is full).
    #[arg(long)]
    resume: bool,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> Result<(), BoxError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&args.ca)? {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = if args.resume {
        Resumption::in_memory_sessions(4096)
    } else {
        Resumption::disabled()
    };
    let connector = TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from(args.name.clone())?;
    if args.resume {
        connection(&connector, args.target, &name).await?;
    }
    let next = Arc::new(AtomicUsize::new(0));
    let resumed = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let count = usize::try_from(args.count)?;
    let start = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency {
        let (connector, name) = (connector.clone(), name.clone());
        let (next, resumed, failed) = (next.clone(), resumed.clone(), failed.clone());
        workers.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < count {
                match connection(&connector, args.target, &name).await {
                    Ok(HandshakeKind::Resumed) => resumed.fetch_add(1, Ordering::Relaxed),
                    Ok(_) => 0,
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        });
    }
    while let Some(joined) = workers.join_next().await {
        joined?;
    }
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{{\"connections\":{count},\"resumed\":{},\"failed\":{},\"seconds\":{seconds:.3},\"per_second\":{:.1}}}",
        resumed.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        count as f64 / seconds
    );
    Ok(())
}

/// One connection: handshake, one request, the answer to its end. How the handshake went.
async fn connection(
    connector: &TlsConnector,
    target: SocketAddr,
    name: &ServerName<'static>,
) -> Result<HandshakeKind, BoxError> {
    let tcp = TcpStream::connect(target).await?;
    tcp.set_nodelay(true)?;
    let mut tls = connector.connect(name.clone(), tcp).await?;
    let kind = tls
        .get_ref()
        .1
        .handshake_kind()
        .ok_or("handshake not complete")?;
    tls.write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await?;
    tls.flush().await?;
    let mut answer = Vec::with_capacity(1024);
    // The end may come without a close_notify; the answer is all that matters.
    let _ = tls.read_to_end(&mut answer).await;
    if !answer.starts_with(b"HTTP/1.1 ") {
        return Err("no HTTP answer".into());
    }
    Ok(kind)
}
