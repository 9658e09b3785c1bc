export * from './messages.js';
export * from './errors.js';
export * from './codec.js';
export * from './validate.js';
export * from './helpers.js';
export * from './wire-client.js';
export * from './int-map.js';
export { type BinWriter, isBinWriter, binWriterBytes } from './fastpath.js';
