import type { Vec } from '../cell/lang.js';
import * as L from '../cell/lang.js';
import { CellDefinitionError } from '../errors.js';

/** The activation functions of ONNX's recurrent operators, by their ONNX names. */
export const ACTIVATION_NAMES = [
  'Sigmoid',
  'Tanh',
  'Relu',
  'LeakyRelu',
  'ThresholdedRelu',
  'ScaledTanh',
  'HardSigmoid',
  'Elu',
  'Softsign',
  'Softplus',
  'Affine',
] as const;

export type ActivationName = (typeof ACTIVATION_NAMES)[number];

/**
 * An activation of a built-in recurrent cell: an ONNX name (case-insensitive), optionally with
 * its α and β (ONNX's defaults where absent), or any cell-language function of one vector.
 */
export type ActivationSpec =
  | ActivationName
  | { readonly name: ActivationName; readonly alpha?: number; readonly beta?: number }
  | ((v: Vec) => Vec);

/** ONNX's (onnxruntime's) default α and β of each activation; undefined where it has none. */
export const ACTIVATION_DEFAULTS: Readonly<Record<ActivationName, { alpha?: number; beta?: number }>> = {
  Sigmoid: {},
  Tanh: {},
  Relu: {},
  LeakyRelu: { alpha: 0.01 },
  ThresholdedRelu: { alpha: 1 },
  ScaledTanh: { alpha: 1, beta: 1 },
  HardSigmoid: { alpha: 0.2, beta: 0.5 },
  Elu: { alpha: 1 },
  Softsign: {},
  Softplus: {},
  Affine: { alpha: 1, beta: 0 },
};

/** The canonical name of an ONNX activation name in any letter case, or undefined. */
export function activationName(name: string): ActivationName | undefined {
  const lower = name.toLowerCase();
  return ACTIVATION_NAMES.find((a) => a.toLowerCase() === lower);
}

/** Resolve an activation spec to a function over vectors; `where` names it in errors. */
export function activationFn(spec: ActivationSpec, where: string): (v: Vec) => Vec {
  if (typeof spec === 'function') return spec;
  const raw = typeof spec === 'string' ? spec : spec?.name;
  const name = typeof raw === 'string' ? activationName(raw) : undefined;
  if (name === undefined) {
    throw new CellDefinitionError(
      where,
      `one of ${ACTIVATION_NAMES.join(', ')} or a function`,
      JSON.stringify(spec) ?? String(spec),
    );
  }
  const d = ACTIVATION_DEFAULTS[name];
  const given: { readonly alpha?: number; readonly beta?: number } = typeof spec === 'string' ? {} : spec;
  const arg = (key: 'alpha' | 'beta'): number => {
    const v = given[key] ?? d[key];
    if (v === undefined) return 0;
    if (typeof v !== 'number' || !Number.isFinite(v)) {
      throw new CellDefinitionError(`${where}.${key}`, `a finite number (${name}'s ${key})`, String(v));
    }
    return v;
  };
  const alpha = arg('alpha');
  const beta = arg('beta');
  switch (name) {
    case 'Sigmoid':
      return L.sigmoid;
    case 'Tanh':
      return L.tanh;
    case 'Relu':
      return L.relu;
    case 'LeakyRelu':
      return (v) => L.leakyRelu(v, alpha);
    case 'ThresholdedRelu':
      return (v) => L.thresholdedRelu(v, alpha);
    case 'ScaledTanh':
      return (v) => L.scaledTanh(v, alpha, beta);
    case 'HardSigmoid':
      return (v) => L.hardSigmoid(v, alpha, beta);
    case 'Elu':
      return (v) => L.elu(v, alpha);
    case 'Softsign':
      return L.softsign;
    case 'Softplus':
      return L.softplus;
    case 'Affine':
      return (v) => L.affine(v, alpha, beta);
  }
}

/** A short label of an activation list for cell names (undefined for the defaults). */
export function activationsLabel(
  specs: readonly ActivationSpec[] | undefined,
  defaults: readonly ActivationName[],
): string | undefined {
  if (specs === undefined) return undefined;
  const labels = specs.map((s) => {
    if (typeof s === 'function') return s.name || 'fn';
    if (typeof s === 'string') return s;
    const ab = [s.alpha, s.beta].filter((v) => v !== undefined);
    return ab.length > 0 ? `${s.name}(${ab.join(',')})` : s.name;
  });
  if (labels.every((l, i) => l.toLowerCase() === defaults[i]?.toLowerCase())) return undefined;
  return labels.join(',');
}

/** Resolve a built-in cell's `activations` option (count and names checked). */
export function resolveActivations(
  cell: string,
  specs: readonly ActivationSpec[] | undefined,
  defaults: readonly ActivationName[],
  roles: string,
): ((v: Vec) => Vec)[] {
  if (specs === undefined) return defaults.map((d, i) => activationFn(d, `${cell}: activations[${i}]`));
  if (!Array.isArray(specs) || specs.length !== defaults.length) {
    throw new CellDefinitionError(
      `${cell}: activations`,
      `${defaults.length} activations (${roles})`,
      Array.isArray(specs) ? `${specs.length}` : String(specs),
    );
  }
  return specs.map((s, i) => activationFn(s, `${cell}: activations[${i}]`));
}
