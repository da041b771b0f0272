// servepath's live page: reads its data endpoint every 2 s and draws it. No framework, no
// build step. Every value reaches the page through textContent or an attribute, never as
// markup: addresses and forwarded headers are whatever a caller sent.
"use strict";

(function () {
  var endpoint = document.body.getAttribute("data-endpoint");
  var PERIOD_MS = 2000;
  var ID_SHOWN = 8; // characters of a request id the list shows; the whole is its title
  var last = null;
  var previousTotals = null;

  function $(id) { return document.getElementById(id); }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (key) {
        if (key === "text") node.textContent = attrs[key];
        else node.setAttribute(key, attrs[key]);
      });
    }
    (children || []).forEach(function (child) { if (child) node.appendChild(child); });
    return node;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  function ms(value) {
    if (value === null || value === undefined) return "–";
    if (value >= 100) return value.toFixed(0) + " ms";
    if (value >= 10) return value.toFixed(1) + " ms";
    return value.toFixed(2) + " ms";
  }

  function clock(unix) {
    var d = new Date(unix * 1000);
    function two(n) { return (n < 10 ? "0" : "") + n; }
    return two(d.getHours()) + ":" + two(d.getMinutes()) + ":" + two(d.getSeconds());
  }

  function hostPort(host, port) {
    if (!host) return "unknown";
    var h = host.indexOf(":") >= 0 ? "[" + host + "]" : host;
    return port ? h + ":" + port : h;
  }

  // --- (a) the viewer's own path -------------------------------------------------------

  function node(kind, title, lines, label) {
    var item = el("li", { "class": "node " + kind, "aria-label": label });
    item.appendChild(el("span", { "class": "node-kind", text: title }));
    lines.forEach(function (line, i) {
      item.appendChild(el("span", { "class": i === 0 ? "node-main" : "node-sub", text: line }));
    });
    return item;
  }

  function edge(text, label, kind) {
    return el("li", { "class": "edge " + (kind || ""), "aria-label": label }, [
      el("span", { "class": "edge-time", text: text })
    ]);
  }

  function drawPath(data) {
    var v = data.viewer;
    var latest = v.latest;
    var path = $("path");
    clear(path);
    var items = [];
    (v.claimed || []).forEach(function (hop) {
      items.push(node("claimed", "claimed hop", [hop.entry, "named in " + hop.header + ", not verified"],
        "claimed hop " + hop.entry + " (not verified)"));
    });
    var client = v.client || {};
    items.push(node("viewer", "you", [hostPort(client.address, null),
      (client.kind || "") + " · from " + (client.source || "peer")],
      "you, as the server sees you: " + (client.address || "unknown")));
    var proxies = ((v.forwarded_trust || {}).proxies || []).slice().reverse();
    proxies.forEach(function (proxy) {
      items.push(node("proxy", "trusted proxy", [proxy, "in --forwarded-allow-ips"],
        "trusted proxy " + proxy));
    });
    var server = v.server || {};
    var runtime = (v.container || {}).runtime;
    var container = (v.container || {}).in_container
      ? (runtime ? "container (" + runtime + ")" : "in a container") : "not in a container";
    items.push(node("socket", "server socket", [hostPort(server.address, server.port),
      v.hostname ? container + " · " + v.hostname : container],
      "server socket " + hostPort(server.address, server.port) + ", " + container));
    var route = latest ? latest.route : data.server.predict_route;
    items.push(node("route", "route", ["POST " + route, latest ? "status " + latest.status : "no prediction of yours yet"],
      "route POST " + route));
    var cacheWord = latest && latest.cache ? latest.cache : "–";
    items.push(node("cache " + (cacheWord === "hit" ? "hit" : ""), "cache", [cacheWord,
      latest ? ms(latest.cache_ms) : ""], "cache " + cacheWord));
    var model = data.model || {};
    items.push(node("model", "model", [model.name || "loading", (model.version || "") + " · " + (model.engine || "")],
      "model " + (model.name || "loading")));

    // Edges: the network part is the caller's to measure; the server's part is its own split.
    var serverSide = items.length - 4; // index of the socket node
    items.forEach(function (item, i) {
      if (i > 0) {
        var label;
        var text;
        if (i <= serverSide) {
          text = "network";
          label = "network hop: its time is measured by the caller, not the server";
          path.appendChild(edge(text, label, "net"));
        } else if (i === serverSide + 1) {
          text = latest ? ms(latest.other_ms) : "–";
          label = "HTTP, parsing and queueing: " + text;
          path.appendChild(edge(text, label, "srv"));
        } else if (i === serverSide + 2) {
          text = latest ? ms(latest.cache_ms) : "–";
          label = "cache lookup: " + text;
          path.appendChild(edge(text, label, "srv"));
        } else {
          text = latest ? (latest.model_ms === null ? "not called" : ms(latest.model_ms)) : "–";
          label = "model call: " + text;
          path.appendChild(edge(text, label, "srv"));
        }
      }
      path.appendChild(item);
    });
    $("path-note").textContent = latest
      ? "Your latest prediction (" + latest.request_id + ", " + clock(latest.time) + ") took " +
        ms(latest.total_ms) + " inside the server; the network hops are yours to time (servepath request, doctor)."
      : "No prediction from " + (client.address || "you") + " in this worker's ring yet: send one to see its time split.";
  }

  // --- (c) the numbers -----------------------------------------------------------------

  function drawStats(data) {
    var s = data.stats;
    $("rps").textContent = s.throughput_rps.toFixed(s.throughput_rps >= 10 ? 0 : 2) + " req/s";
    $("errors").textContent = (100 * s.error_rate).toFixed(1) + " % (" + s.errors_4xx + " 4xx, " + s.errors_5xx + " 5xx)";
    $("p50").textContent = ms(s.p50_ms);
    $("p99").textContent = ms(s.p99_ms);
    var covered = Math.round(s.covered_s);
    $("stats-window").textContent = "· " + s.requests + " prediction requests over the last " +
      (covered >= 120 ? Math.round(covered / 60) + " min" : covered + " s") + ", this worker" +
      (s.synthetic_left_out ? " (" + s.synthetic_left_out + " synthetic left out: doctor, load, monitors)" : "");
    var t = data.totals;
    var rate = "";
    if (previousTotals && data.generated > previousTotals.at) {
      var perSecond = (t.requests - previousTotals.requests) / (data.generated - previousTotals.at);
      rate = " · " + perSecond.toFixed(1) + " req/s now";
    }
    previousTotals = { requests: t.requests, at: data.generated };
    $("totals").textContent = t.requests + " served, " + t.errors + " errors" + rate;
    var w = data.server.workers;
    $("workers-note").textContent = w > 1
      ? "This server runs " + w + " workers: the list merges every worker's last requests (each row " +
        "names its worker's pid); the percentiles and the chart are this worker's (" + pidText(data.server) +
        "). \"All workers\" is summed from /metrics, synthetic requests included."
      : "One worker (" + pidText(data.server) + "): the list covers every request to the predict routes; the numbers leave out synthetic ones (X-Servepath-Traffic).";
    drawSpark(s.per_second);
  }

  var SVG = "http://www.w3.org/2000/svg";

  function drawSpark(series) {
    var svg = $("spark");
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var peak = 1;
    series.forEach(function (b) { if (b.requests > peak) peak = b.requests; });
    var width = 600 / series.length;
    var total = 0;
    series.forEach(function (b, i) {
      total += b.requests;
      var h = 76 * b.requests / peak;
      var e = 76 * b.errors / peak;
      var ok = document.createElementNS(SVG, "rect");
      ok.setAttribute("x", String(i * width + 1));
      ok.setAttribute("width", String(Math.max(1, width - 2)));
      ok.setAttribute("y", String(80 - h));
      ok.setAttribute("height", String(h - e));
      ok.setAttribute("class", "bar");
      svg.appendChild(ok);
      if (e > 0) {
        var bad = document.createElementNS(SVG, "rect");
        bad.setAttribute("x", String(i * width + 1));
        bad.setAttribute("width", String(Math.max(1, width - 2)));
        bad.setAttribute("y", String(80 - e));
        bad.setAttribute("height", String(e));
        bad.setAttribute("class", "bar err");
        svg.appendChild(bad);
      }
    });
    var title = document.createElementNS(SVG, "title");
    title.textContent = total + " requests in the last " + series.length + " s, at most " + peak + " in one second";
    svg.appendChild(title);
    $("spark-caption").textContent = "requests per second, last " + series.length + " s (peak " + peak + "/s; errors in red)";
  }

  // --- (d) input drift against the reference profile ----------------------------------------

  function drawDrift(data) {
    var d = data.drift;
    var section = $("drift");
    if (!d) { section.hidden = true; return; }
    section.hidden = false;
    var p = d.profile || {};
    $("drift-window").textContent = "· the latest " + d.rows + " rows" +
      (d.scope === "all workers" ? " of every worker" : "") + " against the training data of " +
      (p.model || "the model") + " " + (p.version || "");
    var notes = [];
    if (d.paused) notes.push(d.paused);
    if (d.note) notes.push(d.note);
    if (!d.enough) notes.push("Too few rows yet: the statistics start at " + d.min_rows + " rows.");
    else notes.push(d.drifted.length ? "Drifted: " + d.drifted.join(", ") + "." : "No feature has drifted.");
    $("drift-note").textContent = notes.join(" ");
    $("drift-table").hidden = !d.features.length;
    var body = $("drift-rows");
    clear(body);
    d.features.forEach(function (f) {
      var cls = f.drifted ? "row drifted" : "row";
      body.appendChild(el("tr", { "class": cls, "data-feature": f.name }, [
        el("td", { "data-label": "feature", text: f.name }),
        el("td", { "data-label": "kind", text: f.kind }),
        el("td", { "class": "num", "data-label": "PSI", text: f.psi.toFixed(3) }),
        el("td", { "class": "num", "data-label": "threshold", text: String(f.threshold) }),
        el("td", { "data-label": "drifted" }, [el("span", { "class": "badge " + (f.drifted ? "s5" : "s2"), text: f.drifted ? "drifted" : "stable" })]),
        el("td", { "class": "num", "data-label": "JS distance", text: f.js.toFixed(3) })
      ]));
    });
  }

  // --- (b) the last requests -------------------------------------------------------------

  function chainOf(r) {
    var parts = [];
    if (r.forwarded) parts.push("claimed: " + r.forwarded);
    if (r.proxies.length) parts.push("via " + r.proxies.slice().reverse().join(" → "));
    return parts.length ? parts.join(" · ") : "direct";
  }

  function splitBar(r) {
    var total = r.total_ms > 0 ? r.total_ms : 1;
    var bar = el("span", { "class": "split", "aria-hidden": "true" });
    [["c", r.cache_ms || 0], ["m", r.model_ms || 0], ["o", r.other_ms || 0]].forEach(function (p) {
      var seg = el("span", { "class": "seg " + p[0] });
      seg.style.width = (100 * p[1] / total).toFixed(1) + "%";
      bar.appendChild(seg);
    });
    var words = "total " + ms(r.total_ms) + ": cache " + ms(r.cache_ms) + ", model " +
      (r.model_ms === null ? "not called" : ms(r.model_ms)) + ", other " + ms(r.other_ms);
    return el("td", { "class": "time-split", "data-label": "server time", "title": words }, [
      el("span", { "class": "cell" }, [
        el("span", { "class": "total", text: ms(r.total_ms) }), bar,
        el("span", { "class": "sr", text: words })
      ])
    ]);
  }

  var WITHHELD = "withheld: other callers are shown in full to a caller with an API key or on this machine";

  // The list, with the viewer's own rows whole where it withholds other callers' fields.
  function rowsOf(data) {
    var rows = data.requests.slice();
    (data.viewer.mine || []).forEach(function (r) { rows[r.n] = r; });
    return rows;
  }

  function idCell(r) {
    if (r.withheld) {
      return el("td", { "class": "rid", "data-label": "request id", "title": WITHHELD }, [
        el("span", { "class": "withheld", text: "withheld" })
      ]);
    }
    var id = r.request_id || "";
    var short = id.length > ID_SHOWN ? id.slice(0, ID_SHOWN) + "…" : id;
    var parts = [el("code", { text: short })];
    if (r.trace_id) {  // traced (--otlp-endpoint): the id to look the request up by in traces
      parts.push(el("span", { "class": "trace", "title": "trace " + r.trace_id,
        text: "trace " + r.trace_id.slice(0, ID_SHOWN) + "…" }));
    }
    return el("td", { "class": "rid", "data-label": "request id", "title": id }, parts);
  }

  function callerCell(r) {
    if (r.withheld) {
      return el("td", { "class": "caller", "data-label": "caller", "title": WITHHELD }, [
        el("span", { "class": "cell" }, [el("span", { "class": "ip withheld", text: "withheld" })])
      ]);
    }
    return el("td", { "class": "caller", "data-label": "caller", "title": "TCP peer " + (r.client_addr || "unknown") }, [
      el("span", { "class": "cell" }, [
        el("span", { "class": "ip", text: r.client_ip || "unknown" }),
        el("span", { "class": "peer", text: "peer " + (r.client_addr || "unknown") })
      ])
    ]);
  }

  function drawRows() {
    if (!last) return;
    var wantStatus = $("filter-status").value;
    var wantCaller = $("filter-caller").value.trim().toLowerCase();
    var wantId = $("filter-id").value.trim().toLowerCase();
    var body = $("recent-rows");
    clear(body);
    var shown = 0;
    var rows = rowsOf(last);
    rows.forEach(function (r) {
      if (wantStatus && String(r.status).charAt(0) !== wantStatus) return;
      var caller = (r.client_ip || "") + " " + (r.client_addr || "");
      if (wantCaller && caller.toLowerCase().indexOf(wantCaller) < 0) return;
      if (wantId && ((r.request_id || "") + " " + (r.trace_id || "")).toLowerCase().indexOf(wantId) < 0) return;
      shown += 1;
      var cls = r.status >= 500 ? "s5" : r.status >= 400 ? "s4" : "s2";
      var attrs = { "class": "row " + cls };
      if (r.request_id) attrs["data-request-id"] = r.request_id;
      body.appendChild(el("tr", attrs, [
        el("td", { "data-label": "time", text: clock(r.time) }),
        el("td", { "data-label": "status" }, [el("span", { "class": "badge " + cls, text: String(r.status) })]),
        idCell(r),
        callerCell(r),
        el("td", { "class": "chain", "data-label": "chain", text: r.withheld ? "withheld" : chainOf(r) }),
        el("td", { "data-label": "route" }, r.traffic
          ? [document.createTextNode(r.route + " "), el("span", { "class": "traffic", "title": "marked X-Servepath-Traffic: left out of the numbers", text: r.traffic })]
          : [document.createTextNode(r.route)]),
        el("td", { "class": "cache-cell", "data-label": "cache", text: r.cache || "–" }),
        splitBar(r)
      ]));
    });
    $("recent-count").textContent = "· " + shown + " shown of " + rows.length +
      " kept (this worker keeps the last " + last.server.ring.capacity + ")";
  }

  // --- the loop --------------------------------------------------------------------------

  // The versions in service and the share of this worker's answers each gave; the shadow's
  // agreement with the answers callers got.
  function versionsText(versions, shadow) {
    var total = 0;
    versions.forEach(function (v) { total += v.answered || 0; });
    var parts = versions.map(function (v) {
      var text = v.role + " " + v.label;
      if (v.role === "shadow") {
        var compared = shadow ? shadow.agree + shadow.disagree : 0;
        return text + (compared ? ": agrees on " + (100 * shadow.agree / compared).toFixed(1) +
          "% of " + compared + (shadow.skipped ? ", " + shadow.skipped + " skipped" : "") : "");
      }
      var share = total ? (100 * (v.answered || 0) / total).toFixed(1) + "% of answers" : "";
      var weight = v.role === "candidate" ? " (weight " + v.weight + "%)" : "";
      return text + weight + (share ? ": " + share : "");
    });
    return parts.length > 1 ? parts.join(" · ") : "one";
  }

  function pidText(server) {
    return server.pid === null || server.pid === undefined ? "pid withheld" : "pid " + server.pid;
  }

  function draw(data) {
    last = data;
    var model = data.model || {};
    $("model-name").textContent = model.name || "loading";
    $("model-version").textContent = model.label && model.label !== model.version
      ? model.label + " (" + model.version + ")" : (model.version || "–");
    $("model-versions").textContent = versionsText(data.versions || [], data.shadow);
    $("model-engine").textContent = model.engine || "–";
    var workers = data.server.workers;
    $("worker").textContent = pidText(data.server) +
      (workers > 1 ? ", one of " + workers + " workers" : ", the only worker");
    drawPath(data);
    drawStats(data);
    drawDrift(data);
    drawRows();
    $("status").textContent = "live · updated " + clock(data.generated);
    $("status").className = "status ok";
  }

  function tick() {
    fetch(endpoint, { cache: "no-store", credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error(endpoint + " answered " + response.status);
        return response.json();
      })
      .then(draw)
      .catch(function (err) {
        $("status").textContent = "not updating: " + err.message;
        $("status").className = "status bad";
      })
      .then(function () { setTimeout(tick, PERIOD_MS); });
  }

  $("filter-status").addEventListener("change", drawRows);
  $("filter-caller").addEventListener("input", drawRows);
  $("filter-id").addEventListener("input", drawRows);
  // /_ui?id=REQUEST-ID opens the list filtered to that request (the X-Request-ID one logged).
  var askedId = new URLSearchParams(window.location.search).get("id");
  if (askedId) $("filter-id").value = askedId;
  $("filters").addEventListener("submit", function (e) { e.preventDefault(); });
  tick();
})();
