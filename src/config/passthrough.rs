//! The `passthrough:` schema: the application every non-stream request goes to, more upstreams by path prefix,
//! the protocol spoken to each (HTTP/1.1, h2c, or ALPN over TLS), forwarding headers and the proxies trusted to
//! set them, and the bounds of pass-through request bodies and WebSocket sessions. Rules serde cannot express
//! are in `validate/passthrough.rs`; docs/config.md is the same table.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::units::{self, clip, parse_scalar};

/// Passthrough: time allowed to connect to the application.
pub const DEFAULT_PASSTHROUGH_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Passthrough: time allowed until the application's response headers arrive.
pub const DEFAULT_PASSTHROUGH_RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// Passthrough: time the rest of a request body may take once the application has answered.
pub const DEFAULT_PASSTHROUGH_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Pass-through WebSocket: a session with no frame either way for this long is closed.
pub const DEFAULT_PASSTHROUGH_WS_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Pass-through WebSocket: largest message relayed either way.
pub const DEFAULT_PASSTHROUGH_WS_MAX_MESSAGE: usize = 1024 * 1024;
/// Pass-through WebSocket: sessions open at once (each holds a connection to the application).
pub const DEFAULT_PASSTHROUGH_WS_MAX_SESSIONS: usize = 10_000;

/// Plain reverse proxying of every request that is not a stream.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassthroughConfig {
    /// The application: `http://` or `https://` with a host; an optional path prefix; no query.
    #[serde(deserialize_with = "units::uri")]
    pub upstream: http::Uri,
    /// How to talk to `upstream`: `http1`, `h2c` (HTTP/2 prior knowledge, `http://` only) or `auto` (ALPN,
    /// `https://` only).
    #[serde(default)]
    pub protocol: UpstreamProtocol,
    /// More upstream services by path prefix; the longest matching prefix wins, else `upstream`.
    #[serde(default)]
    pub routes: Vec<PassthroughRoute>,
    /// Time allowed to connect to the application.
    #[serde(default = "d::connect_timeout", deserialize_with = "units::duration")]
    pub connect_timeout: Duration,
    /// Time allowed until the application's response headers arrive.
    #[serde(default = "d::response_timeout", deserialize_with = "units::duration")]
    pub response_timeout: Duration,
    /// Time the rest of the request body may take once the application's response headers arrived.
    #[serde(default = "d::body_timeout", deserialize_with = "units::duration")]
    pub body_timeout: Duration,
    /// Extra CA certificate (PEM) trusted for an `https` upstream, besides the webpki roots.
    #[serde(default, deserialize_with = "units::opt_path")]
    pub ca_file: Option<PathBuf>,
    /// Which forwarding headers the application gets: `x-forwarded`, `rfc7239` (`Forwarded`) or `both`.
    #[serde(default)]
    pub forwarded: ForwardedHeaders,
    /// Peers (IP addresses or CIDR ranges) whose forwarding headers are kept and extended; from any other peer
    /// they are replaced.
    #[serde(default, deserialize_with = "ip_net_list")]
    pub trusted_proxies: Vec<IpNet>,
    /// WebSocket sessions on pass-through paths.
    #[serde(default)]
    pub websocket: PassthroughWebSocket,
    /// Proxy requests for the application's internal URLs (stream upstreams, `client_messages.forward`,
    /// `auth.check`) on a pass-through upstream's origin; by default they are refused with 404.
    #[serde(default)]
    pub expose_internal: bool,
}

impl PassthroughConfig {
    /// A pass-through to `upstream` with every optional field at its default.
    pub fn new(upstream: http::Uri) -> Self {
        Self {
            upstream,
            protocol: UpstreamProtocol::default(),
            routes: Vec::new(),
            connect_timeout: DEFAULT_PASSTHROUGH_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_PASSTHROUGH_RESPONSE_TIMEOUT,
            body_timeout: DEFAULT_PASSTHROUGH_BODY_TIMEOUT,
            ca_file: None,
            forwarded: ForwardedHeaders::default(),
            trusted_proxies: Vec::new(),
            websocket: PassthroughWebSocket::default(),
            expose_internal: false,
        }
    }
}

/// One more upstream service, chosen by path prefix.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassthroughRoute {
    /// Request path prefix, starting with `/`; matches whole segments (`/api` matches `/api` and `/api/x`, not
    /// `/apix`). Not stripped: the request path goes to the upstream unchanged.
    #[serde(deserialize_with = "units::string")]
    pub prefix: String,
    /// The service: `http://` or `https://` with a host; an optional path prefix; no query.
    #[serde(deserialize_with = "units::uri")]
    pub upstream: http::Uri,
    /// How to talk to it (not inherited from `passthrough.protocol`).
    #[serde(default)]
    pub protocol: UpstreamProtocol,
}

/// A route prefix without its trailing `/` (except the root `/`): `/api/` and `/api` are the same prefix.
pub fn normalize_prefix(prefix: &str) -> &str {
    match prefix.strip_suffix('/') {
        Some("") | None => prefix,
        Some(trimmed) => trimmed,
    }
}

/// The HTTP version spoken to an upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    /// HTTP/1.1 (over TLS for `https://`).
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge over plaintext TCP (`http://` only): gRPC services.
    H2c,
    /// HTTP/2 or HTTP/1.1 as ALPN decides (`https://` only).
    Auto,
}

impl UpstreamProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamProtocol::Http1 => "http1",
            UpstreamProtocol::H2c => "h2c",
            UpstreamProtocol::Auto => "auto",
        }
    }
}

impl fmt::Display for UpstreamProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which forwarding headers are set on requests to the application.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardedHeaders {
    /// `X-Forwarded-For`, `X-Forwarded-Proto`, `X-Forwarded-Host` and `X-Real-IP`.
    #[default]
    XForwarded,
    /// `Forwarded` (RFC 7239) only.
    Rfc7239,
    /// Both sets.
    Both,
}

impl ForwardedHeaders {
    pub fn x_forwarded(self) -> bool {
        matches!(self, ForwardedHeaders::XForwarded | ForwardedHeaders::Both)
    }

    pub fn rfc7239(self) -> bool {
        matches!(self, ForwardedHeaders::Rfc7239 | ForwardedHeaders::Both)
    }
}

/// Bounds of pass-through WebSocket sessions.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassthroughWebSocket {
    /// A session with no frame in either direction for this long is closed (1001 both ways).
    #[serde(default = "d::ws_idle_timeout", deserialize_with = "units::duration")]
    pub idle_timeout: Duration,
    /// Largest message relayed in either direction; a larger one closes the session (1009 to its sender).
    #[serde(default = "d::ws_max_message", deserialize_with = "units::size")]
    pub max_message: usize,
    /// Sessions open at once; more are refused with 503. An HTTP/2 client can open many on one connection, so
    /// `limits.max_connections` alone does not bound the connections to the application.
    #[serde(default = "d::ws_max_sessions")]
    pub max_sessions: usize,
}

impl Default for PassthroughWebSocket {
    fn default() -> Self {
        Self {
            idle_timeout: DEFAULT_PASSTHROUGH_WS_IDLE_TIMEOUT,
            max_message: DEFAULT_PASSTHROUGH_WS_MAX_MESSAGE,
            max_sessions: DEFAULT_PASSTHROUGH_WS_MAX_SESSIONS,
        }
    }
}

/// An IP address range: an address and a prefix length (`10.0.0.0/8`, `fd00::/8`; a bare address is `/32` or
/// `/128`). An IPv4-mapped IPv6 peer matches the IPv4 range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parses `ADDR` or `ADDR/LEN`.
    pub fn parse(text: &str) -> Result<IpNet, String> {
        let text = text.trim();
        let bad = |why: &str| {
            format!(
                "invalid address range {:?}: {why} (e.g. \"10.0.0.0/8\", \"192.0.2.7\", \"fd00::/8\")",
                clip(text)
            )
        };
        let (addr, len) = match text.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad("not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match len {
            None => max,
            Some(len) => match len.parse::<u8>() {
                Ok(len) if len <= max => len,
                _ => return Err(bad(&format!("prefix length must be 0 to {max}"))),
            },
        };
        Ok(IpNet { addr, prefix })
    }

    /// Whether `ip` is inside the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The first `bits` bits of `a` and `b` are equal.
fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let whole = usize::from(bits / 8);
    let rest = bits % 8;
    if a[..whole] != b[..whole] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    (a[whole] & mask) == (b[whole] & mask)
}

struct IpNetVal(IpNet);

impl<'de> Deserialize<'de> for IpNetVal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_scalar(
            d,
            "an IP address or CIDR range such as \"10.0.0.0/8\"",
            IpNet::parse,
        )
        .map(IpNetVal)
    }
}

fn ip_net_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    Vec::<IpNetVal>::deserialize(d).map(|v| v.into_iter().map(|v| v.0).collect())
}

/// `#[serde(default = "…")]` needs functions; each returns the named const above.
mod d {
    use super::*;

    pub fn connect_timeout() -> Duration {
        DEFAULT_PASSTHROUGH_CONNECT_TIMEOUT
    }
    pub fn response_timeout() -> Duration {
        DEFAULT_PASSTHROUGH_RESPONSE_TIMEOUT
    }
    pub fn body_timeout() -> Duration {
        DEFAULT_PASSTHROUGH_BODY_TIMEOUT
    }
    pub fn ws_idle_timeout() -> Duration {
        DEFAULT_PASSTHROUGH_WS_IDLE_TIMEOUT
    }
    pub fn ws_max_message() -> usize {
        DEFAULT_PASSTHROUGH_WS_MAX_MESSAGE
    }
    pub fn ws_max_sessions() -> usize {
        DEFAULT_PASSTHROUGH_WS_MAX_SESSIONS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_ranges() {
        let net = IpNet::parse("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
        let odd = IpNet::parse("192.168.4.0/22").unwrap();
        assert!(odd.contains("192.168.7.255".parse().unwrap()));
        assert!(!odd.contains("192.168.8.0".parse().unwrap()));
        let host = IpNet::parse("::1").unwrap();
        assert!(host.contains("::1".parse().unwrap()));
        assert!(!host.contains("127.0.0.1".parse().unwrap()));
        assert!(
            IpNet::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(
            IpNet::parse("fd00::/8")
                .unwrap()
                .contains("fd12::1".parse().unwrap())
        );
        for bad in ["10.0.0.0/33", "nope", "10.0.0.0/", "::/129", "10.0.0.0/-1"] {
            assert!(IpNet::parse(bad).is_err(), "{bad}");
        }
    }
}
