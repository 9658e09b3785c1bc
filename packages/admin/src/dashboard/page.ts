/**
 * The dashboard page: plain HTML, CSS and JavaScript served as they are (no build step, no
 * framework). The script listens to /events (server-sent events) and redraws the members table
 * and the partition grid on every `topology` and `metrics` event.
 */
export const INDEX_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>gridlink dashboard</title>
<link rel="stylesheet" href="/app.css">
</head>
<body>
<header>
  <h1>gridlink</h1>
  <span id="cluster"></span>
  <span>topology <b id="version">-</b></span>
  <span id="safe" class="badge">-</span>
  <span id="counts"></span>
  <span id="conn" class="conn">connecting</span>
</header>
<div id="warnings" hidden></div>
<main>
  <section>
    <h2>Members</h2>
    <table id="members">
      <thead><tr><th>node</th><th>zone</th><th>address</th><th>release</th><th>state</th><th>baseline</th><th>ready</th><th>primary</th><th>backup</th><th>moving</th><th>ops/s</th><th>errors</th><th>clients</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
  <section>
    <h2>Partitions <small id="pcount"></small></h2>
    <div class="legend">colour = primary owner;
      <span class="cell sample state-r"></span> replicated
      <span class="cell sample state-u"></span> under-replicated
      <span class="cell sample state-m"></span> moving
      <span class="cell sample state-l"></span> lost</div>
    <div id="grid"></div>
  </section>
</main>
<script src="/app.js"></script>
</body>
</html>
`;

export const APP_CSS = `
:root { font-family: system-ui, sans-serif; color: #1d2330; background: #f6f7f9; }
body { margin: 0; }
header { display: flex; gap: 1.2em; align-items: baseline; padding: .6em 1.2em; background: #1d2330; color: #fff; }
header h1 { font-size: 1.2em; margin: 0; }
main { padding: .6em 1.2em; }
h2 { font-size: 1em; margin: .8em 0 .4em; }
table { border-collapse: collapse; background: #fff; }
th, td { padding: .25em .7em; border-bottom: 1px solid #e3e6eb; text-align: left; font-size: .9em; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr[data-alive="false"] { color: #9aa1ad; text-decoration: line-through; }
.swatch { display: inline-block; width: .8em; height: .8em; border-radius: 2px; margin-right: .4em; vertical-align: -1px; }
.badge { padding: .1em .6em; border-radius: 1em; background: #777; }
.badge.ok { background: #2e8b57; }
.badge.bad { background: #c0392b; }
.conn { margin-left: auto; font-size: .85em; opacity: .8; }
#grid { display: grid; grid-template-columns: repeat(auto-fill, 12px); gap: 2px; max-width: 1100px; }
.cell { width: 12px; height: 12px; border-radius: 2px; box-sizing: border-box; background: #ccc; }
.cell.sample { display: inline-block; vertical-align: -2px; background: #8aa; }
.state-u { border: 2px solid #e67e22; }
.state-m { background-image: repeating-linear-gradient(45deg, rgba(255,255,255,.85) 0 2px, transparent 2px 4px); }
.state-l { background: #111 !important; border: 2px solid #c0392b; }
.legend { font-size: .85em; margin-bottom: .5em; }
#warnings { padding: .4em 1.2em; background: #fdf2d0; border-bottom: 1px solid #e6c35c; font-size: .9em; }
#warnings div { margin: .1em 0; }
.warn { margin-left: .5em; padding: 0 .5em; border-radius: 1em; font-size: .8em; background: #e67e22; color: #fff; text-decoration: none; display: inline-block; }
.warn.fenced { background: #c0392b; }
.warn.leaving { background: #2c7be5; }
`;

export const APP_JS = `'use strict';
(function () {
  var topo = null;
  var metrics = {};
  // Colours by first sight (golden-angle hues): distinct for every node, stable while the page lives.
  var colours = {};
  var seen = 0;
  function colour(id) {
    if (!colours[id]) colours[id] = 'hsl(' + Math.round((seen++ * 137.508 + 200) % 360) + ', 62%, 50%)';
    return colours[id];
  }
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  var FENCE = { stopping: 'asked to stop renewing', gone: 'fenced: gone', 'held-back': 'fenced: next life held back' };
  function fmt(v, digits) { return v === null || v === undefined ? '-' : v.toFixed(digits); }
  function renderMembers() {
    var body = document.querySelector('#members tbody');
    body.textContent = '';
    if (!topo) return;
    topo.nodes.forEach(function (n) {
      var m = metrics[n.id] || {};
      var unreachable = n.unreachable || [];
      var tr = el('tr', { 'data-member': n.id, 'data-alive': String(n.alive), 'data-unreachable': unreachable.join(','), 'data-fence': n.fence || '', 'data-leaving': String(n.leaving === true) });
      var name = el('td');
      name.appendChild(el('span', { 'class': 'swatch', style: 'background:' + colour(n.id) }));
      name.appendChild(document.createTextNode(n.id));
      // ADR 0065: what its lease reports it cannot reach, and a fence the coordinator asked for.
      if (unreachable.length > 0) name.appendChild(el('span', { 'class': 'warn unreachable', title: 'its lease reports it cannot reach these members over the grid' }, 'cannot reach ' + unreachable.join(', ')));
      if (n.fence) name.appendChild(el('span', { 'class': 'warn fenced', title: 'the coordinator asked this node to stop renewing its lease' }, FENCE[n.fence] || n.fence));
      // ADR 0067: a graceful stop under way (its lease says leaving).
      if (n.leaving) name.appendChild(el('span', { 'class': 'warn leaving', title: 'stopping gracefully: handing its primaryships off' }, 'leaving'));
      tr.appendChild(name);
      tr.appendChild(el('td', {}, n.zone || '-'));
      tr.appendChild(el('td', {}, n.address || '-'));
      tr.appendChild(el('td', { 'class': 'release' }, n.alive && m.release ? m.release : '-'));
      tr.appendChild(el('td', { 'class': 'state' }, n.alive ? 'alive' : 'gone'));
      tr.appendChild(el('td', {}, n.inBaseline ? 'yes' : 'no'));
      tr.appendChild(el('td', { 'class': 'ready' }, !n.alive ? '-' : m.ready === true ? 'yes' : m.ready === false ? 'no' : '?'));
      tr.appendChild(el('td', { 'class': 'num primary' }, String(n.primary)));
      tr.appendChild(el('td', { 'class': 'num' }, String(n.backup)));
      tr.appendChild(el('td', { 'class': 'num' }, String(n.moving)));
      tr.appendChild(el('td', { 'class': 'num ops' }, n.alive ? fmt(m.opsPerSec, 1) : '-'));
      tr.appendChild(el('td', { 'class': 'num' }, n.alive && m.errorRate !== null && m.errorRate !== undefined ? (m.errorRate * 100).toFixed(1) + '%' : '-'));
      tr.appendChild(el('td', { 'class': 'num clients' }, n.alive && m.clients !== null && m.clients !== undefined ? String(m.clients) : '-'));
      body.appendChild(tr);
    });
  }
  function renderGrid() {
    var grid = document.getElementById('grid');
    if (grid.children.length !== topo.partitions) {
      grid.textContent = '';
      for (var p = 0; p < topo.partitions; p++) grid.appendChild(el('div', { 'class': 'cell', 'data-p': String(p) }));
    }
    for (var i = 0; i < topo.partitions; i++) {
      var cell = grid.children[i];
      var owner = topo.primary[i] >= 0 ? topo.nodes[topo.primary[i]].id : '';
      var st = topo.state.charAt(i);
      cell.className = 'cell state-' + st;
      cell.setAttribute('data-owner', owner);
      cell.setAttribute('data-state', st);
      cell.style.background = owner ? colour(owner) : '';
      cell.title = 'partition ' + i + (owner ? ' primary ' + owner : '') + ' (' + ({ r: 'replicated', u: 'under-replicated', m: 'moving', l: 'lost' })[st] + ')';
    }
  }
  function renderHeader() {
    document.getElementById('cluster').textContent = topo.clusterId;
    document.getElementById('version').textContent = String(topo.version);
    var safe = document.getElementById('safe');
    safe.textContent = topo.safe ? 'safe' : 'not safe';
    safe.className = 'badge ' + (topo.safe ? 'ok' : 'bad');
    document.getElementById('counts').textContent = 'lost ' + topo.lost + ' · moving ' + topo.moving + ' · under-replicated ' + topo.underReplicated +
      ' · auto-adjust ' + (topo.autoAdjust.enabled ? 'on' : 'off') + (topo.autoAdjust.pending ? ' (pending)' : '');
    document.getElementById('pcount').textContent = topo.partitions + ' partitions, ' + topo.backups + ' backup(s)';
    // The unreachable: and fenced: lines of gridlink status (ADR 0065).
    var warnings = document.getElementById('warnings');
    warnings.textContent = '';
    (topo.warnings || []).forEach(function (w) { warnings.appendChild(el('div', {}, w)); });
    warnings.hidden = warnings.children.length === 0;
  }
  function render() {
    if (!topo) return;
    renderHeader();
    renderMembers();
    renderGrid();
    document.body.setAttribute('data-version', String(topo.version));
  }
  var es = new EventSource('/events');
  var conn = document.getElementById('conn');
  es.onopen = function () { conn.textContent = 'live'; };
  es.onerror = function () { conn.textContent = 'reconnecting'; };
  es.addEventListener('topology', function (e) { topo = JSON.parse(e.data); render(); });
  es.addEventListener('metrics', function (e) {
    metrics = {};
    JSON.parse(e.data).forEach(function (m) { metrics[m.id] = m; });
    renderMembers();
  });
})();
`;
