// Node and browsers have TextEncoder/TextDecoder; the ES2022 lib this package compiles against omits them.
declare const TextEncoder: new () => { encode(s: string): Uint8Array };
declare const TextDecoder: new () => { decode(b: Uint8Array): string };

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export const encodeUtf8 = (s: string): Uint8Array => encoder.encode(s);
export const decodeUtf8 = (b: Uint8Array | null | undefined): string => (b ? decoder.decode(b) : '');
