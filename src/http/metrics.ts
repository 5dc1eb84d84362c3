// GET /metrics for Prometheus (prom-client; imported by this file only). Gauges are computed when
// scraped, from the service's own view (JobsApi.summary, Service.machine); counters and
// histograms are fed by requests and by the service's `finished` events.
import client from 'prom-client';
import type { JobEvent } from '../job/lifecycle.js';
import type { FastifyInstance, HttpCtx } from './types.js';

const registry = new client.Registry();

/** Bytes received in uploads (fed by the submit route). */
export const uploadBytes = new client.Counter({ name: 'jobrunner_upload_bytes_total', help: 'Bytes received in job uploads', registers: [registry] });

export async function registerMetrics(app: FastifyInstance, ctx: HttpCtx): Promise<void> {
  const { svc, auth } = ctx;
  const requests = new client.Counter({ name: 'jobrunner_http_requests_total', help: 'HTTP requests by route and status code', labelNames: ['route', 'method', 'code'], registers: [registry] });
  const finished = new client.Counter({ name: 'jobrunner_jobs_finished_total', help: 'Jobs finished since the service started, by final status', labelNames: ['status'], registers: [registry] });
  const buckets = [0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600, 7200];
  const phase = Object.fromEntries((['wait', 'boot', 'run', 'compress'] as const).map((p) => [p, new client.Histogram({
    name: `jobrunner_job_${p}_seconds`, help: `Seconds each finished job spent in ${p}`, buckets, registers: [registry],
  })])) as Record<'wait' | 'boot' | 'run' | 'compress', client.Histogram>;
  let summary: Awaited<ReturnType<typeof svc.api.summary>> | null = null;
  let machine: Awaited<ReturnType<typeof svc.machine>> | null = null;
  new client.Gauge({ name: 'jobrunner_jobs', help: 'Jobs by state (finished: results in done/ and failed/)', labelNames: ['state'], registers: [registry],
    collect() { if (summary) for (const s of ['queued', 'running', 'finished'] as const) this.set({ state: s }, summary[s]); } });
  new client.Gauge({ name: 'jobrunner_results', help: 'Published results by final status', labelNames: ['status'], registers: [registry],
    collect() { if (summary) for (const [k, v] of Object.entries(summary.byStatus)) this.set({ status: k }, v); } });
  new client.Gauge({ name: 'jobrunner_oldest_queued_seconds', help: 'Age of the oldest queued job (0 when none)', registers: [registry],
    collect() { this.set(summary?.oldestQueuedAt ? (Date.now() - Date.parse(summary.oldestQueuedAt)) / 1000 : 0); } });
  new client.Gauge({ name: 'jobrunner_concurrency_limit', help: 'VMs that may run at once', registers: [registry],
    collect() { if (machine) this.set(machine.concurrency); } });
  new client.Gauge({ name: 'jobrunner_concurrency_in_use', help: 'VMs running now', registers: [registry],
    collect() { if (machine) this.set(machine.running); } });
  new client.Gauge({ name: 'jobrunner_accelerator', help: 'Accelerator in use (1 for the one in use)', labelNames: ['accel'], registers: [registry],
    collect() { if (machine) { for (const a of ['kvm', 'tcg']) this.set({ accel: a }, a === machine.accel ? 1 : 0); } } });
  new client.Gauge({ name: 'jobrunner_disk_free_bytes', help: 'Free bytes on the queue filesystem', registers: [registry],
    collect() { if (machine?.diskFree != null) this.set(machine.diskFree); } });

  svc.events.on('job', (ev: JobEvent) => {
    if (ev.type !== 'finished') return;
    finished.inc({ status: ev.status });
    void svc.api.get(ev.id).then((j) => {
      const d = j?.record?.durations;
      if (!d) return;
      for (const p of ['wait', 'boot', 'run', 'compress'] as const) if (d[p] !== null) phase[p].observe(d[p]);
    });
  });
  app.addHook('onResponse', async (req, reply) => {
    requests.inc({ route: req.routeOptions.url ?? 'unmatched', method: req.method, code: String(reply.statusCode) });
  });
  app.get('/metrics', async (req, reply) => {
    await auth.read(req);
    [summary, machine] = await Promise.all([svc.api.summary(), svc.machine()]);
    return reply.type(registry.contentType).send(await registry.metrics());
  });
}
