// One job's page: its status (refreshed), download links, and its whole console log, live.
'use strict';
/* global el, fmtSeconds, fmtBytes, getJson, since */

const id = new URLSearchParams(location.search).get('id') || '';
const logPre = document.getElementById('log');

function fact(dl, k, v) { dl.appendChild(el('dt', k)); dl.appendChild(el('dd', v)); }

async function refresh() {
  let j;
  try { j = await getJson(`/api/v1/jobs/${encodeURIComponent(id)}`); } catch (e) {
    document.getElementById('summary').textContent = `no such job (${e.message})`; return;
  }
  document.getElementById('name').textContent = j.name;
  document.title = `${j.name} · jobrunner`;
  document.getElementById('summary').textContent = `${j.state}${j.status ? ` · ${j.status}` : ''} · id ${j.id}`;
  const dl = document.getElementById('facts');
  dl.replaceChildren();
  fact(dl, 'state', j.status || j.state);
  fact(dl, 'owner', j.owner || '–');
  fact(dl, 'submitted', since(j.submittedAt));
  if (j.position) fact(dl, 'position in queue', j.position);
  if (j.state === 'running') {
    fact(dl, 'elapsed', fmtSeconds(j.elapsed));
    fact(dl, 'left before the watchdog', fmtSeconds(j.timeLeft));
    if (j.heartbeat) fact(dl, 'heartbeat', `cpu ${j.heartbeat.cpuSeconds}s, disk written ${fmtBytes(j.heartbeat.diskWriteBytes)}`);
  }
  if (j.record) {
    const d = j.record.durations;
    fact(dl, 'exit code', j.exitCode === null ? '–' : j.exitCode);
    fact(dl, 'reason', j.reason);
    fact(dl, 'durations', `wait ${fmtSeconds(d.wait)}, boot ${fmtSeconds(d.boot)}, run ${fmtSeconds(d.run)}, compress ${fmtSeconds(d.compress)}`);
    const p = document.getElementById('downloads');
    const links = [el('a', 'log', { href: j.urls.log })];
    if (j.record.output) links.push(document.createTextNode(' · '), el('a', `result (${fmtBytes(j.record.output.bytes)})`, { href: j.urls.result }), document.createTextNode(' · '), el('a', 'output.tar', { href: j.urls.outputTar }));
    p.replaceChildren(...links);
  }
  return j;
}

const lines = [];
const source = new EventSource(`/api/v1/jobs/${encodeURIComponent(id)}/log?follow=1`);
source.onmessage = (ev) => { lines.push(ev.data); logPre.textContent = lines.join('\n'); };
source.addEventListener('end', () => { source.close(); refresh(); });
refresh();
setInterval(() => { if (source.readyState !== EventSource.CLOSED) refresh(); }, 3000);
