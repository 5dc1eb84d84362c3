// `jobrunner submit DIR|IMAGE`: package (mkimage), compress (our own sparse-aware xz), upload to a
// jobrunner's HTTP API (or drop into the local queue), and optionally follow the console and
// wait for the result, exiting with the job's exit code as `jobrunner run` does.
import { copyFile, lstat, mkdir, mkdtemp, rename, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadSettings } from '../config.js';
import { JrError } from '../errors.js';
import type { JobStatus } from '../spool/record.js';
import { compressFile } from '../xz/compress.js';
import { EXIT } from '../job/exit-codes.js';
import { apiUpload, extractOutput, followJob, unpackOutput, waitLocal } from './submit-client.js';

const HELP = `Usage: jobrunner submit DIR|IMAGE [--server URL] [--token T] [--name N] [--follow] [--wait] [-o OUTDIR]
       jobrunner submit --dsc FILE.dsc [same options]

Submits a job. DIR (with bin/construir) is packaged with mkimage; a raw .img is compressed with
jobrunner's own compressor (sparse-aware: a 1 GiB mostly-empty image uploads as kilobytes);
a .img.xz is sent as it is. --dsc FILE.dsc makes the job with scripts/mkjob-deb (a Debian source
package built with dpkg-buildpackage; its files must sit beside the .dsc): with --wait -o OUTDIR
the .deb, .buildinfo and .changes land in OUTDIR/output/.

  --server URL    a jobrunner HTTP API (e.g. http://build.example.org:7480); without it the image
                  is dropped into the local queue (--queue) atomically
  --token T       API token (default $JOBRUNNER_TOKEN); see jobrunner token add
  --name N        job name (default: the name of DIR or IMAGE)
  --follow        stream the job's console to stdout
  --wait          wait for the job to finish; exit with its exit code (as jobrunner run:
                  124 timeout, 121 boot failed, 122 bad image, 123 no exit status, 125 error, 130 cancelled)
  -o OUTDIR       with --wait: extract the job's /job/output into OUTDIR (as OUTDIR/output/...)
  --queue DIR     the local queue (without --server)
  --dsc FILE.dsc  submit a build of this Debian source package (instead of DIR|IMAGE); the job
                  publishes only /job/output (NAME.output.tar.xz: the server's /result is that
                  file, its output.tar the tar inside)
  -h, --help      this help
`;

/** The process exit code for a final job status (as `jobrunner run` would have exited). */
export function exitCodeOfStatus(st: JobStatus): number {
  switch (st.status) {
    case 'succeeded': case 'failed': return st.exitCode ?? EXIT.crashed;
    case 'timeout': return EXIT.timeout;
    case 'boot-failed': return EXIT.bootFailed;
    case 'rejected': return EXIT.badImage;
    case 'cancelled': return EXIT.interrupted;
    case 'error': return EXIT.runnerError;
  }
}

/** Entry point of `jobrunner submit`. */
export async function submitMain(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv, allowPositionals: true, strict: true,
    options: {
      server: { type: 'string' }, token: { type: 'string' }, name: { type: 'string' }, follow: { type: 'boolean' }, wait: { type: 'boolean' },
      output: { type: 'string', short: 'o' }, queue: { type: 'string' }, help: { type: 'boolean', short: 'h' }, dsc: { type: 'string' },
    },
  });
  if (values.help) { process.stdout.write(HELP); return 0; }
  if (values.output && !values.wait) throw new JrError('JR_E_USAGE', '-o OUTDIR needs --wait');
  if (values.dsc !== undefined) {
    if (positionals.length !== 0) throw new JrError('JR_E_USAGE', 'Expected --dsc FILE.dsc or one DIR|IMAGE, not both (see jobrunner submit --help)');
    return await submitDsc(values.dsc, argv);
  }
  if (positionals.length !== 1) throw new JrError('JR_E_USAGE', 'Expected one DIR or IMAGE (see jobrunner submit --help)');
  const src = path.resolve(positionals[0]!);
  const st = await stat(src).catch(() => { throw new JrError('JR_E_USAGE', `${src} does not exist`); });
  const name = values.name ?? path.basename(src).replace(/\.img(\.xz)?$/, '');
  if (!/^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$/.test(name)) throw new JrError('JR_E_USAGE', `job name ${JSON.stringify(name)}: use A-Z a-z 0-9 . _ + - (give one with --name)`);
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'jobrunner-submit-'));
  try {
    let image = src;
    if (st.isDirectory()) {
      image = path.join(tmp, `${name}.img`);
      const { main } = await import('./mkimage.js');
      const code = await main([src, '-o', image]);
      if (code !== 0) return code;
    }
    let xz = image;
    if (!image.endsWith('.img.xz')) {
      xz = path.join(tmp, `${name}.img.xz`);
      await compressFile(image, xz);
    }
    const bytes = (await lstat(xz)).size;
    if (!values.server) return await submitLocal(xz, name, bytes, values);
    const token = values.token ?? process.env.JOBRUNNER_TOKEN;
    if (!token) throw new JrError('JR_E_USAGE', 'Expected --token or $JOBRUNNER_TOKEN (jobrunner token add NAME on the server makes one)');
    const server = values.server.replace(/\/+$/, '');
    const job = await apiUpload(server, token, name, xz, bytes);
    process.stderr.write(`submitted ${name} as job ${job.id}: ${server}${job.urls.page}\n`);
    if (!values.follow && !values.wait) { process.stdout.write(`${job.id}\n`); return 0; }
    const final = await followJob(server, token, job.id, values.follow === true);
    process.stderr.write(`job ${job.id} ${final.status}${final.exitCode !== null ? ` (exit ${final.exitCode})` : ''}: ${final.reason}\n`);
    if (values.output) await extractOutput(server, token, job.id, path.resolve(values.output), final);
    return exitCodeOfStatus(final);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/**
 * --dsc (issue 11): make the job with mkjob-deb into a temp dir, then submit that image with the
 * same options. The job publishes /job/output only (NAME.output.tar.xz), locally or on a server.
 */
async function submitDsc(dsc: string, argv: string[]): Promise<number> {
  if (!dsc.endsWith('.dsc')) throw new JrError('JR_E_USAGE', `Expected --dsc to name a .dsc file, got ${JSON.stringify(dsc)}`);
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'jobrunner-submit-dsc-'));
  try {
    const { main } = await import('./mkjob-deb.js');
    const made = path.join(tmp, 'job.img');
    // Only /job/output comes back, locally and from a server alike (-o unpacks it either way).
    const code = await main([path.resolve(dsc), '-o', made, '--publish', 'output']);
    if (code !== 0) return code;
    // The job's name: SOURCE_VERSION (epoch dropped, anything a name may not hold made _).
    const base = path.basename(dsc, '.dsc').replace(/[^A-Za-z0-9._+-]/g, '_');
    const image = path.join(tmp, `${base}.img`);
    await rename(made, image);
    const rest: string[] = [];
    for (let i = 0; i < argv.length; i++) {
      if (argv[i] === '--dsc') i++;
      else if (!argv[i]!.startsWith('--dsc=')) rest.push(argv[i]!);
    }
    return await submitMain([...rest, image]);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/** Without --server: into the local queue atomically (a dotfile, then rename), then follow the spool. */
async function submitLocal(xz: string, name: string, bytes: number, v: { queue?: string; wait?: boolean; follow?: boolean; output?: string }): Promise<number> {
  const { settings } = loadSettings(v.queue ? ['--queue', v.queue] : [], process.env, ['queue', 'done', 'failed']);
  await mkdir(settings.queue, { recursive: true });
  const file = `${name}.img.xz`;
  const part = path.join(settings.queue, `.${file}.${process.pid}.part`);
  const since = new Date();
  await copyFile(xz, part);
  await rename(part, path.join(settings.queue, file));
  process.stderr.write(`queued ${path.join(settings.queue, file)} (${bytes} bytes)\n`);
  if (!v.wait && !v.follow) return 0;
  const final = await waitLocal(settings, file, since, v.follow === true);
  process.stderr.write(`${name} ${final.status}${final.exitCode !== null ? ` (exit ${final.exitCode})` : ''}: ${final.reason}\n`);
  if (v.output) {
    const { main } = await import('./extract.js');
    const dir = final.status === 'succeeded' ? settings.done : settings.failed;
    // deps (issue 11): a job that asked for "publish": "output" left NAME.output.tar.xz (output/...) instead of an image.
    const tarXz = path.join(dir, `${final.publishedAs}.output.tar.xz`);
    if (final.output && await stat(tarXz).catch(() => null)) await unpackOutput(path.resolve(v.output), tarXz);
    else if (final.output) await main([path.join(dir, `${final.publishedAs}.img.xz`), path.resolve(v.output), '/output']);
  }
  return exitCodeOfStatus(final);
}
