import { describe, expect, it } from 'vitest';
import { buildGrid } from '../src/grid.js';
import { speedupSvg } from '../src/plot.js';
import type { BenchReport, PointResult } from '../src/report.js';
import { escapeXml, logLogSvg } from '../src/svg.js';

function fakeReport(): BenchReport {
  const grid = buildGrid({
    nh: [1, 8, 32],
    T: [1e3, 1e4, 1e5],
    batch: 16,
    heads: [],
    headsSize: 64,
    quasi: false,
  });
  const points: PointResult[] = grid.map((p, i) => ({
    point: p,
    status: i === 8 ? 'skipped' : 'ok',
    speedupSequential: (p.T / 1e3) * (i + 1) * 0.1,
    speedupOrt: 0.5,
    estimatedBytes: 0,
    wallMs: 1,
  }));
  return {
    tool: 'deer-bench',
    version: 1,
    startedAt: '2025-01-01T00:00:00Z',
    wallMs: 1,
    machine: {
      cpu: 'Test <CPU> & co',
      cores: 2,
      memoryBytes: 1,
      platform: 'x',
      arch: 'x64',
      node: 'v20',
      hostname: 'h',
    },
    backend: { name: 'cpu', device: 'cpu (JavaScript)', maxBufferBytes: 1 },
    dtype: 'float32',
    git: null,
    onnxruntime: null,
    options: { batch: 16 },
    points,
  };
}

/** Balanced tags, one root, nothing after it: enough of well-formedness for a generated file. */
function assertWellFormed(svg: string): void {
  expect(svg.startsWith('<?xml')).toBe(true);
  const stack: string[] = [];
  for (const m of svg.matchAll(/<(\/?)([a-zA-Z]+)([^>]*?)(\/?)>/g)) {
    const [, close, name, attrs, selfClose] = m;
    expect(attrs).not.toMatch(/[<&](?!amp;|lt;|gt;|quot;)/);
    if (selfClose) continue;
    if (close) expect(stack.pop()).toBe(name);
    else stack.push(name!);
  }
  expect(stack).toEqual([]);
  expect(svg.replace(/<[^>]*>/g, '')).not.toMatch(/[<>]|&(?!amp;|lt;|gt;|quot;)/);
}

describe('SVG plot', () => {
  it('is well-formed with one polyline per nh, a legend and axis labels', () => {
    const svg = speedupSvg(fakeReport(), 'sequential');
    assertWellFormed(svg);
    expect(svg.match(/<polyline /g)).toHaveLength(3);
    for (const nh of [1, 8, 32]) expect(svg).toContain(`data-name="nh=${nh}"`);
    expect(svg.match(/class="legend"/g)).toHaveLength(3);
    expect(svg).toContain('sequence length T');
    expect(svg).toContain('speedup');
    expect(svg).toContain('backend cpu, device cpu (JavaScript)');
    expect(svg).toContain('Test &lt;CPU&gt; &amp; co');
    // The skipped point (nh=32, T=1e5) leaves its line with two vertices.
    const nh32 = /data-name="nh=32">\n<polyline points="([^"]*)"/.exec(svg)![1]!;
    expect(nh32.split(' ')).toHaveLength(2);
  });

  it('maps decades to equal distances (log-log)', () => {
    const svg = logLogSvg({
      title: 't',
      xLabel: 'x',
      yLabel: 'y',
      series: [
        {
          name: 'a',
          points: [
            [10, 1],
            [100, 10],
            [1000, 100],
          ],
        },
      ],
    });
    const pts = /<polyline points="([^"]*)"/
      .exec(svg)![1]!
      .split(' ')
      .map((s) => s.split(',').map(Number));
    const dx1 = pts[1]![0]! - pts[0]![0]!;
    const dx2 = pts[2]![0]! - pts[1]![0]!;
    const dy1 = pts[1]![1]! - pts[0]![1]!;
    const dy2 = pts[2]![1]! - pts[1]![1]!;
    expect(dx1).toBeCloseTo(dx2, 1);
    expect(dy1).toBeCloseTo(dy2, 1);
    expect(dy1).toBeLessThan(0);
  });

  it('escapes XML', () => {
    expect(escapeXml('a<b & "c">')).toBe('a&lt;b &amp; &quot;c&quot;&gt;');
  });
});
