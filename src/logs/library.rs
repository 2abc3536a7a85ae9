//! Lines the libraries write (h2, hyper, rustls, tungstenite, …): a client can make them at will — h2 logs a WARN
//! for each connection it closes for rapid reset — so those at INFO and above go through the process's
//! [`LogLimiter`] as kind `library`, keyed by call site. DEBUG and TRACE, asked for with `RUST_LOG`, are not
//! limited.

use std::sync::{Arc, OnceLock};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

use super::{LogKind, LogLimiter};

/// The limiter library lines go through, once the metrics exist (until then, at start-up, none is limited).
static LIMITER: OnceLock<Arc<LogLimiter>> = OnceLock::new();

/// Limits library lines with `limiter` from now on (the first call wins: one limiter per process).
pub fn limit_with(limiter: Arc<LogLimiter>) {
    let _ = LIMITER.set(limiter);
}

/// The layer that drops library lines over the limit (counted in `pushbridge_log_lines_suppressed_total`).
pub struct LibraryLimit;

impl<S: Subscriber> Layer<S> for LibraryLimit {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        let meta = event.metadata();
        let own = meta.target() == "pushbridge" || meta.target().starts_with("pushbridge::");
        if own || *meta.level() > Level::INFO {
            return true;
        }
        LIMITER
            .get()
            .is_none_or(|limiter| limiter.admit(LogKind::Library, &meta.callsite()).is_some())
    }
}
