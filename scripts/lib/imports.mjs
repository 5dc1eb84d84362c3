// The module import graph of src/: its cycles and its upward imports (a lower layer importing a
// higher one). Run through scripts/imports; test/unit/imports.test.ts makes it a gate.
// No dependency: the TypeScript sources are scanned for relative import/export/import() specifiers
// (type-only imports count too: they couple the modules as much as any other).
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Layers, lowest first. A module may import its own layer or any lower one, never a higher one.
 * Keys are the first path segment under src/ (a directory, or a top-level file without .ts);
 * '*' is every other top-level file (errors, config, log, proc, fsutil, ...: the ground floor).
 * A new directory under src/ must be given a layer here.
 */
export const LAYERS = {
  '*': 0,
  xz: 1, image: 1, spool: 1, vm: 1, unshare: 1, deps: 1,
  job: 2, joot: 2, slurm: 2,
  scheduler: 3,
  service: 4,
  cli: 5, http: 5,
};

const SPEC = /(?:^|[\s;])(?:import|export)\s[^'"`;]*?from\s*['"]([^'"]+)['"]|import\s*\(\s*['"]([^'"]+)['"]\s*\)|^\s*import\s*['"]([^'"]+)['"]/gm;

/** Every .ts file under `dir`, as paths relative to it. */
function listTs(dir, rel = '') {
  const out = [];
  for (const e of readdirSync(path.join(dir, rel), { withFileTypes: true })) {
    const p = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...listTs(dir, p));
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(p);
  }
  return out.sort();
}

/** The graph: module (path relative to srcDir) -> the modules it imports. */
export function importGraph(srcDir) {
  const files = listTs(srcDir);
  const known = new Set(files);
  const graph = new Map();
  for (const f of files) {
    const text = readFileSync(path.join(srcDir, f), 'utf8');
    const deps = new Set();
    for (const m of text.matchAll(SPEC)) {
      const spec = m[1] ?? m[2] ?? m[3];
      if (!spec || !spec.startsWith('.')) continue;
      const target = path.posix.normalize(path.posix.join(path.posix.dirname(f), spec)).replace(/\.js$/, '.ts');
      if (known.has(target)) deps.add(target);
    }
    graph.set(f, [...deps].sort());
  }
  return graph;
}

/** The layer key of a module: its top directory, or its file name for a top-level file. */
export function layerKey(mod) {
  const top = mod.split('/')[0];
  if (mod.includes('/')) return top;
  const name = top.replace(/\.ts$/, '');
  return name in LAYERS ? name : '*';
}

/** Imports that go up the layers, and modules in no layer. */
export function upwardImports(graph, layers = LAYERS) {
  const out = [];
  for (const [from, deps] of graph) {
    const lf = layers[layerKey(from)];
    if (lf === undefined) { out.push(`${from}: its directory is in no layer (add '${layerKey(from)}' to LAYERS in scripts/lib/imports.mjs)`); continue; }
    for (const to of deps) {
      const lt = layers[layerKey(to)];
      if (lt !== undefined && lt > lf) out.push(`${from} -> ${to} (layer ${layerKey(from)}=${lf} imports ${layerKey(to)}=${lt})`);
    }
  }
  return out;
}

/** Strongly connected components with more than one module (or a module importing itself). */
export function cycles(graph) {
  let index = 0;
  const idx = new Map(); const low = new Map(); const onStack = new Set(); const stack = []; const out = [];
  const visit = (v) => {
    idx.set(v, index); low.set(v, index); index++; stack.push(v); onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!idx.has(w)) { visit(w); low.set(v, Math.min(low.get(v), low.get(w))); } else if (onStack.has(w)) low.set(v, Math.min(low.get(v), idx.get(w)));
    }
    if (low.get(v) === idx.get(v)) {
      const scc = [];
      let w;
      do { w = stack.pop(); onStack.delete(w); scc.push(w); } while (w !== v);
      if (scc.length > 1 || (graph.get(v) ?? []).includes(v)) out.push(scc.sort());
    }
  };
  for (const v of graph.keys()) if (!idx.has(v)) visit(v);
  return out;
}

/** Print the report for `srcDir`; returns the number of violations. */
export function report(srcDir, write = (s) => process.stdout.write(s)) {
  const g = importGraph(srcDir);
  const edges = [...g.values()].reduce((n, d) => n + d.length, 0);
  const cyc = cycles(g);
  const up = upwardImports(g);
  write(`${g.size} modules, ${edges} imports\n`);
  write(`cycles: ${cyc.length}\n`);
  for (const c of cyc) write(`  ${c.join(' <-> ')}\n`);
  write(`upward imports: ${up.length}\n`);
  for (const u of up) write(`  ${u}\n`);
  return cyc.length + up.length;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const src = process.argv[2] ?? path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'src');
  process.exitCode = report(src) > 0 ? 1 : 0;
}
