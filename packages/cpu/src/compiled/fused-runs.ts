import { type Graph, type NodeId, operands } from '@deerjs/core';

/** A run of elementwise nodes of one size (one loop), or a node of its own. */
export type Item = { kind: 'group'; size: number; ids: NodeId[] } | { kind: 'single'; id: NodeId };

/**
 * How both generators (codegen.ts, wasm/kernel-module.ts) order a kernel's work: elementwise nodes
 * of one size that follow each other are fused into one loop, whose values live in locals and are
 * `stored` only when something outside the run reads them (or they are `stores`). Externals,
 * params, consts and slices (views of their operand) take no item.
 */
export function fusedRuns(
  g: Graph,
  nodes: readonly NodeId[],
  isExternal: (id: NodeId) => boolean,
  stores: readonly NodeId[],
): { items: Item[]; stored: Set<NodeId> } {
  const items: Item[] = [];
  const groupOf = new Map<NodeId, number>();
  let current: Extract<Item, { kind: 'group' }> | undefined;
  for (const id of nodes) {
    const node = g.nodes[id]!;
    if (isExternal(id) || node.op === 'param' || node.op === 'const' || node.op === 'slice') continue;
    if (node.op === 'state' || node.op === 'input' || node.op === 'cotangent') {
      throw new Error(`compiled step: leaf ${node.op} (${id}) is not an external`);
    }
    if (node.op === 'unary' || node.op === 'binary') {
      // A run's locals hold its nodes at the loop's own index only: a node that reads one of
      // them through a slice (another index, or index 0 broadcast) starts a new run, after which
      // that value is stored.
      const readsRunThroughSlice =
        current !== undefined &&
        operands(node).some((o) => {
          if (g.nodes[o]!.op !== 'slice' || isExternal(o)) return false;
          let b = o;
          while (g.nodes[b]!.op === 'slice' && !isExternal(b)) b = operands(g.nodes[b]!)[0]!;
          // `current` is the last item while it is set.
          return groupOf.get(b) === items.length - 1;
        });
      if (!current || current.size !== node.size || readsRunThroughSlice) {
        current = { kind: 'group', size: node.size, ids: [] };
        items.push(current);
      }
      current.ids.push(id);
      groupOf.set(id, items.length - 1);
    } else {
      current = undefined;
      items.push({ kind: 'single', id });
    }
  }
  const stored = new Set<NodeId>(stores);
  for (const id of nodes) {
    const gid = groupOf.get(id);
    for (const o of operands(g.nodes[id]!)) if (gid === undefined || groupOf.get(o) !== gid) stored.add(o);
  }
  return { items, stored };
}
