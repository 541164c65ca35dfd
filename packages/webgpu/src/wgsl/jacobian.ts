import { columnSparseOffset, type Graph, type MatExpr, matrixLayout, type NodeId, paramSpec } from '@deerjs/core';

/**
 * A Jacobian expression as WGSL: one function `m<k>(e: u32, r: i32, c: i32) -> f32` per distinct
 * subexpression, returning entry (r, c) for element e (see matexpr.ts for the entry semantics).
 * `coef(d, e, r)` reads entry r of coefficient vector d; `param(name, index)` a packed parameter.
 */
export class MatExprEmitter {
  readonly functions: string[] = [];
  private readonly names = new Map<MatExpr, string>();

  constructor(
    private readonly graph: Graph,
    private readonly coef: (d: NodeId, e: string, r: string) => string,
    private readonly param: (name: string, index: string) => string,
  ) {}

  /** The function name evaluating `m`. */
  fn(m: MatExpr): string {
    const hit = this.names.get(m);
    if (hit) return hit;
    const name = `m${this.names.size}`;
    this.names.set(m, name);
    const body = this.body(m);
    this.functions.push(`fn ${name}(e: u32, r: i32, c: i32) -> f32 {\n${body}\n}`);
    return name;
  }

  private body(m: MatExpr): string {
    switch (m.kind) {
      case 'zero':
        return '  return 0.0;';
      case 'select':
        return `  return select(0.0, 1.0, c == r + ${m.offset});`;
      case 'rowscale': {
        const dSize = this.graph.nodes[m.d]!.size;
        const row = dSize === 1 ? '0' : 'r';
        return `  return ${this.coef(m.d, 'e', row)} * ${this.fn(m.m)}(e, r, c);`;
      }
      case 'add':
        return `  return ${m.terms.map((t) => `${this.fn(t)}(e, r, c)`).join(' + ')};`;
      case 'slicerows':
        return `  return ${this.fn(m.m)}(e, r + ${m.start}, c);`;
      case 'concatrows': {
        const lines: string[] = [];
        let at = 0;
        for (const p of m.parts) {
          lines.push(`  if (r < ${at + p.rows}) { return ${this.fn(p)}(e, r - ${at}, c); }`);
          at += p.rows;
        }
        lines.push('  return 0.0;');
        return lines.join('\n');
      }
      case 'sumrows':
        return `  var acc = 0.0;\n  for (var i = 0; i < ${m.m.rows} + i32(u[1].w); i++) { acc += ${this.fn(m.m)}(e, i, c); }\n  return acc;`;
      case 'broadcastrows':
        return `  return ${this.fn(m.m)}(e, 0, c);`;
      case 'matmul':
        return this.matmul(m);
    }
  }

  private matmul(m: Extract<MatExpr, { kind: 'matmul' }>): string {
    const { rows: pr, cols: pc } = matrixLayout(paramSpec(this.graph, m.param));
    const outRows = m.transpose ? pc : pr;
    const inRows = m.transpose ? pr : pc;
    // P[i][k] inside block b, as a flat index into the param.
    const p = (k: string) =>
      this.param(
        m.param,
        m.transpose ? `u32(b * ${pr * pc} + ${k} * ${pc} + i)` : `u32(b * ${pr * pc} + i * ${pc} + ${k})`,
      );
    const head = `  let b = r / ${outRows}; let i = r % ${outRows};`;
    const inner = this.fn(m.m);
    const offset = columnSparseOffset(m.m);
    if (offset !== undefined) {
      // Column c of the inner matrix has its only nonzero at row c − offset: one product.
      return `${head}
  let kk = c - ${offset};
  if (kk < 0 || kk >= ${m.m.rows} || kk / ${inRows} != b) { return 0.0; }
  let k = kk % ${inRows};
  return ${p('k')} * ${inner}(e, kk, c);`;
    }
    return `${head}
  var acc = 0.0;
  for (var k = 0; k < ${inRows} + i32(u[1].w); k++) { acc += ${p('k')} * ${inner}(e, b * ${inRows} + k, c); }
  return acc;`;
  }
}

