// The dashboard's front page: queued, running (with a live console tail over SSE), finished
// (with download links), and the machine. Refreshed on every job event (SSE) and every 5 s.
'use strict';
/* global el, fmtSeconds, fmtBytes, getJson, since */

const tails = new Map(); // job id -> { source: EventSource, lines: string[], pre: HTMLElement }
const TAIL_LINES = 6;

function tailFor(job) {
  let t = tails.get(job.id);
  if (t) return t;
  t = { lines: [], pre: el('pre', '', { class: 'tail', 'data-job': job.id }) };
  t.source = new EventSource(job.urls.follow);
  t.source.onmessage = (ev) => {
    t.lines.push(ev.data);
    if (t.lines.length > TAIL_LINES) t.lines.shift();
    t.pre.textContent = t.lines.join('\n');
  };
  t.source.addEventListener('end', () => { t.source.close(); refresh(); });
  tails.set(job.id, t);
  return t;
}

function jobLink(job) {
  return job.id ? el('a', job.name, { href: `/job.html?id=${encodeURIComponent(job.id)}` }) : el('span', job.name);
}

function renderQueued(jobs) {
  const body = document.querySelector('#queued tbody');
  body.replaceChildren(...jobs.map((j) => el('tr', null, { 'data-job': j.id || '' }, [
    el('td', j.position), el('td', null, {}, [jobLink(j)]), el('td', j.owner || '–'), el('td', since(j.submittedAt)),
  ])));
  if (jobs.length === 0) body.appendChild(el('tr', null, {}, [el('td', 'nothing queued', { colspan: '4', class: 'empty' })]));
  document.getElementById('queued-count').textContent = `(${jobs.length})`;
}

function renderRunning(jobs) {
  const box = document.getElementById('running');
  const ids = new Set(jobs.map((j) => j.id));
  for (const [id, t] of tails) if (!ids.has(id)) { t.source.close(); tails.delete(id); }
  box.replaceChildren(...jobs.map((j) => {
    const hb = j.heartbeat ? `, cpu ${j.heartbeat.cpuSeconds}s, disk written ${fmtBytes(j.heartbeat.diskWriteBytes)}` : '';
    return el('div', null, { class: 'job', 'data-job': j.id }, [
      el('div', null, {}, [jobLink(j), el('span', ` · ${j.owner || 'local'} · running ${fmtSeconds(j.elapsed)} · ${fmtSeconds(j.timeLeft)} left before the watchdog${hb}`)]),
      tailFor(j).pre,
    ]);
  }));
  if (jobs.length === 0) box.appendChild(el('p', 'nothing running', { class: 'empty' }));
  document.getElementById('running-count').textContent = `(${jobs.length})`;
}

function renderFinished(jobs, total) {
  const body = document.querySelector('#finished tbody');
  body.replaceChildren(...jobs.map((j) => {
    const d = (j.record && j.record.durations) || {};
    const links = [el('a', 'log', { href: j.urls.log })];
    if (j.record && j.record.output) {
      links.push(document.createTextNode(' · '), el('a', 'result', { href: j.urls.result, class: 'result-link' }));
      links.push(document.createTextNode(' · '), el('a', 'output.tar', { href: j.urls.outputTar }));
    }
    return el('tr', null, { 'data-job': j.id }, [
      el('td', null, {}, [jobLink(j)]), el('td', j.status, { class: `status-${j.status}` }), el('td', j.exitCode === null ? '–' : j.exitCode),
      el('td', fmtSeconds(d.wait)), el('td', fmtSeconds(d.boot)), el('td', fmtSeconds(d.run)), el('td', since(j.finishedAt)),
      el('td', null, {}, links),
    ]);
  }));
  if (jobs.length === 0) body.appendChild(el('tr', null, {}, [el('td', 'nothing finished yet', { colspan: '8', class: 'empty' })]));
  document.getElementById('finished-count').textContent = `(${total})`;
}

async function refresh() {
  try {
    const [live, fin, m] = await Promise.all([
      getJson('/api/v1/jobs?state=queued,running&limit=500'), getJson('/api/v1/jobs?state=finished&limit=50'), getJson('/api/v1/machine'),
    ]);
    renderQueued(live.jobs.filter((j) => j.state === 'queued'));
    renderRunning(live.jobs.filter((j) => j.state === 'running'));
    renderFinished(fin.jobs, fin.total);
    document.getElementById('machine').textContent =
      `jobrunner ${m.version} · ${m.accel} · ${m.running} of ${m.concurrency} VMs busy · disk free ${fmtBytes(m.diskFree)} · timeout ${fmtSeconds(m.timeout)}`;
  } catch (e) {
    document.getElementById('machine').textContent = `cannot reach the service: ${e.message}`;
  }
}

let pending = null;
function soon() { if (!pending) pending = setTimeout(() => { pending = null; refresh(); }, 200); }
const events = new EventSource('/api/v1/events');
events.onmessage = soon;
setInterval(refresh, 5000);
refresh();
