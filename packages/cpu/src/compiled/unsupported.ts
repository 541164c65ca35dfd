/** A program a generator does not know how to compile; the caller falls back (to the reference, or to generated JavaScript). */
export class Unsupported extends Error {}
