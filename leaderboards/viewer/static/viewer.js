/* ditto-bench run viewer. Plain JavaScript, no dependencies.
 * Every text from a run (messages, completions, labels) is put into the page with textContent or as an
 * attribute value set through the DOM, never parsed as HTML. Session details are gzip+base64 blobs,
 * inflated on demand (DecompressionStream), so a page of thousands of sessions opens fast. */
(function () {
  'use strict';
  var D = JSON.parse(document.getElementById('ditto-data').textContent);
  var PAGE = 200;
  var app = document.getElementById('app');
  var blobArrays = {};
  var details = {};
  var searchText = {};
  var st = {
    view: 'run', run: 0, sweep: 0, shown: PAGE, open: null,
    f: {task: '', lang: '', metric: '', state: '', min: '', max: '', fail: false, q: '', sort: 'order'},
    c: {task: '', metric: '', shown: PAGE, open: null}
  };

  // ---------------------------------------------------------------------------------------- helpers
  function el(tag, attrs) {
    var e = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        var v = attrs[k];
        if (v === null || v === undefined || v === false) return;
        if (k === 'text') e.textContent = String(v);
        else if (k === 'class') e.className = v;
        else if (k.slice(0, 2) === 'on') e.addEventListener(k.slice(2), v);
        else e.setAttribute(k, v === true ? '' : String(v));
      });
    }
    for (var i = 2; i < arguments.length; i++) add(e, arguments[i]);
    return e;
  }
  function add(parent, child) {
    if (child === null || child === undefined || child === false) return;
    if (Array.isArray(child)) { child.forEach(function (c) { add(parent, c); }); return; }
    parent.appendChild(typeof child === 'object' ? child : document.createTextNode(String(child)));
  }
  function fmt(x, d) {
    if (x === null || x === undefined || typeof x !== 'number' || isNaN(x)) return '—';
    return x.toFixed(d === undefined ? 3 : d);
  }
  function fmtCi(ci) { return ci ? '[' + fmt(ci[0]) + ', ' + fmt(ci[1]) + ']' : '—'; }
  function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); return e; }
  function blobs(r) {
    if (!blobArrays[r]) blobArrays[r] = JSON.parse(document.getElementById('blobs-' + r).textContent);
    return blobArrays[r];
  }
  function inflate(b64) {
    var bin = atob(b64);
    var bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'));
    return new Response(stream).text().then(JSON.parse);
  }
  function detail(r, i) {
    var k = r + ':' + i;
    if (!details[k]) details[k] = inflate(blobs(r)[i]);
    return details[k];
  }
  function run() { return D.runs[st.run]; }
  function keyOf(s) { return s.task + '/' + s.id; }
  function allMetrics(r) {
    var out = [];
    Object.keys(r.metrics).forEach(function (t) {
      r.metrics[t].forEach(function (m) { if (out.indexOf(m) < 0) out.push(m); });
    });
    return out;
  }
  function score(r, s, metric) {
    var k = r.metrics[s.task] ? r.metrics[s.task].indexOf(metric) : -1;
    return k < 0 ? null : s.sc[k];
  }
  function turnScore(r, s, t, metric) {
    var k = r.metrics[s.task] ? r.metrics[s.task].indexOf(metric) : -1;
    return (k < 0 || !s.ts[t]) ? null : s.ts[t][k];
  }
  function uniq(xs) { return xs.filter(function (x, i) { return x !== null && x !== undefined && xs.indexOf(x) === i; }); }
  function ambiguous(r) {
    if (r._amb === undefined) {
      var seen = {}; r._amb = false;
      r.sessions.forEach(function (s) { if (seen[s.id]) r._amb = true; seen[s.id] = 1; });
    }
    return r._amb;
  }
  function sessionHash(ri, s) {
    var r = D.runs[ri];
    var name = ambiguous(r) ? keyOf(s) : s.id;
    return '#' + (ri > 0 ? 'r' + ri + ':' : '') + encodeURIComponent(name).replace(/%2F/g, '/');
  }
  function findSession(r, name) {
    for (var i = 0; i < r.sessions.length; i++) if (keyOf(r.sessions[i]) === name) return i;
    for (var j = 0; j < r.sessions.length; j++) if (r.sessions[j].id === name) return j;
    return -1;
  }
  function select(id, options, value, onchange) {
    var s = el('select', {id: id, onchange: function () { onchange(s.value); }});
    options.forEach(function (o) {
      var opt = el('option', {value: o[0], text: o[1]});
      if (o[0] === value) opt.selected = true;
      s.appendChild(opt);
    });
    return s;
  }
  function plot(id) {
    var t = document.getElementById(id);
    return t ? el('div', {class: 'plot'}, t.content.cloneNode(true)) : null;
  }

  // -------------------------------------------------------------------------------------------- nav
  function nav() {
    var n = el('nav', {id: 'tabs'});
    D.runs.forEach(function (r, i) {
      n.appendChild(el('a', {href: '#r' + i, id: 'tab-run-' + i,
        class: st.view === 'run' && st.run === i ? 'tab active' : 'tab', text: r.label}));
    });
    if (D.runs.length > 1) {
      n.appendChild(el('a', {href: '#compare', id: 'tab-compare',
        class: st.view === 'compare' ? 'tab active' : 'tab', text: 'Compare (' + D.runs.length + ' runs)'}));
    }
    D.sweeps.forEach(function (sw, j) {
      n.appendChild(el('a', {href: '#sweep' + j, id: 'tab-sweep-' + j,
        class: st.view === 'sweep' && st.sweep === j ? 'tab active' : 'tab', text: 'Sweep: ' + sw.name}));
    });
    return n;
  }

  // ------------------------------------------------------------------------------------- run view
  function resultsTable(r) {
    var t = el('table', {id: 'results', class: 'data'},
      el('thead', null, el('tr', null, ['task', 'split', 'metric', 'value', '95% CI', 'n', 'failures']
        .map(function (h) { return el('th', {text: h}); }))));
    var body = el('tbody');
    r.results.forEach(function (row) {
      var fails = Object.keys(row.failures).filter(function (k) { return row.failures[k]; })
        .map(function (k) { return k + ' ' + row.failures[k]; }).join(', ');
      body.appendChild(el('tr', {class: 'result-row', 'data-task': row.task, 'data-split': row.split,
        'data-metric': row.metric},
        el('td', {text: row.task}), el('td', {text: row.split}), el('td', {text: row.metric}),
        el('td', {class: 'num value', text: fmt(row.value)}), el('td', {class: 'num ci', text: fmtCi(row.ci)}),
        el('td', {class: 'num', text: row.n === null ? '—' : row.n}),
        el('td', {class: fails ? 'fail' : '', text: fails || 'none'})));
    });
    t.appendChild(body);
    return t;
  }

  function matches(r, s, i) {
    var f = st.f;
    if (f.task && s.task !== f.task) return false;
    if (f.lang && s.lang !== f.lang) return false;
    if (f.state && s.st.indexOf(f.state) < 0) return false;
    if (f.fail && !s.nf) return false;
    if (f.metric) {
      if (!r.metrics[s.task] || r.metrics[s.task].indexOf(f.metric) < 0) return false;
      var v = score(r, s, f.metric);
      if ((f.min !== '' || f.max !== '') && v === null) return false;
      if (f.min !== '' && v < parseFloat(f.min)) return false;
      if (f.max !== '' && v > parseFloat(f.max)) return false;
    }
    if (f.q) {
      var txt = searchText[st.run];
      if (!txt || txt[i].indexOf(f.q.toLowerCase()) < 0) return false;
    }
    return true;
  }

  function sortedRows(r) {
    var rows = [];
    r.sessions.forEach(function (s, i) { if (matches(r, s, i)) rows.push(i); });
    var sort = st.f.sort;
    if (sort === 'fail') {
      rows.sort(function (a, b) { return r.sessions[b].nf - r.sessions[a].nf || a - b; });
    } else if (sort !== 'order') {
      var parts = sort.split(':'), m = parts[0], dir = parts[1] === 'desc' ? -1 : 1;
      rows.sort(function (a, b) {
        var x = score(r, r.sessions[a], m), y = score(r, r.sessions[b], m);
        if (x === null && y === null) return a - b;
        if (x === null) return 1;
        if (y === null) return -1;
        return dir * (x - y) || a - b;
      });
    }
    return rows;
  }

  function buildSearch(ri, done) {
    var r = D.runs[ri];
    if (searchText[ri]) { done(); return; }
    var out = new Array(r.sessions.length), i = 0;
    var count = document.getElementById('count');
    function step() {
      var batch = [];
      for (var k = 0; k < 100 && i < r.sessions.length; k++, i++) batch.push(textOf(ri, i));
      Promise.all(batch).then(function (texts) {
        texts.forEach(function (t) { out[t[0]] = t[1]; });
        if (i < r.sessions.length) {
          if (count) count.textContent = 'indexing text: ' + i + ' / ' + r.sessions.length;
          setTimeout(step, 0);
        } else { searchText[ri] = out; done(); }
      });
    }
    step();
  }
  function textOf(ri, i) {
    return detail(ri, i).then(function (d) {
      var parts = [];
      (d.messages || []).forEach(function (m) { parts.push(String(m.content)); });
      (d.turns || []).forEach(function (t) {
        Object.keys(t.judgments || {}).forEach(function (m) {
          (t.judgments[m].completions || []).forEach(function (c) { parts.push(String(c)); });
        });
      });
      return [i, parts.join('\n').toLowerCase()];
    });
  }

  function filters(r) {
    var sessions = r.sessions;
    var metrics = allMetrics(r);
    var states = uniq([].concat.apply([], sessions.map(function (s) { return s.st; }))).sort();
    var langs = uniq(sessions.map(function (s) { return s.lang; })).sort();
    var tasks = Object.keys(r.metrics);
    function set(k) { return function (v) { st.f[k] = v; st.shown = PAGE; refreshList(); }; }
    var search = el('input', {id: 'f-search', type: 'search', placeholder: 'search messages and completions',
      value: st.f.q});
    var timer = null;
    search.addEventListener('input', function () {
      clearTimeout(timer);
      timer = setTimeout(function () {
        st.f.q = search.value.trim(); st.shown = PAGE;
        if (st.f.q) buildSearch(st.run, refreshList); else refreshList();
      }, 150);
    });
    var sorts = [['order', 'session order'], ['fail', 'most failures']];
    metrics.forEach(function (m) { sorts.push([m + ':desc', m + ' high → low'], [m + ':asc', m + ' low → high']); });
    var num = function (id, k, ph) {
      var e = el('input', {id: id, type: 'number', step: 'any', placeholder: ph, value: st.f[k]});
      e.addEventListener('input', function () { set(k)(e.value); });
      return e;
    };
    var fail = el('input', {id: 'f-fail', type: 'checkbox'});
    fail.checked = st.f.fail;
    fail.addEventListener('change', function () { set('fail')(fail.checked); });
    return el('div', {class: 'filters'},
      el('label', null, 'task ', select('f-task', [['', 'all']].concat(tasks.map(function (t) { return [t, t]; })),
        st.f.task, set('task'))),
      langs.length ? el('label', null, 'language ', select('f-lang',
        [['', 'all']].concat(langs.map(function (l) { return [l, l]; })), st.f.lang, set('lang'))) : null,
      el('label', null, 'metric ', select('f-metric', [['', 'any']].concat(metrics.map(function (m) { return [m, m]; })),
        st.f.metric, set('metric'))),
      el('label', null, 'score ', num('f-min', 'min', 'min'), ' – ', num('f-max', 'max', 'max')),
      el('label', null, 'state ', select('f-state', [['', 'any']].concat(states.map(function (s) { return [s, s]; })),
        st.f.state, set('state'))),
      el('label', null, fail, ' failures only'),
      el('label', null, 'sort ', select('f-sort', sorts, st.f.sort, set('sort'))),
      search);
  }

  function sessionTable(r) {
    var metrics = allMetrics(r);
    var head = ['session', 'task', 'lang', 'turns'].concat(metrics).concat(['states', 'failures']);
    var ths = head.map(function (h) {
      var th = el('th', {text: h});
      if (metrics.indexOf(h) >= 0) {
        th.className = 'sortable';
        th.addEventListener('click', function () {
          st.f.sort = st.f.sort === h + ':desc' ? h + ':asc' : h + ':desc';
          var s = document.getElementById('f-sort'); if (s) s.value = st.f.sort;
          st.shown = PAGE; refreshList();
        });
      }
      return th;
    });
    return el('table', {id: 'sessions', class: 'data'}, el('thead', null, el('tr', null, ths)), el('tbody'));
  }

  function refreshList() {
    var r = run();
    if (st.f.q && !searchText[st.run]) { buildSearch(st.run, refreshList); return; }
    var rows = sortedRows(r);
    var metrics = allMetrics(r);
    var body = clear(document.querySelector('#sessions tbody'));
    rows.slice(0, st.shown).forEach(function (i) {
      var s = r.sessions[i];
      body.appendChild(el('tr', {class: 'session-row' + (s.nf ? ' has-fail' : ''), 'data-key': keyOf(s)},
        el('td', null, el('a', {href: sessionHash(st.run, s), text: s.id})),
        el('td', {text: s.task}), el('td', {text: s.lang || '—'}), el('td', {class: 'num', text: s.nt}),
        metrics.map(function (m) {
          return el('td', {class: 'num score', 'data-metric': m, text: fmt(score(r, s, m))});
        }),
        el('td', {text: s.st.join(', ')}), el('td', {class: 'num' + (s.nf ? ' fail' : ''), text: s.nf})));
    });
    document.getElementById('count').textContent =
      'showing ' + Math.min(st.shown, rows.length) + ' of ' + rows.length + ' matching sessions (' +
      r.sessions.length + ' in the run)';
    var more = document.getElementById('more');
    more.style.display = rows.length > st.shown ? '' : 'none';
  }

  function renderRun() {
    var r = run();
    var top = el('section', {id: 'run-view'},
      el('h2', null, r.label, ' ', el('span', {class: 'muted', text: r.path})),
      el('p', {class: 'meta'}, 'mode ' + r.mode + '; ' +
        (r.complete === null ? 'not scored' : r.complete ? 'complete' : 'INCOMPLETE') + '; judge ' +
        Object.keys(r.judge).map(function (t) { return t + ': ' + r.judge[t]; }).join('; ')),
      r.notes.length ? el('ul', {class: 'notes'}, r.notes.map(function (n) { return el('li', {text: n}); })) : null,
      el('div', {class: 'summary'}, resultsTable(r), plot('plot-run-' + st.run)),
      el('div', {id: 'detail'}),
      el('h3', {text: 'Sessions'}), filters(r), el('p', {id: 'count', class: 'muted'}), sessionTable(r),
      el('button', {id: 'more', text: 'show more', onclick: function () { st.shown += PAGE; refreshList(); }}));
    add(app, top);
    refreshList();
    if (st.open !== null) openSession(st.run, st.open);
  }

  // --------------------------------------------------------------------------------- session detail
  function replies(d) {
    var out = [];
    (d.messages || []).forEach(function (m) { if (m.role === 'assistant') out.push(String(m.content)); });
    return out;
  }
  function pre(text, cls) { return el('pre', {class: cls || 'text', text: text === null || text === undefined ? '' : String(text)}); }
  function judgmentBox(metric, j) {
    var state = j.verdict && j.verdict.status ? j.verdict.status : (j.rating_status || j.status);
    if (j.status === 'pending') state = 'pending';
    var facts = ['template ' + j.template, 'attempts ' + (j.attempts === null ? '—' : j.attempts),
      j.cached ? 'cached' : 'not cached'];
    if (j.verdict) facts.push('verdict ' + JSON.stringify(j.verdict.value) + ' (ok ' + j.verdict.n_ok +
      ', parse errors ' + j.verdict.n_parse_error + ', api errors ' + j.verdict.n_api_error + ')');
    var parsed = j.parsed || [];
    return el('div', {class: 'judgment state-' + state, 'data-metric': metric},
      el('div', {class: 'jhead'}, el('b', {text: metric}), ' ',
        el('span', {class: 'badge ' + (state === 'ok' ? 'ok' : 'bad'), text: state}), ' score ',
        el('b', {class: 'jscore', text: fmt(typeof j.score === 'number' ? j.score : null)}),
        el('span', {class: 'muted', text: ' · ' + facts.join(' · ')})),
      j.error ? el('div', {class: 'fail', text: 'error: ' + j.error}) : null,
      el('details', {class: 'prompt'}, el('summary', {text: 'judge prompt (' + (j.prompt || []).length + ' messages)'}),
        (j.prompt || []).map(function (m) { return el('div', null, el('div', {class: 'role', text: m.role}), pre(m.content)); })),
      el('details', {class: 'completions', open: true}, el('summary', {text: (j.completions || []).length + ' raw completion(s)'}),
        (j.completions || []).map(function (c, k) {
          var p = parsed[k] || {};
          return el('div', {class: 'completion'},
            el('div', {class: 'parsed ' + (p.status === 'ok' ? '' : 'fail'),
              text: '#' + (k + 1) + ' parsed: ' + (p.status || '—') + (p.value !== undefined && p.value !== null ?
                ' → ' + JSON.stringify(p.value) : '') + (p.reason ? ' (' + p.reason + ')' : '')}),
            pre(c));
        })));
  }
  function sessionMeta(d) {
    var facts = [];
    ['label', 'candidates', 'gold_position', 'rejection_labels', 'question_id', 'category', 'answer_model',
      'answer_duplicates'].forEach(function (k) {
      if (d[k] !== undefined && d[k] !== null) facts.push(k + ': ' + (typeof d[k] === 'string' ? d[k] : JSON.stringify(d[k])));
    });
    return el('p', {class: 'meta', text: facts.join(' · ')});
  }
  function openSession(ri, i) {
    var r = D.runs[ri], s = r.sessions[i];
    var box = document.getElementById('detail');
    if (!box) return;
    clear(box).appendChild(el('p', {class: 'muted', text: 'loading ' + s.id + '…'}));
    detail(ri, i).then(function (d) {
      var reps = replies(d);
      var user = (d.messages || []).filter(function (m) { return m.role === 'user'; });
      clear(box);
      box.appendChild(el('div', {class: 'session', id: 'session-detail', 'data-key': keyOf(s)},
        el('h3', null, 'Session ', el('span', {class: 'sid', text: s.id}), ' ',
          el('a', {href: sessionHash(ri, s), class: 'permalink', text: '¶ link'}), ' ',
          el('button', {text: 'close', onclick: function () { st.open = null; clear(box); history.replaceState(null, '', '#r' + ri); }})),
        el('p', {class: 'meta', text: s.task + (s.lang ? ' · ' + s.lang : '') + ' · ' + s.nt + ' turns'}),
        sessionMeta(d),
        d.system ? el('div', {class: 'msg system'}, el('div', {class: 'role', text: 'system'}), pre(d.system)) : null,
        (d.turns || []).map(function (t, k) {
          var g = t.generation || {};
          return el('div', {class: 'turn', 'data-turn': k},
            el('h4', {text: 'Turn ' + (k + 1)}),
            el('div', {class: 'msg user'}, el('div', {class: 'role', text: 'user'}),
              pre(user[k] ? user[k].content : (d.prompts || [])[k])),
            el('div', {class: 'msg assistant'}, el('div', {class: 'role', text: 'assistant · generation ' + (g.status || '—')}),
              reps[k] !== undefined ? pre(reps[k], 'text reply') : el('p', {class: 'fail', text: 'no reply'}),
              g.error ? el('div', {class: 'fail', text: 'generation error: ' + g.error}) : null),
            Object.keys(t.judgments || {}).map(function (m) { return judgmentBox(m, t.judgments[m]); }));
        })));
      box.scrollIntoView();
    });
  }

  // ------------------------------------------------------------------------------------ compare view
  function cmpTasks() {
    var ts = Object.keys(D.runs[0].metrics);
    return ts.filter(function (t) { return D.runs.every(function (r) { return r.metrics[t]; }); });
  }
  function cmpRows(task, metric) {
    var maps = D.runs.map(function (r) {
      var m = {}; r.sessions.forEach(function (s, i) { if (s.task === task) m[s.id] = i; }); return m;
    });
    var rows = [];
    D.runs[0].sessions.forEach(function (s0) {
      if (s0.task !== task) return;
      var idx = maps.map(function (m) { return m[s0.id]; });
      if (idx.some(function (x) { return x === undefined; })) return;
      for (var t = 0; t < s0.nt; t++) {
        var vals = idx.map(function (i, ri) { return turnScore(D.runs[ri], D.runs[ri].sessions[i], t, metric); });
        var have = vals.filter(function (v) { return v !== null; });
        var spread = have.length === vals.length ? Math.max.apply(null, have) - Math.min.apply(null, have) : null;
        rows.push({id: s0.id, turn: t, idx: idx, vals: vals,
          delta: vals.length === 2 && spread !== null ? vals[1] - vals[0] : spread, spread: spread});
      }
    });
    rows.sort(function (a, b) {
      if (a.spread === null && b.spread === null) return 0;
      if (a.spread === null) return 1;
      if (b.spread === null) return -1;
      return b.spread - a.spread;
    });
    return rows;
  }
  function renderCompare() {
    var tasks = cmpTasks();
    if (!st.c.task || tasks.indexOf(st.c.task) < 0) st.c.task = tasks[0] || '';
    var metrics = st.c.task ? D.runs[0].metrics[st.c.task] : [];
    if (metrics.indexOf(st.c.metric) < 0) st.c.metric = metrics[0] || '';
    var sec = el('section', {id: 'compare-view'}, el('h2', {text: 'Compare: ' + D.runs.map(function (r) { return r.label; }).join(' vs ')}),
      el('p', {class: 'muted', text: D.runs.length === 2 ? 'Δ = ' + D.runs[1].label + ' − ' + D.runs[0].label +
        ', per turn; the turns where the runs disagree most come first.' :
        'Δ = max − min over the runs, per turn; the turns where the runs disagree most come first.'}));
    if (!tasks.length) { sec.appendChild(el('p', {class: 'fail', text: 'the runs share no task'})); add(app, sec); return; }
    sec.appendChild(plot('plot-compare'));
    sec.appendChild(el('div', {class: 'filters'},
      el('label', null, 'task ', select('c-task', tasks.map(function (t) { return [t, t]; }), st.c.task,
        function (v) { st.c.task = v; st.c.metric = ''; st.c.shown = PAGE; rerender(); })),
      el('label', null, 'metric ', select('c-metric', metrics.map(function (m) { return [m, m]; }), st.c.metric,
        function (v) { st.c.metric = v; st.c.shown = PAGE; rerender(); }))));
    var rows = cmpRows(st.c.task, st.c.metric);
    var paired = rows.filter(function (x) { return x.spread !== null; });
    var means = D.runs.map(function (r, ri) {
      return paired.length ? paired.reduce(function (a, x) { return a + x.vals[ri]; }, 0) / paired.length : null;
    });
    sec.appendChild(el('table', {id: 'cmp-summary', class: 'data'},
      el('thead', null, el('tr', null, el('th', {text: 'paired turns'}),
        D.runs.map(function (r) { return el('th', {text: 'mean ' + r.label}); }),
        D.runs.length === 2 ? el('th', {text: 'mean Δ'}) : null)),
      el('tbody', null, el('tr', null, el('td', {class: 'num', text: paired.length}),
        means.map(function (m) { return el('td', {class: 'num', text: fmt(m)}); }),
        D.runs.length === 2 ? el('td', {class: 'num', id: 'cmp-mean-delta', text: fmt(means[1] - means[0])}) : null))));
    sec.appendChild(el('div', {id: 'cmp-detail'}));
    var tbody = el('tbody');
    rows.slice(0, st.c.shown).forEach(function (x) {
      tbody.appendChild(el('tr', {class: 'cmp-row', 'data-key': st.c.task + '/' + x.id, 'data-turn': x.turn},
        el('td', null, el('a', {href: '#compare:' + encodeURIComponent(st.c.task + '/' + x.id).replace(/%2F/g, '/'),
          text: x.id})),
        el('td', {class: 'num', text: x.turn + 1}),
        x.vals.map(function (v) { return el('td', {class: 'num score', text: fmt(v)}); }),
        el('td', {class: 'num delta', text: x.delta === null ? 'unpaired' : (x.delta > 0 ? '+' : '') + fmt(x.delta)})));
    });
    sec.appendChild(el('table', {id: 'cmp', class: 'data'},
      el('thead', null, el('tr', null, el('th', {text: 'session'}), el('th', {text: 'turn'}),
        D.runs.map(function (r) { return el('th', {text: r.label}); }), el('th', {text: 'Δ'}))), tbody));
    sec.appendChild(el('p', {class: 'muted', id: 'cmp-count', text: 'showing ' + Math.min(st.c.shown, rows.length) +
      ' of ' + rows.length + ' turns'}));
    if (rows.length > st.c.shown) {
      sec.appendChild(el('button', {id: 'cmp-more', text: 'show more', onclick: function () { st.c.shown += PAGE; rerender(); }}));
    }
    add(app, sec);
    if (st.c.open) openCompare(st.c.open);
  }
  function openCompare(key) {
    var box = document.getElementById('cmp-detail');
    var idx = D.runs.map(function (r) { return findSession(r, key); });
    if (!box || idx.some(function (i) { return i < 0; })) return;
    clear(box).appendChild(el('p', {class: 'muted', text: 'loading…'}));
    Promise.all(idx.map(function (i, ri) { return detail(ri, i); })).then(function (ds) {
      var s0 = D.runs[0].sessions[idx[0]];
      var metrics = D.runs[0].metrics[s0.task] || [];
      var user = (ds[0].messages || []).filter(function (m) { return m.role === 'user'; });
      var reps = ds.map(replies);
      clear(box);
      box.appendChild(el('div', {class: 'session', id: 'side-by-side', 'data-key': keyOf(s0)},
        el('h3', null, 'Side by side: ', el('span', {class: 'sid', text: s0.id})),
        (ds[0].turns || []).map(function (t, k) {
          return el('div', {class: 'turn', 'data-turn': k}, el('h4', {text: 'Turn ' + (k + 1)}),
            el('div', {class: 'msg user'}, el('div', {class: 'role', text: 'user'}), pre(user[k] ? user[k].content : '')),
            el('div', {class: 'cols'}, D.runs.map(function (r, ri) {
              var s = r.sessions[idx[ri]];
              return el('div', {class: 'col', 'data-run': ri}, el('div', {class: 'role', text: r.label}),
                pre(reps[ri][k], 'text reply'),
                el('div', {class: 'scores'}, metrics.map(function (m) {
                  var v = turnScore(r, s, k, m), v0 = turnScore(D.runs[0], s0, k, m);
                  var dl = ri > 0 && v !== null && v0 !== null ? ' (Δ ' + (v - v0 > 0 ? '+' : '') + fmt(v - v0) + ')' : '';
                  return el('div', {class: 'score-line', text: m + ': ' + fmt(v) + dl});
                })));
            })));
        })));
      box.scrollIntoView();
    });
  }

  // -------------------------------------------------------------------------------------- sweep view
  function renderSweep() {
    var sw = D.sweeps[st.sweep];
    var keys = uniq([].concat.apply([], sw.stages.map(function (s) { return Object.keys(s.params); })));
    var heads = uniq([].concat.apply([], sw.stages.map(function (s) {
      return s.run === null ? [] : D.runs[s.run].results.filter(function (x) { return x.split === 'all'; })
        .map(function (x) { return x.task + ' ' + x.metric; });
    })));
    var tbody = el('tbody');
    sw.stages.forEach(function (s) {
      var res = {};
      if (s.run !== null) D.runs[s.run].results.forEach(function (x) { if (x.split === 'all') res[x.task + ' ' + x.metric] = x.value; });
      tbody.appendChild(el('tr', {class: 'stage-row', 'data-stage': s.name},
        el('td', {text: s.name}), el('td', {text: s.kind}), el('td', {text: s.status}),
        keys.map(function (k) { return el('td', {text: s.params[k] === undefined ? '' : s.params[k]}); }),
        heads.map(function (h) { return el('td', {class: 'num', text: fmt(res[h] === undefined ? null : res[h])}); }),
        el('td', null, s.run === null ? el('span', {class: 'muted', text: s.directory}) :
          el('a', {href: '#r' + s.run, class: 'stage-link', text: 'open run'}))));
    });
    add(app, el('section', {id: 'sweep-view'}, el('h2', {text: 'Sweep ' + sw.name}),
      el('p', {class: 'muted', text: sw.path}),
      el('table', {id: 'sweep-grid', class: 'data'}, el('thead', null, el('tr', null,
        ['stage', 'kind', 'status'].concat(keys).concat(heads).concat(['run']).map(function (h) { return el('th', {text: h}); }))),
        tbody)));
  }

  // ------------------------------------------------------------------------------------------ routing
  function rerender() {
    clear(app);
    app.appendChild(nav());
    if (st.view === 'compare') renderCompare();
    else if (st.view === 'sweep') renderSweep();
    else renderRun();
  }
  function route() {
    var h = decodeURIComponent(location.hash.replace(/^#/, ''));
    var m;
    if (h === 'compare' && D.runs.length > 1) { st.view = 'compare'; st.c.open = null; }
    else if ((m = /^compare:(.*)$/.exec(h)) && D.runs.length > 1) {
      st.view = 'compare'; st.c.open = m[1];
      var slash = m[1].indexOf('/');
      if (slash > 0 && cmpTasks().indexOf(m[1].slice(0, slash)) >= 0 && st.c.task !== m[1].slice(0, slash)) {
        st.c.task = m[1].slice(0, slash); st.c.metric = '';
      }
    }
    else if ((m = /^sweep(\d+)$/.exec(h)) && D.sweeps[+m[1]]) { st.view = 'sweep'; st.sweep = +m[1]; }
    else if ((m = /^r(\d+)$/.exec(h)) && D.runs[+m[1]]) { resetRun(+m[1]); st.open = null; }
    else if ((m = /^r(\d+):(.*)$/.exec(h)) && D.runs[+m[1]]) { resetRun(+m[1]); st.open = pick(m[2]); }
    else if (h) {
      if (st.view !== 'run') resetRun(st.run);
      st.open = pick(h);
    }
    rerender();
  }
  function pick(name) { var i = findSession(run(), name); return i < 0 ? null : i; }
  function resetRun(i) {
    if (st.view !== 'run' || st.run !== i) {
      st.view = 'run'; st.run = i; st.shown = PAGE;
      var q = st.f.q; st.f = {task: '', lang: '', metric: '', state: '', min: '', max: '', fail: false, q: q, sort: 'order'};
    }
  }
  window.addEventListener('hashchange', route);
  if (D.sweeps.length && (!D.runs.length || !location.hash)) st.view = 'sweep';  // a sweep opens on its grid
  route();
  document.body.setAttribute('data-render-ms', String(performance.now()));  // benchmarks/viewer_size.py
  document.body.setAttribute('data-ready', '1');
})();
