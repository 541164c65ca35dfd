import { OnnxFormatError } from './errors.js';
import { decodeModel, type OnnxTypes, toInt } from './proto.js';
import { isRecurrentOp, nodeLabel, parseRecurrentNode, type RecurrentNode } from './recurrent.js';
import { checkShapeOpForms } from './shape-ops.js';
import { ELEM_NAMES, type OnnxTensor, readTensorProto } from './tensor.js';

/** A graph input or output as declared: name, element type, dims (a number, a symbolic name, or unknown). */
export interface OnnxValueInfo {
  readonly name: string;
  /** 'float32', 'float64', 'int32', 'int64', or the ONNX type number for others. */
  readonly elemType: string;
  /** undefined when the rank is not declared. */
  readonly dims: readonly (number | string | undefined)[] | undefined;
}

/** Any graph node, as stored. */
export interface OnnxNode {
  readonly name: string;
  readonly op: string;
  readonly domain: string;
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly attributes: readonly OnnxTypes.IAttributeProto[];
}

/** A decoded ONNX model and its recurrent nodes. */
export interface OnnxRecurrentModel {
  readonly irVersion: number;
  /** Version of the default ('' / 'ai.onnx') operator set. */
  readonly opset: number;
  /** Graph inputs to be supplied at run time (those without an initializer). */
  readonly inputs: readonly OnnxValueInfo[];
  readonly outputs: readonly OnnxValueInfo[];
  /** All nodes, in graph (topological) order. */
  readonly nodes: readonly OnnxNode[];
  /** The GRU, LSTM and RNN nodes, with attributes resolved. */
  readonly recurrentNodes: readonly RecurrentNode[];
  /** Initializers that a node or graph output reads, decoded, by name (unread ones are skipped). */
  readonly initializers: ReadonlyMap<string, OnnxTensor>;
  /**
   * Graph inputs that also have an initializer: the initializer is a default that a run may override.
   * Every other initializer is a constant, and a run-time input of its name is refused.
   */
  readonly initializerInputs?: readonly OnnxValueInfo[];
}

/**
 * Decode an .onnx file's bytes. Throws OnnxFormatError for unreadable bytes and OnnxUnsupportedError
 * for a recurrent node with an attribute deerjs cannot run exactly (peepholes, other activations…).
 */
export function loadOnnxModel(bytes: Uint8Array): OnnxRecurrentModel {
  const proto = decodeModel(bytes);
  const graph = proto.graph;
  if (!graph) throw new OnnxFormatError('the model has no graph (not an ONNX model, or truncated)');
  const opsetEntry = proto.opsetImport.find((o) => !o.domain || o.domain === 'ai.onnx');
  if (!opsetEntry)
    throw new OnnxFormatError('the model imports no default (ai.onnx) operator set (truncated?)');
  const nodes: OnnxNode[] = (graph.node ?? []).map((n, i) => ({
    name: nodeLabel(n, i),
    op: n.opType ?? '',
    domain: n.domain ?? '',
    inputs: n.input ?? [],
    outputs: n.output ?? [],
    attributes: n.attribute ?? [],
  }));
  // Only initializers the graph reads are decoded: one that nothing reads (of a type deerjs does
  // not hold, say) changes no output, and onnxruntime runs such models too.
  const read = new Set<string>([...nodes.flatMap((n) => n.inputs), ...(graph.output ?? []).map((o) => o.name ?? '')]);
  const initializerNames = new Set<string>();
  const initializers = new Map<string, OnnxTensor>();
  for (const t of graph.initializer ?? []) {
    if (!t.name) throw new OnnxFormatError('an initializer has no name');
    initializerNames.add(t.name);
    if (read.has(t.name)) initializers.set(t.name, readTensorProto(t));
  }
  checkReferences(graph, nodes, initializerNames);
  const opset = toInt(opsetEntry.version);
  // Bytes that are not a model can still decode (protobuf fills in defaults): an empty graph under
  // opset 0 had come back as a model.
  if (!(opset >= 1)) throw new OnnxFormatError(`the model imports ai.onnx operator set ${opset} (versions start at 1: not an ONNX model, or truncated)`);
  if (!(toInt(proto.irVersion) >= 1)) throw new OnnxFormatError('the model has no IR version (not an ONNX model, or truncated)');
  if ((graph.output ?? []).length === 0) throw new OnnxFormatError('the graph has no outputs (not an ONNX model, or truncated)');
  checkShapeOpForms(nodes, opset);
  const recurrentNodes = (graph.node ?? []).flatMap((n, i) =>
    isRecurrentOp(n.opType) && (!n.domain || n.domain === 'ai.onnx') ? [parseRecurrentNode(n, i, opset)] : [],
  );
  return {
    irVersion: toInt(proto.irVersion),
    opset,
    inputs: (graph.input ?? []).filter((v) => !initializerNames.has(v.name ?? '')).map(valueInfo),
    initializerInputs: (graph.input ?? []).filter((v) => initializerNames.has(v.name ?? '')).map(valueInfo),
    outputs: (graph.output ?? []).map(valueInfo),
    nodes,
    recurrentNodes,
    initializers,
  };
}

function valueInfo(v: OnnxTypes.IValueInfoProto): OnnxValueInfo {
  if (!v.name) throw new OnnxFormatError('a graph input or output has no name');
  const tensor = v.type?.tensorType;
  const elem = tensor?.elemType ?? 0;
  const dims = tensor?.shape?.dim?.map((d) => {
    if (d.dimParam) return d.dimParam;
    return d.dimValue !== undefined && d.dimValue !== null ? toInt(d.dimValue) : undefined;
  });
  return { name: v.name, elemType: ELEM_NAMES[elem] ?? String(elem), dims };
}

/** Every node input and graph output must name an initializer, a graph input or an earlier node's output. */
function checkReferences(
  graph: OnnxTypes.IGraphProto,
  nodes: readonly OnnxNode[],
  initializers: ReadonlySet<string>,
): void {
  const known = new Set<string>([...initializers, ...(graph.input ?? []).map((v) => v.name ?? '')]);
  for (const node of nodes) {
    for (const name of node.inputs) {
      if (name && !known.has(name)) {
        throw new OnnxFormatError(
          `node '${node.name}' reads '${name}', which no initializer, graph input or earlier node provides`,
        );
      }
    }
    for (const name of node.outputs) {
      // SSA, as onnxruntime checks it ("Duplicate definition"): a second definition of a name would
      // make what later nodes read depend on which one a reader takes.
      if (name && known.has(name))
        throw new OnnxFormatError(`node '${node.name}' defines '${name}', which an initializer, graph input or earlier node already defines`);
      if (name) known.add(name);
    }
  }
  for (const out of graph.output ?? []) {
    if (!known.has(out.name ?? ''))
      throw new OnnxFormatError(`graph output '${out.name}' is not produced by any node`);
  }
}
