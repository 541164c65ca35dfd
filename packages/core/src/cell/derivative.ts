import type { GraphBuilder } from './builder.js';
import type { NodeId, UnaryFn } from './graph.js';

/**
 * f'(a) for an elementwise function, as a graph node (reusing the output `out` = f(a) where that
 * is cheaper), or null where the derivative is zero almost everywhere.
 */
export function unaryDerivative(b: GraphBuilder, fn: UnaryFn, a: NodeId, out: NodeId): NodeId | null {
  switch (fn) {
    case 'neg':
      return b.scalar(-1);
    case 'sigmoid':
      return b.mul(out, b.sub(b.scalar(1), out));
    case 'tanh':
      return b.sub(b.scalar(1), b.unary('square', out));
    case 'exp':
      return out;
    case 'log':
      return b.div(b.scalar(1), a);
    case 'softplus':
      return b.unary('sigmoid', a);
    case 'relu':
      return b.unary('step', a);
    case 'sin':
      return b.unary('cos', a);
    case 'cos':
      return b.unary('neg', b.unary('sin', a));
    case 'square':
      return b.mul(b.scalar(2), a);
    case 'sqrt':
      return b.div(b.scalar(0.5), out);
    case 'abs':
      return b.unary('sign', a);
    case 'step':
    case 'sign':
      return null;
  }
}

/**
 * ∂/∂a and ∂/∂b of min(a, b) or max(a, b): 0/1 indicators of which operand is picked (at a tie
 * the second). Comparisons go through the sign of b − a, which IEEE subtraction gets right for
 * every finite pair (overflow keeps the sign), so nothing cancels at large |a|, |b|.
 */
export function minMaxDerivatives(
  b: GraphBuilder,
  fn: 'min' | 'max',
  a: NodeId,
  c: NodeId,
): { readonly da: () => NodeId; readonly db: () => NodeId } {
  const da = () => b.unary('step', fn === 'min' ? b.sub(c, a) : b.sub(a, c));
  return { da, db: () => b.sub(b.scalar(1), da()) };
}
