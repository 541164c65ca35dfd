export { outputDirProblem, replaceFile } from './out-dir.js';
