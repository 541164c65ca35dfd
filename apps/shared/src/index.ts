export { outputDirProblem } from './out-dir.js';
