//! The event source: either an SSE upstream that pushbridge connects to (`--upstream ADDR`: every `GET` gets the
//! same live `text/event-stream`, WHATWG HTML §9.2.5), or a publisher that `POST`s each event's data to a URL
//! (`--publish URL`, for brokers such as Nginx + Nchan, from `--publishers N` connections sharing `--rate`). Each
//! event's data is `[src=<p> ]seq=<n> ts=<unix µs> ` padded with `x` to `--size` bytes: `n` counts 1, 2, … per
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

/// Event data of `size` bytes carrying its source (one of several publishers), `seq` and the current time, and
/// that time.
fn data(src: Option<usize>, seq: u64, size: usize) -> (String, u64) {
    let ts = now_micros();
    let src = src.map(|p| format!("{SRC_MARKER}{p}")).unwrap_or_default();
    let mut data = format!("{src}{SEQ_MARKER}{seq} {TS_MARKER}{ts} ");
    if data.len() < size {
        data.extend(std::iter::repeat_n('x', size - data.len()));
    }
    (data, ts)
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
    size: usize,
    mut log: Option<SeqLog>,
    stop: CancellationToken,
) {
    let (events, _) = broadcast::channel::<Bytes>(1024);
    let producer = {
        let events = events.clone();
        let mut ticker = Ticker::new(rate, MissedTickBehavior::Skip, stop.clone());
        async move {
            while let Some(seq) = ticker.next().await {
                let (data, ts) = data(None, seq, size);
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
    url: http::Uri,
    addr: SocketAddr,
    rate: u32,
    publishers: usize,
    size: usize,
    log: Option<SeqLog>,
    stop: CancellationToken,
) -> (u64, Vec<u32>) {
    let due = Arc::new(Semaphore::new(0));
    let log = log.map(|log| Arc::new(Mutex::new(log)));
    let tasks: Vec<_> = (0..publishers.max(1))
        .map(|src| {
            let publisher = publisher(
                src,
                url.clone(),
                addr,
                size,
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
    url: http::Uri,
    addr: SocketAddr,
    size: usize,
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
        let (data, ts) = data(Some(src), seq, size);
        let started = std::time::Instant::now();
        match post(&mut sender, &url, addr, data).await {
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
    url: &http::Uri,
    addr: SocketAddr,
    data: String,
) -> Result<(), BoxError> {
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
    let request = http::Request::post(url.clone())
        .header("host", addr.to_string())
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from(data)))?;
    let response = ready.send_request(request).await?;
    let status = response.status();
    response.into_body().collect().await?;
    if !status.is_success() {
        return Err(format!("status {status}").into());
    }
    Ok(())
}
