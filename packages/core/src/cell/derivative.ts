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
