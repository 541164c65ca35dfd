import { cells, defineCell, lang } from '@deerjs/core';
import { describe, expect, it } from 'vitest';
import { planStages } from '../src/wgsl/graph.js';
import { compileSequential } from '../src/wgsl/sequential.js';
import { compileStep } from '../src/wgsl/step.js';

/**
 * Step kernels evaluate elementwise nodes of one size in one loop whose values are scalars; only
 * what another stage (or the caller) reads is a private array. Checked on the generated code; the
 * values are the conformance suite's to check (every cell, on llvmpipe in CI).
 */

const privateArrays = (code: string) => (code.match(/^\s*var v\d+: array<f32, \d+>;/gm) ?? []).length;

describe('webgpu step kernels: elementwise nodes fused into loops over scalars', () => {
  it('a GRU n = 32 step holds a private array only for what a product, a shifted slice or the output reads', () => {
    const cell = cells.gru({ inputSize: 4, hiddenSize: 32 });
    const step = compileStep(cell.linearizeProgram(1));
    // One per graph node had been the rule: 38 arrays. Left: the state (read by W·h and the
    // output), W·h and W·h + b (sliced at offsets), and the five values written to memory.
    expect(privateArrays(step.evaluate.code)).toBeLessThanOrEqual(8);
    const sequential = compileSequential(cell.linearizeProgram(1));
    expect(privateArrays(sequential.code)).toBeLessThanOrEqual(5);
  });

  it('products go first and the elementwise nodes that only the output needs form one loop', () => {
    // f(h, x) = tanh(W·h + x) · sigmoid(h) + h: h feeds the product and the elementwise tail.
    const n = 6;
    const cell = defineCell({ state: n, input: n, params: { W: [n, n] } }, (h, x, p) =>
      lang.add(h, lang.mul(lang.tanh(lang.add(lang.matvec(p.W!, h), x)), lang.sigmoid(h))),
    );
    const g = cell.graph;
    const out = cell.output;
    const live = g.nodes.map((_, id) => id);
    const { stages, arrays } = planStages(g, live, [out], new Set());
    const kinds = stages.map((s) => ('alone' in s ? g.nodes[s.alone]!.op : 'fused'));
    expect(kinds).toEqual(['fused', 'matvec', 'fused']);
    const tail = stages[2]!;
    expect('fused' in tail && tail.fused.includes(out)).toBe(true);
    // Arrays: the state (read by the product and by the tail), the product, the output.
    const state = g.nodes.findIndex((node) => node.op === 'state');
    const product = g.nodes.findIndex((node) => node.op === 'matvec');
    expect([...arrays].sort((a, b) => a - b)).toEqual([state, product, out].sort((a, b) => a - b));
  });

  it('on a software adapter only, stores stay in loops: the outputs, and large unrolled Jacobian blocks from a private array', () => {
    const cell = cells.gru({ inputSize: 2, hiddenSize: 16 });
    const program = cell.linearizeProgram(16);
    const gpu = compileStep(program, true, false);
    const software = compileStep(program, true, true);
    expect(gpu.fusedJacobian).toBeDefined();
    expect(software.fusedJacobian).toBeDefined();
    expect(gpu.evaluate.code).not.toContain('var jb');
    expect((gpu.evaluate.code.match(/jac\[e \* 256u \+ \d+u\]/g) ?? []).length).toBe(256);
    expect(software.evaluate.code).toContain('var jb: array<f32, 256>;');
    expect((software.evaluate.code.match(/jac\[/g) ?? []).length).toBe(1);
    // The outputs' stores too: loops the driver cannot unroll on a software adapter.
    const outputs = (code: string) => code.match(/for \(var i = 0u; i < [^;]+; i\+\+\) \{ packed\[/g) ?? [];
    expect(outputs(software.evaluate.code).length).toBeGreaterThan(0);
    for (const loop of outputs(software.evaluate.code)) expect(loop).toContain('+ z');
    for (const loop of outputs(gpu.evaluate.code)) expect(loop).not.toContain('+ z');
    // Small blocks keep their unrolled stores.
    const small = compileStep(cells.gru({ inputSize: 2, hiddenSize: 8 }).linearizeProgram(8), true, true);
    expect(small.evaluate.code).not.toContain('var jb');
  });
});
