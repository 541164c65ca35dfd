import * as core from '@deerjs/core';
import { createCpuBackend } from '@deerjs/cpu';
import { createReferenceBackend } from '@deerjs/cpu/reference';
console.log(Object.keys(core).filter(k=>/ivp|Ivp|rk4|dopri|cells|lang|defineCell|Error/.test(k)).join(' '));
console.log(Object.keys(core.lang).join(' '));
const be = createReferenceBackend({dtype:'float64'});
console.log(be.name, be.capabilities);
