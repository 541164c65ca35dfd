import type { Backend, DType } from '@deerjs/core';
import { expect, it } from 'vitest';

/** What every group of conformance cases gets. */
export interface SuiteContext {
  /** The backend under test (valid inside a case). */
  backend(): Backend;
  /** The float64 oracle backend (valid inside a case). */
  oracle(): Backend;
  /** A second instance of the backend under test (the case destroys it). */
  another(): Promise<Backend>;
  readonly dtype: DType;
  /** Max abs error allowed against the oracle for a solve. */
  readonly tolerance: number;
  /** Define a case: skipped with its reason if listed in `skip`, leak-checked otherwise. */
  test(id: string, body: () => Promise<void>, timeoutMs?: number): void;
  /** Print a measured figure (iterations, errors) so CI logs carry it. */
  report(line: string): void;
}

export function makeContext(
  name: string,
  dtype: DType,
  tolerance: number,
  getBackend: () => Backend,
  getOracle: () => Backend,
  skip: Readonly<Record<string, string>>,
  defined: Set<string> = new Set(),
  another: () => Promise<Backend> = async () => {
    throw new Error(`conformance ${name}: no factory for a second backend was given`);
  },
): SuiteContext {
  return {
    backend: getBackend,
    oracle: getOracle,
    another,
    dtype,
    tolerance,
    report: (line) => console.log(`[conformance ${name} ${dtype}] ${line}`),
    test(id, body, timeoutMs) {
      defined.add(id);
      const reason = skip[id];
      if (reason !== undefined) {
        it.skip(`${id} — skipped: ${reason}`, () => {});
        return;
      }
      it(
        id,
        async () => {
          const backend = getBackend();
          const oracle = getOracle();
          const before = backend.liveTensors();
          const beforeOracle = oracle.liveTensors();
          await body();
          expect(backend.liveTensors(), 'live tensors after the case (leak check)').toBe(before);
          expect(oracle.liveTensors(), 'oracle live tensors after the case').toBe(beforeOracle);
        },
        timeoutMs,
      );
    },
  };
}
