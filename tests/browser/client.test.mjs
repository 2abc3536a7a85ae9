// The browser client's state machine (src/client/pushbridge.js) against scripted fakes of WebSocket, EventSource,
// XMLHttpRequest, timers and sessionStorage: downgrades, resume across switches, de-duplication, gap notices,
// page-session memory, probes. Run by tests/browser.rs (`node --test`); needs node only, no browser.
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
  const positions = [];
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
      // The first request (`wait=0`, which learns the stream's position) is kept apart from the long-polls.
      send() { this.readyState = 1; (param(this.url, 'wait') === '0' ? positions : polls).push(this); }
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
      constructor(url, protocols) { this.url = url; this.protocols = protocols; sockets.push(this); }
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
    positions,
    seen,
    /** Connects; unless `position` is null, answers the position request with that cursor ('' = empty ring). */
    connect(options = {}, position = '') {
      const conn = env.pushbridge.connect('/events/x', {
        events: ['tick'],
        onevent: (e) => seen.events.push(e),
        ontransport: (t) => seen.transports.push(t),
        onerror: (e) => seen.errors.push(e.type + ' ' + e.transport),
        ...options,
      });
      if (position !== null && positions.length === 1) {
        positions[0].respond(200, { events: [], last_event_id: position, gap: false });
      }
      return conn;
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

test('WebSocket first; a drop reconnects to it from the last id', () => {
  const p = page();
  p.connect();
  assert.equal(param(p.sockets[0].url, 'transport'), 'ws');
  assert.equal(p.sockets[0].url.slice(0, 17), 'ws://app.test/eve');
  // Envelopes whatever the route's ws.format (docs/protocol.md, subprotocols).
  assert.equal(JSON.stringify(p.sockets[0].protocols), '["pushbridge.envelope.v1"]');
  p.sockets[0].onopen();
  [1, 2, 3].forEach((id) => p.sockets[0].message(tick(id)));
  p.sockets[0].onclose({ code: 1006 });
  assert.equal(p.sockets.length, 1, 'reconnects after a backoff, not at once');
  p.advance(1000);
  assert.equal(p.sockets.length, 2);
  assert.equal(param(p.sockets[1].url, 'last_event_id'), '3');
  p.sockets[1].onopen();
  [4, 5].forEach((id) => p.sockets[1].message(tick(id)));
  assert.deepEqual(p.ids(), ['1', '2', '3', '4', '5']);
  assert.deepEqual(p.seen.transports, ['ws', 'ws']);
});

test('down the list: WebSocket refused, SSE buffered (not even its headers), long-poll works; the cursor carries over', () => {
  const p = page();
  p.connect({ lastEventId: '7', silenceTimeout: 1500 });
  assert.equal(p.positions.length, 0, 'an explicit lastEventId needs no position');
  p.sockets[0].onclose({ code: 1006 });
  assert.equal(p.sources.length, 1, 'SSE at once');
  const sse = p.sources[0];
  assert.equal(param(sse.url, 'open'), '1');
  assert.equal(param(sse.url, 'last_event_id'), '7');
  // The silence deadline runs from the EventSource's creation: onopen never fires behind such a proxy.
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

test('the first request learns the stream position; every transport resumes from it', () => {
  const p = page();
  p.connect({}, null);
  assert.equal(p.positions.length, 1);
  assert.equal(param(p.positions[0].url, 'transport'), 'long-poll');
  assert.equal(p.sockets.length, 0, 'nothing opens before the position is known');
  p.positions[0].respond(200, { events: [], last_event_id: 'pb:3:0', gap: false });
  assert.equal(param(p.sockets[0].url, 'last_event_id'), 'pb:3:0');
  p.sockets[0].onclose({ code: 1006 });
  assert.equal(param(p.sources[0].url, 'last_event_id'), 'pb:3:0');
  p.advance(3500);
  assert.equal(param(p.polls[0].url, 'last_event_id'), 'pb:3:0');
});

test('a position request that is refused, or not answered in time, starts without a cursor', () => {
  const refused = page();
  refused.connect({}, null);
  refused.positions[0].respond(406, { transports: ['ws'] });
  assert.equal(refused.sockets.length, 1);
  assert.equal(param(refused.sockets[0].url, 'last_event_id'), null);

  const old = page();
  old.connect({ positionTimeout: 2000 }, null);
  old.advance(1999);
  assert.equal(old.sockets.length, 0);
  old.advance(1);
  assert.ok(old.positions[0].aborted);
  assert.equal(old.sockets.length, 1);
  assert.equal(param(old.sockets[0].url, 'last_event_id'), null);

  // An older server holds the poll until an event: it is delivered, and its id is the cursor.
  const held = page();
  held.connect({}, null);
  held.positions[0].respond(200, { events: [tick(4)], last_event_id: '4', gap: false });
  assert.equal(param(held.sockets[0].url, 'last_event_id'), '4');
  assert.deepEqual(held.ids(), ['4']);
});

test('a dropped transport is retried first, in every round, before the rest of the ladder', () => {
  const storage = { 'pushbridge.transport /events/x': 'long-poll' };
  const p = page({ storage });
  p.connect({}, '0');
  assert.equal(p.sockets.length + p.sources.length, 0, 'the remembered transport first');
  p.polls[0].respond(200, { events: [tick(1)], last_event_id: '1', gap: false });
  p.polls[1].respond(0, null); // the proxy went away
  assert.equal(p.polls.length, 2, 'after a backoff');
  p.advance(500);
  assert.equal(p.polls.length, 3, 'long-poll again first');
  assert.equal(param(p.polls[2].url, 'last_event_id'), '1');
  p.polls[2].respond(0, null); // still away: the rest of the ladder
  p.sockets[0].onclose({ code: 1006 });
  p.sources[0].onerror();
  p.advance(1000);
  assert.equal(p.polls.length, 4, 'the next round starts with long-poll again');
  assert.equal(p.sockets.length, 1);
  p.polls[3].respond(200, { events: [tick(2)], last_event_id: '2', gap: false });
  assert.deepEqual(p.ids(), ['1', '2']);
  assert.deepEqual(p.seen.transports, ['long-poll', 'long-poll']);
});

test('on a lower transport the better ones are probed with the cursor; one that opens takes over', () => {
  const p = page();
  p.connect({ probeInterval: 10000, silenceTimeout: 1000 }, '0');
  p.sockets[0].onclose({ code: 1006 });
  p.advance(1000);
  p.polls[0].respond(200, { events: [tick(1), tick(2)], last_event_id: '2', gap: false });
  assert.deepEqual(p.seen.transports, ['long-poll']);
  p.advance(9999);
  assert.equal(p.sockets.length, 1);
  p.advance(1);
  assert.equal(p.sockets.length, 2, 'WebSocket probed');
  assert.equal(param(p.sockets[1].url, 'last_event_id'), '2');
  p.sockets[1].onclose({ code: 1006 }); // still refused: SSE next, long-poll goes on meanwhile
  assert.deepEqual(p.seen.errors.slice(-1), ['probe ws']);
  assert.equal(p.sources.length, 2);
  p.polls[1].respond(200, { events: [tick(3)], last_event_id: '3', gap: false });
  p.advance(1000);
  assert.ok(p.sources[1].closed, 'a silent SSE probe is dropped');
  assert.equal(p.polls.length, 3, 'long-poll was never interrupted');
  // The next round of probes: the WebSocket opens now, and replaces long-poll.
  p.advance(10000);
  assert.equal(param(p.sockets[2].url, 'last_event_id'), '3');
  p.polls[2].respond(200, { events: [tick(4)], last_event_id: '4', gap: false });
  p.sockets[2].onopen();
  assert.ok(p.polls[3].aborted);
  [4, 5].forEach((id) => p.sockets[2].message(tick(id)));
  assert.deepEqual(p.ids(), ['1', '2', '3', '4', '5'], 'nothing lost, nothing repeated');
  assert.deepEqual(p.seen.transports, ['long-poll', 'ws']);
  p.advance(60000);
  assert.equal(p.sockets.length, 3, 'no probes from the top transport');
});

test('a probe never outlives the transport it runs beside', () => {
  const p = page();
  const conn = p.connect({ probeInterval: 5000, transports: ['sse', 'long-poll'] }, '0');
  p.sources[0].onerror();
  p.polls[0].respond(200, { events: [tick(1)], last_event_id: '1', gap: false });
  p.advance(5000);
  assert.equal(p.sources.length, 2);
  p.polls[1].respond(0, null);
  assert.ok(p.sources[1].closed, 'the probe stops when long-poll drops');
  conn.close();
  p.advance(60000);
  assert.equal(p.sources.length, 2);
  assert.equal(p.polls.length, 2);
});

test('ids the upstream reuses (a restarted app counting from 1 again) are new events, delivered', () => {
  const p = page();
  p.connect();
  p.sockets[0].onopen();
  [1, 2, 1, 2, 3].forEach((id, n) => p.sockets[0].message({ id: String(id), event: 'tick', data: 'abcde'[n] }));
  assert.deepEqual(p.seen.events.map((e) => e.data), ['a', 'b', 'c', 'd', 'e']);
});

test('a probe that takes over skips exactly what the replaced transport delivered after its cursor', () => {
  const p = page();
  p.connect({ probeInterval: 1000, transports: ['sse', 'long-poll'] });
  p.sources[0].onerror();
  const ev = (id, data) => ({ id: String(id), event: 'tick', data });
  p.polls[0].respond(200, { events: [ev(1, 'a'), ev(2, 'b')], last_event_id: '2', gap: false });
  p.advance(1000);
  assert.equal(param(p.sources[1].url, 'last_event_id'), '2');
  // Meanwhile long-poll delivers the app's restart: ids 1 and 2 again, new events.
  p.polls[1].respond(200, { events: [ev(1, 'c'), ev(2, 'd')], last_event_id: '2', gap: false });
  const sse = p.sources[1];
  sse.emit('pushbridge-open', '{}');
  assert.ok(p.polls[2].aborted);
  [[1, 'c'], [2, 'd'], [3, 'e'], [1, 'f']].forEach(([id, data]) => sse.emit('tick', data, String(id)));
  assert.deepEqual(p.seen.events.map((e) => e.data), ['a', 'b', 'c', 'd', 'e', 'f']);
  assert.deepEqual(p.seen.transports, ['long-poll', 'sse']);
});
