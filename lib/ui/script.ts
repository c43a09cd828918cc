/**
 * The dashboard's script, served as /cache/ui/app.<hash>.js. Kept as a string so the Lambda
 * bundle carries it without reading files; plain ES2020 for any current browser, no build step.
 * It reads only the JSON endpoints (/cache/images, /cache/registries, /cache/jobs, /cache/watch, /cache/gc,
 * /cache/stats), writes data with textContent (never as markup), and draws its plots as SVG.
 */
export const SCRIPT = `'use strict';
(function () {
  var TOKEN_KEY = 'image-cache-token';
  var SVG = 'http://www.w3.org/2000/svg';
  var DAY = 86400000;
  var state = { images: [], sort: { key: 'lastUsed', dir: 'descending' }, filter: '' };
  var $ = function (id) { return document.getElementById(id); };

  function token() { return sessionStorage.getItem(TOKEN_KEY); }

  function Refused(status) { this.status = status; }

  function api(path) {
    var headers = { Accept: 'application/json' };
    var t = token();
    if (t) headers.Authorization = 'Bearer ' + t;
    return fetch(path, { headers: headers, cache: 'no-store' }).then(function (r) {
      if (r.status === 401 || r.status === 403) throw new Refused(r.status);
      if (r.status === 404) return null;
      if (!r.ok) throw new Error(path + ' answered ' + r.status);
      return r.json();
    });
  }

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function bytes(n) {
    if (n === null || n === undefined) return '-';
    var units = ['B', 'kB', 'MB', 'GB', 'TB'];
    var i = 0;
    while (Math.abs(n) >= 1000 && i < units.length - 1) { n /= 1000; i++; }
    return (i === 0 ? String(n) : n.toFixed(n < 10 ? 2 : 1)) + ' ' + units[i];
  }

  function when(iso) {
    if (!iso) return '-';
    var d = new Date(iso);
    return isNaN(d.getTime()) || d.getTime() <= 0 ? '-' : d.toISOString().replace('T', ' ').slice(0, 16) + ' UTC';
  }

  function percent(x) { return x === null || x === undefined ? '-' : (x * 100).toFixed(1) + ' %'; }

  function status(text) { $('status').textContent = text; }

  // --- access control: a token asked for once per browser session, sent as a bearer token

  function showLogin(message) {
    $('content').hidden = true;
    $('login').hidden = false;
    $('signout').hidden = true;
    $('login-error').textContent = message || '';
    $('token').focus();
  }

  $('login-form').addEventListener('submit', function (event) {
    event.preventDefault();
    var value = $('token').value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    $('token').value = '';
    load();
  });

  $('signout').addEventListener('click', function () {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin('');
  });

  $('refresh').addEventListener('click', function () { load(); });

  // --- plots

  function svg(tag, attrs, text) {
    var e = document.createElementNS(SVG, tag);
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, String(attrs[k])); });
    if (text !== undefined) e.textContent = text;
    return e;
  }

  /** A bar or line plot of points [{label, value}] with an accessible title and a data table. */
  function plot(container, title, points, options) {
    container.textContent = '';
    if (points.length === 0) { container.appendChild(el('p', options.empty || 'No data yet.', 'note')); return; }
    var W = 640, H = 200, L = 64, B = 28, T = 10;
    var max = Math.max.apply(null, points.map(function (p) { return p.value; }).concat([options.max || 0, options.line || 0]));
    if (!(max > 0)) max = 1;
    var root = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'aria-label': title, class: 'plot', 'data-points': points.length });
    root.appendChild(svg('title', {}, title));
    var y = function (v) { return T + (H - T - B) * (1 - v / max); };
    var step = (W - L) / points.length;
    root.appendChild(svg('line', { x1: L, y1: y(0), x2: W, y2: y(0), class: 'axis' }));
    root.appendChild(svg('text', { x: L - 6, y: y(max) + 4, class: 'tick', 'text-anchor': 'end' }, options.format(max)));
    root.appendChild(svg('text', { x: L - 6, y: y(0), class: 'tick', 'text-anchor': 'end' }, options.format(0)));
    if (options.kind === 'line') {
      var d = points.map(function (p, i) { return (i ? 'L' : 'M') + (L + step * (i + 0.5)).toFixed(1) + ' ' + y(p.value).toFixed(1); }).join(' ');
      root.appendChild(svg('path', { d: d, class: 'series' }));
      points.forEach(function (p, i) { root.appendChild(svg('circle', { cx: L + step * (i + 0.5), cy: y(p.value), r: 2.5, class: 'dot', 'data-value': p.value })); });
    } else {
      points.forEach(function (p, i) {
        root.appendChild(svg('rect', { x: L + step * i + step * 0.15, y: y(p.value), width: step * 0.7, height: y(0) - y(p.value), class: 'bar', 'data-value': p.value }));
      });
    }
    if (options.line) {
      root.appendChild(svg('line', { x1: L, y1: y(options.line), x2: W, y2: y(options.line), class: 'budget' }));
      root.appendChild(svg('text', { x: W - 4, y: y(options.line) + 14, class: 'tick', 'text-anchor': 'end' }, 'budget'));
    }
    var first = points[0].label, last = points[points.length - 1].label;
    root.appendChild(svg('text', { x: L, y: H - 8, class: 'tick' }, first));
    if (points.length > 1) root.appendChild(svg('text', { x: W, y: H - 8, class: 'tick', 'text-anchor': 'end' }, last));
    container.appendChild(root);
  }

  // --- storage and traffic, from the hourly history (/cache/stats)

  function fit(points) {
    var n = points.length;
    if (n < 2) return null;
    var sx = 0, sy = 0, sxx = 0, sxy = 0;
    points.forEach(function (p) { sx += p.x; sy += p.y; sxx += p.x * p.x; sxy += p.x * p.y; });
    var den = n * sxx - sx * sx;
    if (den === 0) return null;
    var slope = (n * sxy - sx * sy) / den;
    return { slope: slope, intercept: (sy - slope * sx) / n };
  }

  function renderStorage(stats) {
    var figures = $('storage-figures');
    figures.textContent = '';
    if (!stats) {
      $('storage-note').textContent = 'No history yet: this server does not answer /cache/stats.';
      plot($('storage-plot'), 'Stored bytes per hour', [], { format: bytes, empty: 'No history yet.' });
      $('storage-projection').textContent = '';
      return;
    }
    var s = stats.storage || {};
    [['Stored', bytes(s.storedBytes), 'storedBytes', s.storedBytes], ['Budget', s.budgetBytes === null || s.budgetBytes === undefined ? 'none set' : bytes(s.budgetBytes), 'budgetBytes', s.budgetBytes],
     ['Blobs', s.storedBlobs, 'storedBlobs', s.storedBlobs], ['Images', s.images, 'images', s.images],
     ['Used of budget', s.budgetBytes ? percent(s.storedBytes / s.budgetBytes) : '-', 'usedShare', s.budgetBytes ? s.storedBytes / s.budgetBytes : '']].forEach(function (f) {
      var div = el('div');
      div.appendChild(el('dt', f[0]));
      var dd = el('dd', f[1]);
      dd.setAttribute('data-figure', f[2]);
      dd.setAttribute('data-value', f[3] === undefined || f[3] === null ? '' : f[3]);
      div.appendChild(dd);
      figures.appendChild(div);
    });
    $('storage-note').textContent = 'Measured ' + when(s.measuredAt) + '.';
    var hours = stats.hours.filter(function (h) { return h.gauges && h.gauges.storedBytes !== undefined; });
    plot($('storage-plot'), 'Stored bytes per hour', hours.map(function (h) {
      return { label: h.hour.slice(5, 13).replace('T', ' ') + 'h', value: h.gauges.storedBytes };
    }), { kind: 'line', format: bytes, line: s.budgetBytes || 0, empty: 'No hourly figures yet.' });
    var line = fit(hours.map(function (h) { return { x: Date.parse(h.hour), y: h.gauges.storedBytes }; }));
    var text = 'Projection: a straight line fitted to the hourly stored bytes. ';
    if (!s.budgetBytes) text += 'No retention budget is set, so nothing fills.';
    else if (!line || line.slope <= 0) text += 'Storage is not growing over this window: no fill date.';
    else {
      var full = (s.budgetBytes - line.intercept) / line.slope;
      var days = (full - Date.now()) / DAY;
      text += days <= 0 ? 'At this rate the budget is reached now; retention evicts the least recently used images.'
        : 'At this rate the budget is reached in about ' + Math.round(days) + ' days (' + new Date(full).toISOString().slice(0, 10) + ').';
    }
    $('storage-projection').textContent = text;
  }

  function renderTraffic(stats) {
    if (!stats) {
      plot($('hit-plot'), 'Hit ratio per day', [], { format: percent, empty: 'No history yet.' });
      plot($('saved-plot'), 'Upstream pulls saved per day', [], { format: String, empty: 'No history yet.' });
      $('traffic-totals').textContent = '';
      return;
    }
    var days = {};
    stats.hours.forEach(function (h) {
      var day = h.hour.slice(0, 10);
      var c = days[day] || (days[day] = { hits: 0, lookups: 0, saved: 0 });
      var n = function (k) { return (h.counters && h.counters[k]) || 0; };
      c.hits += n('manifestHits') + n('blobHits');
      c.lookups += n('manifestHits') + n('blobHits') + n('manifestMisses') + n('blobMisses');
      c.saved += n('manifestHits');
    });
    var keys = Object.keys(days).sort();
    plot($('hit-plot'), 'Hit ratio per day', keys.filter(function (k) { return days[k].lookups > 0; }).map(function (k) {
      return { label: k, value: days[k].hits / days[k].lookups };
    }), { format: percent, max: 1 });
    plot($('saved-plot'), 'Upstream pulls saved per day', keys.map(function (k) { return { label: k, value: days[k].saved }; }), { format: String });
    $('traffic-totals').textContent = 'Since ' + when(stats.since) + ': hit ratio ' + percent(stats.hitRatio) + ', ' + stats.pullsSaved + ' upstream pulls saved.';
    $('traffic-totals').setAttribute('data-hit-ratio', stats.hitRatio === null ? '' : stats.hitRatio);
    $('traffic-totals').setAttribute('data-pulls-saved', stats.pullsSaved);
  }

  // --- tables

  function fillTable(tbody, rows, empty, columns) {
    tbody.textContent = '';
    if (rows.length === 0) {
      var tr = el('tr');
      var td = el('td', empty, 'note');
      td.colSpan = columns;
      tr.appendChild(td);
      tbody.appendChild(tr);
      return;
    }
    rows.forEach(function (cells) {
      var tr = el('tr');
      cells.forEach(function (c, i) {
        var cell = el(i === 0 ? 'th' : 'td', c.text);
        if (i === 0) cell.scope = 'row';
        if (c.value !== undefined) cell.setAttribute('data-value', c.value);
        if (c.cls) cell.className = c.cls;
        tr.appendChild(cell);
      });
      tbody.appendChild(tr);
    });
  }

  function renderUpstreams(registries, stats) {
    var heard = {};
    ((stats && stats.upstreams) || []).forEach(function (u) { heard[u.registry] = u; });
    fillTable($('upstreams-body'), (registries || []).map(function (r) {
      var u = heard[r.Name] || {};
      var rl = r.RateLimit || {};
      var remaining = u.rateLimitRemaining !== undefined ? u.rateLimitRemaining : rl.remaining;
      var limit = u.rateLimitLimit !== undefined ? u.rateLimitLimit : rl.limit;
      var seen = u.observedAt || (rl.observedAt ? new Date(rl.observedAt).toISOString() : '');
      return [{ text: r.Name }, { text: r.URL }, { text: r.Credentials || '-', cls: r.Credentials === 'anonymous' ? 'warn' : '' },
        { text: remaining === undefined ? 'not reported' : remaining + (limit !== undefined ? ' of ' + limit : ''), value: remaining === undefined ? '' : remaining },
        { text: when(seen) }];
    }), 'No registries on the allow-list.', 5);
  }

  var COLUMNS = {
    name: function (i) { return (i.RepoTags[0] || i.RepoDigests[0] || i.Id).toLowerCase(); },
    size: function (i) { return i.Size; },
    created: function (i) { return i.Created; },
    lastUsed: function (i) { return i.LastUsed; },
    pins: function (i) { return i.Pins.length; },
    pulls: function (i) { return i.Pulls; },
  };

  function renderImages() {
    var key = state.sort.key, sign = state.sort.dir === 'ascending' ? 1 : -1;
    var f = state.filter.toLowerCase();
    var rows = state.images.filter(function (i) {
      return !f || i.Id.indexOf(f) >= 0 || i.RepoTags.concat(i.RepoDigests).some(function (n) { return n.toLowerCase().indexOf(f) >= 0; });
    }).sort(function (a, b) {
      var x = COLUMNS[key](a), y = COLUMNS[key](b);
      return (x < y ? -1 : x > y ? 1 : 0) * sign || (a.Id < b.Id ? -1 : 1);
    });
    document.querySelectorAll('#images th[data-sort]').forEach(function (th) {
      th.setAttribute('aria-sort', th.getAttribute('data-sort') === key ? state.sort.dir : 'none');
    });
    fillTable($('images-body'), rows.map(function (i) {
      var names = i.RepoTags.length ? i.RepoTags : i.RepoDigests.length ? i.RepoDigests : ['<none> ' + i.Id.slice(7, 19)];
      return [{ text: names.join(', '), value: i.Id }, { text: bytes(i.Size), value: i.Size }, { text: when(i.Created) },
        { text: when(i.LastUsed), value: i.LastUsed },
        { text: i.Pins.map(function (p) { return p.Name; }).join(', ') || '-', value: i.Pins.length },
        { text: i.Pulls, value: i.Pulls }];
    }), state.images.length ? 'No image matches the filter.' : 'No images cached yet.', 6);
    $('images-count').textContent = rows.length + ' of ' + state.images.length + ' images, ' +
      bytes(rows.reduce(function (s, i) { return s + i.Size; }, 0)) + ' unpacked.';
  }

  document.querySelectorAll('#images th[data-sort] button').forEach(function (button) {
    button.addEventListener('click', function () {
      var key = button.parentElement.getAttribute('data-sort');
      state.sort = { key: key, dir: state.sort.key === key && state.sort.dir === 'ascending' ? 'descending' : 'ascending' };
      renderImages();
    });
  });
  $('filter').addEventListener('input', function (e) { state.filter = e.target.value; renderImages(); });

  function renderJobs(jobs) {
    jobs = jobs || [];
    fillTable($('jobs-body'), jobs.map(function (j) {
      return [{ text: when(j.createdAt), value: j.id }, { text: j.kind }, { text: j.subject },
        { text: j.status, value: j.status, cls: j.status === 'failed' ? 'warn' : '' }, { text: when(j.updatedAt) },
        { text: j.error || '-', cls: j.error ? 'warn' : '' }];
    }), 'No jobs: pulls, loads and exports that outlive a request run as jobs and show here.', 6);
    var running = jobs.filter(function (j) { return j.status === 'queued' || j.status === 'running'; }).length;
    $('jobs-count').textContent = running + ' running or queued, ' + (jobs.length - running) + ' ended (newest 20).';
  }

  function renderWatches(listing) {
    var watches = (listing && listing.watches) || [];
    fillTable($('watches-body'), watches.map(function (w) {
      return [{ text: w.reference, value: w.name }, { text: w.every }, { text: w.platforms.join(', ') || 'default' },
        { text: w.lastCheck ? when(w.lastCheck) : 'never' }, { text: w.lastChange ? when(w.lastChange) : '-' },
        { text: when(w.nextCheck) }, { text: w.lastError || '-', cls: w.lastError ? 'warn' : '' }];
    }), 'No watched tags: image-cache watch add IMAGE keeps a tag fresh before CI asks for it.', 7);
    $('watches-budgets').textContent = ((listing && listing.registries) || []).map(function (r) {
      return r.registry + ': ' + r.pullsThisHour + ' of ' + r.pullsPerHour + ' background pulls this hour' +
        (r.pausedUntil ? ', paused until ' + when(r.pausedUntil) + ' (' + r.pauseReason + ')' : '');
    }).join('; ');
  }

  function renderGc(reports) {
    reports = reports || [];
    fillTable($('gc-body'), reports.map(function (r) {
      return [{ text: when(new Date(r.startedAt).toISOString()), value: r.id }, { text: r.trigger + (r.dryRun ? ' (dry run)' : '') },
        { text: r.deleted.blobs + ' / ' + bytes(r.deleted.bytes), value: r.deleted.bytes },
        { text: r.kept.blobs + ' / ' + bytes(r.kept.bytes), value: r.kept.bytes },
        { text: r.durationMs + ' ms', value: r.durationMs }, { text: r.errors.length ? r.errors.join('; ') : 'none', cls: r.errors.length ? 'warn' : '' }];
    }), 'No collection has run yet.', 6);
    plot($('gc-plot'), 'Bytes reclaimed per collection, oldest first', reports.slice().reverse().map(function (r) {
      return { label: new Date(r.startedAt).toISOString().slice(5, 16).replace('T', ' '), value: r.deleted.bytes };
    }), { format: bytes, empty: 'No collection has run yet.' });
  }

  // --- loading

  function load() {
    status('Loading...');
    return api('/cache/images').then(function (images) {
      $('login').hidden = true;
      $('content').hidden = false;
      $('signout').hidden = !token();
      state.images = images || [];
      renderImages();
      return Promise.all([api('/cache/registries'), api('/cache/gc?limit=20'),
        api('/cache/stats?since=720h').catch(function () { return null; }), api('/cache/jobs?limit=20'),
        api('/cache/watch').catch(function () { return null; })]);
    }).then(function (r) {
      renderUpstreams(r[0], r[2]);
      renderGc(r[1]);
      renderJobs(r[3]);
      renderWatches(r[4]);
      renderStorage(r[2]);
      renderTraffic(r[2]);
      status('Updated ' + new Date().toISOString().slice(11, 19) + ' UTC');
      document.body.setAttribute('data-loaded', 'true');
    }).catch(function (error) {
      if (error instanceof Refused) {
        var had = token();
        sessionStorage.removeItem(TOKEN_KEY);
        status('');
        showLogin(had ? 'The cache refused this token (' + error.status + '). Check it and its scope (read or more).' : '');
        document.body.setAttribute('data-loaded', 'login');
        return;
      }
      status('Could not load the dashboard: ' + error.message);
      document.body.setAttribute('data-loaded', 'error');
    });
  }

  load();
})();
`;
