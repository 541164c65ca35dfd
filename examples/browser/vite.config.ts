import { defineConfig } from 'vite';

export default defineConfig({
  // Relative asset URLs, so the built page works from any directory a server puts it in.
  base: './',
  build: { target: 'es2022' },
});
