import { deerVitestConfig } from '@deerjs/tooling/vitest-preset';
import { defineConfig } from 'vitest/config';

export default defineConfig(deerVitestConfig({ globalSetup: ['test/build-dist.ts'] }));
