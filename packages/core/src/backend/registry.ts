import { type BackendFailure, BackendUnavailableError, DTypeError, describeValue, InvalidArgumentError, UnsupportedOptionError } from '../errors.js';
import { checkOptionNames } from '../solver/options.js';
import type { Backend } from './types.js';

export type BackendOptions = Readonly<Record<string, unknown>>;

/** How a factory is called. */
export interface FactoryContext {
  /**
   * The options were given for whichever backend loads (`loadBackend()` with no name), not for
   * this one: a factory keeps the names it knows (`ownOptions`) and checks those.
   */
  readonly shared: boolean;
}

export type BackendFactory = (options: BackendOptions, context: FactoryContext) => Promise<Backend> | Backend;

/** The options a backend knows, of options meant for any backend (`FactoryContext.shared`); all of them otherwise. */
export function ownOptions(options: BackendOptions, known: readonly string[], context?: FactoryContext): BackendOptions {
  if (!context?.shared) return options;
  return Object.fromEntries(Object.entries(options).filter(([k]) => known.includes(k)));
}

interface Entry {
  readonly factory: BackendFactory;
  readonly priority: number;
  readonly options: readonly string[] | undefined;
}

/**
 * Backends deerjs knows of: name → npm package, default priority (higher is tried first) and the
 * names of its factory's options (each backend package's tests hold it to its own list), so that
 * `loadBackend()` can refuse an option no backend knows — a misspelt one — whichever loads.
 */
export const KNOWN_BACKENDS: Readonly<
  Record<string, { readonly package: string; readonly priority: number; readonly options: readonly string[] }>
> = {
  webgpu: {
    package: '@deerjs/webgpu',
    priority: 300,
    options: [
      'dtype',
      'powerPreference',
      'maxBufferBytes',
      'scanLanes',
      'simulatedBindingBytes',
      'timestamps',
      'sequentialKernel',
      'scanKernel',
      'denseScanKernel',
      'iterationOverhead',
    ],
  },
  tfjs: { package: '@deerjs/tfjs', priority: 200, options: ['dtype', 'tf', 'backend', 'maxBufferBytes', 'scan', 'hostKernels'] },
  cpu: { package: '@deerjs/cpu', priority: 100, options: ['dtype', 'maxBufferBytes', 'compileMin', 'threads', 'simd'] },
};

const registry = new Map<string, Entry>();

/**
 * Make a backend available to `loadBackend`. Backend packages call this from their `register()`.
 * `options`: the names its factory knows; a backend registered without them turns off
 * `loadBackend()`'s check of option names (they could be meant for it).
 */
export function registerBackend(name: string, factory: BackendFactory, priority = 0, options?: readonly string[]): void {
  // A NaN priority had left the order of loadBackend()'s candidates undefined.
  if (typeof name !== 'string' || name === '') throw new InvalidArgumentError('registerBackend name', 'a non-empty string', describeValue(name));
  if (typeof factory !== 'function') throw new InvalidArgumentError('registerBackend factory', 'a function (options, context) => Backend', describeValue(factory));
  if (typeof priority !== 'number' || !Number.isFinite(priority)) throw new InvalidArgumentError('registerBackend priority', 'a finite number', describeValue(priority));
  if (options !== undefined && !(Array.isArray(options) && options.every((o) => typeof o === 'string')))
    throw new InvalidArgumentError('registerBackend options', 'an array of option names', describeValue(options));
  registry.set(name, { factory, priority, options });
}

/** Every option name some backend knows, or undefined where a registered backend did not say. */
function anyBackendsOptions(): string[] | undefined {
  const names = new Set(Object.values(KNOWN_BACKENDS).flatMap((k) => k.options));
  for (const entry of registry.values()) {
    if (entry.options === undefined) return undefined;
    for (const n of entry.options) names.add(n);
  }
  return [...names];
}

export function registeredBackends(): string[] {
  return [...registry.keys()];
}

/** @internal For tests. */
export function unregisterBackend(name: string): void {
  registry.delete(name);
}

type Importer = (specifier: string) => Promise<unknown>;

export interface LoadBackendOptions {
  /** Passed to the backend's factory (e.g. `{ dtype }`, a tfjs backend name, buffer limits). */
  readonly options?: BackendOptions;
  /**
   * How to import a known backend package that is not registered yet. The default imports it by
   * name; bundlers that cannot follow a computed import should register backends explicitly.
   */
  readonly importer?: Importer;
}

const defaultImporter: Importer = (specifier) => import(/* @vite-ignore */ specifier);

function isMissingModule(err: unknown, specifier: string): boolean {
  const e = err as { code?: string; message?: string };
  return (
    e?.code === 'ERR_MODULE_NOT_FOUND' ||
    e?.code === 'MODULE_NOT_FOUND' ||
    (typeof e?.message === 'string' && e.message.includes(specifier) && /not (be )?found|resolve/i.test(e.message))
  );
}

/**
 * One line for a failure. A factory's own BackendUnavailableError carries its reasons in
 * `failures` (its message's first line is only the heading, "backend 'x' could not be loaded:").
 */
function describe(err: unknown): string {
  if (err instanceof BackendUnavailableError && err.failures.length > 0)
    return err.failures.map((f) => (f.name === err.requested ? f.reason : `${f.name}: ${f.reason}`)).join('; ');
  return err instanceof Error ? err.message.split('\n')[0]! : String(err);
}

/** Import a known backend package and let it register itself. */
async function discover(name: string, importer: Importer, ownImporter: boolean): Promise<BackendFailure | null> {
  const known = KNOWN_BACKENDS[name];
  if (!known) return { name, reason: 'no backend of this name is registered' };
  let mod: { register?: () => void };
  try {
    mod = (await importer(known.package)) as { register?: () => void };
  } catch (err) {
    if (isMissingModule(err, known.package)) {
      // core imports by name from where it is installed: under pnpm (and other strict layouts) an
      // installed backend is out of its reach unless the application lends its own import.
      const reason = ownImporter
        ? `package ${known.package} is not installed`
        : `package ${known.package} could not be imported from @deerjs/core: it is not installed, or the package manager keeps it out of core's reach (pnpm does) — then pass { importer: (s) => import(s) } to loadBackend, or call register() from ${known.package}`;
      return { name, reason, install: known.package };
    }
    return { name, reason: `importing ${known.package} failed: ${describe(err)}` };
  }
  if (typeof mod.register !== 'function') return { name, reason: `${known.package} exports no register()` };
  try {
    mod.register();
  } catch (err) {
    return { name, reason: `${known.package}'s register() failed: ${describe(err)}` };
  }
  return registry.has(name) ? null : { name, reason: `${known.package}'s register() did not register '${name}'` };
}

/**
 * Load a backend by name, or (no name) the best available one by priority. Known backends that
 * are installed but not registered are imported on demand. When nothing loads, the error lists
 * why every candidate failed and which package would provide it.
 */
export async function loadBackend(name?: string, opts: LoadBackendOptions = {}): Promise<Backend> {
  if (name !== undefined && typeof name !== 'string') throw new InvalidArgumentError('name', 'a backend name or nothing', describeValue(name));
  // A factory option given here (loadBackend('cpu', { dtype })) had been ignored in silence.
  checkOptionNames(opts, ['options', 'importer'], 'loadBackend');
  if (opts.options !== undefined && (typeof opts.options !== 'object' || opts.options === null || Array.isArray(opts.options)))
    throw new InvalidArgumentError('options', "an object of the backend's options", describeValue(opts.options));
  if (opts.importer !== undefined && typeof opts.importer !== 'function')
    throw new InvalidArgumentError('importer', 'a function (specifier) => import(specifier)', describeValue(opts.importer));
  if (name === undefined) {
    // Each backend keeps the options it knows (ownOptions); one that none knows is a mistake.
    const known = anyBackendsOptions();
    if (known) checkOptionNames(opts.options, known, 'loadBackend() (any backend)');
  }
  const importer = opts.importer ?? defaultImporter;
  const failures: BackendFailure[] = [];
  const candidates =
    name !== undefined
      ? [name]
      : [...new Set([...registry.keys(), ...Object.keys(KNOWN_BACKENDS)])].sort(
          (a, b) => priorityOf(b) - priorityOf(a),
        );
  // Best available: an emulated backend (a software GPU adapter, tfjs on a host engine) is kept
  // only until one that is not loads; on a machine without a GPU the cpu backend beats llvmpipe at every
  // size measured (GRU, B = 16, float32, nh = 1–32: sequential 1.9–41×, 'auto' 3.5–46× faster).
  // Options that only one backend knows (tfjs's `backend`, webgpu's `powerPreference`) say which
  // one the caller wants: that one is not held back (unless options name several such backends).
  const aimedAt = optionsAimedAt(opts.options);
  let emulated: Backend | undefined;
  try {
    for (const candidate of candidates) {
      if (!registry.has(candidate)) {
        const failure = await discover(candidate, importer, opts.importer !== undefined);
        if (failure) {
          failures.push(failure);
          continue;
        }
      }
      let backend: Backend;
      try {
        backend = await registry.get(candidate)!.factory(opts.options ?? {}, { shared: name === undefined });
      } catch (err) {
        // Options given for this backend by name that it refuses are the caller's mistake, not the
        // backend's absence: thrown as they are.
        if (name !== undefined && (err instanceof UnsupportedOptionError || err instanceof DTypeError || err instanceof InvalidArgumentError))
          throw err;
        const install = err instanceof BackendUnavailableError ? err.failures.find((f) => f.install)?.install : undefined;
        failures.push(install ? { name: candidate, reason: describe(err), install } : { name: candidate, reason: describe(err) });
        continue;
      }
      if (name !== undefined || backend.capabilities?.emulated !== true || aimedAt.has(candidate)) {
        const held = emulated;
        emulated = undefined;
        if (held) await destroyQuietly(held);
        return backend;
      }
      if (emulated) await destroyQuietly(backend);
      else emulated = backend;
    }
  } catch (err) {
    if (emulated) await destroyQuietly(emulated);
    throw err;
  }
  if (emulated) return emulated;
  throw new BackendUnavailableError(name, failures);
}

/** A backend let go of: a failure to destroy it is not the caller's concern (nor another backend's). */
async function destroyQuietly(backend: Backend): Promise<void> {
  try {
    await backend.destroy();
  } catch {
    // Nothing to do: it is no longer used.
  }
}

/**
 * The known backend that the options given to loadBackend() aim at: the one that options only it
 * knows belong to. Options of several backends' own (deer-bench passes tfjs's engine and webgpu's
 * timestamps, for whichever loads) aim at none: each is only a setting in case that one is picked.
 */
function optionsAimedAt(options: BackendOptions | undefined): Set<string> {
  const out = new Set<string>();
  for (const key of Object.keys(options ?? {})) {
    const owners = Object.entries(KNOWN_BACKENDS).filter(([, k]) => k.options.includes(key));
    if (owners.length === 1) out.add(owners[0]![0]);
  }
  return out.size === 1 ? out : new Set();
}

function priorityOf(name: string): number {
  return registry.get(name)?.priority ?? KNOWN_BACKENDS[name]?.priority ?? 0;
}
