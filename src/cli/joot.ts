// joot: copy-on-write clean-room environments from base images. Parses argv, loads the config, calls
// src/joot/, prints. Exit code: 0 ok, 1 failure, 2 usage; `enter` exits with the command's code.
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { JrError, isJrError, messageOf } from '../errors.js';
import { loadConfig } from '../joot/config.js';
import { listImages } from '../joot/images.js';
import { create, list, mountEnv, remove, renameEnv, umountEnv } from '../joot/ops.js';
import { enter } from '../joot/enter.js';
import { importImage } from '../joot/import.js';

const HELP = `Usage: joot COMMAND [ARGS]

  images                          base images: local base-image/*/ and the configured index
  create NAME [IMAGE]             new environment: a qcow2 overlay on IMAGE (default: "default");
                                  IMAGE is an image name, an image directory or an image file
  enter NAME [--user USER] [--no-home | --ro-home] [-- CMD ARGS...]
                                  run CMD (default: the user's login shell) inside NAME as USER
                                  (default: the invoking user; root without SUDO_USER), with /proc,
                                  /sys, /dev, /dev/pts mounted, host files copied in (resolv.conf,
                                  hosts), the user's home bound; exits with CMD's exit code
  mount NAME [DIR...] [--read-only] [--always]
                                  mount NAME (prints its root) and bind host DIRs at the same paths;
                                  --always: bind DIRs on every enter too
  umount NAME [DIR...]            unbind DIRs (dropping them from --always), or unmount NAME
  list                            environments: name, creator, created, image
  delete NAME...                  unmount and delete environments
  rename OLD NEW                  rename an environment (not while mounted)
  import FILE [--name N] [--partition N]
                                  make a base image from a raw, qcow2, vmdk or AMI-style partitioned
                                  disk (root partition found automatically unless --partition)

Config: JSON at $JOOT_CONFIG, ~/.joot or /etc/joot.cfg (keys: home, baseImageDirs, importDir, index,
copyFiles, passEnv, path, defaultImage). Environments live in $JOOT_HOME (default /var/lib/joot as
root, ~/.local/share/joot otherwise). enter, mount and umount need root.`;

const say = (m: string) => process.stderr.write(`joot: ${m}\n`);

function table(rows: string[][]): string {
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(w[i]!))).join('  ')).join('\n') + '\n';
}

function need(pos: string[], min: number, max: number, usage: string): void {
  if (pos.length < min || pos.length > max) throw new JrError('JR_E_USAGE', `Expected: joot ${usage}`);
}

async function dispatch(cmd: string, rest: string[]): Promise<number> {
  // For enter, everything after "--" is the command, untouched by option parsing.
  const dd = rest.indexOf('--');
  const tail = dd >= 0 && cmd === 'enter' ? rest.slice(dd + 1) : [];
  const args = dd >= 0 && cmd === 'enter' ? rest.slice(0, dd) : rest;
  const { values: v, positionals: pos } = parseArgs({
    args, allowPositionals: true, strict: true,
    options: {
      user: { type: 'string' }, 'no-home': { type: 'boolean' }, 'ro-home': { type: 'boolean' },
      'read-only': { type: 'boolean' }, always: { type: 'boolean' }, name: { type: 'string' }, partition: { type: 'string' },
    },
  });
  const allowed: Record<string, string[]> = { enter: ['user', 'no-home', 'ro-home'], mount: ['read-only', 'always'], import: ['name', 'partition'] };
  for (const k of Object.keys(v)) {
    if (!(allowed[cmd] ?? []).includes(k)) throw new JrError('JR_E_USAGE', `Expected options of joot ${cmd} to be among ${(allowed[cmd] ?? []).map((x) => '--' + x).join(' ') || '(none)'}, got --${k}`);
  }
  const cfg = await loadConfig();
  switch (cmd) {
    case 'images': {
      need(pos, 0, 0, 'images');
      const rows = await listImages(cfg);
      process.stdout.write(table([['NAME', 'SOURCE', 'CACHED', 'DETAIL', 'LOCATION'], ...rows.map((r) => [r.name, r.source, r.cached ? 'yes' : 'no', r.detail || '-', r.location])]));
      return 0;
    }
    case 'create': {
      need(pos, 1, 2, 'create NAME [IMAGE]');
      const rec = await create(cfg, pos[0]!, pos[1], say);
      process.stdout.write(`Created joot "${rec.name}" from ${rec.image} (${rec.imagePath})\n`);
      return 0;
    }
    case 'enter': {
      need(pos, 1, 1, 'enter NAME [--user USER] [--no-home | --ro-home] [-- CMD ARGS...]');
      if (v['no-home'] && v['ro-home']) throw new JrError('JR_E_USAGE', 'Expected at most one of --no-home and --ro-home');
      return enter(cfg, pos[0]!, { ...(v.user ? { user: v.user as string } : {}), home: v['no-home'] ? 'none' : v['ro-home'] ? 'ro' : 'rw', cmd: tail, warn: say });
    }
    case 'mount': {
      need(pos, 1, Infinity, 'mount NAME [DIR...] [--read-only] [--always]');
      process.stdout.write(`${await mountEnv(cfg, pos[0]!, pos.slice(1), { readOnly: !!v['read-only'], always: !!v.always })}\n`);
      return 0;
    }
    case 'umount': {
      need(pos, 1, Infinity, 'umount NAME [DIR...]');
      const r = await umountEnv(cfg, pos[0]!, pos.slice(1));
      for (const p of r.problems) say(`could not unmount: ${p}`);
      if (r.inUseBy.length > 0) say(`still in use by joot enter (pid ${r.inUseBy.join(', ')}); it unmounts when they leave`);
      return r.problems.length > 0 ? 1 : 0;
    }
    case 'list': {
      need(pos, 0, 0, 'list');
      const recs = await list(cfg);
      process.stdout.write(table([['NAME', 'CREATOR', 'CREATED', 'IMAGE'], ...recs.map((r) => [r.name, r.creator, r.created, r.image])]));
      return 0;
    }
    case 'delete': {
      need(pos, 1, Infinity, 'delete NAME...');
      let rc = 0;
      for (const n of pos) {
        try { await remove(cfg, n); process.stdout.write(`Deleted joot "${n}"\n`); } catch (e) { say(messageOf(e)); rc = 1; }
      }
      return rc;
    }
    case 'rename': {
      need(pos, 2, 2, 'rename OLD NEW');
      await renameEnv(cfg, pos[0]!, pos[1]!);
      return 0;
    }
    case 'import': {
      need(pos, 1, 1, 'import FILE [--name N] [--partition N]');
      const part = v.partition === undefined ? undefined : Number(v.partition);
      if (part !== undefined && !(Number.isInteger(part) && part > 0)) throw new JrError('JR_E_USAGE', `Expected \`--partition\` to be a partition number, got ${String(v.partition)}`);
      const dir = await importImage(cfg, pos[0]!, { ...(v.name ? { name: v.name as string } : {}), ...(part ? { partition: part } : {}), say });
      process.stdout.write(`Imported ${pos[0]} as base image at ${dir}\n`);
      return 0;
    }
    default:
      throw new JrError('JR_E_USAGE', `unknown command "${cmd}"`);
  }
}

/** joot entry point; returns the process exit code. */
export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === 'help' || cmd === '--help' || cmd === '-h') { process.stdout.write(HELP + '\n'); return cmd ? 0 : 2; }
  try {
    return await dispatch(cmd, rest);
  } catch (e) {
    say(messageOf(e));
    if (isJrError(e, 'JR_E_USAGE') || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) { say('see: joot help'); return 2; }
    return 1;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main(process.argv.slice(2));
}
