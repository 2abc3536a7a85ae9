/*
 * pushbridge browser client, served at /_pushbridge/client.js (DESIGN §4). ES5 only: it must run where nothing but
 * XMLHttpRequest long-poll works.
 *
 *   var conn = pushbridge.connect('/events/news', {
 *     onevent: function (e) {},         // {id, event, data}; the gap notice has event = gapEvent and id null
 *     ontransport: function (name) {},  // 'ws' | 'sse' | 'long-poll', each time one goes live
 *     onerror: function (err) {},       // {type: 'gap' | 'transport', transport, message}
 *     events: ['message'],              // SSE event names to listen for (EventSource has no wildcard)
 *     transports: ['ws', 'sse', 'long-poll'], gapEvent: 'pushbridge-gap', lastEventId: null,
 *     openTimeout: 10000, silenceTimeout: 4000, pollTimeout: 60000   // ms
 *   });
 *   conn.close();
 *
 * Tries WebSocket, then SSE, then long-poll (skipping what the browser lacks). A transport that fails to open,
 * closes before it is live, or (SSE) does not show the `pushbridge-open` event within `silenceTimeout` of connecting
 * (a buffering proxy holds the stream back) is dropped for the next one. The last event id travels across every
 * switch (`last_event_id` query parameter) and ids already delivered are dropped, so nothing is lost or repeated.
 * The transport that went live is remembered for the page session and reconnected to, with backoff, when it drops.
 */
(function (root) {
  'use strict';

  var ORDER = ['ws', 'sse', 'long-poll'];
  var OPEN_EVENT = 'pushbridge-open';
  var RECENT_IDS = 256;

  function supported(name) {
    if (name === 'ws') { return typeof root.WebSocket === 'function' || typeof root.WebSocket === 'object'; }
    if (name === 'sse') { return typeof root.EventSource === 'function' || typeof root.EventSource === 'object'; }
    return name === 'long-poll' && typeof root.XMLHttpRequest !== 'undefined';
  }

  function absolute(url) {
    var a = root.document.createElement('a');
    a.href = url;
    return a.href;
  }

  function withQuery(url, params) {
    var parts = [];
    for (var key in params) {
      if (params.hasOwnProperty(key) && params[key] !== null && params[key] !== undefined) {
        parts.push(encodeURIComponent(key) + '=' + encodeURIComponent(params[key]));
      }
    }
    return url + (url.indexOf('?') < 0 ? '?' : '&') + parts.join('&');
  }

  // Page-session memory: sessionStorage when the browser has it (and allows it), else this object.
  var memory = {};
  function remember(key, value) {
    try { root.sessionStorage.setItem(key, value); } catch (e) { memory[key] = value; }
  }
  function recall(key) {
    try {
      var value = root.sessionStorage.getItem(key);
      if (value !== null) { return value; }
    } catch (e) { /* no sessionStorage */ }
    return memory.hasOwnProperty(key) ? memory[key] : null;
  }

  // One opener per transport. Each reads a.cursor() and calls back a.connected() (SSE headers in), a.live(),
  // a.deliver(event), a.moveCursor(id) and a.fail(message, downgrade); each returns its stop function.

  function openWs(url, a) {
    var sock = new root.WebSocket(absolute(withQuery(url, { transport: 'ws', last_event_id: a.cursor() }))
      .replace(/^http/, 'ws'));
    var heard = false;
    sock.onopen = function () { a.live(); };
    sock.onmessage = function (m) {
      var env;
      heard = true;
      try { env = JSON.parse(m.data); } catch (e) { env = null; }
      if (env && typeof env === 'object' && typeof env.event === 'string' && 'data' in env) {
        a.deliver({ id: env.id === undefined ? null : env.id, event: env.event || 'message', data: env.data });
      } else {
        a.deliver({ id: null, event: 'message', data: m.data }); // ws.format: data (no ids, no resume)
      }
    };
    sock.onclose = function (e) {
      // Dropped before any message (a proxy that accepts the upgrade, then cuts it): try the next transport.
      a.fail('WebSocket closed (' + e.code + ')', !heard && e.code !== 1000 && e.code !== 1001);
    };
    return function () {
      sock.onopen = sock.onmessage = sock.onclose = null;
      try { sock.close(1000); } catch (e) { /* already closed */ }
    };
  }

  function openSse(url, a, names, gapEvent) {
    var es = new root.EventSource(withQuery(url, { transport: 'sse', open: '1', last_event_id: a.cursor() }));
    es.onopen = function () { a.connected(); };
    es.onerror = function () { es.close(); a.fail('EventSource error'); };
    es.addEventListener(OPEN_EVENT, function () { a.live(); }, false);
    function listen(name) {
      es.addEventListener(name, function (e) {
        a.live();
        // An event without an id line still shows the previous id in lastEventId: the gap notice has none.
        a.deliver({ id: name === gapEvent ? null : (e.lastEventId || null), event: name, data: e.data });
      }, false);
    }
    for (var i = 0; i < names.length; i++) { listen(names[i]); }
    return function () { es.close(); };
  }

  function openLongPoll(url, a, pollTimeout, gapEvent) {
    var xhr = null, timer = null, stopped = false;
    function poll() {
      xhr = new root.XMLHttpRequest();
      xhr.open('GET', withQuery(url, { transport: 'long-poll', last_event_id: a.cursor() }), true);
      xhr.onreadystatechange = function () {
        if (xhr.readyState !== 4 || stopped) { return; }
        root.clearTimeout(timer);
        var body = null;
        if (xhr.status === 200) {
          try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
        }
        if (!body || !(body.events instanceof Array)) {
          a.fail('long-poll answered HTTP ' + xhr.status);
          return;
        }
        a.live();
        if (body.gap) {
          a.deliver({ id: null, event: gapEvent, data: JSON.stringify({ last_event_id: a.cursor() }) });
        }
        for (var i = 0; i < body.events.length && !stopped; i++) {
          var e = body.events[i];
          a.deliver({ id: e.id === undefined ? null : e.id, event: e.event || 'message', data: e.data });
        }
        if (typeof body.last_event_id === 'string' && body.last_event_id !== '') { a.moveCursor(body.last_event_id); }
        if (!stopped) { poll(); }
      };
      timer = root.setTimeout(function () { a.fail('long-poll timed out'); }, pollTimeout);
      xhr.send(null);
    }
    poll();
    return function () {
      stopped = true;
      root.clearTimeout(timer);
      if (xhr) { xhr.onreadystatechange = null; xhr.abort(); }
    };
  }

  function connect(url, options) {
    options = options || {};
    var noop = function () {};
    var onevent = options.onevent || noop, ontransport = options.ontransport || noop, onerror = options.onerror || noop;
    var gapEvent = options.gapEvent || 'pushbridge-gap';
    var names = (options.events || ['message']).concat([gapEvent]);
    var openTimeout = options.openTimeout || 10000;
    var silenceTimeout = options.silenceTimeout || 4000;
    var pollTimeout = options.pollTimeout || 60000;
    var backoffMax = options.backoffMax || 15000;
    var storeKey = 'pushbridge.transport ' + url;

    var order = [];
    var wanted = options.transports || ORDER;
    for (var i = 0; i < wanted.length; i++) {
      if (supported(wanted[i])) { order.push(wanted[i]); }
    }
    var index = Math.max(0, indexOf(order, recall(storeKey)));
    var lastId = options.lastEventId || null;
    var recent = {}, recentQueue = [];
    var current = null, retryTimer = null, failures = 0, closed = false;

    function indexOf(list, value) {
      for (var j = 0; j < list.length; j++) { if (list[j] === value) { return j; } }
      return -1;
    }

    function seen(id) {
      if (id === null) { return false; }
      if (recent.hasOwnProperty(id)) { return true; }
      recent[id] = true;
      recentQueue.push(id);
      if (recentQueue.length > RECENT_IDS) { delete recent[recentQueue.shift()]; }
      return false;
    }

    function start() {
      retryTimer = null;
      if (closed) { return; }
      if (order.length === 0) {
        onerror({ type: 'transport', transport: null, message: 'no usable transport in this browser' });
        return;
      }
      var name = order[index];
      var a = { name: name, isLive: false, timer: null, stop: noop, stopped: false };
      current = a;
      function mine() { return current === a && !closed; }
      function deadline(ms, why) {
        root.clearTimeout(a.timer);
        a.timer = root.setTimeout(function () { if (mine() && !a.isLive) { a.fail(why); } }, ms);
      }
      a.cursor = function () { return lastId; };
      a.moveCursor = function (id) { if (mine()) { lastId = id; } };
      a.connected = function () { if (mine() && !a.isLive) { deadline(silenceTimeout, 'no open event (buffered?)'); } };
      a.live = function () {
        if (!mine() || a.isLive) { return; }
        a.isLive = true;
        root.clearTimeout(a.timer);
        if (name !== 'ws') { failures = 0; } // a WebSocket counts as working once a message came through
        remember(storeKey, name);
        ontransport(name);
      };
      a.deliver = function (event) {
        if (!mine()) { return; }
        failures = 0;
        if (event.id !== null) { event.id = String(event.id); }
        if (seen(event.id)) { return; }
        if (event.id !== null) { lastId = event.id; }
        if (event.event === gapEvent) {
          onerror({ type: 'gap', transport: name, message: 'events were lost after ' + (lastId || 'the start') });
        }
        onevent(event);
      };
      a.fail = function (message, downgrade) {
        if (!mine()) { return; }
        current = null;
        root.clearTimeout(a.timer);
        a.stopped = true;
        a.stop();
        onerror({ type: 'transport', transport: name, message: message });
        if (a.isLive && !downgrade) {
          schedule(); // the working transport dropped: reconnect to it
        } else if (index + 1 < order.length) {
          index += 1; // never went live: the next transport, at once
          start();
        } else {
          index = 0; // nothing worked: start over, with backoff
          schedule();
        }
      };
      // Long-poll has no open step: a held poll is silent by design, and pollTimeout bounds it.
      if (name !== 'long-poll') { deadline(openTimeout, 'did not open in time'); }
      try {
        var stop = name === 'ws' ? openWs(url, a) : name === 'sse' ? openSse(url, a, names, gapEvent)
          : openLongPoll(url, a, pollTimeout, gapEvent);
        if (a.stopped) { stop(); } else { a.stop = stop; }
      } catch (e) {
        a.fail(String(e && e.message || e));
      }
    }

    function schedule() {
      failures += 1;
      var delay = Math.min(backoffMax, 250 * Math.pow(2, failures));
      retryTimer = root.setTimeout(start, delay * (0.5 + Math.random() / 2));
    }

    start();
    return {
      close: function () {
        closed = true;
        root.clearTimeout(retryTimer);
        if (current) {
          root.clearTimeout(current.timer);
          current.stop();
          current = null;
        }
      },
      transport: function () { return current && current.isLive ? current.name : null; },
      lastEventId: function () { return lastId; }
    };
  }

  root.pushbridge = { connect: connect, transports: ORDER };
})(this);
