// The browser client's state machine (src/client/pushbridge.js) against scripted fakes of WebSocket, EventSource,
// XMLHttpRequest, timers and sessionStorage: downgrades, resume across switches, de-duplication, gap notices,
// page-session memory. Run by tests/browser.rs (`node --test`); needs node only, no browser.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import vm from 'node:vm';

const SOURCE = readFileSync(new URL('../../src/client/pushbridge.js', import.meta.url), 'utf8');

/** A fresh page: the client loaded into a context whose network and clock the test drives. */
function page({ websocket = true, eventsource = true, storage = {} } = {}) {
  const sockets = [];
  const sources = [];
  const polls = [];
  let now = 0;
  let timers = [];
  const env = {
    setTimeout(fn, ms) {
      const timer = { at: now + ms, fn };
      timers.push(timer);
      return timer;
    },
    clearTimeout(timer) {
      timers = timers.filter((t) => t !== timer);
    },
    // An <a> resolves a path against the page's address.
    document: {
      createElement: () => ({
        set href(v) { this.resolved = 'http://app.test' + v; },
        get href() { return this.resolved; },
      }),
    },
    sessionStorage: {
      getItem: (k) => (k in storage ? storage[k] : null),
      setItem: (k, v) => { storage[k] = String(v); },
    },
    XMLHttpRequest: class {
      open(method, url) { this.url = url; }
      send() { this.readyState = 1; polls.push(this); }
      abort() { this.aborted = true; }
      respond(status, body) {
        this.readyState = 4;
        this.status = status;
        this.responseText = JSON.stringify(body);
        this.onreadystatechange && this.onreadystatechange();
      }
    },
  };
  if (websocket) {
    env.WebSocket = class {
      constructor(url) { this.url = url; sockets.push(this); }
      close() { this.closed = true; }
      message(value) { this.onmessage({ data: JSON.stringify(value) }); }
    };
  }
  if (eventsource) {
    env.EventSource = class {
      constructor(url) { this.url = url; this.listeners = {}; sources.push(this); }
      addEventListener(name, fn) { this.listeners[name] = fn; }
      close() { this.closed = true; }
      // Like EventSource, an event without an id repeats the previous one in lastEventId.
      emit(name, data, id) {
        this.lastId = id ?? this.lastId;
        this.listeners[name]({ data, lastEventId: this.lastId || '' });
      }
    };
  }
  vm.createContext(env);
  vm.runInContext(SOURCE, env);
  const seen = { events: [], transports: [], errors: [] };
  return {
    env,
    sockets,
    sources,
    polls,
    seen,
    connect(options = {}) {
      return env.pushbridge.connect('/events/x', {
        events: ['tick'],
        onevent: (e) => seen.events.push(e),
        ontransport: (t) => seen.transports.push(t),
        onerror: (e) => seen.errors.push(e.type + ' ' + e.transport),
        ...options,
      });
    },
    /** Runs every timer due within `ms`, in order. */
    advance(ms) {
      const end = now + ms;
      for (;;) {
        const due = timers.filter((t) => t.at <= end).sort((a, b) => a.at - b.at)[0];
        if (!due) break;
        timers = timers.filter((t) => t !== due);
        now = due.at;
        due.fn();
      }
      now = end;
    },
    ids: () => seen.events.filter((e) => e.id !== null).map((e) => e.id),
  };
}

const tick = (id) => ({ id: String(id), event: 'tick', data: `t${id}` });
const param = (url, name) => new URL(url.replace(/^ws/, 'http'), 'http://base').searchParams.get(name);

test('WebSocket first; a drop reconnects to it from the last id, and a replayed id is not repeated', () => {
  const p = page();
  p.connect();
  assert.equal(param(p.sockets[0].url, 'transport'), 'ws');
  assert.equal(p.sockets[0].url.slice(0, 17), 'ws://app.test/eve');
  p.sockets[0].onopen();
  [1, 2, 3].forEach((id) => p.sockets[0].message(tick(id)));
  p.sockets[0].onclose({ code: 1006 });
  assert.equal(p.sockets.length, 1, 'reconnects after a backoff, not at once');
  p.advance(1000);
  assert.equal(p.sockets.length, 2);
  assert.equal(param(p.sockets[1].url, 'last_event_id'), '3');
  p.sockets[1].onopen();
  [3, 4].forEach((id) => p.sockets[1].message(tick(id)));
  assert.deepEqual(p.ids(), ['1', '2', '3', '4']);
  assert.deepEqual(p.seen.transports, ['ws', 'ws']);
});

test('down the list: WebSocket refused, SSE buffered (no open event), long-poll works; the cursor carries over', () => {
  const p = page();
  p.connect({ lastEventId: '7', silenceTimeout: 1500 });
  p.sockets[0].onclose({ code: 1006 });
  assert.equal(p.sources.length, 1, 'SSE at once');
  const sse = p.sources[0];
  assert.equal(param(sse.url, 'open'), '1');
  assert.equal(param(sse.url, 'last_event_id'), '7');
  sse.onopen();
  p.advance(1499);
  assert.equal(p.polls.length, 0);
  p.advance(1);
  assert.ok(sse.closed, 'silent SSE is dropped');
  assert.equal(param(p.polls[0].url, 'transport'), 'long-poll');
  assert.equal(param(p.polls[0].url, 'last_event_id'), '7');
  p.polls[0].respond(200, { events: [tick(8), tick(9)], last_event_id: '9', gap: false });
  assert.equal(param(p.polls[1].url, 'last_event_id'), '9');
  assert.deepEqual(p.ids(), ['8', '9']);
  assert.deepEqual(p.seen.transports, ['long-poll']);
});

test('a WebSocket that opens but is cut before any message is dropped for SSE', () => {
  const p = page();
  p.connect();
  p.sockets[0].onopen();
  p.sockets[0].onclose({ code: 1006 });
  assert.equal(p.sockets.length, 1);
  assert.equal(p.sources.length, 1);
  p.sources[0].emit('pushbridge-open', '{}');
  p.sources[0].emit('tick', 'a', '1');
  assert.deepEqual(p.seen.transports, ['ws', 'sse']);
  assert.deepEqual(p.ids(), ['1']);
});

test('the gap notice reaches onevent (no id) and onerror, and leaves the cursor alone', () => {
  const p = page();
  const conn = p.connect();
  p.sockets[0].onopen();
  p.sockets[0].message(tick(5));
  p.sockets[0].message({ event: 'pushbridge-gap', data: '{"last_event_id":"2"}' });
  assert.deepEqual({ ...p.seen.events[1] }, { id: null, event: 'pushbridge-gap', data: '{"last_event_id":"2"}' });
  assert.ok(p.seen.errors.includes('gap ws'));
  assert.equal(conn.lastEventId(), '5');
  // Over SSE the gap notice has no id line, though EventSource repeats the previous one.
  p.sockets[0].onclose({ code: 1006 });
  p.advance(1000);
  p.sockets[1].onclose({ code: 1006 });
  p.sources[0].emit('pushbridge-open', '{}');
  p.sources[0].emit('tick', 'x', '6');
  p.sources[0].emit('pushbridge-gap', '{}');
  assert.equal(p.seen.events.at(-1).id, null);
  assert.equal(conn.lastEventId(), '6');
});

test('the transport that worked is remembered for the page session', () => {
  const storage = {};
  const first = page({ storage });
  first.connect();
  first.sockets[0].onclose({ code: 1006 });
  first.sources[0].emit('pushbridge-open', '{}');
  const second = page({ storage });
  second.connect();
  assert.equal(second.sockets.length, 0);
  assert.equal(second.sources.length, 1);
});

test('a browser without WebSocket and EventSource goes straight to long-poll; close() stops it', () => {
  const p = page({ websocket: false, eventsource: false });
  const conn = p.connect();
  assert.equal(p.polls.length, 1);
  p.polls[0].respond(200, { events: [tick(1)], last_event_id: '1', gap: false });
  assert.equal(p.polls.length, 2);
  conn.close();
  assert.ok(p.polls[1].aborted);
  p.advance(120000);
  assert.equal(p.polls.length, 2);
  assert.deepEqual(p.ids(), ['1']);
});

test('nothing works: every transport is tried, then all again after a backoff', () => {
  const p = page();
  p.connect();
  p.sockets[0].onclose({ code: 1006 });
  p.sources[0].onerror();
  p.polls[0].respond(502, {});
  assert.equal(p.sockets.length, 1);
  p.advance(1000);
  assert.equal(p.sockets.length, 2);
});
