import { deerVitestConfig } from '@deerjs/tooling/vitest-preset';
import { defineConfig } from 'vitest/config';

// With a cold Mesa shader cache, llvmpipe compiles each new pipeline with LLVM (~0.85 s each, more
// on a loaded machine): a case that first uses many kernels took past the preset's 120 s while the
// same case takes ~1 s once they are cached. The timeout is for hangs, not a measure of speed.
export default defineConfig(deerVitestConfig({ testTimeout: 300_000, hookTimeout: 300_000 }));
