// Entry of the kit's bundle (tooling/gpu-kit/build.sh bundles this file, not cli.js directly).
//
// The bench loads backends with `loadBackend(name, { importer: (s) => import(s) })`: a computed
// import that no bundler can follow. Core's loadBackend only calls the importer for a backend
// that is not registered yet, so registering the kit's backends here, before the bench's code
// runs, makes `--backend cpu|webgpu` (and "best available") resolve inside the bundle. Both
// register() calls are cheap: @deerjs/webgpu imports the `webgpu` package (Dawn's native addon)
// only when a webgpu backend is created.
import { register as registerCpu } from '@deerjs/cpu';
import { register as registerWebgpu } from '@deerjs/webgpu';

registerCpu();
registerWebgpu();

// The bench itself (apps/bench/dist/cli.js runs main() when evaluated). A literal specifier, so
// esbuild inlines it; it must be evaluated after the registrations above.
await import('../../apps/bench/dist/cli.js');
