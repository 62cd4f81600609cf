// vouch dashboard: renders /api/status (docs/DASHBOARD.md has the schema). Everything from
// the agent — workload IDs, paths of denied requests, file names — is text chosen in part by
// workloads, so it only ever reaches the page through textContent and SVG text nodes: never
// innerHTML, never an attribute that is evaluated.
'use strict';

const SVG = 'http://www.w3.org/2000/svg';
const REFRESH_MS = 5000;

function el(tag, attrs = {}, text) {
	const e = document.createElement(tag);
	for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
	if (text !== undefined) e.textContent = String(text);
	return e;
}

function svgEl(tag, attrs = {}, text) {
	const e = document.createElementNS(SVG, tag);
	for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
	if (text !== undefined) e.textContent = String(text);
	return e;
}

function ttl(s) {
	if (s === null || s === undefined) return '–';
	if (s <= 0) return 'expired';
	if (s < 120) return `${s}s`;
	if (s < 7200) return `${Math.floor(s / 60)}m ${s % 60}s`;
	return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

function when(iso) {
	if (!iso) return 'never used';
	const d = new Date(iso);
	return Number.isNaN(d.getTime()) ? String(iso) : d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

function fillTable(id, rows, cells, emptyText) {
	const body = document.querySelector(`#${id} tbody`);
	body.replaceChildren();
	if (!rows.length) {
		const tr = el('tr');
		tr.append(el('td', { colspan: String(document.querySelectorAll(`#${id} thead th`).length), class: 'empty' }, emptyText));
		body.append(tr);
		return;
	}
	for (const r of rows) {
		const tr = el('tr');
		const { values, cls } = cells(r);
		if (cls) tr.className = cls;
		for (const v of values) tr.append(el('td', {}, v ?? '–'));
		body.append(tr);
	}
}

// Three columns (workloads, credential sources, services); one node per distinct name, one
// edge per hop of an access path; paths without a binding go to a "(no binding)" node.
function drawMap(paths) {
	const svg = document.getElementById('map');
	svg.replaceChildren();
	const cols = [new Map(), new Map(), new Map()];
	const edges = new Map();
	const add = (c, key, label, kind) => {
		if (!cols[c].has(key)) cols[c].set(key, { label, kind, row: cols[c].size });
		return cols[c].get(key);
	};
	for (const p of paths) {
		const w = add(0, p.workload, p.workload, 'workload');
		const bound = Boolean(p.source);
		const s = add(1, bound ? p.source : '(none)', bound ? p.source : '(no binding)', bound ? 'source' : 'none');
		const denied = !bound || p.revoked || (p.requests === 0 && p.denials > 0);
		const e1 = `0|${p.workload}|${bound ? p.source : '(none)'}`;
		edges.set(e1, { a: w, b: s, ca: 0, denied: (edges.get(e1)?.denied ?? true) && denied });
		if (bound && p.service) {
			const v = add(2, p.service, p.service, 'service');
			const e2 = `1|${p.source}|${p.service}`;
			edges.set(e2, { a: s, b: v, ca: 1, denied: (edges.get(e2)?.denied ?? true) && denied });
		}
	}
	const W = 290, H = 26, GAP = 12, X = [10, 340, 670];
	const rows = Math.max(1, ...cols.map((c) => c.size));
	svg.setAttribute('height', String(rows * (H + GAP) + GAP));
	svg.setAttribute('viewBox', `0 0 970 ${rows * (H + GAP) + GAP}`);
	const y = (n) => GAP + n.row * (H + GAP);
	for (const e of edges.values()) {
		const x1 = X[e.ca] + W, y1 = y(e.a) + H / 2, x2 = X[e.ca + 1], y2 = y(e.b) + H / 2, m = (x1 + x2) / 2;
		svg.append(svgEl('path', { class: `edge${e.denied ? ' denied' : ''}`, d: `M${x1},${y1} C${m},${y1} ${m},${y2} ${x2},${y2}` }));
	}
	cols.forEach((col, c) => {
		for (const n of col.values()) {
			const g = svgEl('g', { class: `node ${n.kind}`, transform: `translate(${X[c]},${y(n)})` });
			g.append(svgEl('rect', { width: W, height: H, rx: 4 }));
			const label = n.label.length > 40 ? `${n.label.slice(0, 39)}…` : n.label;
			g.append(svgEl('text', { x: 8, y: 17 }, label), svgEl('title', {}, n.label));
			svg.append(g);
		}
	});
}

function render(st) {
	const paths = Array.isArray(st.paths) ? st.paths : [];
	const denials = Array.isArray(st.denials) ? st.denials : [];
	const keys = st.static_keys ?? { total: null, findings: [] };
	const usage = Array.isArray(st.usage) ? st.usage : [];
	document.getElementById('agent').textContent =
		`vouchd ${st.version ?? ''} · trust domain ${st.trust_domain ?? '?'} · up ${ttl(st.uptime_s)} · intercept ${st.intercept ?? '?'}`;
	const ready = document.getElementById('ready');
	ready.textContent = st.ready ? 'ready' : 'not ready';
	ready.className = `badge ${st.ready ? 'ok' : 'bad'}`;
	document.getElementById('n-workloads').textContent = String(new Set(paths.map((p) => p.workload)).size);
	document.getElementById('n-paths').textContent = String(paths.length);
	document.getElementById('n-denials').textContent = String(denials.length);
	const ns = document.getElementById('n-static');
	ns.textContent = keys.total === null || keys.total === undefined ? 'not scanned' : String(keys.total);
	ns.parentElement.classList.toggle('found', keys.total > 0);
	drawMap(paths);
	fillTable('workloads', paths, (p) => ({
		values: [p.workload, p.binding ?? '(none)', p.source ?? '(none)', p.service ?? '–', p.requests ?? 0, p.denials ?? 0,
			when(p.last_use), p.revoked ? 'revoked' : ttl(p.token_ttl_s)],
		cls: p.revoked ? 'revoked' : '',
	}), 'no workloads yet');
	fillTable('denials', denials, (d) => ({
		values: [when(d.ts), d.workload ?? '(unidentified)', d.pid, [d.method, d.destination, d.path].filter(Boolean).join(' '), d.status, d.reason],
	}), 'no denials');
	document.getElementById('scanned').textContent = keys.scanned ? `last scan ${when(keys.scanned)}` : '';
	fillTable('static', Array.isArray(keys.findings) ? keys.findings : [], (f) => ({
		values: [f.kind, f.where, f.fingerprint],
	}), keys.total === null || keys.total === undefined ? 'no scan reported (vouch scan --report)' : 'none found');
	fillTable('usage', usage, (u) => ({
		values: [u.workload, u.model, u.requests, u.input_tokens, u.output_tokens],
	}), 'no usage recorded');
	document.body.dataset.rendered = String(Date.now());
}

async function refresh() {
	const err = document.getElementById('error');
	try {
		const r = await fetch('api/status', { cache: 'no-store', credentials: 'same-origin' });
		if (!r.ok) throw new Error(`agent answered ${r.status}`);
		render(await r.json());
		err.hidden = true;
	} catch (e) {
		err.textContent = `cannot read the agent's status: ${e.message}`;
		err.hidden = false;
	}
}

refresh();
setInterval(refresh, REFRESH_MS);
