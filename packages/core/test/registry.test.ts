import { afterEach, describe, expect, it } from 'vitest';
import {
  BackendUnavailableError,
  type Backend,
  InvalidArgumentError,
  loadBackend,
  ownOptions,
  registerBackend,
  registeredBackends,
  UnsupportedOptionError,
  unregisterBackend,
} from '../src/index.js';

const fake = (name: string) => ({ name }) as unknown as Backend;

describe('backend registry', () => {
  afterEach(() => {
    for (const n of ['alpha', 'beta', 'cpu', 'webgpu', 'tfjs']) unregisterBackend(n);
  });

  it('loads a registered backend by name, passing options to its factory', async () => {
    let seen: unknown;
    registerBackend('alpha', (o) => {
      seen = o;
      return fake('alpha');
    });
    const b = await loadBackend('alpha', { options: { dtype: 'float32' } });
    expect(b.name).toBe('alpha');
    expect(seen).toEqual({ dtype: 'float32' });
  });

  it('tells a factory whether its options were meant for it (a name) or for whichever loads (no name)', async () => {
    const seen: unknown[] = [];
    registerBackend('alpha', (o, context) => {
      seen.push(ownOptions(o, ['dtype'], context));
      return fake('alpha');
    });
    await loadBackend('alpha', { options: { dtype: 'float32', lanes: 4 } });
    await loadBackend(undefined, { options: { dtype: 'float32', lanes: 4 } });
    expect(seen).toEqual([{ dtype: 'float32', lanes: 4 }, { dtype: 'float32' }]);
  });

  it("refuses its own options misplaced or of the wrong kind (a factory option beside 'options' had been ignored)", async () => {
    registerBackend('alpha', () => fake('alpha'));
    await expect(loadBackend('alpha', { dtype: 'float32' } as never)).rejects.toThrow(UnsupportedOptionError);
    await expect(loadBackend('alpha', null as never)).rejects.toThrow(UnsupportedOptionError);
    await expect(loadBackend('alpha', { options: 'float32' } as never)).rejects.toThrow(InvalidArgumentError);
    await expect(loadBackend('alpha', { importer: 'yes' } as never)).rejects.toThrow(InvalidArgumentError);
    await expect(loadBackend(7 as never)).rejects.toThrow(InvalidArgumentError);
  });

  it('refuses, with no name, an option that no backend knows (a misspelt one had been dropped unnoticed)', async () => {
    registerBackend('alpha', () => fake('alpha'), 10, ['lanes']);
    const none = async () => ({});
    // Another backend's option is fine (the one that loads ignores it); a name none knows is not.
    await expect(loadBackend(undefined, { options: { dtype: 'float32', threads: 2, lanes: 4 }, importer: none })).resolves.toMatchObject({ name: 'alpha' });
    await expect(loadBackend(undefined, { options: { thread: 2 }, importer: none })).rejects.toThrow(UnsupportedOptionError);
    await expect(loadBackend(undefined, { options: { Threads: 2 }, importer: none })).rejects.toThrow(/did you mean 'threads'/);
    // A backend that did not say which options it knows could be the one meant: nothing refused.
    registerBackend('beta', () => fake('beta'), 1);
    await expect(loadBackend(undefined, { options: { thread: 2 }, importer: none })).resolves.toMatchObject({ name: 'alpha' });
    // So does one registered under a known name (a wrapped or custom 'cpu', say).
    unregisterBackend('beta');
    registerBackend('cpu', () => fake('cpu'), 1);
    await expect(loadBackend(undefined, { options: { adapter: 'x' }, importer: none })).resolves.toMatchObject({ name: 'alpha' });
  });

  it('picks the best available by priority and reports why better ones failed', async () => {
    registerBackend('alpha', () => fake('alpha'), 10);
    registerBackend('beta', () => {
      throw new Error('no adapter');
    }, 1000);
    const missing = async (s: string) => {
      throw Object.assign(new Error(`Cannot find package '${s}'`), { code: 'ERR_MODULE_NOT_FOUND' });
    };
    const b = await loadBackend(undefined, { importer: missing });
    expect(b.name).toBe('alpha');
  });

  it('lists every candidate with its reason and the package to install', async () => {
    registerBackend('beta', () => {
      throw new Error('no adapter found');
    }, 1000);
    const missing = async (s: string) => {
      throw Object.assign(new Error(`Cannot find package '${s}'`), { code: 'ERR_MODULE_NOT_FOUND' });
    };
    const err = await loadBackend(undefined, { importer: missing }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendUnavailableError);
    const msg = (err as Error).message;
    expect(msg).toContain('beta: no adapter found');
    expect(msg).toContain('webgpu: package @deerjs/webgpu is not installed (install it with: npm install @deerjs/webgpu)');
    expect(msg).toContain('tfjs: package @deerjs/tfjs is not installed');
    expect(msg).toContain('cpu: package @deerjs/cpu is not installed');
    // Order follows priority: beta (1000), webgpu (300), tfjs (200), cpu (100).
    expect(msg.indexOf('beta')).toBeLessThan(msg.indexOf('webgpu'));
    expect(msg.indexOf('webgpu')).toBeLessThan(msg.indexOf('cpu:'));
  });

  it("with core alone, loadBackend('webgpu') names the package to install", async () => {
    // The real importer: @deerjs/webgpu is not a dependency of core, so it cannot be resolved here.
    const err = await loadBackend('webgpu').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendUnavailableError);
    expect((err as BackendUnavailableError).failures[0]).toMatchObject({ name: 'webgpu', install: '@deerjs/webgpu' });
    expect((err as Error).message).toMatch(/npm install @deerjs\/webgpu/);
  });

  it("keeps the reasons of a factory's own BackendUnavailableError (not just its heading)", async () => {
    registerBackend('beta', () => {
      throw new BackendUnavailableError('beta', [{ name: 'beta', reason: 'no GPU adapter is available' }]);
    }, 1000);
    registerBackend('alpha', () => {
      throw new BackendUnavailableError('alpha', [{ name: 'alpha', reason: 'engine missing', install: 'alpha-engine' }]);
    }, 999);
    const missing = async (s: string) => {
      throw Object.assign(new Error(`Cannot find package '${s}'`), { code: 'ERR_MODULE_NOT_FOUND' });
    };
    const byName = (await loadBackend('beta').catch((e: unknown) => e)) as BackendUnavailableError;
    expect(byName.failures).toEqual([{ name: 'beta', reason: 'no GPU adapter is available' }]);
    const best = (await loadBackend(undefined, { importer: missing }).catch((e: unknown) => e)) as BackendUnavailableError;
    expect(best.failures.slice(0, 2)).toEqual([
      { name: 'beta', reason: 'no GPU adapter is available' },
      { name: 'alpha', reason: 'engine missing', install: 'alpha-engine' },
    ]);
    expect(best.message).not.toMatch(/could not be loaded:\n {2}- beta: deerjs backend/);
    // Failures of another name than the backend's (an engine, say) keep their names.
    unregisterBackend('beta');
    registerBackend('beta', () => {
      throw new BackendUnavailableError('beta', [
        { name: 'beta (x)', reason: 'r1' },
        { name: 'beta', reason: 'r2' },
      ]);
    }, 1000);
    const named = (await loadBackend('beta').catch((e: unknown) => e)) as BackendUnavailableError;
    expect(named.failures[0]!.reason).toBe('beta (x): r1; r2');
  });

  it('without an importer of the caller, a package core cannot import is not called uninstalled outright', async () => {
    const err = (await loadBackend('tfjs').catch((e: unknown) => e)) as BackendUnavailableError;
    expect(err.failures[0]!.reason).toMatch(/could not be imported from @deerjs\/core/);
    expect(err.failures[0]!.reason).toMatch(/importer: \(s\) => import\(s\)/);
    expect(err.failures[0]!.reason).toMatch(/register\(\) from @deerjs\/tfjs/);
  });

  it('best available takes an emulated device (a software GPU adapter) only where nothing else loads', async () => {
    const destroyed: string[] = [];
    const make = (name: string, emulated: boolean) => () =>
      ({ name, capabilities: { emulated }, destroy: () => void destroyed.push(name) }) as unknown as Backend;
    const none = async () => ({});
    registerBackend('beta', make('beta', true), 1000);
    registerBackend('alpha', make('alpha', false), 10);
    expect((await loadBackend(undefined, { importer: none })).name).toBe('alpha');
    expect(destroyed).toEqual(['beta']);
    // By name it is what was asked for.
    expect((await loadBackend('beta')).name).toBe('beta');
    unregisterBackend('alpha');
    registerBackend('gamma', make('gamma', true), 500);
    destroyed.length = 0;
    expect((await loadBackend(undefined, { importer: none })).name).toBe('beta');
    expect(destroyed).toEqual(['gamma']);
    unregisterBackend('gamma');
  });

  it('an emulated backend held back is destroyed whatever happens next, and never returned destroyed', async () => {
    const destroyed: string[] = [];
    const none = async () => ({});
    const make = (name: string, emulated: boolean, destroyThrows = false) => () =>
      ({
        name,
        capabilities: { emulated },
        destroy: () => {
          destroyed.push(name);
          if (destroyThrows) throw new Error(`${name} would not go`);
        },
      }) as unknown as Backend;
    // Its destroy throws: the backend that loaded after it is still the answer, not a failure.
    registerBackend('beta', make('beta', true, true), 1000);
    registerBackend('alpha', make('alpha', false), 10);
    const got = await loadBackend(undefined, { importer: none });
    expect(got.name).toBe('alpha');
    expect(destroyed).toEqual(['beta']);
    // A later candidate's register() throws: that candidate failed (it had rejected the whole
    // load, leaving the held one undestroyed); with nothing better, the held one is the answer.
    unregisterBackend('alpha');
    destroyed.length = 0;
    const broken = async () => ({
      register: () => {
        throw new Error('register failed');
      },
    });
    const only = await loadBackend(undefined, { importer: broken });
    expect(only.name).toBe('beta');
    expect(destroyed).toEqual([]);
    const byName = (await loadBackend('cpu', { importer: broken }).catch((e: unknown) => e)) as BackendUnavailableError;
    expect(byName.failures[0]!.reason).toBe("@deerjs/cpu's register() failed: register failed");
  });

  it('options that one backend alone knows keep it from being held back as emulated', async () => {
    registerBackend('tfjs', () => ({ name: 'tfjs', capabilities: { emulated: true }, destroy() {} }) as unknown as Backend, 200);
    registerBackend('cpu', () => fake('cpu'), 100);
    const none = async () => ({});
    expect((await loadBackend(undefined, { importer: none })).name).toBe('cpu');
    expect((await loadBackend(undefined, { importer: none, options: { backend: 'wasm' } })).name).toBe('tfjs');
    // dtype is everyone's: no aim.
    expect((await loadBackend(undefined, { importer: none, options: { dtype: 'float32' } })).name).toBe('cpu');
    // Settings for two backends, whichever loads (deer-bench's): no aim either — they had picked
    // llvmpipe over cpu for the README's first command.
    expect((await loadBackend(undefined, { importer: none, options: { backend: 'wasm', timestamps: true } })).name).toBe('cpu');
  });

  it('registerBackend checks what it is given', () => {
    const ok = () => fake('alpha');
    for (const [what, call] of [
      ['empty name', () => registerBackend('', ok)],
      ['numeric name', () => registerBackend(5 as never, ok)],
      ['no factory', () => registerBackend('alpha', null as never)],
      ['NaN priority', () => registerBackend('alpha', ok, Number.NaN)],
      ['string priority', () => registerBackend('alpha', ok, 'hi' as never)],
      ['options not names', () => registerBackend('alpha', ok, 1, [1] as never)],
    ] as const) {
      expect(call, what).toThrow(InvalidArgumentError);
    }
    expect(registeredBackends()).not.toContain('alpha');
  });

  it('imports a known package and calls its register()', async () => {
    const importer = async () => ({ register: () => registerBackend('cpu', () => fake('cpu'), 100) });
    expect((await loadBackend('cpu', { importer })).name).toBe('cpu');
  });

  it('an unknown name fails clearly', async () => {
    await expect(loadBackend('quantum')).rejects.toThrow(/quantum: no backend of this name is registered/);
  });
});
