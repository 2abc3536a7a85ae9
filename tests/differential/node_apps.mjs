// Node applications for tests/differential.rs: `http` (HTTP/1.1, with a `ws` WebSocket echo on it) and `http2`
// (h2c, prior knowledge), both on 127.0.0.1:0; prints one line {"h1": PORT, "h2c": PORT} and serves until killed.
// The endpoints are those of py_apps.py (see its docstring; the request path's end picks one), with node's own view:
// `headers` is `rawHeaders` (order, duplicates and case as received; HTTP/2 pseudo-headers included), `trailers`
// is `rawTrailers`, `hints` sends 103 with `writeEarlyHints` on both versions, `trailers` sends a trailer on both.
import { createHash } from 'node:crypto';
import http from 'node:http';
import http2 from 'node:http2';
import { WebSocketServer } from 'ws';

const RESPONSE_HEADERS = [
  ['x-resp-dup', '1'],
  ['x-resp-dup', '2'],
  ['set-cookie', 's1=1; Path=/'],
  ['set-cookie', 's2=2; Path=/'],
];

function endpoint(url) {
  const parts = url.split('?')[0].replace(/\/+$/, '').split('/');
  const last = parts[parts.length - 1] || '';
  const before = parts[parts.length - 2];
  if ((before === 'status' || before === 'bytes') && /^\d+$/.test(last)) return [before, Number(last)];
  if (['reject', 'hints', 'trailers', 'ws'].includes(last)) return [last, null];
  return ['echo', null];
}

function pairs(raw) {
  const out = [];
  for (let i = 0; i + 1 < raw.length; i += 2) out.push([raw[i], raw[i + 1]]);
  return out;
}

function headersFor(extra) {
  // writeHead with an array of pairs keeps duplicates (set-cookie, x-resp-dup) as separate fields.
  return [...extra, ...RESPONSE_HEADERS];
}

function writeHead(res, status, extra) {
  if (res.stream) {
    // http2 compat: setHeader with arrays for the duplicated names.
    const grouped = {};
    for (const [name, value] of headersFor(extra)) (grouped[name] ||= []).push(value);
    for (const [name, values] of Object.entries(grouped)) res.setHeader(name, values.length > 1 ? values : values[0]);
    res.writeHead(status);
  } else {
    res.writeHead(status, headersFor(extra).flat());
  }
}

function pattern(n) {
  const buf = Buffer.alloc(n);
  for (let i = 0; i < n; i++) buf[i] = i % 251;
  return buf;
}

function echo(server, req, body, extra = {}) {
  return {
    echo: server,
    http_version: req.httpVersion,
    method: req.method,
    target: req.url,
    headers: pairs(req.rawHeaders),
    body_sha256: createHash('sha256').update(body).digest('hex'),
    body_len: body.length,
    trailers: pairs(req.rawTrailers || []),
    cookies: null,
    ...extra,
  };
}

function handler(server) {
  return (req, res) => {
    const [kind, arg] = endpoint(req.url);
    if (kind === 'reject') {
      writeHead(res, 413, res.stream ? [['content-type', 'text/plain']] : [['content-type', 'text/plain'], ['connection', 'close']]);
      res.end('too large\n');
      return;
    }
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      if (kind === 'status') {
        writeHead(res, arg, [['content-type', 'text/plain']]);
        res.end(arg === 204 || arg === 304 ? undefined : `status ${arg}\n`);
      } else if (kind === 'bytes') {
        writeHead(res, 200, [['content-type', 'application/octet-stream'], ['content-length', String(arg)]]);
        res.end(pattern(arg));
      } else if (kind === 'trailers') {
        writeHead(res, 200, [['content-type', 'text/plain'], ['trailer', 'x-checksum']]);
        res.write('part one\n');
        res.addTrailers({ 'x-checksum': 'abc123' });
        res.end('part two\n');
      } else {
        if (kind === 'hints') res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' });
        writeHead(res, 200, [['content-type', 'application/json']]);
        res.end(JSON.stringify(echo(server, req, body)));
      }
    });
  };
}

const h1 = http.createServer(handler('node'));
const wss = new WebSocketServer({
  server: h1,
  handleProtocols: (protocols) => (protocols.has('chat') ? 'chat' : false),
});
wss.on('connection', (socket, req) => {
  socket.send(JSON.stringify(echo('node-ws', req, Buffer.alloc(0), { subprotocol: socket.protocol || null })));
  socket.on('message', (data, isBinary) => {
    const text = isBinary ? null : data.toString();
    if (text !== null && text.startsWith('close:')) {
      const [, code, ...reason] = text.split(':');
      socket.close(Number(code), reason.join(':'));
      return;
    }
    socket.send(data, { binary: isBinary });
  });
});
const h2c = http2.createServer(handler('node'));

let ready = 0;
function listening() {
  if (++ready === 2) {
    process.stdout.write(JSON.stringify({ h1: h1.address().port, h2c: h2c.address().port }) + '\n');
  }
}
h1.listen(0, '127.0.0.1', listening);
h2c.listen(0, '127.0.0.1', listening);
