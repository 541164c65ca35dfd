import { describe, expect, it } from 'vitest';
import { cells, columnSparseOffset, defineCell, lang, type MatExpr } from '../src/index.js';

const { add, matvec, mul, tanh, sigmoid, slice, concat, grad, dot, sub } = lang;

/** Every matmul in the expression multiplies a column-sparse matrix: O(1) work per entry. */
function constantPerEntry(m: MatExpr): boolean {
  switch (m.kind) {
    case 'matmul':
      return columnSparseOffset(m.m) !== undefined;
    case 'rowscale':
    case 'slicerows':
    case 'sumrows':
    case 'broadcastrows':
      return constantPerEntry(m.m);
    case 'add':
      return m.terms.every(constantPerEntry);
    case 'concatrows':
      return m.parts.every(constantPerEntry);
    default:
      return true;
  }
}

describe('cell language', () => {
  it('finds the cheapest exact Jacobian structure', () => {
    expect(cells.gru({ inputSize: 2, hiddenSize: 8 }).exactBlockSize).toBe(8);
    expect(cells.gru({ inputSize: 2, hiddenSize: 8, heads: 4 }).exactBlockSize).toBe(2);
    expect(cells.gru({ inputSize: 2, hiddenSize: 8, heads: 8 }).exactBlockSize).toBe(1);
    expect(cells.lstm({ inputSize: 2, hiddenSize: 4 }).exactBlockSize).toBe(8);
    const elementwise = defineCell({ state: 6, input: 6, params: { a: [6] } }, (h, x, p) =>
      tanh(add(mul(p.a!, h), x)),
    );
    expect(elementwise.exactBlockSize).toBe(1);
  });

  it("derives a GRU (lbr = 1) Jacobian that costs O(1) per entry once the step's vectors exist", () => {
    const cell = cells.gru({ inputSize: 3, hiddenSize: 16 });
    expect(constantPerEntry(cell.jacobian.expr)).toBe(true);
    expect(constantPerEntry(cells.lstm({ inputSize: 3, hiddenSize: 16 }).jacobian.expr)).toBe(true);
    // lbr = 0 multiplies R by a dense tangent: a genuine matrix product, O(n) per entry.
    expect(
      constantPerEntry(cells.gru({ inputSize: 3, hiddenSize: 16, linearBeforeReset: 0 }).jacobian.expr),
    ).toBe(false);
  });

  it('rejects malformed cells with clear messages', () => {
    expect(() =>
      defineCell({ state: 3, input: 1, params: { W: [2, 3] } }, (h, _x, p) => matvec(p.W!, h)),
    ).toThrow(/expected a vector of the state size 3, got a vector of size 2/);
    expect(() =>
      defineCell({ state: 3, input: 1, params: { W: [2, 2] } }, (h, _x, p) => matvec(p.W!, h)),
    ).toThrow(/matvec\(W, v\): v: expected a vector of size 2 \(W has shape \[2, 2\]\), got size 3/);
    expect(() => defineCell({ state: 3, input: 1, params: {} }, (h) => slice(h, 2, 2))).toThrow(
      /slice\(v, 2, 2\).*start \+ size ≤ 3/,
    );
    expect(() => defineCell({ state: 0, input: 1, params: {} }, (h) => h)).toThrow(/positive integer/);
    expect(() => tanh(1)).toThrow(/a call inside a defineCell body/);
  });

  it('traces grad of a scalar into the graph (a Hamiltonian vector field)', () => {
    const cell = defineCell({ state: 4, input: 0, params: { W: [8, 4] } }, (y) => {
      const H = dot(y, y);
      const g = grad(H, y);
      // f = S ∇H with S the symplectic matrix: (∂H/∂p, −∂H/∂q).
      return concat(slice(g, 2, 2), sub(0, slice(g, 0, 2)));
    });
    expect(cell.graph.nodes.some((n) => n.op === 'sum')).toBe(true);
    expect(cell.exactBlockSize).toBe(4);
  });

  it('seeds init reproducibly', () => {
    const cell = cells.gru({ inputSize: 2, hiddenSize: 4 });
    expect(cell.init({ seed: 3 })).toEqual(cell.init({ seed: 3 }));
    expect(cell.init({ seed: 3 }).W).not.toEqual(cell.init({ seed: 4 }).W);
    const bound = 1 / Math.sqrt(4);
    expect(Math.max(...cell.init({ seed: 1 }).R!.map(Math.abs))).toBeLessThanOrEqual(bound);
    expect(cell.parameterCount).toBe(12 * 2 + 12 * 4 + 12 + 12);
  });

  it('shares structurally equal nodes', () => {
    const cell = defineCell({ state: 2, input: 2, params: {} }, (h, x) =>
      add(sigmoid(add(h, x)), sigmoid(add(h, x))),
    );
    expect(cell.graph.nodes.filter((n) => n.op === 'unary').length).toBe(1);
  });
});

/** Terms of the expression read as a tree (what a backend that expands it per entry generates). */
function treeTerms(m: MatExpr): number {
  switch (m.kind) {
    case 'zero':
      return 0;
    case 'select':
    case 'matmul':
      return 1;
    case 'add':
      return m.terms.reduce((s, t) => s + treeTerms(t), 0);
    case 'concatrows':
      return m.parts.reduce((s, t) => s + treeTerms(t), 0);
    default:
      return treeTerms(m.m);
  }
}

describe('Jacobian expressions stay small as cells get deep', () => {
  it('a chain of elementwise stages that each read their input twice is one diag(d)·I term at any depth', () => {
    // v ← 0.9·v + 0.1·tanh(v + b): as a tree the unmerged tangent doubled with every stage (2^d
    // terms), and the backends' generated code with it (an RK4 step of 3 substeps crashed cpu).
    for (const depth of [1, 4, 16, 40]) {
      const cell = defineCell({ state: 3, input: 0, params: { b: [3] } }, (h, _x, p) => {
        let v = h;
        for (let k = 0; k < depth; k++) v = add(mul(v, 0.9), mul(0.1, tanh(add(v, p.b))));
        return v;
      });
      const { expr, graph } = cell.jacobian;
      expect(treeTerms(expr), `depth ${depth}`).toBe(1);
      expect(expr.kind).toBe('rowscale');
      expect(graph.nodes.length, `depth ${depth}: graph nodes`).toBeLessThan(20 * depth + 20);
      expect(cell.exactBlockSize).toBe(1);
    }
  });

  it('terms on the same matrix merge: a GRU has one term per recurrent product', () => {
    const gru = cells.gru({ inputSize: 2, hiddenSize: 4 });
    // z, r and the candidate each read R once (plus the h pass-through): no duplicate bases.
    expect(treeTerms(gru.jacobian.expr)).toBeLessThanOrEqual(4);
    expect(constantPerEntry(gru.jacobian.expr)).toBe(true);
  });
});
