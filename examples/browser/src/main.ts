import { type BackendChoice, chooseBackend } from './backend.js';
import { describeProblem, type SolveResult, solve } from './problem.js';

/** What the page shows, by row key; the end-to-end test reads the same keys. */
function rows(backend: string, device: string, reason: string, r: SolveResult): [string, string, string][] {
  return [
    ['backend', 'backend', backend],
    ['device', 'device', device],
    ['reason', 'why this backend', reason],
    ['dtype', 'dtype', r.dtype],
    ['problem', 'problem', describeProblem()],
    ['iterations', 'Newton iterations', String(r.iterations)],
    ['converged', 'converged', r.converged && !r.fellBack ? 'yes' : `no (fell back: ${r.fellBack})`],
    ['maxDiff', 'max |DEER − sequential|', r.maxDiff.toExponential(3)],
    ['deerMs', 'DEER time (ms)', r.deerMs.toFixed(1)],
    ['sequentialMs', 'sequential time (ms)', r.sequentialMs.toFixed(1)],
    ['finalState', 'y[0, T−1, 0:4] (DEER)', r.finalState.map((v) => v.toFixed(9)).join(', ')],
  ];
}

function show(tbody: HTMLElement, entries: [string, string, string][]): void {
  tbody.replaceChildren(
    ...entries.map(([key, label, value]) => {
      const tr = document.createElement('tr');
      const th = document.createElement('th');
      const td = document.createElement('td');
      th.textContent = label;
      td.textContent = value;
      td.dataset.key = key;
      tr.append(th, td);
      return tr;
    }),
  );
}

async function main(): Promise<void> {
  const status = document.getElementById('status')!;
  const tbody = document.getElementById('result')!;
  try {
    const asked = new URLSearchParams(location.search).get('backend') ?? 'auto';
    if (!['auto', 'webgpu', 'cpu'].includes(asked))
      throw new Error(`?backend=${asked}: expected auto, webgpu or cpu`);
    const { backend, reason } = await chooseBackend(asked as BackendChoice);
    status.textContent = `solving on ${backend.name}…`;
    const result = await solve(backend, () => performance.now());
    const device = backend.capabilities.device;
    await backend.destroy();
    show(tbody, rows(backend.name, device, reason, result));
    // The whole trajectory, for the end-to-end test's comparison with its oracle.
    (window as Window & { deerjsResult?: unknown }).deerjsResult = {
      backend: backend.name,
      device,
      reason,
      ...result,
    };
    status.textContent = 'done';
    status.dataset.state = 'done';
  } catch (err) {
    status.textContent = `failed: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`;
    status.dataset.state = 'error';
  }
}

void main();
