//! The event source: either an SSE upstream that pushbridge connects to (`--upstream ADDR`: every `GET` gets the
//! same live `text/event-stream`, WHATWG HTML §9.2.5), or a publisher that `POST`s each event's data to a URL
//! (`--publish URL`, for brokers such as Nginx + Nchan or Pushpin, from `--publishers N` connections sharing
//! `--rate`). Each event's data is `[src=<p> ]seq=<n> ts=<unix µs> ` padded with `x` to `--size` bytes, or a JSON
//! document of about `--size` bytes carrying those stamps (`--payload json`): `n` counts 1, 2, … per
//! tick of the source (an SSE upstream also sends it as the `id:`), or per post of publisher `p`, and the time is
//! taken when the event is sent.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, broadcast};
use tokio::time::MissedTickBehavior;
use tokio_stream::wrappers::BroadcastStream;
use tokio_util::sync::CancellationToken;

use crate::stats::{SEQ_MARKER, SRC_MARKER, TS_MARKER, now_micros};

type BoxError = pushbridge::BoxError;

/// What each event's data looks like (`--size` bytes, `--payload`).
#[derive(Debug, Clone, Copy)]
pub struct Payload {
    pub size: usize,
    pub shape: Shape,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shape {
    /// The stamps padded with `x` (compresses to almost nothing).
    Text,
    /// A JSON order-book snapshot with pseudo-random prices and quantities, the stamps in its `"id"`: compresses
    /// about as real JSON events do (4× at 1 KiB).
    Json,
}

/// Event data carrying its source (one of several publishers), `seq` and the current time, and that time.
fn data(src: Option<usize>, seq: u64, payload: Payload) -> (String, u64) {
    let ts = now_micros();
    let src = src.map(|p| format!("{SRC_MARKER}{p}")).unwrap_or_default();
    let stamps = format!("{src}{SEQ_MARKER}{seq} {TS_MARKER}{ts} ");
    let size = payload.size;
    let data = match payload.shape {
        Shape::Text => {
            let mut data = stamps;
            if data.len() < size {
                data.extend(std::iter::repeat_n('x', size - data.len()));
            }
            data
        }
        Shape::Json => order_book(&stamps, seq, size),
    };
    (data, ts)
}

/// `{"id":"<stamps>","symbol":"ACME","bids":[{"price":101.37,"qty":1234,"venue":"X1"},…]}` with as many bids as
/// bring it to about `size` bytes (never more than one bid over).
fn order_book(stamps: &str, seq: u64, size: usize) -> String {
    use std::fmt::Write;
    // xorshift64*, seeded by seq: every event differs, every run is the same.
    let mut state = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut out = format!(r#"{{"id":"{stamps}","symbol":"ACME","bids":["#);
    let mut k = 0;
    while out.len() + 3 < size {
        let r = next();
        if k > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            r#"{{"price":{}.{:02},"qty":{},"venue":"X{}"}}"#,
            100 + r % 5,
            (r >> 8) % 100,
            (r >> 16) % 5000,
            k % 4
        );
        k += 1;
    }
    out.push_str("]}");
    out
}

/// Where and how `--publish` posts.
#[derive(Debug, Clone)]
pub struct PublishTo {
    pub url: http::Uri,
    /// The URL's loopback socket address.
    pub addr: SocketAddr,
    pub format: PublishFormat,
}

/// How `--publish` posts an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PublishFormat {
    /// The data as the body (`text/plain`): Nchan's publisher location.
    Plain,
    /// Pushpin's HTTP publish API: `{"items":[{"channel":"bench","formats":{"ws-message":{"content":DATA}}}]}`.
    Pushpin,
}

/// The source's record of what it published (`--seq-log FILE`): one `<seq> <ts>` line per event (`<seq> <ts>
/// <src>` from one of several publishers), written as it goes out, so clients in another process can tell which events they owe (`stats::owed_range`).
pub struct SeqLog(std::fs::File);

impl SeqLog {
    /// Creates (or truncates) the file.
    pub fn create(path: &std::path::Path) -> std::io::Result<SeqLog> {
        std::fs::File::create(path).map(SeqLog)
    }

    fn write(&mut self, seq: u64, ts: u64, src: Option<usize>) {
        use std::io::Write;
        let written = match src {
            None => writeln!(self.0, "{seq} {ts}"),
            Some(src) => writeln!(self.0, "{seq} {ts} {src}"),
        };
        if let Err(error) = written {
            eprintln!("seq log: {error}");
        }
    }
}

/// Ticks `rate` times a second until `stop` (never at rate 0); a late tick either skips the ticks it missed or
/// (`MissedTickBehavior::Burst`) makes them up at once.
struct Ticker {
    interval: Option<tokio::time::Interval>,
    stop: CancellationToken,
    seq: u64,
}

impl Ticker {
    fn new(rate: u32, missed: MissedTickBehavior, stop: CancellationToken) -> Ticker {
        let interval = (rate > 0).then(|| {
            let mut interval = tokio::time::interval(Duration::from_secs(1) / rate);
            interval.set_missed_tick_behavior(missed);
            interval
        });
        Ticker {
            interval,
            stop,
            seq: 0,
        }
    }

    /// The next tick's sequence number; `None` once stopped.
    async fn next(&mut self) -> Option<u64> {
        let tick = async {
            match &mut self.interval {
                Some(interval) => interval.tick().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = self.stop.cancelled() => None,
            _ = tick => {
                self.seq += 1;
                Some(self.seq)
            }
        }
    }
}

/// Serves the SSE upstream on `listener` until `stop`.
pub async fn serve(
    listener: TcpListener,
    rate: u32,
    payload: Payload,
    mut log: Option<SeqLog>,
    stop: CancellationToken,
) {
    let (events, _) = broadcast::channel::<Bytes>(1024);
    let producer = {
        let events = events.clone();
        let mut ticker = Ticker::new(rate, MissedTickBehavior::Skip, stop.clone());
        async move {
            while let Some(seq) = ticker.next().await {
                let (data, ts) = data(None, seq, payload);
                let frame =
                    pushbridge::sse::encode_event(Some(&seq.to_string()), Some("tick"), &data);
                // No receiver yet is fine: nobody is connected.
                let _ = events.send(frame);
                if let Some(log) = &mut log {
                    log.write(seq, ts, None);
                }
            }
        }
    };
    let accept = async {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let events = events.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_request| {
                    let live = BroadcastStream::new(events.subscribe()).filter_map(async |frame| {
                        frame
                            .ok()
                            .map(|bytes| Ok::<_, Infallible>(Frame::data(bytes)))
                    });
                    // A comment first, so the response head and a body byte go out at once.
                    let first = futures_util::stream::once(async {
                        Ok(Frame::data(Bytes::from_static(b":\n\n")))
                    });
                    let body = StreamBody::new(
                        first.chain(live).take_until(stop.clone().cancelled_owned()),
                    );
                    let response = http::Response::builder()
                        .header("content-type", "text/event-stream")
                        .header("cache-control", "no-cache")
                        .body(body);
                    async move { response }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    };
    tokio::select! {
        () = producer => {}
        () = accept => {}
    }
}

/// `POST`s one event to `url` `rate` times a second until `stop`, from `publishers` kept-alive connections (each
/// reopened on error) that take the due posts in turn: a tick that comes late, or a post slower than the period,
/// leaves its post due, and the next free publisher sends it (no tick is skipped). Each publisher numbers its own
/// events; only accepted posts go into `log`. Returns how many posts failed, and each accepted post's round trip
/// (request sent to answer read) in µs: the publish latency.
pub async fn publish(
    to: PublishTo,
    rate: u32,
    publishers: usize,
    payload: Payload,
    log: Option<SeqLog>,
    stop: CancellationToken,
) -> (u64, Vec<u32>) {
    let due = Arc::new(Semaphore::new(0));
    let log = log.map(|log| Arc::new(Mutex::new(log)));
    let tasks: Vec<_> = (0..publishers.max(1))
        .map(|src| {
            let publisher = publisher(
                src,
                to.clone(),
                payload,
                due.clone(),
                log.clone(),
                stop.clone(),
            );
            tokio::spawn(publisher)
        })
        .collect();
    let mut ticker = Ticker::new(rate, MissedTickBehavior::Burst, stop);
    while ticker.next().await.is_some() {
        due.add_permits(1);
    }
    let (mut failures, mut latencies) = (0, Vec::new());
    for task in tasks {
        if let Ok((failed, times)) = task.await {
            failures += failed;
            latencies.extend(times);
        }
    }
    (failures, latencies)
}

/// One publisher connection: a post per due tick until `stop`; its failures and round trips (µs).
async fn publisher(
    src: usize,
    to: PublishTo,
    payload: Payload,
    due: Arc<Semaphore>,
    log: Option<Arc<Mutex<SeqLog>>>,
    stop: CancellationToken,
) -> (u64, Vec<u32>) {
    let mut sender = None;
    let (mut failures, mut latencies, mut seq) = (0, Vec::new(), 0);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            permit = due.acquire() => match permit {
                Ok(permit) => permit.forget(),
                Err(_) => break,
            },
        }
        seq += 1;
        let (data, ts) = data(Some(src), seq, payload);
        let started = std::time::Instant::now();
        match post(&mut sender, &to, data).await {
            Ok(()) => {
                let micros = started.elapsed().as_micros();
                latencies.push(u32::try_from(micros).unwrap_or(u32::MAX));
                if let Some(log) = &log {
                    log.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .write(seq, ts, Some(src));
                }
            }
            Err(error) => {
                failures += 1;
                sender = None;
                eprintln!("publisher {src}: post failed: {error}");
            }
        }
    }
    (failures, latencies)
}

async fn post(
    sender: &mut Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
    to: &PublishTo,
    data: String,
) -> Result<(), BoxError> {
    let (url, addr) = (&to.url, to.addr);
    let ready = match sender.as_mut() {
        Some(ready) if !ready.is_closed() => ready,
        _ => {
            let tcp = TcpStream::connect(addr).await?;
            let (new, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
            tokio::spawn(conn);
            sender.insert(new)
        }
    };
    ready.ready().await?;
    let (content_type, body) = match to.format {
        PublishFormat::Plain => ("text/plain", data),
        PublishFormat::Pushpin => {
            let item = serde_json::json!({"channel": "bench", "formats": {"ws-message": {"content": data}}});
            (
                "application/json",
                serde_json::json!({ "items": [item] }).to_string(),
            )
        }
    };
    // Origin form: Pushpin's publish API does not route an absolute-form target.
    let path = url.path_and_query().map_or("/", |p| p.as_str());
    let request = http::Request::post(path)
        .header("host", addr.to_string())
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))?;
    let response = ready.send_request(request).await?;
    let status = response.status();
    response.into_body().collect().await?;
    if !status.is_success() {
        return Err(format!("status {status}").into());
    }
    Ok(())
}
