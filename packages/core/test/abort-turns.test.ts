import { afterEach, describe, expect, it, vi } from 'vitest';
import { AbortCheck } from '../src/solver/abort.js';

describe('AbortCheck', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('a check made while another solve waits for the event loop waits for the same turn', async () => {
    vi.useFakeTimers({ toFake: ['Date', 'setImmediate'] });
    const live = new AbortController().signal;
    const a = new AbortCheck(live);
    vi.setSystemTime(Date.now() + 25);
    // b's own 20 ms have not passed, but a is letting tasks run: b must not run on past it, or a
    // timer's abort waits for every solve in flight to reach its own slice.
    const b = new AbortCheck(live);
    let aDone = false;
    let bDone = false;
    const pa = a.check().then(() => (aDone = true));
    const pb = b.check().then(() => (bDone = true));
    for (let i = 0; i < 5; i++) await Promise.resolve();
    expect(aDone).toBe(false);
    expect(bDone).toBe(false);
    vi.runAllTimers();
    await Promise.all([pa, pb]);
    expect(aDone && bDone).toBe(true);
    // Once the turn has run, a check inside its 20 ms goes on at once.
    let cDone = false;
    const pc = b.check().then(() => (cDone = true));
    for (let i = 0; i < 5; i++) await Promise.resolve();
    expect(cDone).toBe(true);
    await pc;
  });

  it('an abort from a timer lands at the next check of every solve', async () => {
    const controller = new AbortController();
    const checks = [new AbortCheck(controller.signal), new AbortCheck(controller.signal)];
    setTimeout(() => controller.abort(new Error('stop')), 0);
    // Busy solves: each checks in a loop without leaving the microtask queue on its own.
    const spin = async (c: AbortCheck) => {
      for (;;) {
        const until = Date.now() + 2;
        while (Date.now() < until);
        await c.check();
      }
    };
    const results = await Promise.allSettled(checks.map(spin));
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
  });
});

describe('AbortCheck, a wait that never ends', () => {
  it('holds no other solve (timers faked, never run, then restored)', async () => {
    const live = new AbortController().signal;
    vi.useFakeTimers({ toFake: ['Date', 'setImmediate'] });
    const stuck = new AbortCheck(live);
    vi.setSystemTime(Date.now() + 25);
    void stuck.check(); // its task is a fake one that never runs
    vi.useRealTimers();
    const later = new AbortCheck(live);
    const done = await Promise.race([
      later.check().then(() => 'went on'),
      new Promise((resolve) => setTimeout(() => resolve('held'), 500)),
    ]);
    expect(done).toBe('went on');
  });
});
