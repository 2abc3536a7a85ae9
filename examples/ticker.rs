//! A standalone SSE upstream: numbered ticks at `GET /internal/events/{channel}` (ids are tick numbers and
//! `Last-Event-ID` resumes), and the demo page at `/`.
//!
//! cargo run --example ticker -- 127.0.0.1:8081 500ms

use std::net::SocketAddr;
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), pushbridge::BoxError> {
    let mut args = std::env::args().skip(1);
    let address: SocketAddr = args.next().as_deref().unwrap_or("127.0.0.1:8081").parse()?;
    let interval: Duration = match args.next() {
        Some(text) => pushbridge::config::parse_duration(&text)?,
        None => Duration::from_secs(1),
    };
    let bound = pushbridge::demo::ticker::start(address, interval).await?;
    println!(
        "ticker on http://{bound}/internal/events/{{channel}} (one event every {interval:?}); Ctrl-C stops"
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
