import { bound, MAIN_HEAD, storage, UNIFORM_DECL, uni } from '../wgsl/common.js';

const module = (bindings: readonly [string, boolean][], body: string) =>
  [UNIFORM_DECL, ...bindings.map(([name, w], i) => storage(i + 1, name, w)), `${MAIN_HEAD}\n${body}\n}`].join(
    '\n',
  );

/** out = F − A·y per (b, t), A in [n/s, s, s] blocks. Uniform 0: BT·n. */
export function affineOffsetKernel(n: number, s: number): string {
  return module(
    [
      ['F', false],
      ['A', false],
      ['Y', false],
      ['O', true],
    ],
    `  if (idx >= ${uni(0)}) { return; }
  let e = idx / ${n}u;
  let row = idx % ${n}u;
  let k = row / ${s}u;
  let i = row % ${s}u;
  let base = ((e * ${n / s}u + k) * ${s}u + i) * ${s}u;
  var acc = 0.0;
  for (var j = 0u; j < ${bound(s)}; j++) { acc += A[base + j] * Y[e * ${n}u + k * ${s}u + j]; }
  O[idx] = F[idx] - acc;`,
  );
}

/**
 * A window of time steps of every batch row, one invocation per float: O[b·u4 + u5 + r] =
 * X[b·u2 + u3 + r] for r < u1, or 0 where u6 = 1 (u0 = B·u1 invocations; u2/u4 the rows' lengths
 * and u3/u5 the window's start, in floats). For many short rows, where a copy command per row
 * costs more than the copy (150,000 rows: 300,000 commands a Newton iteration).
 */
export const TIME_WINDOW = module(
  [
    ['X', false],
    ['O', true],
  ],
  `  if (idx >= ${uni(0)}) { return; }
  let b = idx / ${uni(1)};
  let r = idx % ${uni(1)};
  O[b * ${uni(4)} + ${uni(5)} + r] = select(X[b * ${uni(2)} + ${uni(3)} + r], 0.0, ${uni(6)} == 1u);`,
);

/**
 * Listed batch rows of u1 floats, one invocation per float (u0 = rows · u1): gathered, O[k] =
 * X[I[k]] (u2 = 0), or scattered, O[I[k]] = X[k] (u2 = 1; rows listed twice race, so callers list
 * each once).
 */
export const LISTED_ROWS = [
  UNIFORM_DECL,
  storage(1, 'X', false),
  '@group(0) @binding(2) var<storage, read> I: array<u32>;',
  storage(3, 'O', true),
  `${MAIN_HEAD}
  if (idx >= ${uni(0)}) { return; }
  let k = idx / ${uni(1)};
  let r = idx % ${uni(1)};
  let listed = I[k] * ${uni(1)} + r;
  if (${uni(2)} == 0u) { O[idx] = X[listed]; } else { O[listed] = X[idx]; }
}`,
].join('\n');

/** out[b, t, r] = x[b, r]. Uniforms: 0 = total, 1 = T, 2 = inner. */
export const BROADCAST_TIME = module(
  [
    ['X', false],
    ['O', true],
  ],
  `  if (idx >= ${uni(0)}) { return; }
  let inner = ${uni(2)};
  let b = idx / (${uni(1)} * inner);
  O[idx] = X[b * inner + idx % inner];`,
);

const VEC4_HEAD = (inputs: readonly string[]) =>
  [
    UNIFORM_DECL,
    ...inputs.map((name, i) => `@group(0) @binding(${i + 1}) var<storage, read> ${name}: array<vec4<f32>>;`),
    `@group(0) @binding(${inputs.length + 1}) var<storage, read_write> O4: array<vec4<f32>>;`,
  ].join('\n');

/**
 * Elementwise kernels over vec4s, each invocation walking a stride of them (uniforms: 0 = vec4s,
 * 1 = invocations): 16-byte accesses and long loops, which a software adapter runs several times
 * faster than one scalar per invocation. Every bound buffer must hold whole vec4s (the tensors'
 * buffers are padded to 16 bytes); the padding's values are not data.
 */
export const ADD4 = `${VEC4_HEAD(['X4', 'Y4'])}
${MAIN_HEAD}
  for (var i = idx; i < ${uni(0)}; i += ${uni(1)}) { O4[i] = X4[i] + Y4[i]; }
}`;

export const SUB4 = `${VEC4_HEAD(['X4', 'Y4'])}
${MAIN_HEAD}
  for (var i = idx; i < ${uni(0)}; i += ${uni(1)}) { O4[i] = X4[i] - Y4[i]; }
}`;

/** out = x: maskTime where no step is masked. */
export const COPY4 = `${VEC4_HEAD(['X4'])}
${MAIN_HEAD}
  for (var i = idx; i < ${uni(0)}; i += ${uni(1)}) { O4[i] = X4[i]; }
}`;

/** out = a + b. Uniform 0: size. */
export const ADD = module(
  [
    ['X', false],
    ['Y', false],
    ['O', true],
  ],
  `  if (idx >= ${uni(0)}) { return; }
  O[idx] = X[idx] + Y[idx];`,
);

/** out = a − b. Uniform 0: size. */
export const SUB = module(
  [
    ['X', false],
    ['Y', false],
    ['O', true],
  ],
  `  if (idx >= ${uni(0)}) { return; }
  O[idx] = X[idx] - Y[idx];`,
);

/** out[b, t, i] = t < L[b] ? x[b, t, i] : 0. Uniforms: 0 = size, 1 = T, 2 = inner. */
export const MASK_TIME = [
  UNIFORM_DECL,
  storage(1, 'X', false),
  storage(2, 'O', true),
  '@group(0) @binding(3) var<storage, read> L: array<u32>;',
  `${MAIN_HEAD}
  if (idx >= ${uni(0)}) { return; }
  let inner = ${uni(2)};
  let t = (idx / inner) % ${uni(1)};
  let b = idx / (inner * ${uni(1)});
  O[idx] = select(0.0, X[idx], t < L[b]);
}`,
].join('\n');
