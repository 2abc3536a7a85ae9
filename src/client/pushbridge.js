/*
 * pushbridge browser client, served at /_pushbridge/client.js (DESIGN §4, docs/protocol.md "Browser client").
 * ES5 only: it must run where nothing but XMLHttpRequest long-poll works.
 *
 *   var conn = pushbridge.connect('/events/news', {
 *     onevent: function (e) {},         // {id, event, data}; the gap notice has event = gapEvent and id null
 *     ontransport: function (name) {},  // 'ws' | 'sse' | 'long-poll', each time one goes live
 *     onerror: function (err) {},       // {type: 'gap' | 'transport' | 'probe', transport, message}
 *     events: ['message'],              // SSE event names to listen for (EventSource has no wildcard)
 *     transports: ['ws', 'sse', 'long-poll'], gapEvent: 'pushbridge-gap',
 *     lastEventId: null,                // resume after this id; otherwise the stream's position at connect()
 *     positionTimeout: 3000,            // ms for the first request, which learns that position
 *     openTimeout: 5000,                // ms for a WebSocket to open
 *     silenceTimeout: 3500,             // ms from creating an EventSource to its `pushbridge-open` event
 *     pollTimeout: 60000,               // ms a long-poll may stay unanswered
 *     probeInterval: 300000,            // ms on a lower transport before trying the better ones again; 0 = never
 *     backoffMax: 15000                 // ms, the longest pause between reconnect rounds
 *   });
 *   conn.close();
 *
 * Cursor from the first moment: unless `lastEventId` is given, the first request (`transport=long-poll&wait=0`,
 * answered at once) learns the stream's position, and every transport opened later resumes from it, so nothing
 * published after connect() is lost while transports are tried. If that request fails (the route refuses
 * long-poll, an older server, `positionTimeout`), the client starts without a cursor.
 * Ladder: WebSocket, then SSE, then long-poll (skipping what the browser lacks). A transport that fails to open
 * (WebSocket: `openTimeout`), closes before it is live, or (SSE) does not show the `pushbridge-open` event within
 * `silenceTimeout` of its creation (a buffering proxy holds even the headers back) is dropped for the next one.
 * The transport that worked is remembered for the page session; when it drops, it is retried first (after a
 * backoff), then the rest of the ladder. While live on a lower transport, the better ones are probed every
 * `probeInterval` alongside it; one that goes live replaces it. Every request carries the last event id
 * (`last_event_id` query parameter) and the server resumes exactly after it; a probe that takes over skips what the
 * transport it replaced delivered after the probe's cursor. So nothing is lost or repeated, and ids an upstream
 * reuses (a restarted app counting from 1 again) still arrive.
 */
(function (root) {
  'use strict';

  var ORDER = ['ws', 'sse', 'long-poll'];
  var OPEN_EVENT = 'pushbridge-open';
  // Most ids a probe may have to skip when it takes over (what the transport it replaces delivered meanwhile).
  var MAX_WINDOW = 10000;

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

  // One opener per transport. Each reads a.cursor() and calls back a.live(), a.deliver(event), a.moveCursor(id)
  // and a.fail(message, downgrade); each returns its stop function.

  function openWs(url, a) {
    // The envelope subprotocol: envelopes (ids, so resume works) whatever the route's ws.format.
    var sock = new root.WebSocket(absolute(withQuery(url, { transport: 'ws', last_event_id: a.cursor() }))
      .replace(/^http/, 'ws'), ['pushbridge.envelope.v1']);
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

  // Learns the stream's position with one answered-at-once long-poll (`wait=0`), then calls done(answer) with
  // {events, last_event_id} or done(null) when that failed (refused, not JSON, timed out).
  function learnPosition(url, timeoutMs, done) {
    var xhr = null, timer = null, finished = false;
    function finish(answer) {
      if (finished) { return; }
      finished = true;
      root.clearTimeout(timer);
      if (xhr) { xhr.onreadystatechange = null; }
      done(answer);
    }
    try {
      xhr = new root.XMLHttpRequest();
      xhr.open('GET', withQuery(url, { transport: 'long-poll', wait: '0' }), true);
      xhr.onreadystatechange = function () {
        if (xhr.readyState !== 4) { return; }
        var body = null;
        if (xhr.status === 200) {
          try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
        }
        finish(body && body.events instanceof Array ? body : null);
      };
      timer = root.setTimeout(function () {
        try { xhr.abort(); } catch (e) { /* already done */ }
        finish(null);
      }, timeoutMs);
      xhr.send(null);
    } catch (e) {
      finish(null);
    }
    return function () {
      if (finished) { return; }
      finished = true;
      root.clearTimeout(timer);
      xhr.onreadystatechange = null;
      xhr.abort();
    };
  }

  function connect(url, options) {
    options = options || {};
    var noop = function () {};
    var onevent = options.onevent || noop, ontransport = options.ontransport || noop, onerror = options.onerror || noop;
    var gapEvent = options.gapEvent || 'pushbridge-gap';
    var names = (options.events || ['message']).concat([gapEvent]);
    var positionTimeout = options.positionTimeout || 3000;
    var openTimeout = options.openTimeout || 5000;
    var silenceTimeout = options.silenceTimeout || 3500;
    var pollTimeout = options.pollTimeout || 60000;
    var probeInterval = typeof options.probeInterval === 'number' ? options.probeInterval : 300000;
    var backoffMax = options.backoffMax || 15000;
    var storeKey = 'pushbridge.transport ' + url;

    var order = [];
    var wanted = options.transports || ORDER;
    for (var i = 0; i < wanted.length; i++) {
      if (supported(wanted[i])) { order.push(wanted[i]); }
    }
    // The transport that last worked: tried first in every round.
    var preferred = indexOf(order, recall(storeKey)) >= 0 ? recall(storeKey) : null;
    var lastId = options.lastEventId ? String(options.lastEventId) : null;
    // Ids delivered since the pending probe read its cursor: log[k] is delivery number logBase + k.
    var log = [], logBase = 0;
    var current = null, probe = null, plan = [], probes = [];
    var retryTimer = null, probeTimer = null, stopPosition = noop, failures = 0, closed = false;

    function indexOf(list, value) {
      for (var j = 0; j < list.length; j++) { if (list[j] === value) { return j; } }
      return -1;
    }

    // Every resume is exact (the events after the cursor), so only a probe that takes over repeats anything: what
    // the transport it replaces delivered after the probe's cursor. Those, matched in order, are its window (below);
    // the first event that differs ends it. An upstream that reuses ids loses nothing.
    function trimLog() {
      var keep = probe ? logBase + log.length - probe.from : 0;
      if (keep > MAX_WINDOW) {
        var p = probe;
        probe = null;
        halt(p);
        onerror({ type: 'probe', transport: p.name, message: 'too many events to switch over' });
        keep = 0;
      }
      while (log.length > keep) {
        log.shift();
        logBase += 1;
      }
    }

    function deliver(event, name) {
      event.id = event.id === null || event.id === undefined ? null : String(event.id);
      if (event.id !== null) {
        lastId = event.id;
        log.push(event.id);
        trimLog();
      }
      if (event.event === gapEvent) {
        onerror({ type: 'gap', transport: name, message: 'events were lost after ' + (lastId || 'the start') });
      }
      onevent(event);
    }

    function halt(a) {
      a.stopped = true;
      root.clearTimeout(a.timer);
      a.stop();
    }

    // A round: the transport that last worked, then the rest of the ladder, each at once after the other fails.
    function startRound() {
      retryTimer = null;
      if (closed) { return; }
      if (order.length === 0) {
        onerror({ type: 'transport', transport: null, message: 'no usable transport in this browser' });
        return;
      }
      plan = preferred !== null ? [preferred] : [];
      for (var j = 0; j < order.length; j++) {
        if (order[j] !== preferred) { plan.push(order[j]); }
      }
      next();
    }

    function next() {
      if (closed) { return; }
      if (plan.length === 0) {
        schedule(); // nothing worked: another round, after a backoff
      } else {
        attempt(plan.shift(), false);
      }
    }

    function schedule() {
      failures += 1;
      var delay = Math.min(backoffMax, 250 * Math.pow(2, failures));
      retryTimer = root.setTimeout(startRound, delay * (0.5 + Math.random() / 2));
    }

    // While live on a lower transport: every probeInterval, the better ones, best first, alongside it.
    function planProbes() {
      root.clearTimeout(probeTimer);
      probeTimer = null;
      probes = [];
      var rank = current ? indexOf(order, current.name) : -1;
      if (probeInterval <= 0 || rank <= 0) { return; }
      probeTimer = root.setTimeout(function () {
        probeTimer = null;
        probes = order.slice(0, rank);
        nextProbe();
      }, probeInterval);
    }

    function nextProbe() {
      if (closed || !current || !current.isLive) { return; }
      if (probes.length === 0) {
        planProbes();
      } else {
        attempt(probes.shift(), true);
      }
    }

    function stopProbing() {
      root.clearTimeout(probeTimer);
      probeTimer = null;
      probes = [];
      if (probe) {
        var p = probe;
        probe = null;
        halt(p);
      }
    }

    function attempt(name, isProbe) {
      var a = { name: name, isLive: false, timer: null, stop: noop, stopped: false, window: [] };
      a.from = logBase + log.length;
      if (isProbe) { probe = a; } else { current = a; }
      function mine() { return !closed && (current === a || probe === a); }
      a.cursor = function () {
        a.from = logBase + log.length;
        return lastId;
      };
      a.moveCursor = function (id) { if (current === a && !closed) { lastId = id; } };
      a.live = function () {
        if (!mine() || a.isLive) { return; }
        a.isLive = true;
        root.clearTimeout(a.timer);
        if (probe === a) {
          // Went live beside the current transport: it takes over. Its cursor is the last id at its start, and
          // events the old one delivered since are dropped as repeats.
          probe = null;
          if (current) { halt(current); }
          current = a;
          a.window = log.slice(Math.max(0, a.from - logBase));
          trimLog(); // no probe pending now: nothing to keep
        }
        plan = order.slice(indexOf(order, name) + 1); // should it turn out useless, the ones below it
        if (name !== 'ws') { worked(); } // a WebSocket counts as working once a message came through
        ontransport(name);
        planProbes();
      };
      a.deliver = function (event) {
        if (current !== a || closed) { return; }
        worked();
        if (a.window.length > 0) {
          if (event.id !== null && String(event.id) === a.window[0]) {
            a.window.shift(); // delivered already, by the transport this one replaced
            return;
          }
          a.window = [];
        }
        deliver(event, name);
      };
      a.fail = function (message, downgrade) {
        if (!mine()) { return; }
        halt(a);
        if (probe === a) {
          probe = null;
          onerror({ type: 'probe', transport: name, message: message });
          nextProbe();
          return;
        }
        current = null;
        stopProbing();
        onerror({ type: 'transport', transport: name, message: message });
        if (a.isLive && !downgrade) {
          schedule(); // a blip: the next round starts with the transport that worked
        } else {
          // A WebSocket cut before any message (a proxy that accepts the upgrade, then drops it) is not retried
          // first; a transport that merely could not connect is (the outage may be over next round).
          if (downgrade && preferred === name) { preferred = null; }
          next();
        }
      };
      function worked() {
        failures = 0;
        if (preferred !== name) {
          preferred = name;
          remember(storeKey, name);
        }
      }
      // Both deadlines run from the start: a buffering proxy holds even the SSE response headers back.
      if (name === 'ws') { deadline(a, openTimeout, 'did not open in time'); }
      if (name === 'sse') { deadline(a, silenceTimeout, 'no open event in time (a buffering proxy?)'); }
      // Long-poll has no open step: a held poll is silent by design, and pollTimeout bounds it.
      try {
        var stop = name === 'ws' ? openWs(url, a) : name === 'sse' ? openSse(url, a, names, gapEvent)
          : openLongPoll(url, a, pollTimeout, gapEvent);
        if (a.stopped) { stop(); } else { a.stop = stop; }
      } catch (e) {
        a.fail(String(e && e.message || e));
      }
    }

    function deadline(a, ms, why) {
      a.timer = root.setTimeout(function () { if (!a.isLive) { a.fail(why); } }, ms);
    }

    function begin(answer) {
      stopPosition = noop;
      if (closed) { return; }
      if (answer) {
        for (var j = 0; j < answer.events.length; j++) {
          var e = answer.events[j];
          deliver({ id: e.id, event: e.event || 'message', data: e.data }, 'long-poll');
        }
        if (typeof answer.last_event_id === 'string' && answer.last_event_id !== '') { lastId = answer.last_event_id; }
      }
      startRound();
    }

    if (lastId === null && order.length > 0 && supported('long-poll')) {
      stopPosition = learnPosition(url, positionTimeout, begin);
    } else {
      begin(null);
    }
    return {
      close: function () {
        closed = true;
        stopPosition();
        root.clearTimeout(retryTimer);
        stopProbing();
        if (current) {
          halt(current);
          current = null;
        }
      },
      transport: function () { return current && current.isLive ? current.name : null; },
      lastEventId: function () { return lastId; }
    };
  }

  root.pushbridge = { connect: connect, transports: ORDER };
})(this);
