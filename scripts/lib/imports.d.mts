// Types of scripts/lib/imports.mjs, for the TypeScript tests that call it.
export declare const LAYERS: Record<string, number>;
export declare function importGraph(srcDir: string): Map<string, string[]>;
export declare function layerKey(mod: string): string;
export declare function upwardImports(graph: Map<string, string[]>, layers?: Record<string, number>): string[];
export declare function cycles(graph: Map<string, string[]>): string[][];
export declare function report(srcDir: string, write?: (s: string) => void): number;
