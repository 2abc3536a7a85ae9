//! One HTTP/1.x request head for the direct path, parsed by `httparse` from the bytes read so far. Anything the
//! direct path does not serve itself (an HTTP/2 preface, a head it cannot parse, too many headers, a head larger
//! than [`MAX_HEAD`], a request with a body) is left to hyper, which answers it with its own limits and errors.

use http::header::{CONNECTION, CONTENT_LENGTH, HeaderName, HeaderValue, TRANSFER_ENCODING};
use http::{HeaderMap, Method, Request, Uri, Version};

/// Largest head the direct path reads; a larger one goes to hyper.
pub const MAX_HEAD: usize = 8 * 1024;
/// Most header fields the direct path parses; more go to hyper.
const MAX_HEADERS: usize = 64;

/// What the bytes read so far hold.
pub enum Parsed {
    /// A whole head: the request (no body) and the head's length in bytes.
    Request(Box<Request<()>>, usize),
    /// More bytes are needed.
    Partial,
    /// Not for the direct path.
    Other,
    /// Over [`MAX_HEAD`] or `MAX_HEADERS`: not for the direct path either (counted).
    TooLarge,
}

pub fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len > MAX_HEAD => Parsed::TooLarge,
        Ok(httparse::Status::Complete(len)) => match build(&req) {
            Some(request) => Parsed::Request(Box::new(request), len),
            None => Parsed::Other,
        },
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => Parsed::Partial,
        Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => Parsed::TooLarge,
        Err(_) => Parsed::Other,
    }
}

fn build(req: &httparse::Request<'_, '_>) -> Option<Request<()>> {
    let method = Method::from_bytes(req.method?.as_bytes()).ok()?;
    let uri: Uri = req.path?.parse().ok()?;
    let version = match req.version? {
        0 => Version::HTTP_10,
        1 => Version::HTTP_11,
        _ => return None,
    };
    let mut headers = HeaderMap::with_capacity(req.headers.len());
    for header in req.headers.iter() {
        let name = HeaderName::from_bytes(header.name.as_bytes()).ok()?;
        headers.append(name, HeaderValue::from_bytes(header.value).ok()?);
    }
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = headers;
    Some(request)
}

/// Whether the direct path may serve `req`: a `GET` without a body.
pub fn bodiless_get(req: &Request<()>) -> bool {
    let headers = req.headers();
    req.method() == Method::GET
        && !headers.contains_key(TRANSFER_ENCODING)
        && headers
            .get_all(CONTENT_LENGTH)
            .iter()
            .all(|v| v.as_bytes().trim_ascii() == b"0")
}

/// Whether the connection may carry another request after this one's response, as hyper decides it: never with
/// `Connection: close`; HTTP/1.1 by default; HTTP/1.0 with `Connection: keep-alive`.
pub fn keep_alive(req: &Request<()>) -> bool {
    let has = |token| crate::negotiate::header_has_token(req.headers(), &CONNECTION, token);
    !has("close") && (req.version() == Version::HTTP_11 || has("keep-alive"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_head_is_parsed_with_its_length() {
        let raw = b"GET /events/a?x=1 HTTP/1.1\r\nHost: h\r\nLast-Event-ID: 5\r\n\r\nrest";
        let Parsed::Request(req, len) = parse(raw) else {
            panic!("not parsed")
        };
        assert_eq!(len, raw.len() - 4);
        assert_eq!(req.uri().path(), "/events/a");
        assert_eq!(req.uri().query(), Some("x=1"));
        assert_eq!(req.headers()["last-event-id"], "5");
        assert!(bodiless_get(&req) && keep_alive(&req));
    }

    #[test]
    fn what_the_direct_path_leaves_to_hyper() {
        assert!(matches!(
            parse(b"GET /a HTTP/1.1\r\nHost:"),
            Parsed::Partial
        ));
        assert!(matches!(
            parse(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            Parsed::Other
        ));
        assert!(matches!(
            parse(b"GET /a HTTP/1.1\r\nBad Name: x\r\n\r\n"),
            Parsed::Other
        ));
        let big = format!("GET /a HTTP/1.1\r\nX: {}", "a".repeat(MAX_HEAD));
        assert!(matches!(parse(big.as_bytes()), Parsed::TooLarge));
        // Over the bound even when it arrived whole.
        let whole = format!("{big}\r\n\r\n");
        assert!(matches!(parse(whole.as_bytes()), Parsed::TooLarge));
        let many = format!(
            "GET /a HTTP/1.1\r\n{}\r\n",
            "X: 1\r\n".repeat(MAX_HEADERS + 1)
        );
        assert!(matches!(parse(many.as_bytes()), Parsed::TooLarge));
        let Parsed::Request(post, _) = parse(b"GET /a HTTP/1.1\r\nContent-Length: 3\r\n\r\n")
        else {
            panic!()
        };
        assert!(!bodiless_get(&post));
        for (raw, kept) in [
            (&b"GET /a HTTP/1.0\r\n\r\n"[..], false),
            (b"GET /a HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true),
            (
                b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
                false,
            ),
            (
                b"GET /a HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n",
                false,
            ),
        ] {
            let Parsed::Request(req, _) = parse(raw) else {
                panic!()
            };
            assert_eq!(keep_alive(&req), kept, "{}", String::from_utf8_lossy(raw));
        }
    }
}
