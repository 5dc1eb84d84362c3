// One rich error type for everything the engine reports: a stable code, plus whatever context is
// known (job, step, argv, exit code, signal, stderr tail). Callers match on `code`, never on text.
// How a VM run ended (boot failure, timeout, bad image, ...) is an outcome, not an error: see
// vm/launch.ts's VmEnd. Every code is listed in docs/ERRORS.md (test/unit/errors.test.ts checks).

export type ErrorCode =
  | 'JR_E_CONFIG'        // bad configuration or command-line option
  | 'JR_E_USAGE'         // wrong command-line usage
  | 'JR_E_INPUT'         // a job image or name we refuse (rejected)
  | 'JR_E_BASE_IMAGE'    // base image missing, incomplete or corrupt
  | 'JR_E_PROCESS'       // an external program failed
  | 'JR_E_INTERRUPTED'   // the service stopped while running the job max-attempts times
  | 'JR_E_PUBLISH'       // writing a result failed (disk full, verify failed)
  | 'JR_E_XZ'            // compression / decompression failed or exceeded a cap
  | 'JR_E_PERMISSION'    // needs root (or another privilege) we do not have
  | 'JR_E_JOOT'          // joot environment errors
  | 'JR_E_INFRA'         // the machinery that runs jobs (a build node, the batch engine) failed the same job max-attempts times
  | 'JR_E_SLURM'         // a Slurm command failed or said something we cannot read
  | 'JR_E_TEMPLATE'      // a VM template could not be built, verified or restored (the job boots cold)
  // The HTTP API (issue 14): src/http/errors.ts maps each to its status code.
  | 'JR_E_LISTEN'        // --listen cannot be bound (in use, not this machine's address): the service does not start
  | 'JR_E_REQUEST'       // a malformed request (schema validation, bad parameter): 400
  | 'JR_E_AUTH'          // no or unknown token: 401
  | 'JR_E_FORBIDDEN'     // a token acting on what is not its own: 403
  | 'JR_E_NOT_FOUND'     // no such job or route: 404
  | 'JR_E_CONFLICT'      // the job is past the point where this applies (cancel a finished job): 409
  | 'JR_E_TOO_LARGE'     // an upload over the size cap: 413
  | 'JR_E_RANGE'         // a Range that does not fit the file: 416
  | 'JR_E_RATE'          // a token over its limits: 429
  | 'JR_E_UNAVAILABLE'   // the service is stopping: 503
  | 'JR_E_NO_SPACE'      // the queue's disk would drop below its reserve: 507
  | 'JR_E_INTERNAL';     // a bug

export interface ErrorContext {
  jobId?: string;
  step?: string;
  argv?: string[];
  exitCode?: number | null;
  signal?: string | null;
  timedOut?: boolean;
  durationMs?: number;
  stderrTail?: string;
  cause?: unknown;
  /** JR_E_RATE: seconds until the request may succeed (the Retry-After header). */
  retryAfter?: number;
}

/** An error with a stable JR_E_* code and the context needed to explain it to an operator. */
export class JrError extends Error {
  readonly code: ErrorCode;
  readonly context: ErrorContext;
  constructor(code: ErrorCode, message: string, context: ErrorContext = {}) {
    super(message, context.cause === undefined ? undefined : { cause: context.cause });
    this.name = 'JrError';
    this.code = code;
    this.context = context;
  }
}

/** True when `e` is a JrError, optionally with the given code. */
export function isJrError(e: unknown, code?: ErrorCode): e is JrError {
  return e instanceof JrError && (code === undefined || e.code === code);
}

/** A one-line message for any thrown value. */
export function messageOf(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}
