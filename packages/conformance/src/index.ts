import type { Backend, DType } from '@deerjs/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defineAbortCases } from './abort-cases.js';
import { defineAdversarialCases } from './adversarial-cases.js';
import { makeContext } from './context.js';
import { defineDampedScanCases } from './damped-cases.js';
import { defineDerivativeCases, defineWindowedGradientCase } from './derivative-cases.js';
import { defineInputCases } from './input-cases.js';
import { defineLangCases } from './lang-cases.js';
import { defineGraphCases } from './graph-cases.js';
import { defineMethodCases } from './method-cases.js';
import { defineOdeCases } from './ode-cases.js';
import { defineOpCases } from './op-cases.js';
import { definePaddingCases } from './padding-cases.js';
import { defineUpdateCases } from './update-cases.js';
import { defineSolveCases } from './solve-cases.js';

export type { SuiteContext } from './context.js';
export { type DeerStepData, deerStepOn } from './deer-step-on.js';
export { CELL_FAMILIES, maxAbsDiff, sequenceData, userDefinedCell } from './fixtures.js';
export { firstMismatch, overflowingScan } from './overflow-scan.js';
export { type LangCase, langCases } from './lang-cases.js';

/** Max abs error vs the float64 oracle for a DEER solve, by dtype. */
export const DEFAULT_TOLERANCE: Readonly<Record<DType, number>> = { float64: 1e-10, float32: 1e-5 };

export interface ConformanceOptions {
  /** Shown in test names and reports. */
  readonly name: string;
  /**
   * Create the backend under test for one dtype: once per dtype in beforeAll, and again for cases
   * that need a second instance (`SuiteContext.another()`, destroyed by the case), so each call
   * must return a new backend.
   */
  readonly create: (dtype: DType) => Promise<Backend> | Backend;
  /**
   * The float64 oracle: a CPU backend (`createCpuBackend()` from @deerjs/cpu). Injected so that
   * this package depends on core only.
   */
  readonly oracle: () => Promise<Backend> | Backend;
  /** The dtypes to run: `true` runs it, a string skips it with that written reason. */
  readonly dtypes: Readonly<Partial<Record<DType, true | string>>>;
  /** Override the per-dtype tolerance of solves. */
  readonly tolerance?: Readonly<Partial<Record<DType, number>>>;
  /** Cases to skip, by exact case id, each with its written reason. */
  readonly skip?: Readonly<Record<string, string>>;
}

/** The skip ids that name none of the defined case ids (each such id fails the suite). */
export function unknownSkipIds(skip: Readonly<Record<string, string>>, defined: ReadonlySet<string>): string[] {
  return Object.keys(skip).filter((id) => !defined.has(id));
}

/**
 * Define the conformance suite for a backend: call it at the top level of a vitest test file. It
 * covers solves of every built-in cell over sizes, lengths and batches against the float64
 * oracle, every exact Jacobian structure and quasi-DEER, a user-defined cell, derived Jacobians
 * and gradients against finite differences, bad input, fallbacks, the scan and the tensor
 * primitives — with a leak check around every case.
 */
export function defineConformanceSuite(options: ConformanceOptions): void {
  const skip = options.skip ?? {};
  for (const [id, reason] of Object.entries(skip)) {
    if (typeof reason !== 'string' || reason.trim() === '')
      throw new Error(`skip '${id}' needs a written reason`);
  }
  // Every case id defined for any dtype; a skip id outside it names no case and fails the suite.
  const defined = new Set<string>();
  let anyDtypeRuns = false;
  for (const dtype of ['float64', 'float32'] as const) {
    const mode = options.dtypes[dtype];
    if (mode === undefined) continue;
    if (mode === true) anyDtypeRuns = true;
    describe(`conformance: ${options.name} (${dtype})`, () => {
      if (mode !== true) {
        describe.skip(`${dtype} — skipped: ${mode}`, () => {});
        return;
      }
      let backend: Backend | undefined;
      let oracle: Backend | undefined;
      beforeAll(async () => {
        backend = await options.create(dtype);
        oracle = await options.oracle();
      }, 120_000);
      afterAll(async () => {
        await backend?.destroy();
        await oracle?.destroy();
      });
      const ctx = makeContext(
        options.name,
        dtype,
        options.tolerance?.[dtype] ?? DEFAULT_TOLERANCE[dtype],
        () => backend!,
        () => oracle!,
        skip,
        defined,
        async () => options.create(dtype),
      );
      describe('solves', () => defineSolveCases(ctx));
      describe('derivatives', () => {
        defineDerivativeCases(ctx);
        defineWindowedGradientCase(ctx);
      });
      describe('inputs', () => defineInputCases(ctx));
      describe('ops', () => {
        defineOpCases(ctx);
        defineDampedScanCases(ctx);
        defineUpdateCases(ctx);
      });
      describe('ode', () => defineOdeCases(ctx));
      describe('adversarial', () => defineAdversarialCases(ctx));
      describe('padding', () => definePaddingCases(ctx));
      describe('method', () => defineMethodCases(ctx));
      describe('lang', () => defineLangCases(ctx));
      describe('graph', () => defineGraphCases(ctx));
      describe('abort', () => defineAbortCases(ctx));
    });
  }
  if (anyDtypeRuns && Object.keys(skip).length > 0) {
    describe(`conformance: ${options.name}`, () => {
      it('every skip id names a case', () => {
        const unknown = unknownSkipIds(skip, defined);
        expect(unknown, `skip ids that name no case of the suite (${defined.size} cases)`).toEqual([]);
      });
    });
  }
}
